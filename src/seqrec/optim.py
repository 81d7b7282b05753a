"""What training runs with, apart from the model and the data: the optimizer, the learning-rate
schedule, the device (and a scorer view of a model on an accelerator) and the number of CPU threads.
``seqrec.train`` builds them from a ``TrainConfig``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from seqrec.errors import SeqrecError


def lr_factor(step: int, warmup: int, total: int, schedule: str, progress: float | None = None) -> float:
    """Multiplier of the peak learning rate before optimizer step ``step`` (0-based); ``progress``
    (the share of a time limit spent), when given, drives the cosine when it is ahead of the share of
    steps taken, so the schedule ends with whichever budget (epochs or time) runs out first."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    done = (step - warmup) / max(1, total - warmup)
    if progress is not None:
        done = max(done, progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


def free_cores() -> int | None:
    """Fewer intra-op threads than torch's default when other processes keep the cores busy (load
    average): an OpenMP thread waiting for a descheduled sibling makes every small op many times
    slower. None (keep the default) when the cores look free."""
    try:
        free = round((os.cpu_count() or 1) - os.getloadavg()[0])
    except (OSError, AttributeError):
        return None
    return None if free >= torch.get_num_threads() else max(1, free)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SeqrecError(f"train config: device {name!r} asked for but CUDA is not available")
    return torch.device(name)


def _optimizer(model: torch.nn.Module, cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW as ``cfg`` (a ``TrainConfig``) says; weight decay on weight matrices and embeddings only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    fused = device.type in ("cpu", "cuda")
    return cls(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)


class _OnDevice:
    """Scorer view of a model on an accelerator: scores stay on the device for the evaluator."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.max_len, self.n_items = model.max_len, model.n_items

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.model.score(histories.to(self.device))
