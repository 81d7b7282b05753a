"""Full-ranking evaluation of the baselines at MovieLens-25M size, in bounded memory.

    python benchmarks/scale_eval.py DATA [--model popularity --model markov ...] [--memory-budget 2GB] [-q]

DATA is a prepared folder (``seqrec prepare``; ``benchmarks/scale.py data`` makes one of 25 M rows) or anything
``seqrec evaluate`` reads. Each model runs as its own ``seqrec evaluate DATA --model M --protocol full --json``
process under ``/usr/bin/time -v``, so its peak resident memory is the process's own (loading, fitting and
evaluating) and no step's memory counts against the next. The table has the model, wall seconds, peak RSS
in GB (1e9 bytes) against the target of 4 GB, NDCG@10 and HR@10, and the users evaluated; the machine and
its load average are printed above it, since timings on a shared machine are only comparable within one
table. ``eval_rows(data, quiet)`` returns the rows (``benchmarks/scale.py eval``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqrec.evaluation.report import markdown_table

MODELS = ("popularity", "markov", "ar2")
TARGET_GB = 4.0


def _seqrec() -> list[str]:
    """The command that runs this checkout's ``seqrec`` with this interpreter."""
    return [sys.executable, "-c", "import sys; from seqrec.cli.commands import main; sys.exit(main())"]


def _peak_gb(time_report: str) -> float:
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_report)
    return int(found.group(1)) * 1024 / 1e9 if found else float("nan")


def run_one(data: Path, model: str, memory_budget: str | None = None, quiet: bool = False) -> dict:
    """One ``seqrec evaluate`` of ``model`` on ``data`` (full protocol) under ``/usr/bin/time -v``."""
    timer = shutil.which("time") if not Path("/usr/bin/time").exists() else "/usr/bin/time"
    if timer is None:
        raise SystemExit("scale_eval needs GNU time (/usr/bin/time -v) to measure peak memory")
    cmd = [*_seqrec(), "evaluate", str(data), "--model", model, "--protocol", "full", "--json", "--quiet"]
    if memory_budget:
        cmd += ["--memory-budget", memory_budget]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        proc = subprocess.run(
            [timer, "-v", "-o", report.name, *cmd], capture_output=True, text=True, env=env, check=False
        )
        seconds = time.perf_counter() - start
        peak = _peak_gb(Path(report.name).read_text())
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        row = {
            "model": model,
            "seconds": round(seconds, 1),
            "peak RSS GB": round(peak, 2),
            "NDCG@10": None,
            "HR@10": None,
            "users": None,
            f"≤ {TARGET_GB:g} GB": "no",
            "error": " / ".join(tail),
        }
    else:
        metrics = json.loads(proc.stdout.strip().splitlines()[-1])
        row = {
            "model": model,
            "seconds": round(seconds, 1),
            "peak RSS GB": round(peak, 2),
            "NDCG@10": round(metrics["NDCG@10"], 4),
            "HR@10": round(metrics["HR@10"], 4),
            "users": metrics["users"],
            f"≤ {TARGET_GB:g} GB": "yes" if peak <= TARGET_GB else "no",
        }
    if not quiet:
        print(f"{model}: {row['seconds']} s, {row['peak RSS GB']} GB", file=sys.stderr, flush=True)
    return row


def eval_rows(
    data: Path, quiet: bool = False, models: tuple[str, ...] = MODELS, memory_budget: str | None = None
) -> list[dict]:
    """The table's rows: popularity, AR-1 (markov) and AR-2 full-ranking evaluation of ``data``."""
    return [run_one(Path(data), m, memory_budget, quiet) for m in models]


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="a prepared folder (or any data seqrec evaluate reads)")
    p.add_argument("--model", action="append", choices=MODELS, help=f"repeatable (default: {', '.join(MODELS)})")
    p.add_argument("--memory-budget", default=None, help="passed to seqrec evaluate (default: its own)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    print(f"## full-ranking evaluation of {args.data}  ({machine()})\n", flush=True)
    rows = eval_rows(args.data, args.quiet, tuple(args.model or MODELS), args.memory_budget)
    print(markdown_table(rows), flush=True)
    print(f"\nload average after: {machine()}", flush=True)


if __name__ == "__main__":
    main()
