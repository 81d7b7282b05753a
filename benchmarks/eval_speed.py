"""Full-ranking evaluation speed at a large Amazon-like shape, and a check that it gives the old metrics.

    python benchmarks/eval_speed.py [--users 40000] [--items 54000] [--hidden 64] [--threads 2] [--repeat 1]

A synthetic data set (``--users`` users with 5-core-like history lengths, 5 to 60 items, median about 8,
over ``--items`` items, popularity Zipf-like) and a SASRec of hidden ``--hidden`` with spread-out item
embeddings (so scores rarely tie). The validation split (one target per user, every catalogue item a
candidate, the user's seen items excluded) is evaluated by:

* ``seqrec.evaluation.evaluator`` as it is: SASRec's score product taken a cache-sized chunk of users at a time
  straight into the ranking buffer, histories grouped by length and cropped;
* the generic ``Scorer`` path: the same model behind an object that only has ``score`` (as a baseline
  is evaluated: a block's whole score matrix, then copied a chunk at a time into the ranking buffer);
* the evaluator before the chunked product (``git show BEFORE:src/seqrec/evaluate.py``, when this is a
  git checkout that has that commit; skipped otherwise).

The table has each path's wall and CPU seconds (best of ``--repeat``; CPU seconds are the process's, all
threads together, and move less than wall seconds when other work shares the cores) and whether every metric (HR, NDCG, MRR,
coverage, users) equals the old path's exactly; the script exits 1 when one does not. The load
average is printed with it: on a shared machine timings are only comparable within one table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import polars as pl  # noqa: E402
import torch  # noqa: E402

from seqrec.config import CleanConfig, SASRecConfig  # noqa: E402
from seqrec.data.dataset import Dataset  # noqa: E402
from seqrec.data.split import LeaveOneOut  # noqa: E402
from seqrec.evaluation.evaluator import EvalConfig, evaluate  # noqa: E402
from seqrec.evaluation.report import markdown_table  # noqa: E402
from seqrec.models.sasrec import SASRecModel  # noqa: E402

BEFORE = "fec8c41"  # the last commit with the evaluator that scored whole blocks through ``score``


class ScoreOnly:
    """The model seen through ``score`` alone (the generic Scorer path)."""

    def __init__(self, model: SASRecModel) -> None:
        self.model, self.max_len, self.n_items = model, model.max_len, model.n_items

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.model.score(histories)


def old_evaluator():
    """``evaluate`` as it was at ``BEFORE``, or None when the checkout cannot show it."""
    try:
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE}:src/seqrec/evaluate.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "evaluate_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("evaluate_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.evaluate


def synthetic(users: int, items: int, seed: int = 0) -> LeaveOneOut:
    rng = np.random.default_rng(seed)
    lengths = np.minimum(5 + rng.geometric(0.15, users) - 1, 60)  # 5-core-like: median about 8
    rows = np.repeat(np.arange(users), lengths)
    drawn = (rng.zipf(1.2, int(lengths.sum())) - 1) % items + 1
    drawn[:items] = np.arange(1, items + 1)  # every item occurs
    frame = pl.DataFrame({"user": rows, "item": drawn})
    return LeaveOneOut(Dataset.from_interactions(frame, config=CleanConfig(k_core=0)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=40_000)
    p.add_argument("--items", type=int, default=54_000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loo = synthetic(args.users, args.items)
    model = SASRecModel(
        SASRecConfig(
            n_items=loo.data.n_items, hidden=args.hidden, max_len=args.max_len, norm="paper", activation="relu"
        )
    ).eval()
    with torch.no_grad():
        model.item_emb.weight.normal_(0.0, 1.0)  # spread-out scores: few ties, as a trained model gives
        model.item_emb.weight[0] = 0.0
    config = EvalConfig(split="valid")
    paths = [
        ("seqrec.evaluation.evaluator (chunked score product)", lambda: evaluate(model, loo, config)),
        ("generic Scorer path (score(), then ranked)", lambda: evaluate(ScoreOnly(model), loo, config)),
    ]
    before = old_evaluator()
    if before is not None:
        paths.append((f"evaluator before ({BEFORE})", lambda: before(model, loo, config)))
    results = {}
    for name, run in paths:
        best = cpu = float("inf")
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            metrics = run()
            best, cpu = min(best, time.perf_counter() - t), min(cpu, time.process_time() - c)
        results[name] = (best, cpu, metrics)
    reference = results[paths[-1][0]][2]
    same = f"metrics identical to {paths[-1][0]}"
    rows = [
        {
            "path": name,
            "wall s": f"{sec:.2f}",
            "CPU s": f"{cpu:.2f}",
            "NDCG@10": f"{m['NDCG@10']:.6f}",
            "MRR": f"{m['MRR']:.6f}",
            "Coverage@20": f"{m['Coverage@20']:.4f}",
            same: "yes" if m == reference else "NO",
        }
        for name, (sec, cpu, m) in results.items()
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"full-ranking validation: {len(loo.eval_users):,} users x {loo.data.n_items:,} items, hidden {args.hidden}, "
        f"max_len {args.max_len}, {args.threads} threads, torch {torch.__version__}, {os.cpu_count()} CPUs, load "
        f"average {load:.1f}"
    )
    print(markdown_table(rows))
    return 0 if all(m == reference for _, _, m in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
