"""The launcher of a fit on several processes of this machine: ``fit_in_workers`` saves the data, starts N
workers (``python -m MODULE JOB`` with torchrun's variables set), watches them, and on a failure stops the others
and raises a ``SeqrecError`` naming the rank; ``orphan_guard`` ends a worker whose launcher is gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from seqrec.errors import SeqrecError
from seqrec.files import CHECKPOINT, METRICS_LOG
from seqrec.training.distributed import _LAUNCHER_ENV, THREADS_ENV, worker_threads

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_in_workers(
    module: str, spec: dict[str, Any], cfg: Any, ds: Any, out_dir: Any, read: Callable[[Path], T]
) -> tuple[T, list[dict[str, Any]]]:
    """A fit on ``cfg.nproc`` worker processes of this machine, each running ``python -m module JOB`` (the
    job folder holds ``spec`` as ``job.json`` with ``out_dir`` added, and the data set); then ``read`` of the
    run folder they wrote (a temporary one without ``out_dir``) and its metrics rows."""
    from seqrec.publish import check_output_folder

    n = cfg.nproc
    if out_dir is not None:  # before any process starts
        check_output_folder(Path(out_dir), "model", force=True)
    with tempfile.TemporaryDirectory(prefix="seqrec-workers-") as tmp:
        job = Path(tmp)
        ds.save(job / "data")
        run = Path(out_dir) if out_dir is not None else job / "run"
        (job / "job.json").write_text(json.dumps({**spec, "out_dir": str(run)}))
        threads = cfg.threads or worker_threads(n)
        if not cfg.quiet:
            print(f"training on {n} processes (torch.distributed, {threads} threads each)", flush=True)
        _run_workers(module, job, n, threads, run if out_dir is not None else None)
        fitted = read(run)
        rows = [json.loads(line) for line in (run / METRICS_LOG).read_text().splitlines() if line.strip()]
    return fitted, rows


def _run_workers(module: str, job: Path, n: int, threads: int, run: Path | None) -> None:
    import seqrec

    port = _free_port()
    src = str(Path(seqrec.__file__).resolve().parent.parent)
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for r in range(n):
            env = {
                **os.environ,
                "RANK": str(r),
                "WORLD_SIZE": str(n),
                "LOCAL_RANK": str(r),
                "LOCAL_WORLD_SIZE": str(n),
                "GROUP_RANK": "0",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": str(threads),
                THREADS_ENV: str(threads),
                _LAUNCHER_ENV: str(os.getpid()),
                "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]),
            }
            log = None if r == 0 else open(job / f"rank{r}.log", "wb")  # rank 0 shows its progress here
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, str(job)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT if log else None,
                )
            )
        _watch(procs, job, run)
    finally:
        _stop(procs)
        for log in logs:
            if log is not None:
                log.close()


def _watch(procs: list[subprocess.Popen], job: Path, run: Path | None) -> None:
    """Until every worker has exited 0; the first to fail (one killed by a signal, else the first to write
    its error: the others' are about the peer they lost) stops the others and is named in the ``SeqrecError``."""
    n = len(procs)
    while True:
        codes = [p.poll() for p in procs]
        failed = [r for r, c in enumerate(codes) if c is not None and c != 0]
        if failed:
            exits = {i: int(codes[i] or 0) for i in failed}
            r = min(failed, key=lambda i: (exits[i] > 0, _written(job / f"rank{i}.error"), i))
            _stop(procs)
            code = exits[r]
            if code < 0:
                try:
                    how = f"was killed by {signal.Signals(-code).name}"
                except ValueError:
                    how = f"was killed by signal {-code}"
            else:
                err = job / f"rank{r}.error"
                log = job / f"rank{r}.log"
                detail = (
                    err.read_text().strip()
                    if err.is_file()
                    else (log.read_text(errors="replace").strip()[-600:] if log.is_file() else "")
                )
                if code == 2 and err.is_file():  # a SeqrecError (every rank raises rank 0's): as one process says it
                    raise SeqrecError(detail)
                how = f"failed (exit status {code})" + (f": {detail}" if detail else "")
                trace = job / f"rank{r}.traceback"
                if trace.is_file():  # an unexpected error: its traceback, as one process would show it
                    print(trace.read_text(errors="replace"), file=sys.stderr, end="", flush=True)
            hint = f"; --resume continues from {run / CHECKPOINT}" if run and (run / CHECKPOINT).is_file() else ""
            raise SeqrecError(f"training process rank {r} of {n} {how}; the other processes were stopped{hint}")
        if all(c == 0 for c in codes):
            return
        time.sleep(0.05)


def _written(path: Path) -> float:
    """When a worker wrote its error (the first to fail wrote first), inf when it wrote none."""
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return float("inf")


def _stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    live = [p for p in procs if p.poll() is None]
    for p in live:
        p.terminate()
    end = time.monotonic() + grace
    for p in live:
        try:
            p.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def orphan_guard() -> None:
    """A worker whose launcher is gone (killed itself) exits instead of waiting for the group's timeout."""
    launcher = int(os.environ.get(_LAUNCHER_ENV, "0"))

    def check() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != launcher:
                os._exit(1)

    if launcher:
        threading.Thread(target=check, daemon=True).start()
