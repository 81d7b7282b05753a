"""Full cross-entropy with bf16 matmuls (fp32 accumulation and softmax) against fp32, side by side.

For each data set and seed, trains the same recipe twice for the same number of epochs, once with
``precision=fp32`` and once with ``precision=bf16`` (autocast: the encoder's and the loss's matrix
products in bf16, the softmax and the accumulation in fp32), alternating the two so that a busy
machine slows both alike, and prints seconds per epoch and test NDCG@10 / HR@10 (full ranking).

    python benchmarks/bf16_ce.py --data toys,games --seeds 0,1,2 --epochs 10 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import platform

import numpy as np
import torch

from seqrec.api import SASRec
from seqrec.readers import load_dataset
from seqrec.report import markdown_table

from literature import DATA, DATASETS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="toys,games")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--recipe", default="auto")
    args = p.parse_args()
    rows = []
    for name in args.data.split(","):
        ds = load_dataset(DATA / DATASETS[name])
        res: dict[str, list[tuple[float, float, float]]] = {"fp32": [], "bf16": []}
        for seed in (int(s) for s in args.seeds.split(",")):
            for precision in ("fp32", "bf16"):
                est = SASRec(recipe=args.recipe, loss="ce", precision=precision, epochs=args.epochs, patience=0,
                             eval_every=args.epochs, seed=seed, threads=args.threads, quiet=True).fit(ds)
                r = est.result_
                per_epoch = float(np.mean([h["seconds"] for h in r.history]))
                res[precision].append((per_epoch, r.test["NDCG@10"], r.test["HR@10"]))
                print(f"  {name} seed {seed} {precision}: {per_epoch:.1f} s/epoch, NDCG@10 {r.test['NDCG@10']:.4f}",
                      flush=True)
        base = np.mean([x[1] for x in res["fp32"]])
        fast = np.mean([x[0] for x in res["fp32"]])
        for precision, runs in res.items():
            nd = [x[1] for x in runs]
            rows.append({"data": name, "precision": precision, "s/epoch": round(float(np.mean([x[0] for x in runs])), 1),
                         "× fp32 speed": round(fast / float(np.mean([x[0] for x in runs])), 2),
                         "NDCG@10": f"{np.mean(nd):.4f} ± {np.std(nd):.4f}",
                         "HR@10": f"{np.mean([x[2] for x in runs]):.4f}",
                         "NDCG × fp32": round(float(np.mean(nd) / base), 3)})
    print(f"\n{datetime.date.today()}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, {args.epochs} epochs, recipe {args.recipe}, seeds {args.seeds}; test split, full ranking\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
