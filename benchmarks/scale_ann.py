"""Exact, HNSW and IVF top-k at 1,000,000 items of width 64 (``seqrec.serving.ann``).

    python benchmarks/scale_ann.py [--items 1000000] [--queries 2000] [-q]

The model is an untrained ``SASRecModel`` (n_items 1 M, hidden 64, 2 blocks, max_len 50) whose item rows are
replaced by clustered vectors: 1,000 cluster centres (sizes Zipf-like), each item its centre plus noise of
half its scale, times a log-normal norm (trained item embeddings cluster by taste and differ in norm by
popularity). The queries are real hidden states of that model: each of ``--queries`` histories holds 30
items of one cluster, and its state is what ``Recommender`` searches with (``seqrec.serving.ann.query_vectors``).

Per index: build seconds; index memory (the growth of the process's resident memory while it is built, and
the bytes it holds); queries/s of batched top-10 search over precomputed states (exact: ``states @ rows.T``
and ``torch.topk``, 256 states a call, as ``Recommender``'s batch routes; every core for all three); recall@10
against exact top-10; and the p50 / p99 latency of single ``Recommender.recommend`` calls (one thread, as
``seqrec serve`` runs, seen items excluded), with the queries/s of batch recommendation through
``Recommender.recommend_many``. ``ann_rows(quiet)`` returns the table's rows (``benchmarks/scale.py ann``).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqrec.data.dataset import Dataset, IdMap
from seqrec.evaluation.report import markdown_table
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.serving.ann import IndexParams, ItemIndex, item_vectors, query_vectors
from seqrec.serving.recommender import Recommender

HIDDEN, CLUSTERS, HISTORY = 64, 1000, 30


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _say(quiet: bool, *msg: object) -> None:
    if not quiet:
        print(*msg, file=sys.stderr, flush=True)


def _catalogue(n: int, n_queries: int, seed: int = 0) -> tuple[SASRecModel, Dataset]:
    """The model with clustered item rows, and a data set of ``n_queries`` users of one cluster each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, HIDDEN)).astype(np.float32)
    share = 1.0 / np.arange(1, CLUSTERS + 1) ** 0.8
    cluster = rng.choice(CLUSTERS, n, p=share / share.sum())
    torch.manual_seed(seed)
    model = SASRecModel(SASRecConfig(n_items=n, hidden=HIDDEN, blocks=2, heads=1, max_len=50)).eval()
    weight = model.item_emb.weight.data
    for lo in range(0, n, 100_000):
        c = cluster[lo : lo + 100_000]
        rows = centres[c] + 0.5 * rng.standard_normal((len(c), HIDDEN)).astype(np.float32)
        rows *= 0.1 * np.exp(0.25 * rng.standard_normal((len(c), 1))).astype(np.float32)
        weight[1 + lo : 1 + lo + len(c)] = torch.from_numpy(rows)
    members = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[members], np.arange(CLUSTERS + 1))
    picks = rng.choice(CLUSTERS, n_queries, p=share / share.sum())
    seqs = [1 + members[rng.integers(starts[c], starts[c + 1], HISTORY)] for c in picks]
    items = np.concatenate(seqs).astype(np.int32)
    offsets = np.arange(0, len(items) + 1, HISTORY, dtype=np.int64)
    catalog = pl.DataFrame(
        {
            "item": np.arange(1, n + 1, dtype=np.int32),
            "raw_id": np.arange(1, n + 1),
            "title": [None] * n,
            "genres": [[]] * n,
            "year": [None] * n,
        },
        schema={
            "item": pl.Int32,
            "raw_id": pl.Int64,
            "title": pl.String,
            "genres": pl.List(pl.String),
            "year": pl.Int32,
        },
    )
    data = Dataset(
        offsets,
        items,
        IdMap(np.array([f"u{u}" for u in range(n_queries)], dtype=object), offset=0),
        IdMap(np.arange(1, n + 1), offset=1),
        catalog,
        {"name": f"clustered-{n}"},
    )
    return model, data


