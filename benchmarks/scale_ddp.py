"""Training on several processes against one: sequences/s of 2 processes x 1 thread (torch.distributed,
gloo, ``nproc=2``) and of 1 process x 2 threads (and x 1 thread) on the same data, settings and global batch.

    python benchmarks/scale_ddp.py [--data ml-1m] [--epochs 2] [-q]

``--data`` is ML-1M from ``../shared/data/ml-1m`` (its ``ml-1m.txt``) beside the checkout when it is there (else any name or path
``seqrec.data.readers.load_dataset`` reads; ``synthetic`` when the name cannot be found). Settings: hidden 64,
2 blocks, max_len 50, dropout 0.2, BCE with 1 negative, batch 128 (over both processes), lr 1e-3, validation
every epoch. Sequences/s is each epoch's training rate as ``metrics.jsonl`` records it (rank 0's wall clock
over the epoch, waits for the other process included), the best of the epochs; wall seconds include
starting the workers (their imports) and validation. Both runs draw the same batches and negatives, so
NDCG@10 differs only by dropout's masks (each process has its own). ``ddp_rows(data, quiet)`` returns the
table's rows (``benchmarks/scale.py ddp``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqrec.api import SASRec
from seqrec.evaluation.report import markdown_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETTINGS = dict(
    hidden=64,
    blocks=2,
    max_len=50,
    dropout=0.2,
    loss="bce",
    n_negatives=1,
    batch_size=128,
    lr=1e-3,
    patience=0,
    seed=0,
    quiet=True,
)


def _dataset(name: str):
    from seqrec.data.readers import load_dataset
    from seqrec.errors import SeqrecError

    local = SHARED / name
    if (local / f"{name}.txt").is_file():  # the SASRec paper's "user item" file
        local = local / f"{name}.txt"
    spec = str(local) if local.exists() else name
    try:
        return load_dataset(spec), spec
    except SeqrecError:
        return load_dataset("synthetic"), "synthetic"


def _say(quiet: bool, *msg: object) -> None:
    if not quiet:
        print(*msg, file=sys.stderr, flush=True)


def ddp_rows(data: str = "ml-1m", quiet: bool = False, epochs: int = 2) -> list[dict]:
    ds, where = _dataset(data)
    _say(quiet, f"{where}: {ds.n_users:,} users, {ds.n_items:,} items; {epochs} epochs per run")
    rows = []
    for nproc, threads in ((1, 2), (1, 1), (2, 1)):  # 1 x 1: how much the second thread gives
        _say(quiet, f"{nproc} process(es) x {threads} thread(s) ...")
        t = time.perf_counter()
        est = SASRec(**SETTINGS, epochs=epochs, nproc=nproc, threads=threads).fit(ds)
        wall = time.perf_counter() - t
        hist = est.result_.history
        rows.append(
            {
                "processes": nproc,
                "threads each": threads,
                "seq/s (best epoch)": max(r["seq_per_s"] for r in hist),
                "seq/s per epoch": ", ".join(f"{r['seq_per_s']:.0f}" for r in hist),
                "wall s": round(wall, 1),
                "valid NDCG@10": round(est.result_.best_valid["NDCG@10"], 4),
                "data": where,
            }
        )
    base = rows[0]["seq/s (best epoch)"]
    for r in rows:
        r["ratio"] = f"{r['seq/s (best epoch)'] / base:.2f}"
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml-1m")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = ddp_rows(args.data, args.quiet, args.epochs)
    after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average before {before}, "
        f"after {after}\n"
    )
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
