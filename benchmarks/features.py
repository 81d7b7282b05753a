"""SASRec with and without item side features, and on items nobody had interacted with at training time.

For Amazon Toys (its ``item2attributes.json``, read beside the data file), ml-latest-small (genres and
year) and ml-100k (genres), and each seed, trains ``seqrec``'s SASRec twice with the same recipe
(``--recipe auto``) and time budget: on item ids only, and with the data set's item features
(``--feature-fusion``, default sum, with ``feature_output``: items are scored by their features too). It
prints, per data set, the test split's NDCG@10 and HR@10 (full ranking over every item, seen items
excluded, a seen target a miss) as mean ± std over the seeds, the ratio of the two arms, and HR@10 on cold
targets only (``targets="cold"``: test items never in the training part) for the id-only model, the
feature model (its cold items' id rows zero, so ranked by their features alone, and again with id rows
taken from their feature neighbours, ``SASRecModel.fill_untrained_items``, which ``fit`` does by default
and is turned off here to measure both) and the genre / attribute
profile baseline (``seqrec.models.baselines.Genre``, on the attributes for Toys).

    python benchmarks/features.py                                   # all three, seeds 0,1,2 (about 45 minutes)
    python benchmarks/features.py --data ml-100k --seeds 0 --time-limit 5   # a smoke run

``--time-limit`` defaults to 300 s for Toys and 60 s for the MovieLens sets, ``--threads`` to 1; every
other SASRec option of ``seqrec train`` is accepted with the same name (``--item-features`` replaces the
data set's own choice of fields).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from seqrec.api import SASRec
from seqrec.cli.options import add_option_args, given_options
from seqrec.data.dataset import Dataset
from seqrec.data.readers import load_dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, evaluate
from seqrec.evaluation.report import markdown_table
from seqrec.models.baselines import Genre

DATA = Path(os.environ.get("SEQREC_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
DATASETS = {  # name: (path under DATA, item features, default seconds of training)
    "toys": ("amazon-toys/Toys_and_Games.txt", "attributes", 300.0),
    "ml-latest-small": ("ml-latest-small", "genres,year", 60.0),
    "ml-100k": ("ml-100k", "genres", 60.0),
}
FEATURE_OPTIONS = ("item_features", "feature_fusion", "feature_output", "feature_dropout")


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def cold_hr(scorer, loo: LeaveOneOut) -> tuple[float | None, int]:
    """HR@10 over the users whose test target never occurs in training, and how many they are."""
    try:
        m = evaluate(scorer, loo, EvalConfig(targets="cold"))
    except SeqrecError:  # no cold target in this data set
        return None, 0
    return m["HR@10"], int(m["users"])


def profile_baseline(ds: Dataset) -> Genre:
    """The genre profile baseline; on the attributes when the catalogue has no genres (Toys)."""
    if "attributes" in ds.catalog.columns and ds.catalog["genres"].list.len().sum() == 0:
        ds = replace(ds, catalog=ds.catalog.with_columns(pl.col("attributes").alias("genres")))
    return Genre(ds.n_items).fit(LeaveOneOut(ds))


def arm(name: str, ds: Dataset, seeds: list[int], options: dict) -> dict:
    loo = LeaveOneOut(ds)
    runs = []
    for seed in seeds:
        t = time.perf_counter()
        est = SASRec(recipe="auto", **{"quiet": True, **options, "seed": seed, "fill_cold_items": False}).fit(ds)
        model = est.model_
        test = evaluate(model, loo, EvalConfig())
        cold, users = cold_hr(model, loo)
        filled = model.fill_untrained_items()
        neighbours = cold_hr(model, loo)[0] if filled else cold
        test_filled = evaluate(model, loo, EvalConfig()) if filled else test
        r = est.result_
        runs.append(
            {
                "ndcg": test_filled["NDCG@10"],
                "hr": test_filled["HR@10"],
                "cold": cold,
                "cold_n": neighbours,
                "users": users,
                "epochs": len(r.history),
                "train_s": sum(h["seconds"] for h in r.history),
            }
        )
        print(
            f"  {name} seed {seed}: NDCG@10 {runs[-1]['ndcg']:.4f} HR@10 {runs[-1]['hr']:.4f} (before filling "
            f"{test['NDCG@10']:.4f} / {test['HR@10']:.4f}), cold HR@10 {cold} -> {neighbours} ({users} users, "
            f"{filled} items filled), {runs[-1]['epochs']} epochs, {time.perf_counter() - t:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return {
        "model": name,
        "NDCG@10": mean_std([x["ndcg"] for x in runs]),
        "HR@10": mean_std([x["hr"] for x in runs]),
        "cold HR@10 (features only)": mean_std([x["cold"] for x in runs]),
        "cold HR@10 (neighbour rows)": mean_std([x["cold_n"] for x in runs]),
        "epochs": ", ".join(str(x["epochs"]) for x in runs),
        "train s": round(float(np.mean([x["train_s"] for x in runs]))),
        "_ndcg": float(np.mean([x["ndcg"] for x in runs])),
        "_hr": float(np.mean([x["hr"] for x in runs])),
        "_users": runs[0]["users"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (mean ± std is printed)")
    add_option_args(p, skip=("quiet", "seed"))
    args = p.parse_args()
    given = given_options(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    device = platform.processor() or platform.machine()
    print(
        f"{datetime.date.today()}, torch {torch.__version__}, {device}, {os.cpu_count()} cores; options "
        f"{given or 'none'}; test split, full ranking, seen items excluded (a seen target is a miss)\n"
    )
    for name in args.data.split(","):
        if name not in DATASETS:
            raise SystemExit(f"--data: unknown data set {name!r}; choose from {', '.join(DATASETS)}")
        rel, spec, limit = DATASETS[name]
        if not (DATA / rel).exists():
            print(f"{name}: skipped ({DATA / rel} is absent)\n")
            continue
        ds = load_dataset(DATA / rel)
        base = {"threads": 1, "time_limit": limit, **{k: v for k, v in given.items() if k not in FEATURE_OPTIONS}}
        features = {
            "item_features": spec,
            "feature_output": True,
            **{k: v for k, v in given.items() if k in FEATURE_OPTIONS},
        }
        ids = arm("SASRec, item ids", ds, seeds, base)
        feat = arm(
            f"SASRec + features ({features['item_features']}, {features.get('feature_fusion', 'sum')})",
            ds,
            seeds,
            {**base, **features},
        )
        baseline = profile_baseline(ds)
        overall = evaluate(baseline, LeaveOneOut(ds), EvalConfig())
        hr, users = cold_hr(baseline, LeaveOneOut(ds))
        rows = [
            ids,
            feat,
            {
                "model": "genre / attribute profile baseline",
                "NDCG@10": f"{overall['NDCG@10']:.4f}",
                "HR@10": f"{overall['HR@10']:.4f}",
                "cold HR@10 (features only)": mean_std([hr]),
            },
        ]
        feat["× id-only NDCG@10"] = round(feat["_ndcg"] / ids["_ndcg"], 3)
        feat["× id-only HR@10"] = round(feat["_hr"] / ids["_hr"], 3)
        for r in rows:
            for key in ("_ndcg", "_hr", "_users"):
                r.pop(key, None)
        print(
            f"### {name}: {ds.n_users:,} users, {ds.n_items:,} items, {ds.n_interactions:,} interactions; "
            f"{users:,} test users with a cold target; {base['time_limit']:g} s of training per run, "
            f"seeds {args.seeds}\n"
        )
        print(markdown_table(rows) + "\n", flush=True)


if __name__ == "__main__":
    main()
