"""A live recommender's costs: a warm start against training from scratch; the service under load.

    python benchmarks/live.py warm --data ml-1m --epochs 20 --threads 2
    python benchmarks/live.py warm --data ml-100k --epochs 60 --seeds 0,1,2
    python benchmarks/live.py load [--seconds 30]

``load`` (uvicorn on 127.0.0.1, a SASRec over ml-100k with random weights, an event store, an API key;
open-loop generators, latency from the scheduled send time):

a. two workers writing and reading one store: ``POST /events`` (one new event each, 100/s) and
   ``GET /users/{id}/recommendations`` (100/s) for ``--seconds``; then every acknowledged event is
   looked for in the store: errors, lost and duplicated events, p50 / p99 of each route;
b. hot reload: ``POST /recommend`` at 300 req/s on one worker for ``--seconds`` while ``POST /admin/reload``
   swaps between two model folders 10 times, then once to a broken folder (must be refused, the old model
   answering on): failed or dropped requests, p99, and each reload's status.

The data are cut into "yesterday" and "today". With timestamps (ml-100k, ml-latest-small, CSV logs)
yesterday is every event before the 90th percentile of time; without them (the papers' ``user item``
files: ML-1M, Games) it is the first 90 % of each user's events (``--split per-user``). Today is all
events. Then, with the same recipe and seed:

1. yesterday's model: ``seqrec train YESTERDAY`` for ``--epochs`` epochs;
2. from scratch: ``seqrec train TODAY`` for ``--epochs`` epochs;
3. warm: ``seqrec train TODAY --init-from YESTERDAY_MODEL`` for ``--warm-share`` of those epochs (default
   0.25): old items keep their ids and weights, today's new items start at the mean item.

Printed: test NDCG@10 / HR@10 of 2 and 3 (full ranking, seen items excluded; leave-one-out on today's
data, so the test targets are events yesterday's model never saw), their training seconds and the
ratios, and how the new items fare: the share of test users whose top 10 holds a new item and HR@10
over the test targets that are new items.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from seqrec.api import SASRec
from seqrec.config import CleanConfig
from seqrec.data.dataset import Dataset
from seqrec.data.readers import read_interactions
from seqrec.data.split import LeaveOneOut
from seqrec.evaluation.report import markdown_table
from seqrec.models.folder import save_folder
from seqrec.models.sasrec import SASRecConfig, SASRecModel

DATA = Path(os.environ.get("SEQREC_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
DATASETS = {
    "ml-1m": "ml-1m/ml-1m.txt",
    "games": "amazon-games/games.txt",
    "ml-100k": "ml-100k",
    "ml-latest-small": "ml-latest-small",
    "toys": "amazon-toys/Toys_and_Games.txt",
}


def cut(spec: str, how: str, share: float = 0.9) -> tuple[Dataset, Dataset, str]:
    """(yesterday, today, how it was cut): both cleaned with the format's k-core, yesterday's from its events only."""
    frame, catalog, k = read_interactions(spec)
    if how == "auto":
        how = "time" if "timestamp" in frame.columns else "per-user"
    frame = frame.with_row_index("_row")
    if how == "time":
        cutoff = frame["timestamp"].quantile(share, "lower")
        old = frame.filter(pl.col("timestamp") <= cutoff)
        told = f"events up to the {share:.0%} quantile of time"
    else:
        n = pl.len().over("user")
        rank = pl.int_range(pl.len()).over("user")
        old = frame.filter(rank < (n * share).ceil().cast(pl.Int64))
        told = f"the first {share:.0%} of each user's events"
    clean = CleanConfig(k_core=k)
    name = Path(spec).stem
    return (
        Dataset.from_interactions(old.drop("_row"), catalog, clean, name=f"{name}-yesterday"),
        Dataset.from_interactions(frame.drop("_row"), catalog, clean, name=name),
        told,
    )


def new_item_figures(est: SASRec, new_raw: set[str]) -> dict[str, float]:
    """Share of test users whose top 10 holds a new item; HR@10 over test targets that are new items."""
    ds = est.dataset_
    users, hist, targets = LeaveOneOut(ds).inputs("test")
    is_new = np.zeros(ds.n_items + 1, dtype=bool)
    for raw in new_raw:
        i = ds.item_ids.get(raw)
        if i is not None:
            is_new[i] = True
    shown = hits = 0
    for lo in range(0, len(users), 512):
        rows = np.arange(lo, min(lo + 512, len(users)))
        seqs = [hist.sequence(int(r)) for r in rows]
        scores = est.score([q.tolist() for q in seqs])
        for j, q in enumerate(seqs):
            scores[j, torch.from_numpy(q.astype(np.int64))] = -float("inf")
        scores[:, 0] = -float("inf")
        top = torch.topk(scores, 10, dim=1).indices.numpy()
        shown += int(is_new[top].any(1).sum())
        t = targets[rows]
        mask = is_new[t]
        hits += int((top[mask] == t[mask, None]).any(1).sum())
    new_targets = int(is_new[targets].sum())
    return {
        "users with a new item in top 10": shown / len(users),
        "new-item test targets": new_targets,
        "HR@10 on new-item targets": hits / max(1, new_targets),
    }


def run_warm(args: argparse.Namespace) -> None:
    spec = str(DATA / DATASETS[args.data]) if args.data in DATASETS else args.data
    yesterday, today, told = cut(spec, args.split)
    new_raw = {str(r) for r in set(today.item_ids.raw.tolist()) - set(yesterday.item_ids.raw.tolist())}
    warm_epochs = max(1, round(args.epochs * args.warm_share))
    print(f"# Warm start against training from scratch: {args.data}\n")
    print(
        f"yesterday: {told}: {yesterday.n_users:,} users, {yesterday.n_items:,} items, "
        f"{yesterday.n_interactions:,} events; today: {today.n_users:,} users, {today.n_items:,} items "
        f"({len(new_raw):,} new), {today.n_interactions:,} events. Recipe {args.recipe}, {args.epochs} epochs from "
        f"scratch, {warm_epochs} warm; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}, "
        f"{datetime.date.today()}\n",
        flush=True,
    )
    opts = {"threads": args.threads, "quiet": not args.progress, "patience": None}
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            old = SASRec(recipe=args.recipe, epochs=args.epochs, seed=seed, **opts).fit(
                yesterday, out_dir=Path(tmp) / "y"
            )
            print(
                f"seed {seed}: yesterday's model in {time.perf_counter() - t:.0f} s "
                f"(test NDCG@10 {old.result_.test['NDCG@10']:.4f} on yesterday's split)",
                flush=True,
            )
            for arm, epochs, init in (("from scratch", args.epochs, None), ("warm", warm_epochs, Path(tmp) / "y")):
                est = SASRec(recipe=args.recipe, epochs=epochs, seed=seed, **opts).fit(today, init_from=init)
                res = est.result_
                train_s = sum(r["seconds"] for r in res.history)
                rows.append(
                    {
                        "seed": seed,
                        "arm": arm,
                        "epochs": epochs,
                        "NDCG@10": res.test["NDCG@10"],
                        "HR@10": res.test["HR@10"],
                        "train s": train_s,
                        **new_item_figures(est, new_raw),
                    }
                )
                print(f"seed {seed}, {arm}: NDCG@10 {res.test['NDCG@10']:.4f}, {train_s:.0f} s of training", flush=True)
    print()
    print(markdown_table(rows))
    print()
    summary = []
    for seed in args.seeds:
        s, w = [next(r for r in rows if r["seed"] == seed and r["arm"] == a) for a in ("from scratch", "warm")]
        summary.append(
            {
                "seed": seed,
                "warm / scratch NDCG@10": w["NDCG@10"] / s["NDCG@10"],
                "warm / scratch training time": w["train s"] / s["train s"],
            }
        )
    print(markdown_table(summary))
    print("\ntargets: NDCG@10 ratio >= 0.98 at a training-time ratio <= 0.25")


# ---------------------------------------------------------------------------- the service under load
KEY = "live-benchmark-key"


def _serve(folder: Path, store: Path, workers: int) -> tuple:
    from serve_latency import start_server

    return start_server(folder, workers=workers, store=str(store), api_key=KEY)


def _requests(port: int):
    """A Load whose requests are (method, path, JSON body or None), with the API key."""
    from serve_latency import Load

    class Requests(Load):
        def request(self, spec) -> bytes:
            method, path, body = spec
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n"
            if body is None:
                return (head + "\r\n").encode()
            return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    return Requests


def _folder(root: Path, name: str, ds: Dataset, seed: int) -> Path:
    torch.manual_seed(seed)
    model = SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=50, blocks=2, max_len=50)).eval()
    return save_folder(root / name, model, ds, config={}, metrics={"build": seed})


def run_load(args: argparse.Namespace) -> None:
    import asyncio
    import json
    import urllib.request

    from seqrec.data.readers import load_dataset
    from seqrec.serving.store import read_events
    from serve_latency import table

    ds = load_dataset(str(DATA / "ml-100k"))
    users = [str(u) for u in ds.user_ids.raw.tolist()]
    items = [str(i) for i in ds.item_ids.raw.tolist()]
    print(
        f"# The live service under load: ml-100k ({ds.n_items:,} items), SASRec hidden 50, 2 blocks, random weights\n"
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}, {datetime.date.today()}\n"
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a, b = _folder(root, "a", ds, 1), _folder(root, "b", ds, 2)
        # a. two workers, one store
        proc, port = _serve(a, root / "events.db", 2)
        Requests = _requests(port)
        n = int(100 * args.seconds)
        events = [
            {
                "user_id": users[rng.integers(len(users))],
                "item_id": items[rng.integers(len(items))],
                "ts": 1.7e9 + i * 1e-3,
            }
            for i in range(n)
        ]
        posts = [("POST", "/events", json.dumps(e).encode()) for e in events]
        gets = [("GET", f"/users/{users[rng.integers(len(users))]}/recommendations?k=10", None) for _ in range(n)]

        async def mixed():
            return await asyncio.gather(
                Requests(port, posts).run(100, args.seconds), Requests(port, gets).run(100, args.seconds)
            )

        try:
            asyncio.run(Requests(port, gets[:200]).run(50, 2))  # warm-up: both workers have answered
            ev, rec = asyncio.run(mixed())
        finally:
            proc.terminate()
            proc.wait(30)
        stored = read_events(root / "events.db")
        keys = set(zip(stored["user_id"], stored["item_id"], stored["timestamp"]))
        lost = sum((e["user_id"], e["item_id"], e["ts"]) not in keys for e in events)
        dup = stored.height - len(keys)
        print(f"## a. Two workers writing and reading one store for {args.seconds:.0f} s\n")
        print(
            table(
                [
                    {"route": "POST /events 100/s", **{k: v for k, v in ev.items() if k != "rate"}},
                    {"route": "GET /users/{id}/recommendations 100/s", **{k: v for k, v in rec.items() if k != "rate"}},
                ]
            )
        )
        print(
            f"\nevents sent {len(events):,}, stored {stored.height:,}, lost {lost} (sent and not in the store), "
            f"duplicated {dup}\n",
            flush=True,
        )

        # b. hot reload under load
        broken = _folder(root, "broken", ds, 3)
        (broken / "model.safetensors").write_bytes(b"\0" * 64)
        proc, port = _serve(a, root / "events2.db", 1)
        bodies = [
            ("POST", "/recommend", json.dumps({"history": h, "k": 10}).encode())
            for h in [[items[j] for j in rng.integers(0, len(items), 20)] for _ in range(500)]
        ]
        reloads: list = []

        def reload(path: Path) -> None:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/admin/reload",
                method="POST",
                data=json.dumps({"path": str(path)}).encode(),
                headers={"Content-Type": "application/json", "X-API-Key": KEY},
            )
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    status, answer = r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                status, answer = e.code, json.loads(e.read() or b"{}")
            reloads.append(
                {
                    "reload": len(reloads) + 1,
                    "folder": path.name,
                    "status": status,
                    "seconds": time.perf_counter() - t,
                    "answer": str(answer)[:80],
                }
            )

        async def with_reloads():
            load = asyncio.create_task(Requests(port, bodies).run(300, args.seconds))
            gap = args.seconds / 12
            for i in range(10):
                await asyncio.sleep(gap)
                await asyncio.to_thread(reload, b if i % 2 == 0 else a)
            await asyncio.sleep(gap / 2)
            await asyncio.to_thread(reload, broken)
            return await load

        try:
            asyncio.run(Requests(port, bodies[:100]).run(100, 1))
            got = asyncio.run(with_reloads())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=5) as r:
                serving = json.loads(r.read())["metrics"]
        finally:
            proc.terminate()
            proc.wait(30)
        print(
            f"## b. POST /recommend at 300 req/s for {args.seconds:.0f} s, one worker, 10 reloads and one broken folder\n"
        )
        print(table([{k: v for k, v in got.items() if k != "rate"}]))
        print()
        print(table(reloads))
        print(f"\nserving after the broken reload: the model of build {serving.get('build')} (the last good one)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    w = sub.add_parser("warm", help="warm start against training from scratch")
    w.add_argument("--data", default="ml-1m", help=f"{', '.join(DATASETS)} or a path")
    w.add_argument("--split", choices=["auto", "time", "per-user"], default="auto")
    w.add_argument("--recipe", default="auto")
    w.add_argument("--epochs", type=int, default=20, help="epochs of yesterday's and the from-scratch model")
    w.add_argument("--warm-share", type=float, default=0.25, help="the warm run's epochs, as a share of --epochs")
    w.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    w.add_argument("--threads", type=int, default=None)
    w.add_argument("--progress", action="store_true")
    lo = sub.add_parser("load", help="the service under load: one store, two workers; hot reloads")
    lo.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    if args.part == "warm":
        run_warm(args)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        run_load(args)


if __name__ == "__main__":
    sys.exit(main())
