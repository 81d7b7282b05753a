"""Training on several processes: torch.distributed (gloo on CPUs, NCCL on CUDA GPUs) with
``DistributedDataParallel`` around the model; docs/distributed.md says what is shared and how.

``seqrec.training.loop`` runs the loop through a ``Group`` (``join``: this worker's rank and the collectives it
uses) or ``Solo`` (one process: every collective the identity). ``fit_in_workers`` is the launcher of
``SASRec(nproc=N).fit`` and ``seqrec train --nproc N`` (``seqrec.training.launcher``): it saves the data,
starts N workers (``python -m seqrec.training.fit JOB``, torchrun's variables set), watches them, and on a
failure stops the others and raises a ``SeqrecError`` naming the rank. Under torchrun its processes are the workers.

Batches are one process's plan dealt round-robin (``Group.share``); ``batch_size`` stays global; each
share's loss is scaled by N so DDP's mean is the whole batch's gradient; negatives are drawn for the whole
micro-batch from the (seed, epoch, global batch index) generator and cut to the share (``Objective.keep``);
rank 0 alone validates and writes, the others receive its state by broadcast. Sparse item-embedding
gradients are dense under DDP (its buckets all-reduce dense tensors; NCCL has no sparse all-reduce).
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from seqrec.errors import SeqrecError
from seqrec.training.optim import free_cores, resolve_device

T = TypeVar("T")

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")  # set by torchrun and by this module's launcher
THREADS_ENV = "SEQREC_WORKER_THREADS"
TIMEOUT_ENV = "SEQREC_DIST_TIMEOUT"
_LAUNCHER_ENV = "SEQREC_LAUNCHER_PID"


def launched() -> bool:
    """Whether this process is one worker of a multi-process job (torchrun's or ``fit_in_workers``')."""
    return all(k in os.environ for k in ENV)


def is_main() -> bool:
    """True in a single process and on rank 0: the process that prints and writes."""
    return not launched() or os.environ.get("RANK") == "0"


def worker_threads(local_size: int) -> int:
    """Intra-op threads of each of ``local_size`` workers on this machine: the free cores (``free_cores``,
    all of them when the load average says they are free) shared out."""
    free = free_cores()
    cores = (os.cpu_count() or 1) if free is None else free
    return max(1, cores // local_size)


class Share(NamedTuple):
    """This process's part of one micro-batch: ``rows`` of the whole ``batch``, their places ``picked`` in
    it, and the weight of its loss (0 for the stand-in example of a process whose share is empty)."""

    rows: np.ndarray
    batch: np.ndarray
    picked: np.ndarray | None
    weight: float


class Solo:
    """One process: every collective is the identity."""

    rank, size, main = 0, 1, True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def threads(self) -> int | None:
        return free_cores()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def share(self, rows: np.ndarray) -> Share:
        return Share(rows, rows, None, 1.0)

    def prepare(
        self, objective: Any, data: Any, share: Share, targets: torch.Tensor, epoch: int, index: int
    ) -> tuple[torch.Tensor, ...]:
        return objective.prepare(targets, epoch, index)

    def no_sync(self, module: Any, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def agree(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def broadcast(self, obj: Any) -> Any:
        return obj

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def max(self, x: float) -> float:
        return x

    def rng_states(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {}

    def copy_from_main(self, model: torch.nn.Module) -> None:
        pass

    def close(self) -> None:
        pass


class Group(Solo):
    """One worker of N: the process group (gloo on CPUs, NCCL on CUDA) and the collectives training uses."""

    def __init__(self, device: torch.device) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", self.size))
        self.main = self.rank == 0
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise SeqrecError(
                    f"rank {self.rank}: local rank {self.local_rank} but only "
                    f"{torch.cuda.device_count()} CUDA devices on this machine"
                )
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise SeqrecError(
                f"training on several processes runs on CPUs (gloo) or CUDA GPUs (NCCL), not {device.type}"
            )
        self.device = device
        self.owns = not dist.is_initialized()
        if self.owns:
            try:
                seconds = float(os.environ.get(TIMEOUT_ENV, "1800"))
            except ValueError:
                raise SeqrecError(
                    f"{TIMEOUT_ENV} must be a number of seconds, got {os.environ[TIMEOUT_ENV]!r}"
                ) from None
            dist.init_process_group(
                "nccl" if device.type == "cuda" else "gloo",
                init_method="env://",
                rank=self.rank,
                world_size=self.size,
                timeout=datetime.timedelta(seconds=seconds),
            )

    def threads(self) -> int | None:
        given = os.environ.get(THREADS_ENV)
        return int(given) if given else worker_threads(self.local_size)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        emb = getattr(model, "item_emb", None)
        if isinstance(emb, torch.nn.Embedding):
            emb.sparse = False  # dense under DDP (see the module's docstring)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # no buffer changes in training (LayerNorm, fixed feature tables): nothing to broadcast each step
        # (the initial broadcast of rank 0's weights and buffers happens either way)
        newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
        sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        return DistributedDataParallel(model, device_ids=ids, **sync)  # type: ignore[arg-type]

    def share(self, rows: np.ndarray) -> Share:
        picked = np.arange(self.rank, len(rows), self.size)
        if len(picked):
            return Share(rows[picked], rows, picked, 1.0)
        # fewer examples than processes: train on the first one with weight 0, so every process joins the all-reduce
        return Share(rows[:1], rows, np.zeros(1, dtype=np.int64), 0.0)

    def prepare(
        self, objective: Any, data: Any, share: Share, targets: torch.Tensor, epoch: int, index: int
    ) -> tuple[torch.Tensor, ...]:
        """The negatives of the whole micro-batch, as one process draws them, cut to this share's positions."""
        if objective.sampler is None:
            return objective.prepare(targets, epoch, index)
        full = data.build(share.batch)[2]
        n = data.n[share.batch]
        starts, k = np.cumsum(n) - n, n[share.picked]
        positions = np.repeat(starts[share.picked], k) + np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
        return objective.keep(objective.prepare(full, epoch, index), torch.from_numpy(positions))

    def no_sync(self, module: Any, last: bool) -> contextlib.AbstractContextManager:
        # gradients of the micro-batches before an optimizer step's last one stay local (one all-reduce per step)
        inner = getattr(module, "_orig_mod", module)  # through torch.compile
        if last or not hasattr(inner, "no_sync"):
            return contextlib.nullcontext()
        return inner.no_sync()

    def broadcast(self, obj: Any) -> Any:
        box = [obj if self.main else None]
        self.dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def agree(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0, its value (or its ``SeqrecError``) on every rank."""
        outcome = None
        if self.main:
            try:
                outcome = ("ok", fn())
            except SeqrecError as e:
                outcome = ("error", str(e))
                self.broadcast(outcome)
                raise
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise SeqrecError(value)
        return value

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        self.dist.all_reduce(out)
        return out

    def max(self, x: float) -> float:
        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return float(t)

    def rng_states(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Every rank's torch generator states for rank 0's checkpoint (``rng.R``, ``rng_cuda.R``; rank 0's
        own are the checkpoint's ``rng.torch``)."""
        mine = (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
        every: list[Any] = [None] * self.size
        self.dist.all_gather_object(every, mine)
        out = {}
        for r, (cpu, cuda) in enumerate(every[1:], start=1):
            out[f"rng.{r}"] = cpu
            if cuda is not None:
                out[f"rng_cuda.{r}"] = cuda
        return out

    def restore_rng(self, extra: dict[str, torch.Tensor], device: torch.device) -> None:
        if f"rng.{self.rank}" in extra:
            torch.set_rng_state(extra[f"rng.{self.rank}"])
        if f"rng_cuda.{self.rank}" in extra and device.type == "cuda":
            torch.cuda.set_rng_state(extra[f"rng_cuda.{self.rank}"], device)

    def copy_from_main(self, model: torch.nn.Module) -> None:
        """Rank 0's weights and buffers (its best epoch's) into every rank's model."""
        with torch.no_grad():
            for t in model.state_dict().values():
                self.dist.broadcast(t, src=0)

    def close(self) -> None:
        if self.owns and self.dist.is_initialized():
            self.dist.destroy_process_group()


def join(cfg: Any) -> Solo:
    """Where this process stands for a ``TrainConfig``: ``Solo`` unless it is a worker of several."""
    device = resolve_device(cfg.device)
    if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
        if cfg.nproc > 1 and not launched():
            raise SeqrecError(
                f"train config: nproc={cfg.nproc}: train() runs in the process it is called from; "
                "start the workers with SASRec(nproc=N).fit, seqrec train --nproc N or torchrun"
            )
        return Solo(device)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if cfg.nproc not in (1, local):
        raise SeqrecError(
            f"train config: nproc={cfg.nproc}, but the launcher started {local} processes on this "
            "machine (under torchrun leave nproc out)"
        )
    return Group(device)
