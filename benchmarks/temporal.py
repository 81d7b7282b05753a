"""Leave-one-out beside a global time split, for SASRec and every baseline, on timestamped data sets.

For each data set: the baselines and SASRec (the auto recipe, ``--time-limit`` seconds of wall time per fit) under
``--scheme loo`` and under ``--scheme temporal --cutoff Q`` (the test asks each user with events after the cut
for their first one, from their whole history before it; ``--horizon`` adds recall and NDCG over every item
they take within that time). Test split, full ranking, seen items excluded. Prints one Markdown table.

    python benchmarks/temporal.py --data ml-100k,ml-latest-small --cutoff 0.9 --horizon 7d --time-limit 120
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from seqrec.api import SASRec
from seqrec.config import EvalConfig, SplitConfig
from seqrec.data.readers import load_dataset
from seqrec.data.split import TemporalSplit, make_split
from seqrec.evaluation.evaluator import evaluate
from seqrec.evaluation.horizon import evaluate_horizon
from seqrec.evaluation.report import markdown_table
from seqrec.models.baselines import BASELINES, make_baseline

DATA = Path(os.environ.get("SEQREC_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
DATASETS = {"ml-100k": "ml-100k", "ml-latest-small": "ml-latest-small"}


def rows_for(name: str, cutoff: str, horizon: str | None, time_limit: float, threads: int | None) -> list[dict]:
    ds = load_dataset(DATA / DATASETS.get(name, name))
    out = []
    for scheme in ("loo", "temporal"):
        config = SplitConfig(
            scheme, cutoff if scheme == "temporal" else None, horizon if scheme == "temporal" else None
        )
        split = make_split(ds, config)
        facts = split.describe() if isinstance(split, TemporalSplit) else {}
        for model in [*BASELINES, "sasrec"]:
            t = time.perf_counter()
            if model == "sasrec":
                options = {"time_limit": time_limit, "quiet": True, **({"threads": threads} if threads else {})}
                scorer = SASRec(**options).fit(ds, scheme=scheme, cutoff=config.cutoff, horizon=config.horizon).model_
            else:
                scorer = make_baseline(model, split)
            metrics = evaluate(scorer, split, EvalConfig(ks=(10,)))
            if isinstance(split, TemporalSplit) and split.horizon is not None:
                metrics.update(evaluate_horizon(scorer, split, (10,)))
            out.append(
                {
                    "data": name,
                    "scheme": scheme if not facts else f"temporal (cut {facts['cut'][:10]})",
                    "model": model,
                    "HR@10": round(metrics["HR@10"], 4),
                    "NDCG@10": round(metrics["NDCG@10"], 4),
                    "Recall@10 (horizon)": round(metrics.get("Recall@10 (horizon)", float("nan")), 4),
                    "users": metrics["users"],
                    "cold targets": facts.get("cold_targets", ""),
                    "seconds": round(time.perf_counter() - t, 1),
                }
            )
            print(out[-1], flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml-100k,ml-latest-small")
    p.add_argument("--cutoff", default="0.9")
    p.add_argument("--horizon", default="7d")
    p.add_argument("--time-limit", type=float, default=120.0, help="wall seconds of each SASRec fit")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    rows = [
        r
        for name in args.data.split(",")
        for r in rows_for(name, args.cutoff, args.horizon, args.time_limit, args.threads)
    ]
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
