"""SASRec training at 10 k, 100 k and 1 M items, and one epoch on 25 M interactions: speed and peak memory.

    python benchmarks/scale_train.py train [--seconds 30] [-q]           # sequences/s and peak RSS per catalogue
    python benchmarks/scale_train.py epoch [--data /tmp/seqrec-scale/prep25m]  # one epoch on the 25 M-row data

``train``: synthetic data of 20,000 users x 50 events, item popularity Zipf (exponent 1) over the whole
catalogue of 10 k, 100 k or 1 M items (ids shuffled, so popular items are spread over the table; at 1 M
items most rows never occur, as in a real long tail); SASRec hidden 64, 2 blocks, max_len 50, batch 128,
fp32 on the CPU. Two losses: sampled softmax (256 popularity negatives shared by the batch, plus 256 of
the batch's targets as in-batch negatives, logQ-corrected) and gBCE (256 uniform negatives per
position, t = 0.75); each with the dense item-embedding gradient and Adam (the default) and with
``sparse_embeddings`` (sparse gradient, lazy Adam on the rows a step touches). Each run trains for
``--seconds`` of the product's own epoch loop (``TrainConfig.time_limit``; validation off,
``eval_every 0``, since full-ranking validation at 1 M items is the evaluator's cost, not training's) and
reports the loop's sequences/s.

``epoch``: the prepared 25 M-row folder (the product generator's data; ``benchmarks/scale_data.py``
makes it), SASRec hidden 64, 2 blocks, max_len 200, sampled softmax (256 uniform negatives shared per
batch), batch 128 (with ``--sparse-too`` also with ``sparse_embeddings``): one epoch, or ``--seconds`` of
it (the first batches of the epoch's shuffled order), extrapolated to the whole epoch (the table says
which).

Every run is its own process under ``/usr/bin/time -v`` (its peak resident memory is its own) with its
address space capped (``--cap-gb``). ``train_rows(quiet)`` and ``epoch25m_rows(data, quiet)`` return the
tables' rows (``benchmarks/scale.py train`` / ``epoch``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqrec.evaluation.report import markdown_table

SIZES = (10_000, 100_000, 1_000_000)
USERS, EVENTS, HIDDEN = 20_000, 50, 64
SETUPS = {
    "sampled-softmax": {
        "loss": "sampled-softmax",
        "n_negatives": 256,
        "negative_sampling": "popularity",
        "in_batch_negatives": 256,
    },
    "gbce": {"loss": "gbce", "n_negatives": 256},
}
DATA_25M = Path("/tmp/seqrec-scale/prep25m")


def _say(quiet: bool, *msg: object) -> None:
    if not quiet:
        print(*msg, file=sys.stderr, flush=True)


def synthetic(n_items: int, n_users: int = USERS, length: int = EVENTS, seed: int = 0):
    """Every user ``length`` events, Zipf popularity over all ``n_items`` items (ids shuffled)."""
    from seqrec.data.dataset import Dataset, IdMap

    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, n_items + 1))
    rank = np.searchsorted(cdf / cdf[-1], rng.random(n_users * length))
    items = (rng.permutation(n_items)[rank] + 1).astype(np.int32)
    raw = pl.Series("raw_id", np.arange(n_items).astype(str))
    catalog = pl.DataFrame({"item": np.arange(1, n_items + 1, dtype=np.int32), "raw_id": raw}).with_columns(
        pl.lit(None, dtype=pl.String).alias("title"),
        pl.lit([], dtype=pl.List(pl.String)).alias("genres"),
        pl.lit(None, dtype=pl.Int32).alias("year"),
    )
    return Dataset(
        offsets=np.arange(0, n_users * length + 1, length, dtype=np.int64),
        items=items,
        user_ids=IdMap(np.arange(n_users), 0),
        item_ids=IdMap(raw, 1),
        catalog=catalog,
    )


def _child(spec: dict) -> dict:
    """One run in this process: build the data and the model, train ``spec["seconds"]`` (None: a whole
    epoch) of epoch 1, return its figures."""
    import torch
    from tqdm.auto import tqdm

    from seqrec.data.dataset import Dataset
    from seqrec.data.split import LeaveOneOut
    from seqrec.models.sasrec import SASRecConfig, SASRecModel
    from seqrec.training.loop import Run, TrainConfig

    t0 = time.perf_counter()
    ds = Dataset.load(spec["data"]) if spec.get("data") else synthetic(spec["items"])
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=HIDDEN, blocks=2, max_len=spec["max_len"]))
    cfg = TrainConfig(
        **{
            "epochs": 1,
            "batch_size": 128,
            "device": "cpu",
            "eval_every": 0,
            "quiet": True,
            "time_limit": spec.get("seconds"),
            **spec["train"],
        }
    )
    run = Run(model, LeaveOneOut(ds), cfg, None)
    setup = time.perf_counter() - t0
    row = run.epoch(1, tqdm)
    steps = run.st.step_in_epoch
    return {
        "setup_s": round(setup, 1),
        "steps": steps,
        "steps_per_epoch": run.data.steps_per_epoch,
        "sequences": len(run.data.n),
        "seconds": row["seconds"],
        "seq_per_s": row["seq_per_s"],
        "loss": round(row["loss"], 4),
        "threads": row["threads"],
        "items": ds.n_items,
    }


def _timed(spec: dict, cap_gb: float) -> tuple[dict, float, float]:
    """``_child(spec)`` in a fresh process under ``/usr/bin/time -v``: (its figures, peak RSS GB, wall s)."""
    timer = "/usr/bin/time" if Path("/usr/bin/time").exists() else shutil.which("time")
    if timer is None:
        raise SystemExit("scale_train needs GNU time (/usr/bin/time -v) to measure peak memory")
    cap = int(cap_gb * 2**30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        proc = subprocess.run(
            [timer, "-v", "-o", report.name, sys.executable, __file__, "child", json.dumps(spec)],
            capture_output=True,
            text=True,
            preexec_fn=limit,
            check=False,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"scale_train child {spec} failed:\n{proc.stderr[-3000:]}")
        peak_kb = next(
            int(line.split(":")[1]) for line in report.read().splitlines() if "Maximum resident set size" in line
        )
    return json.loads(proc.stdout.strip().splitlines()[-1]), peak_kb / 2**20, wall


def train_rows(
    quiet: bool = False, seconds: float = 30.0, sizes: tuple[int, ...] = SIZES, cap_gb: float = 13.0
) -> list[dict]:
    """Sequences/s and peak RSS per catalogue size, loss and embedding-gradient kind."""
    rows = []
    for n in sizes:
        for name, setup in SETUPS.items():
            for sparse in (False, True):
                spec = {
                    "items": n,
                    "max_len": EVENTS,
                    "seconds": seconds,
                    "train": {**setup, "sparse_embeddings": sparse},
                }
                got, peak, _ = _timed(spec, cap_gb)
                table_gb = (n + 1) * HIDDEN * 4 / 2**30
                rows.append(
                    {
                        "items": f"{n:,}",
                        "loss": name,
                        "embedding grad": "sparse (lazy Adam)" if sparse else "dense (Adam)",
                        "seq/s": f"{got['seq_per_s']:,.0f}",
                        "s/step": f"{got['seconds'] / max(1, got['steps']):.3f}",
                        "steps": got["steps"],
                        "threads": got["threads"],
                        "peak RSS GB": f"{peak:.2f}",
                        "table GB": f"{table_gb:.3f}",
                        "setup s": got["setup_s"],
                    }
                )
                _say(quiet, rows[-1])
    return rows


def epoch25m_rows(
    data: Path = DATA_25M,
    quiet: bool = False,
    seconds: float | None = None,
    cap_gb: float = 13.0,
    sparse_too: bool = False,
) -> list[dict]:
    """One SASRec epoch (sampled softmax, hidden 64, max_len 200) on the prepared 25 M-row folder ``data``
    with the default dense embedding gradient and Adam (and, with ``sparse_too``, one with
    ``sparse_embeddings``); with ``seconds``, that much of each, extrapolated to the whole epoch."""
    rows = []
    for sparse in (False, True) if sparse_too else (False,):
        spec = {
            "data": str(data),
            "max_len": 200,
            "seconds": seconds,
            "train": {"loss": "sampled-softmax", "sparse_embeddings": sparse},
        }
        got, peak, wall = _timed(spec, cap_gb)
        whole = got["steps"] >= got["steps_per_epoch"]
        epoch_s = got["seconds"] * got["steps_per_epoch"] / max(1, got["steps"])
        rows.append(
            {
                "data": f"{data.name} ({got['sequences']:,} sequences, {got['items']:,} items)",
                "embedding grad": "sparse (lazy Adam)" if sparse else "dense (Adam)",
                "batches": f"{got['steps']:,} of {got['steps_per_epoch']:,}",
                "epoch minutes": f"{epoch_s / 60:.1f}" + ("" if whole else " (extrapolated)"),
                "seq/s": f"{got['seq_per_s']:,.0f}",
                "threads": got["threads"],
                "peak RSS GB": f"{peak:.2f}",
                "setup s": got["setup_s"],
                "wall s": round(wall, 1),
                "target": "<= 10 min, <= 6 GB",
            }
        )
        _say(quiet, rows[-1])
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("train", "epoch", "child"))
    p.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="train: seconds per run (default 30); epoch: time this much and extrapolate (default: all)",
    )
    p.add_argument("--data", type=Path, default=DATA_25M, help="epoch: the prepared 25 M-row folder")
    p.add_argument("--cap-gb", type=float, default=13.0, help="address-space cap of each run")
    p.add_argument("--sparse-too", action="store_true", help="epoch: also a run with sparse_embeddings")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.part == "child":
        print(json.dumps(_child(json.loads(args.spec))), flush=True)
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load}\n")
    if args.part == "train":
        rows = train_rows(args.quiet, args.seconds or 30.0, cap_gb=args.cap_gb)
    else:
        rows = epoch25m_rows(args.data, args.quiet, args.seconds, cap_gb=args.cap_gb, sparse_too=args.sparse_too)
    print(markdown_table(rows))
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