def _exact_top(states: torch.Tensor, rows: torch.Tensor, k: int) -> np.ndarray:
    out = []
    for lo in range(0, len(states), 256):
        out.append(torch.topk(states[lo : lo + 256] @ rows.T, k, dim=1).indices)
    return torch.cat(out).numpy()


def _latency(rec: Recommender, histories: list[list[int]], k: int = 10) -> tuple[float, float]:
    torch.set_num_threads(1)
    times = []
    for h in histories:
        t = time.perf_counter()
        rec.recommend(h, k=k)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def ann_rows(
    quiet: bool = False,
    n_items: int = 1_000_000,
    n_queries: int = 2000,
    latency_calls: int = 300,
    params: IndexParams | None = None,
) -> list[dict]:
    params = params or IndexParams()
    cores = os.cpu_count() or 1
    start = time.perf_counter()
    model, data = _catalogue(n_items, n_queries)
    _say(quiet, f"catalogue of {n_items:,} items in {time.perf_counter() - start:.1f} s")
    exact_rec = Recommender(model, data, name="scale")
    histories = [list(data.item_ids.to_raw(data.sequence(u))) for u in range(n_queries)]
    torch.set_num_threads(cores)
    with torch.inference_mode():
        states = torch.from_numpy(
            np.concatenate(
                [
                    query_vectors(
                        model,
                        exact_rec._batch(
                            [data.sequence(u).astype(np.int64) for u in range(lo, min(lo + 256, n_queries))],
                            np.arange(min(256, n_queries - lo)),
                            np.full(min(256, n_queries - lo), HISTORY),
                        ),
                    )
                    for lo in range(0, n_queries, 256)
                ]
            )
        )
        rows = torch.from_numpy(item_vectors(model))
        t = time.perf_counter()
        truth = _exact_top(states, rows, 10)
        exact_qps = n_queries / (time.perf_counter() - t)
    out = []
    p50, p99 = _latency(exact_rec, histories[:latency_calls])
    torch.set_num_threads(cores)
    t = time.perf_counter()
    exact_rec.recommend_many(histories[:512], k=10)
    out.append(
        {
            "index": "exact",
            "build s": 0.0,
            "memory MB": "0 (the model's rows)",
            "queries/s": round(exact_qps),
            "recall@10": 1.0,
            "p50 ms": round(p50, 2),
            "p99 ms": round(p99, 2),
            "batch recs/s": round(512 / (time.perf_counter() - t)),
        }
    )
    _say(quiet, out[-1])
    for kind in ("hnsw", "ivf"):
        before = _rss_mb()
        index = ItemIndex(kind, rows.numpy(), params)
        grown = _rss_mb() - before
        torch.set_num_threads(cores)
        t = time.perf_counter()
        _, found = index.search(states.numpy(), 10)
        qps = n_queries / (time.perf_counter() - t)
        recall = float(np.mean([len(set(a - 1) & set(b)) / 10 for a, b in zip(found, truth)]))
        rec = copy.copy(exact_rec)  # the same model and catalogue, answering through this index
        rec.index, rec.index_kind, rec.index_params = index, kind, params
        p50, p99 = _latency(rec, histories[:latency_calls])
        torch.set_num_threads(cores)
        t = time.perf_counter()
        rec.recommend_many(histories, k=10)
        batch = n_queries / (time.perf_counter() - t)
        out.append(
            {
                "index": kind,
                "build s": round(index.build_seconds, 1),
                "memory MB": f"{grown:.0f} (holds {index.nbytes / 2**20:.0f})",
                "queries/s": round(qps),
                "recall@10": round(recall, 4),
                "p50 ms": round(p50, 2),
                "p99 ms": round(p99, 2),
                "batch recs/s": round(batch),
            }
        )
        _say(quiet, out[-1])
        del rec, index
    for row in out:
        row["x exact q/s"] = round(row["queries/s"] / exact_qps, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average {load}; {IndexParams()}")
    print(markdown_table(ann_rows(args.quiet, args.items, args.queries)))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average after: {load}")


if __name__ == "__main__":
    main()
