"""SASRec beside the published full-ranking figures: ML-1M, Amazon Toys, Games, ml-100k, ml-latest-small.

For every data set and recipe (``--recipes auto,sasrec+,paper``) and seed, trains ``seqrec``'s
SASRec as ``seqrec train DATA --recipe R`` would (plus any option given here, e.g. ``--time-limit``
or ``--threads``), evaluates the best-on-validation weights once on the test split (full ranking
over every item, the user's seen items excluded, a seen target counting as a miss), and prints per
data set our rows (mean ± spread over seeds) beside the published rows and the best baseline.

    python benchmarks/literature.py --data ml-1m --recipes auto --time-limit 1800 --threads 2
    python benchmarks/literature.py --data toys,games --seeds 0,1,2 --time-limit 900

Every SASRec option of ``seqrec train`` is accepted here with the same name, so a recipe can be
overridden the same way (``--dropout 0.2``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seqrec.api import SASRec
from seqrec.cli.options import add_option_args, given_options
from seqrec.data.dataset import Dataset
from seqrec.data.readers import load_dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, evaluate
from seqrec.evaluation.report import markdown_table
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.training.recipe import RECIPES

DATA = Path(os.environ.get("SEQREC_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
DATASETS = {
    "ml-1m": "ml-1m/ml-1m.txt",
    "toys": "amazon-toys/Toys_and_Games.txt",
    "games": "amazon-games/games.txt",
    "ml-100k": "ml-100k",
    "ml-latest-small": "ml-latest-small",
}
# Published test figures, full ranking, seen items excluded: (model, HR@10, NDCG@10, source).
PUBLISHED = {
    "ml-1m": [
        ("SASRec, BCE 1 negative", 0.2500, 0.1341, "antklen/sasrec-bert4rec-recsys23 README"),
        ("SASRec+ (full CE)", 0.3152, 0.1821, "antklen/sasrec-bert4rec-recsys23 README"),
        ("SASRec+ 3000 negatives", 0.3159, 0.1857, "antklen/sasrec-bert4rec-recsys23 README"),
        ("RecTools SASRec", 0.3058, 0.1779, "blondered/bert4rec_repro README"),
        ("gSASRec", 0.3003, 0.1726, "asash/gSASRec-pytorch README"),
    ],
    "toys": [
        ("SASRec, BCE 1 negative", 0.0675, 0.0374, "S3Rec paper (RUCAIBox/CIKM2020-S3Rec README)"),
        ("SASRec + sampled softmax 256", 0.0970, 0.0580, "blondered/transformer_benchmark README"),
        ("eSASRec", 0.0939, 0.0538, "blondered/transformer_benchmark README"),
    ],
}


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}"


def best_baseline(loo: LeaveOneOut) -> tuple[str, float]:
    best = ("", -1.0)
    for name in BASELINES:
        try:
            scorer = make_baseline(name, loo)
        except SeqrecError:
            continue  # e.g. genre without genres
        ndcg = evaluate(scorer, loo, EvalConfig(split="test"))["NDCG@10"]
        best = max(best, (name, ndcg), key=lambda t: t[1])
    return best


def run(name: str, ds: Dataset, recipe: str, seeds: list[int], options: dict) -> dict:
    runs = []
    for seed in seeds:
        t = time.perf_counter()
        est = SASRec(recipe=recipe, **{"quiet": True, **options, "seed": seed}).fit(ds)
        r = est.result_
        runs.append(
            {
                "hr": r.test["HR@10"],
                "ndcg": r.test["NDCG@10"],
                "epochs": len(r.history),
                "best": r.best_epoch,
                "train_s": sum(h["seconds"] for h in r.history),
                "threads": r.history[-1]["threads"],
                "wall": time.perf_counter() - t,
            }
        )
        print(
            f"  {name} {recipe} seed {seed}: NDCG@10 {runs[-1]['ndcg']:.4f} HR@10 {runs[-1]['hr']:.4f} "
            f"epochs {runs[-1]['epochs']} (best {r.best_epoch}), {runs[-1]['train_s']:.0f} s of training",
            file=sys.stderr,
            flush=True,
        )
    return {
        "model": f"seqrec SASRec --recipe {recipe}",
        "HR@10": mean_spread([x["hr"] for x in runs]),
        "NDCG@10": mean_spread([x["ndcg"] for x in runs]),
        "ndcg_mean": float(np.mean([x["ndcg"] for x in runs])),
        "epochs (best)": ", ".join(f"{x['epochs']} ({x['best']})" for x in runs),
        "train s": round(float(np.mean([x["train_s"] for x in runs]))),
        "threads": runs[0]["threads"],
        "seeds": ",".join(map(str, seeds)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated, of " + ", ".join(RECIPES))
    p.add_argument("--seeds", default="0", help="comma-separated seeds (mean ± half the range is printed)")
    p.add_argument("--no-baselines", action="store_true")
    add_option_args(p, skip=("quiet", "seed"))
    args = p.parse_args()
    options = given_options(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    device = platform.processor() or platform.machine()
    print(
        f"{datetime.date.today()}, torch {torch.__version__}, {device}, {os.cpu_count()} cores; options {options or 'none'}; "
        "test split, full ranking, seen items excluded (a seen target is a miss)\n"
    )
    for name in args.data.split(","):
        if not (DATA / DATASETS[name]).exists():
            print(f"{name}: skipped ({DATA / DATASETS[name]} is absent)\n")
            continue
        loo = LeaveOneOut(load_dataset(DATA / DATASETS[name]))
        rows = [run(name, loo.data, r, seeds, options) for r in args.recipes.split(",")]
        if not args.no_baselines:
            b, ndcg = best_baseline(loo)
            for r in rows:
                r["× best baseline"] = round(r["ndcg_mean"] / ndcg, 2)
            rows.append({"model": f"best baseline ({b})", "NDCG@10": f"{ndcg:.4f}"})
        top = max((x[2] for x in PUBLISHED.get(name, [])), default=None)
        for r in rows:
            if top and "ndcg_mean" in r:
                r["× best published"] = round(r["ndcg_mean"] / top, 2)
            r.pop("ndcg_mean", None)
        rows += [
            {"model": f"published: {m}", "HR@10": f"{hr:.4f}", "NDCG@10": f"{nd:.4f}", "source": src}
            for m, hr, nd, src in PUBLISHED.get(name, [])
        ]
        ds = loo.data
        print(f"### {name}: {ds.n_users:,} users, {ds.n_items:,} items, {ds.n_interactions:,} interactions\n")
        print(markdown_table(rows) + "\n", flush=True)


if __name__ == "__main__":
    main()
