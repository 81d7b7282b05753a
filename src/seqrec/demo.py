"""`seqrec demo`: train (or reuse) a small SASRec, print it beside the baselines, serve it."""

from __future__ import annotations

import os
from pathlib import Path

from seqrec.errors import SeqrecError

# Small and quick: about a minute on two CPU cores for the embedded synthetic data set.
DEMO_OPTIONS = dict(hidden=64, blocks=2, heads=1, max_len=50, dropout=0.2, loss="ce", epochs=40, patience=3,
                    eval_every=5, lr=2e-3, batch_size=64)


def cache_dir() -> Path:
    return Path(os.environ.get("SEQREC_CACHE", Path.home() / ".cache" / "seqrec")) / "demo"


def demo(data: str = "synthetic", *, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False,
         retrain: bool = False, serve: bool = True, **options) -> Path:
    """Train (or reuse a cached) SASRec on ``data``, print its test metrics beside the baselines, serve it."""
    from seqrec.api import SASRec
    from seqrec.baselines import BASELINES, make_baseline
    from seqrec.evaluate import EvalConfig, evaluate
    from seqrec.readers import load_dataset
    from seqrec.report import markdown_table
    from seqrec.split import LeaveOneOut

    ds = load_dataset(data)
    folder = cache_dir() / f"{ds.meta.get('name', 'data')}-{ds.fingerprint()}"
    if folder.exists() and not retrain:
        print(f"reusing the model in {folder} (--retrain to train again)")
        model = SASRec.load(folder)
    else:
        print(f"training SASRec on {ds.meta.get('name')}: {ds.n_users:,} users, {ds.n_items:,} items")
        model = SASRec(**{**DEMO_OPTIONS, **options, "quiet": quiet}).fit(ds, out_dir=folder)
    loo = LeaveOneOut(ds)
    rows = []
    for name, scorer in [("SASRec", model.model_), *((b, None) for b in BASELINES)]:
        try:
            scorer = scorer or make_baseline(name, loo)
        except SeqrecError:
            continue  # e.g. the genre baseline on data without genres
        m = evaluate(scorer, loo, EvalConfig(split="test"))
        rows.append({"model": name, "HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"], "MRR": m["MRR"]})
    print(f"\nTest split, full ranking over {ds.n_items:,} items ({len(loo.eval_users):,} users):")
    print(markdown_table(rows))
    if serve:
        from seqrec.serve import run

        print(f"\nserving at http://{host}:{port}/  (API docs at /docs; Ctrl-C to stop)")
        run(str(folder), host=host, port=port)
    return folder
