"""Training on several processes (``seqrec.training.distributed``): two CPU processes train as one does, a killed
worker ends the job at once with its rank named and ``--resume`` then finishes the run as if nothing had
happened, and rank 0 alone writes the run folder (under torchrun too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.api import SASRec
from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError
from seqrec.files import read_manifest, verify_manifest

# dropout 0: the two processes then draw exactly what one draws (batches, negatives), so they must agree to
# float rounding; with dropout each process has its own masks and only the metric's noise separates them
OPTIONS = dict(
    hidden=16,
    blocks=1,
    max_len=12,
    dropout=0.0,
    loss="bce",
    epochs=6,
    patience=0,
    batch_size=64,
    eval_share=None,
    lr=3e-3,
    threads=1,
    seed=3,
    quiet=True,
)
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items() if k not in ("quiet", "eval_share")] + [
    "--quiet",
    "--eval-share=0",
]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def planted(n_users=1500, n_items=60, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rank = rng.permutation(n_items) + 1
    return Dataset.from_sequences(
        [rank[np.sort(rng.choice(n_items, rng.integers(6, 13), replace=False))].tolist() for _ in range(n_users)]
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Dataset, Path]:
    ds = planted()
    return ds, ds.save(tmp_path_factory.mktemp("data") / "planted")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    return {**env, "PYTHONPATH": os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])]), **extra}


@pytest.fixture(scope="module")
def torchrun_run(data, tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted 2-process run started by torchrun; rank 1 records every write it attempts under the run
    folder (an audit hook loaded through sitecustomize)."""
    tmp = tmp_path_factory.mktemp("torchrun")
    out, log = tmp / "run", tmp / "rank1-writes.txt"
    (tmp / "hook").mkdir()
    (tmp / "hook" / "sitecustomize.py").write_text(
        textwrap.dedent(f"""
        import os, sys
        if os.environ.get("RANK") == "1":
            OUT, LOG = {str(out)!r}, {str(log)!r}
            WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
            def hook(event, args):
                if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
                    path, flags = os.fsdecode(args[0]), args[2]
                    if not (isinstance(flags, int) and flags & WRITE) and not (args[1] and set(args[1]) & set("wax+")):
                        return
                elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.rmdir", "os.link",
                               "os.symlink", "os.truncate", "shutil.rmtree"):
                    path = os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
                else:
                    return
                if os.path.abspath(path).startswith(OUT):
                    with open(LOG, "a") as f:
                        f.write(event + " " + path + "\\n")
            sys.addaudithook(hook)
        """)
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "seqrec",
        "train",
        str(data[1]),
        "--out",
        str(out),
        *FLAGS,
    ]
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp / "hook"), SRC]), OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("model folder:") == 1  # rank 0 alone reports
    return out, log


def test_two_processes_train_as_one(data):
    """(a) The same validation NDCG@10 (within 2 %, in fact to float rounding) and losses as one process,
    through the Python API (workers started for it, the result read back from a temporary run folder)."""
    ds, _ = data
    one = SASRec(**OPTIONS).fit(ds)
    two = SASRec(**OPTIONS, nproc=2).fit(ds)
    assert len(two.result_.history) == len(one.result_.history) == OPTIONS["epochs"]
    assert [r["processes"] for r in two.result_.history] == [2] * OPTIONS["epochs"]
    a, b = one.result_.best_valid["NDCG@10"], two.result_.best_valid["NDCG@10"]
    assert b == pytest.approx(a, rel=0.02)
    assert b == pytest.approx(a, rel=1e-4)
    assert [r["loss"] for r in two.result_.history] == pytest.approx([r["loss"] for r in one.result_.history], rel=1e-5)
    h = torch.tensor([[0, 3, 5, 7]])
    assert torch.allclose(two.score(h), one.score(h), atol=1e-4)  # the fitted model is usable as one process's


def _child(parent: int, rank: int, timeout: float = 60.0) -> int:
    """The pid of the worker of ``rank`` among ``parent``'s children (Linux /proc)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == parent and f"RANK={rank}\0".encode() in (d / "environ").read_bytes():
                    return int(d.name)
            except (OSError, IndexError, ValueError):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank} under {parent}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_a_killed_worker_ends_the_job_and_resume_finishes_it(data, torchrun_run, tmp_path):
    """(b) SIGKILL to rank 1 after the first epoch: the job ends within seconds naming rank 1 (no hang); the
    resumed run ends exactly where the uninterrupted one did (the same batches, negatives and weights from
    the checkpoint: a resume at an epoch's end is deterministic)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "seqrec", "train", str(data[1]), "--out", str(out), "--nproc", "2", *FLAGS]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim = _child(p.pid, 1)
        end = time.monotonic() + 90
        metrics = out / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 1) and p.poll() is None:
            assert time.monotonic() < end, "no epoch finished"
            time.sleep(0.02)
        assert p.poll() is None, "the run ended before it could be interrupted"
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        _, err = p.communicate(timeout=30)
        assert time.monotonic() - killed < 15
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 2
    assert "training process rank 1 of 2 was killed by SIGKILL" in err and "--resume" in err
    done = metrics.read_text().count("\n")
    assert 1 <= done < OPTIONS["epochs"]
    r = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed, full = (json.loads((d / "result.json").read_text()) for d in (out, torchrun_run[0]))
    assert resumed["best_valid"] == pytest.approx(full["best_valid"], rel=1e-9)
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-9)
    losses = lambda d: [json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert losses(out) == pytest.approx(losses(torchrun_run[0]), rel=1e-9)


def test_rank_zero_alone_writes_the_run_folder(torchrun_run):
    """(c) Under torchrun: one complete model folder, one metrics row per epoch, and rank 1 never tried to
    write under it."""
    out, writes = torchrun_run
    verify_manifest(out, read_manifest(out))
    assert len((out / "metrics.jsonl").read_text().splitlines()) == OPTIONS["epochs"]
    assert (out / "checkpoint.safetensors").is_file() and (out / "result.json").is_file()
    assert not writes.exists() or writes.read_text() == ""
    est = SASRec.load(out)
    assert est.train_config.nproc == 1  # torchrun chose the processes


def test_nproc_is_checked_and_train_itself_runs_in_one_process(data):
    from seqrec.config import TrainConfig
    from seqrec.data.split import LeaveOneOut
    from seqrec.models.sasrec import SASRecConfig, SASRecModel
    from seqrec.training.loop import train

    with pytest.raises(SeqrecError, match="nproc"):
        TrainConfig(nproc=0)
    ds, _ = data
    model = SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=8, blocks=1, max_len=4))
    with pytest.raises(SeqrecError, match="SASRec\\(nproc=N\\).fit"):
        train(model, LeaveOneOut(ds), TrainConfig(nproc=2, epochs=1, quiet=True))
