"""`seqrec demo`: train (or reuse) a small SASRec, print it beside the baselines, serve it.

The demo's SASRec reads the catalogue's genres and years as item features (``DEMO_FEATURES``, those
of the two fields the catalogue holds) and scores items with them too (``feature_output``), so items
added later through ``POST /admin/items`` are ranked by their features. On the embedded synthetic data
(seed 0, the budget below) its test NDCG@10 is 0.696, against 0.685 for the same model on ids only.

A cached model is reused only when it was trained with the options the demo would train with now
(model and training settings, on the same data); otherwise it is trained again.
"""

from __future__ import annotations

import os
from pathlib import Path

from seqrec.errors import SeqrecError

# Small and quick: about a minute on two CPU cores for the embedded synthetic data set.
DEMO_OPTIONS = dict(
    hidden=64,
    blocks=2,
    heads=1,
    max_len=50,
    dropout=0.2,
    loss="ce",
    epochs=40,
    patience=3,
    eval_every=5,
    lr=2e-3,
    batch_size=64,
)
DEMO_FEATURES = ("genres", "year")  # catalogue fields the demo's SASRec reads, where the catalogue has them
FEATURE_OPTIONS = dict(feature_output=True)
IGNORED_TRAIN = ("quiet", "threads", "device")  # training settings that do not change the model


def cache_dir() -> Path:
    return Path(os.environ.get("SEQREC_CACHE", Path.home() / ".cache" / "seqrec")) / "demo"


def demo(
    data: str = "synthetic",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
    retrain: bool = False,
    serve: bool = True,
    **options,
) -> Path:
    """Train (or reuse a cached) SASRec on ``data``, print its test metrics beside the baselines, serve it."""
    from seqrec.api import SASRec
    from seqrec.data.readers import load_dataset
    from seqrec.data.split import LeaveOneOut
    from seqrec.evaluation.evaluator import EvalConfig, evaluate
    from seqrec.evaluation.report import markdown_table
    from seqrec.models.baselines import BASELINES, make_baseline

    ds = load_dataset(data)
    folder = cache_dir() / f"{ds.meta.get('name', 'data')}-{ds.fingerprint()}"
    estimator = SASRec(**{**demo_options(ds), **options, "quiet": quiet})
    model = None
    if folder.exists() and not retrain:
        model, why = _cached(folder, estimator, ds)
        print(
            f"reusing the model in {folder} (--retrain to train again)"
            if model is not None
            else f"not reusing the model in {folder}: {why}; training again"
        )
    if model is None:
        print(
            f"training SASRec on {ds.meta.get('name')}: {ds.n_users:,} users, {ds.n_items:,} items"
            + (
                f", item features {estimator.options['item_features']}"
                if estimator.options.get("item_features")
                else ""
            )
        )
        model = estimator.fit(ds, out_dir=folder)
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
        from seqrec.serving.server import run

        print(f"\nserving at http://{host}:{port}/  (API docs at /docs; Ctrl-C to stop)")
        run(str(folder), host=host, port=port)
    return folder


def demo_options(ds) -> dict:
    """The demo's SASRec options for ``ds``: ``DEMO_OPTIONS``, and item features from those of
    ``DEMO_FEATURES`` that some item of the catalogue has a value of (ids only when none has)."""
    import polars as pl

    fields = []
    for name in DEMO_FEATURES:
        if name in ds.catalog.columns:
            column = ds.catalog[name]
            has = column.list.len().fill_null(0) > 0 if isinstance(column.dtype, pl.List) else column.is_not_null()
            if bool(has.any()):
                fields.append(name)
    return {**DEMO_OPTIONS, **({"item_features": ",".join(fields), **FEATURE_OPTIONS} if fields else {})}


def _cached(folder: Path, estimator, ds) -> tuple:
    """(the cached SASRec in ``folder``, None) when it was trained on ``ds`` with the settings ``estimator``
    would train with, else (None, why not)."""
    from seqrec.api import SASRec
    from seqrec.models.sasrec import SASRecConfig

    try:
        cached = SASRec.load(folder)
    except SeqrecError as e:
        return None, f"it does not load ({e})"
    assert cached.dataset_ is not None and cached.model_ is not None
    if cached.dataset_.fingerprint() != ds.fingerprint():
        return None, "it was trained on other data"
    model_opts, train_cfg, _ = estimator.resolve(ds)
    want = {
        **SASRecConfig(n_items=ds.n_items, **model_opts).to_dict(),
        **{k: v for k, v in train_cfg.to_dict().items() if k not in IGNORED_TRAIN},
    }
    have = {
        **cached.model_.config.to_dict(),
        **{k: v for k, v in cached.train_config.to_dict().items() if k not in IGNORED_TRAIN},
    }
    differ = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    if differ:
        shown = ", ".join(f"{k}={have.get(k, 'unset')!r} (now {want.get(k, 'unset')!r})" for k in differ[:4])
        return None, f"it was trained with {shown}{', ...' if len(differ) > 4 else ''}"
    return cached, None
