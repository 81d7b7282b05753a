"""Training checkpoints: one safetensors file, nothing pickled.

Tensors (model weights, best weights, optimizer state tensors, torch RNG states and any extra
tensors the trainer adds) are safetensors entries; everything else (optimizer hyper-parameters,
scheduler and grad-scaler state, the trainer's counters, history and configs) is JSON in the
file's metadata. The file is written via temp file + rename, so a crash leaves the previous one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from seqrec.errors import SeqrecError
from seqrec.files import atomic_write_bytes

VERSION = 1
_META_KEY = "seqrec_checkpoint"


def _cpu(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_checkpoint(
    path: Path,
    meta: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any = None,
    best: dict[str, torch.Tensor] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
    device: torch.device | None = None,
) -> None:
    """Write ``path`` atomically; ``meta`` must be JSON-serialisable, ``extra`` tensors go in as ``extra.*``."""
    from safetensors.torch import save

    tensors = _cpu(model.state_dict(), "model.")
    tensors.update(_cpu(best or {}, "best."))
    tensors.update(_cpu(extra or {}, "extra."))
    osd = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in osd["state"].items():
        for name, v in state.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{name}"] = v.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = v
    tensors["rng.torch"] = torch.get_rng_state()
    if device is not None and device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    doc = {
        **meta,
        "version": VERSION,
        "optim_groups": osd["param_groups"],
        "optim_scalars": scalars,
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
    }
    atomic_write_bytes(path, save(tensors, metadata={_META_KEY: json.dumps(doc)}))


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a checkpoint; SeqrecError for a damaged, foreign or newer file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own types for damaged files
        raise SeqrecError(f"{path}: not a readable seqrec training checkpoint ({e})") from e
    if meta.get("version") != VERSION:
        raise SeqrecError(f"{path}: checkpoint version {meta.get('version')!r}, this seqrec reads {VERSION}")
    return meta, tensors


def restore_checkpoint(
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any = None,
    device: torch.device | None = None,
) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor]]:
    """Load weights, optimizer, scheduler, scaler and RNG states in place; returns (best weights or None, extra tensors)."""
    device = device or torch.device("cpu")
    model.load_state_dict(_part(tensors, "model."))
    osd: dict[str, Any] = {"state": {}, "param_groups": meta["optim_groups"]}
    for k, v in _part(tensors, "optim.").items():
        pid, name = k.split(".", 1)
        osd["state"].setdefault(int(pid), {})[name] = v
    for pid, scalars in meta["optim_scalars"].items():
        osd["state"].setdefault(int(pid), {}).update(scalars)
    for g in osd["param_groups"]:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict(osd)
    scheduler.load_state_dict({**meta["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    if meta["scaler"] and scaler is not None:
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    best = {k: v.to(device) for k, v in _part(tensors, "best.").items()}
    return best or None, _part(tensors, "extra.")
