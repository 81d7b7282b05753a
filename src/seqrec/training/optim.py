"""What training runs with, apart from the model and the data: the optimizer (with ``sparse_embeddings``,
``LazyAdam`` / ``LazyAdamW``, which update only the item rows a step touches, and ``clip_grad_norm``, which
takes their sparse gradients), the learning-rate schedule, the device (and a scorer view of a model on an
accelerator) and the number of CPU threads. ``seqrec.training.loop`` builds them from a ``TrainConfig``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
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


class _LazyRows(torch.optim.Optimizer):
    """Adam / AdamW whose parameters with a sparse gradient (the item embedding under ``sparse_embeddings``)
    are updated lazily: only the rows the gradient holds, their moments and the step's weight decay, so a
    step costs O(rows touched), not O(catalogue). Bias corrections use the parameter's step count, as
    ``torch.optim.SparseAdam`` does. Dense gradients go to the parent class's (fused) step. The state has
    the parent's keys, so checkpoints hold and restore it the same way."""

    def step(self, closure: Any = None, **kwargs: Any) -> Any:
        held = []
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and p.grad.is_sparse:
                        self._rows(p, p.grad.coalesce(), group)
                        held.append((p, p.grad))
                        p.grad = None  # the parent's step skips it
        try:
            return super().step(closure, **kwargs)
        finally:
            for p, g in held:
                p.grad = g

    def _rows(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        if grad.sparse_dim() != 1:  # rows of dense values, as embedding lookups give
            grad = grad.to_dense().to_sparse(sparse_dim=1)
        st = self.state[p]
        if not st:
            st["step"] = torch.zeros((), dtype=torch.float32)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["step"] += 1
        t = float(st["step"])
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        idx, g = grad.indices()[0], grad.values()
        rows = p.index_select(0, idx)
        if wd and isinstance(self, torch.optim.AdamW):
            rows.mul_(1.0 - lr * wd)  # decoupled, on the touched rows
        elif wd:
            g = g + wd * rows  # Adam's L2 term
        m = st["exp_avg"].index_select(0, idx).mul_(b1).add_(g, alpha=1.0 - b1)
        v = st["exp_avg_sq"].index_select(0, idx).mul_(b2).addcmul_(g, g, value=1.0 - b2)
        st["exp_avg"].index_copy_(0, idx, m)
        st["exp_avg_sq"].index_copy_(0, idx, v)
        denom = v.div_(1.0 - b2**t).sqrt_().add_(eps)
        p.index_copy_(0, idx, rows.addcdiv_(m, denom, value=-lr / (1.0 - b1**t)))


class LazyAdam(_LazyRows, torch.optim.Adam):
    pass


class LazyAdamW(_LazyRows, torch.optim.AdamW):
    pass


def _optimizer(model: torch.nn.Module, cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW as ``cfg`` (a ``TrainConfig``) says; weight decay on weight matrices and embeddings only.

    With ``cfg.sparse_embeddings`` the item embedding's lookups give sparse gradients (``item_emb.sparse``
    is set from the option) and the optimizer updates the rows they hold only (``LazyAdam(W)``)."""
    sparse = getattr(cfg, "sparse_embeddings", False)
    emb = getattr(model, "item_emb", None)
    if sparse and not isinstance(emb, torch.nn.Embedding):
        raise SeqrecError(
            "train config: sparse_embeddings needs the SASRec model itself (its item_emb), not a "
            "wrapper of it; train without sparse_embeddings"
        )
    if sparse and getattr(model, "features", None) is not None:
        raise SeqrecError(
            "train config: sparse_embeddings needs a SASRec without item_features (its feature "
            "layers read every item row each step)"
        )
    if isinstance(emb, torch.nn.Embedding):
        emb.sparse = bool(sparse)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if sparse:
        cls: type[torch.optim.Optimizer] = LazyAdamW if cfg.optimizer == "adamw" else LazyAdam
    else:
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # fp16's grad scaler unscales sparse gradients itself only for an optimizer that is not fused
    fused = device.type in ("cpu", "cuda") and not (sparse and cfg.precision == "fp16")
    return cls(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)  # type: ignore[call-arg]  # Adam's keywords


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` that also takes sparse gradients (coalesced first, their values
    counted and scaled); with dense gradients only it is that function."""
    if not any(p.grad is not None and p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    grads = []
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        elif p.grad is not None:
            grads.append(p.grad)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, coef)
    return total


class _OnDevice:
    """Scorer view of a model on an accelerator: scores stay on the device for the evaluator."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.max_len, self.n_items = model.max_len, model.n_items

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        score: Any = self.model.score
        return score(histories.to(self.device))
