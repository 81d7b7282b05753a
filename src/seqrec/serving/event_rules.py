"""An event as the stores take it: ``Event``, what an append did (``Appended``), the store's failures
(``StoreError``), and the one rule for ids and times given alone (``normalise_id``, ``normalise_ts``), applied by
both stores (``seqrec.serving.store``, ``seqrec.serving.store_pg``) and the service."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqrec.data.columns import MISSING_IDS, id_problem
from seqrec.data.dataset import id_key
from seqrec.errors import SeqrecError


class StoreError(SeqrecError):
    """The store could not write or read (a full disk, a locked or damaged file); the service answers 503."""


@dataclass(frozen=True, slots=True)
class Event:
    """One stored interaction: ids in their stored form, ``ts`` in epoch seconds."""

    user_id: str
    item_id: str
    ts: float
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """What one ``append`` did: events newly stored, and events already there (or repeated in the call)."""

    stored: int
    duplicates: int


def normalise_id(raw: Any, what: str = "id") -> str:
    """A raw id in the stored form (``id_key``); empty ids, missing-value markers and other types refused."""
    if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (int, float, str, np.integer, np.floating)):
        raise SeqrecError(f"{what}: expected an integer or a string, got {type(raw).__name__}")
    if isinstance(raw, (float, np.floating)) and not math.isfinite(raw):
        raise SeqrecError(f"{what}: {raw!r} is not an id")
    key = id_key(raw)
    if isinstance(raw, str) and "\x00" in raw:
        raise SeqrecError(f"{what}: {id_problem(raw)}")
    if key.lower() in MISSING_IDS:
        raise SeqrecError(
            f"{what}: {raw!r} is not an id (empty values and missing-value markers such as NaN are not ids)"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise SeqrecError(
            f"{what}: {key.encode('utf-8', 'backslashreplace').decode()!r} holds an unpaired surrogate"
        ) from None
    return key


def normalise_ts(ts: Any, what: str = "ts") -> float:
    """An event time as finite epoch seconds (a float)."""
    if isinstance(ts, (bool, np.bool_)) or not isinstance(ts, (int, float, np.integer, np.floating)):
        raise SeqrecError(f"{what}: expected epoch seconds (a number), got {type(ts).__name__}")
    value = float(ts)
    if not math.isfinite(value):
        raise SeqrecError(f"{what}: expected a finite number of epoch seconds, got {ts!r}")
    return value


def _row(event: Any, now: float, n: int) -> tuple[str, str, float, str | None]:
    """(user_id, item_id, ts, type) of an ``Event``, a mapping with user_id / item_id / ts (/ type) or a
    (user, item[, ts[, type]]) tuple."""
    user: Any
    item: Any
    ts: Any
    kind: Any = None
    if isinstance(event, Event):
        user, item, ts, kind = event.user_id, event.item_id, event.ts, event.type
    elif isinstance(event, Mapping):
        user, item, ts, kind = event.get("user_id"), event.get("item_id"), event.get("ts"), event.get("type")
    elif isinstance(event, Sequence) and not isinstance(event, (str, bytes)) and len(event) in (2, 3, 4):
        user, item, ts = event[0], event[1], event[2] if len(event) >= 3 else None
        kind = event[3] if len(event) == 4 else None
    else:
        raise SeqrecError(
            f"event {n}: expected (user_id, item_id[, ts[, type]]) or a mapping with those keys, "
            f"got {type(event).__name__}"
        )
    if kind is not None and not isinstance(kind, str):
        raise SeqrecError(f"event {n}: type: expected a short name, got {kind!r}")
    return (
        normalise_id(user, f"event {n}: user_id"),
        normalise_id(item, f"event {n}: item_id"),
        now if ts is None else normalise_ts(ts, f"event {n}: ts"),
        kind,
    )
