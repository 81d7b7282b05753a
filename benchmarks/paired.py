"""Two settings side by side at equal epochs: seconds per epoch and test NDCG@10 over seeds.

For each data set and seed, trains the recipe twice for the same number of epochs, once with the
options of ``--a`` and once with those of ``--b`` (alternating, so a busy machine slows both
alike), and prints seconds per epoch, test NDCG@10 / HR@10 (full ranking, seen items excluded)
as mean ± standard deviation over the seeds, and the ratios B / A.

    python benchmarks/paired.py --data toys,games --a precision=fp32 --b precision=bf16 --epochs 10
    python benchmarks/paired.py --data toys,ml-1m --a bucket=true --b bucket=false --epochs 20
"""

from __future__ import annotations

import argparse
import datetime
import platform

import numpy as np
import torch

from literature import DATA, DATASETS
from seqrec.api import SASRec, config_fields
from seqrec.cli.options import flag_type
from seqrec.data.readers import load_dataset
from seqrec.evaluation.report import markdown_table


def parse_options(text: str) -> dict:
    """``name=value,name=value`` with the command line's types."""
    types = {f.name: flag_type(f.type) for f in config_fields()}
    out = {}
    for part in filter(None, text.split(";" if ";" in text else ",")):
        name, _, value = part.partition("=")
        if name not in types:
            raise SystemExit(f"unknown option {name!r}")
        out[name] = types[name](value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="toys")
    p.add_argument("--a", required=True, help="options of setting A, e.g. precision=fp32")
    p.add_argument("--b", required=True, help="options of setting B, e.g. precision=bf16")
    p.add_argument("--common", default="", help="options of both, e.g. hidden=128;dropout=0.2 (';' if a value has ',')")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--recipe", default="auto")
    args = p.parse_args()
    settings = {"A: " + args.a: parse_options(args.a), "B: " + args.b: parse_options(args.b)}
    common = {
        **parse_options(args.common),
        "epochs": args.epochs,
        "patience": 0,
        "eval_every": args.epochs,
        "threads": args.threads,
        "quiet": True,
    }
    rows = []
    for name in args.data.split(","):
        ds = load_dataset(DATA / DATASETS[name])
        res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in settings}
        for seed in (int(s) for s in args.seeds.split(",")):
            for label, opts in settings.items():
                r = SASRec(recipe=args.recipe, **{**common, **opts, "seed": seed}).fit(ds).result_
                per_epoch = float(np.median([h["seconds"] for h in r.history]))
                res[label].append((per_epoch, r.test["NDCG@10"], r.test["HR@10"]))
                print(
                    f"  {name} seed {seed} {label}: {per_epoch:.1f} s/epoch, NDCG@10 {r.test['NDCG@10']:.4f}",
                    flush=True,
                )
        first = next(iter(res.values()))
        s_a, n_a = np.mean([x[0] for x in first]), np.mean([x[1] for x in first])
        for label, runs in res.items():
            nd = [x[1] for x in runs]
            sec = float(np.mean([x[0] for x in runs]))
            rows.append(
                {
                    "data": name,
                    "setting": label,
                    "s/epoch": round(sec, 1),
                    "speed × A": round(s_a / sec, 2),
                    "NDCG@10": f"{np.mean(nd):.4f} ± {np.std(nd):.4f}",
                    "HR@10": f"{np.mean([x[2] for x in runs]):.4f}",
                    "NDCG × A": round(float(np.mean(nd) / n_a), 3),
                }
            )
    print(
        f"\n{datetime.date.today()}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), {args.epochs} epochs, recipe {args.recipe} {args.common}, seeds {args.seeds}; "
        "test split, full ranking\n"
    )
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
