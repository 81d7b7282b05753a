"""The pieces every configuration shares: the choices of the string options, the field helper, number and
size parsing."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import numpy as np

from seqrec.errors import SeqrecError

LOSSES = ("bce", "ce", "sampled-softmax", "gbce")
DEFAULT_NEGATIVES = {"bce": 1, "ce": 0, "sampled-softmax": 256, "gbce": 256}
CHOICES = {
    "loss": LOSSES,
    "negative_sampling": ("uniform", "popularity", "mixed"),
    "optimizer": ("adam", "adamw"),
    "schedule": ("cosine", "constant"),
    "precision": ("fp32", "bf16", "fp16"),
}


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(value: Any, name: str = "memory_budget") -> int:
    """A size in bytes from an integer or a text like ``"2GB"``, ``"512 MiB"``, ``"1.5gb"`` (KB, MB, GB, TB are
    powers of 1000; KiB, MiB, GiB, TiB of 1024); a ``SeqrecError`` naming ``name`` otherwise."""
    expected = "a positive size like 2GB, 512MB, 1.5GiB or a number of bytes"
    if _is_int(value) and value > 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "").replace("_", "")
        number = text.rstrip("kmgtib")
        unit = text[len(number) :]
        try:
            size = float(number) * _UNITS[unit] if number else math.nan
        except (KeyError, ValueError):
            size = math.nan
        if math.isfinite(size) and size >= 1:
            return int(size)
    raise SeqrecError(f"{name} must be {expected}, got {value!r}")


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str, field_name: str = "horizon") -> int:
    """Seconds of ``7d``, ``12h``, ``30m``, ``3600s`` or ``2w``."""
    s = str(text).strip().lower()
    unit = s[-1:] if s[-1:] in _DURATION else ""
    number = s[:-1] if unit else s
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise SeqrecError(f"{field_name} must be a positive duration such as 7d, 12h, 30m or 3600s, got {text!r}")
    return int(round(value * _DURATION[unit or "s"]))
