"""MovieLens-25M-sized data: generating 25 M interactions and preparing them, timed, with peak memory.

    python benchmarks/scale_data.py [--dir DIR] [--regenerate] [-q]

In DIR (default /tmp/seqrec-scale) ``seqrec synthetic`` writes ``synth25m.csv`` and ``synth25m.parquet``
(162,541 users, 59,047 items, 25,000,000 interactions: MovieLens 25M's sizes; files already there are
reused unless ``--regenerate``), then ``seqrec prepare`` reads each into a prepared folder (``prep25m`` from
the CSV, kept for the other scale benchmarks; the Parquet one in a temp folder). Every step is its own
process under ``/usr/bin/time -v``, so its peak resident memory is its own. The table has the step, wall
seconds, peak RSS in GB (1e9 bytes), the target and the load average when the step ended, since timings on
a shared machine are only comparable within one table. ``data_rows(dir, quiet)`` returns the rows
(``benchmarks/scale.py data``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from seqrec.evaluation.report import markdown_table  # noqa: E402  (after the path above)

USERS, ITEMS, INTERACTIONS = 162_541, 59_047, 25_000_000
TARGETS = {"generate": "<= 60 s", "prepare": "<= 12 s, <= 2 GB"}


def _seqrec() -> list[str]:
    """The command that runs this checkout's ``seqrec`` with this interpreter."""
    return [sys.executable, "-c", "import sys; from seqrec.cli.commands import main; sys.exit(main())"]


def timed(args: list[str], quiet: bool = False) -> tuple[float, float]:
    """Run ``seqrec ARGS`` under ``/usr/bin/time -v``: (wall seconds, peak RSS in GB)."""
    timer = "/usr/bin/time" if Path("/usr/bin/time").exists() else shutil.which("time")
    if timer is None:
        raise SystemExit("scale_data needs GNU time (/usr/bin/time -v) to measure peak memory")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        proc = subprocess.run(
            [timer, "-v", "-o", report.name, *_seqrec(), *args, "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        seconds = time.perf_counter() - start
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", Path(report.name).read_text())
    if proc.returncode != 0:
        raise SystemExit(f"seqrec {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    if not quiet:
        print(proc.stdout.strip(), file=sys.stderr, flush=True)
    return seconds, int(found.group(1)) * 1024 / 1e9 if found else float("nan")


def _row(step: str, target: str, seconds: float | None, peak: float | None) -> dict:
    return {
        "step": step,
        "seconds": "" if seconds is None else f"{seconds:.1f}",
        "peak RSS GB": "" if peak is None else f"{peak:.2f}",
        "target": target,
        "load average": f"{os.getloadavg()[0]:.2f}",
    }


def data_rows(dir: Path, quiet: bool, regenerate: bool = False) -> list[dict]:
    """Generate (or reuse) the 25 M-row files in ``dir`` and prepare them; one row per step."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    rows = []
    sizes = ["--users", str(USERS), "--items", str(ITEMS), "--interactions", str(INTERACTIONS)]
    for name in ("synth25m.csv", "synth25m.parquet"):
        out = dir / name
        if out.exists() and not regenerate:
            rows.append(_row(f"generate {name} (reused)", TARGETS["generate"], None, None))
            continue
        extra = ["--catalog", str(dir / "synth25m_movies.csv")] if name.endswith(".csv") else []
        rows.append(
            _row(
                f"generate {name}",
                TARGETS["generate"],
                *timed(["synthetic", *sizes, "--out", str(out), *extra, "--force"], quiet),
            )
        )
    rows.append(
        _row(
            "prepare synth25m.csv",
            TARGETS["prepare"],
            *timed(["prepare", str(dir / "synth25m.csv"), "--out", str(dir / "prep25m"), "--force"], quiet),
        )
    )
    with tempfile.TemporaryDirectory(dir=dir) as tmp:
        rows.append(
            _row(
                "prepare synth25m.parquet",
                TARGETS["prepare"],
                *timed(["prepare", str(dir / "synth25m.parquet"), "--out", f"{tmp}/prep"], quiet),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="/tmp/seqrec-scale", help="where the files are made (or found)")
    p.add_argument("--regenerate", action="store_true", help="write the 25 M-row files again even if present")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    print(markdown_table(data_rows(Path(args.dir), args.quiet, args.regenerate)))


if __name__ == "__main__":
    main()
