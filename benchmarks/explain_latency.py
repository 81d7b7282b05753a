"""Latency of explanations: ``Recommender.recommend(history, k=10, explain=True)`` against the same call
without ``explain``, one torch thread, histories of 50 items.

    .venv/bin/python benchmarks/explain_latency.py [--items 23715] [--hidden 50] [--blocks 2] [--runs 300]

A SASRec with hidden 50, 2 blocks, max_len 50 over a catalogue of ``--items`` items (amazon-games' size by
default), randomly initialised (weights do not change the cost); each request is a fresh random history of
50 distinct items, torch backend. Prints p50 / p99 in ms of: recommend, recommend with explain, and the
explanation alone (``explain_items``: the 50 leave-one-out variants and the whole history in one batch,
scored for the 10 recommended items only). Pin it to one core (``taskset -c 0``) on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
import torch

from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.serving.explain import explain_items
from seqrec.serving.recommender import Recommender


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=23_715)
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--length", type=int, default=50)
    p.add_argument("--runs", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    n = args.items
    data = Dataset.from_interactions(
        pl.DataFrame({"user": ["all"] * n, "item": list(range(1, n + 1))}), config=CleanConfig(k_core=0), name="bench"
    )
    torch.manual_seed(0)
    model = SASRecModel(
        SASRecConfig(n_items=n, hidden=args.hidden, blocks=args.blocks, heads=1, max_len=args.length)
    ).eval()
    rec = Recommender(model, data, backend="torch")
    rng = np.random.default_rng(0)
    histories = [rng.choice(np.arange(1, n + 1), args.length, replace=False).tolist() for _ in range(args.runs)]
    times: dict[str, list[float]] = {"recommend": [], "recommend + explain": [], "explanation alone": []}
    for h in histories[:20]:  # warm up
        rec.recommend(h, k=10, explain=True)
    for h in histories:
        t0 = time.perf_counter()
        res = rec.recommend(h, k=10)
        t1 = time.perf_counter()
        rec.recommend(h, k=10, explain=True)
        t2 = time.perf_counter()
        explain_items(rec, rec.dataset.item_ids.lookup(h)[0], res.items)
        t3 = time.perf_counter()
        times["recommend"].append(t1 - t0)
        times["recommend + explain"].append(t2 - t1)
        times["explanation alone"].append(t3 - t2)
    print(
        f"{n:,} items, hidden {args.hidden}, {args.blocks} blocks, history {args.length}, k 10, one thread, "
        f"{args.runs} requests\n"
    )
    print("| call | p50 ms | p99 ms |\n|---|---|---|")
    for name, ts in times.items():
        a = np.array(ts) * 1000
        print(f"| {name} | {np.percentile(a, 50):.2f} | {np.percentile(a, 99):.2f} |")


if __name__ == "__main__":
    main()
