"""seqrec at scale: MovieLens-25M-sized data, many processes, million-item catalogues.

    python benchmarks/scale.py all  [--dir /tmp/seqrec-scale]   # every table below
    python benchmarks/scale.py data [--dir DIR]     # 25 M rows: generate, prepare (seconds, peak RSS)
    python benchmarks/scale.py eval [--dir DIR]     # popularity / AR-1 / AR-2 full ranking on them
    python benchmarks/scale.py epoch [--dir DIR]    # one SASRec epoch on them (sampled softmax)
    python benchmarks/scale.py train                # sequences/s and peak RSS at 10 k, 100 k, 1 M items
    python benchmarks/scale.py ddp [--data ml-1m]   # 2 processes x 1 thread against 1 process x 2 threads
    python benchmarks/scale.py ann                  # exact / HNSW / IVF search at 1 M items

Every step runs in its own process under ``/usr/bin/time -v`` where peak memory is reported, so one
step's memory does not count against the next. Each part also runs on its own
(``benchmarks/scale_data.py`` and the other ``scale_*.py``); this script prints their tables one after
the other, with the machine and its load average before each, since timings on a shared machine are
only comparable within one table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seqrec.evaluation.report import markdown_table

PARTS = ("data", "eval", "epoch", "train", "ddp", "ann")


def _machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load}"


def _rows(part: str, args: argparse.Namespace) -> list[dict]:
    data_dir = Path(args.dir)
    if part == "data":
        from scale_data import data_rows

        return data_rows(data_dir, args.quiet)
    if part == "eval":
        from scale_eval import eval_rows

        return eval_rows(data_dir / "prep25m", args.quiet)
    if part == "epoch":
        from scale_train import epoch25m_rows

        return epoch25m_rows(data_dir / "prep25m", args.quiet)
    if part == "train":
        from scale_train import train_rows

        return train_rows(args.quiet)
    if part == "ddp":
        from scale_ddp import ddp_rows

        return ddp_rows(args.data, args.quiet)
    from scale_ann import ann_rows

    return ann_rows(args.quiet)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=(*PARTS, "all"))
    p.add_argument(
        "--dir",
        default="/tmp/seqrec-scale",
        help="where the 25 M-row files and their prepared folder are made (or found)",
    )
    p.add_argument("--data", default="ml-1m", help="data set of the ddp table")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    for part in PARTS if args.part == "all" else (args.part,):
        if part in ("eval", "epoch") and not (Path(args.dir) / "prep25m").exists():
            _rows("data", args)  # the 25 M rows those tables read
        print(f"\n## {part}  ({_machine()})\n", flush=True)
        print(markdown_table(_rows(part, args)), flush=True)


if __name__ == "__main__":
    main()
