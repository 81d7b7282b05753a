"""Cleaning: raw interactions in, what is left of them out, as dense codes.

``clean(frame, config, label) -> Cleaned`` takes the standardised frame the readers make (columns ``user``,
``item`` and optionally ``timestamp`` and ``rating``, raw ids of any type) and:

* orders each user's interactions by timestamp, ties (and files without timestamps) kept in file order
  (a stable sort);
* applies the rating threshold (``min_rating``) and the dedupe of repeated (user, item) pairs (the
  earliest is kept), if asked;
* runs the iterated k-core on users and items until every user and item has at least ``k_core``
  interactions (the paper uses 5).

Everything after the sort works on integer codes (users and items numbered by raw id), so a 25 M-row log
is cleaned with a few numpy passes. ``seqrec.data.dataset.Dataset.build`` makes the data set of the result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from seqrec.config import CleanConfig
from seqrec.errors import SeqrecError

DEFAULT_K_CORE = 5


@dataclass(frozen=True)
class Cleaned:
    """The interactions left, in time order per user: ``users`` and ``items`` are codes into ``raw_users`` /
    ``raw_items`` (sorted distinct raw ids of the input; some may have no interaction left)."""

    users: np.ndarray  # int32 codes, grouped by user
    items: np.ndarray  # int32 codes
    raw_users: pl.Series
    raw_items: pl.Series
    times: np.ndarray | None  # int64 epoch seconds of each interaction kept (None: the input had no times)
    has_timestamps: bool
    before: dict[str, Any]  # counts of the input (summary)
    report: dict[str, Any]  # the config and what each step left


def clean(frame: pl.DataFrame, config: CleanConfig = CleanConfig(), label: str = "data") -> Cleaned:
    """``frame`` cleaned under ``config`` (see the module's docstring); ``label`` names it in errors."""
    for col in ("user", "item"):
        if col not in frame.columns:
            raise SeqrecError(f"{label}: interactions need a '{col}' column, got {frame.columns}")
    if config.min_rating is not None and "rating" not in frame.columns:
        raise SeqrecError(f"{label}: min_rating={config.min_rating} given but the data has no rating")
    has_time = "timestamp" in frame.columns
    order = ["user", "timestamp"] if has_time else ["user"]
    # a stable sort: ties (and files without timestamps) keep file order; rating only to filter on
    frame = _sorted(frame.select(*order, "item", *(["rating"] if config.min_rating is not None else [])), order)
    times = None
    if has_time:
        if not frame["timestamp"].null_count():
            times = frame["timestamp"].to_numpy().astype(np.int64)
        frame = frame.drop("timestamp")
    users, raw_users = _codes(frame["user"], in_order=True)
    items, raw_items = _codes(frame["item"])
    n_users, n_items = len(raw_users), len(raw_items)
    before = summary(np.bincount(users, minlength=n_users), n_items)
    cleaning: dict[str, Any] = {"config": asdict(config)}
    if config.min_rating is not None:
        keep = (frame["rating"] >= config.min_rating).fill_null(False).to_numpy()
        users, items = users[keep], items[keep]
        times = None if times is None else times[keep]
        cleaning["after_min_rating"] = len(users)
    del frame
    if config.dedupe:  # the first of each (user, item) pair in time order
        _, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)
        first.sort()
        users, items = users[first], items[first]
        times = None if times is None else times[first]
        cleaning["after_dedupe"] = len(users)
    k = DEFAULT_K_CORE if config.k_core is None else config.k_core
    cleaning["k_core"] = k
    users, items, times, steps = _k_core_codes(users, items, times, n_users, n_items, k)
    cleaning["k_core_steps"] = steps
    if len(users) == 0:
        trail = "; ".join(
            f"pass {i + 1}: {s['users']} users, {s['items']} items, {s['interactions']} interactions"
            for i, s in enumerate(steps)
        )
        raise SeqrecError(
            f"{label}: nothing left after cleaning (min_rating={config.min_rating}, "
            f"k_core={k}; started with {before['users']} users, {before['items']} items, "
            f"{before['interactions']} interactions; {trail or 'no k-core pass'})"
        )
    return Cleaned(users, items, raw_users, raw_items, times, has_time, before, cleaning)


def summary(lengths: np.ndarray, n_items: int) -> dict[str, Any]:
    """Counts and history-length percentiles from the users' history lengths (users without any are not counted)."""
    lengths = lengths[lengths > 0]
    if len(lengths) == 0:
        return {"users": 0, "items": n_items, "interactions": 0}
    n_users, n = len(lengths), int(lengths.sum())
    pct = np.percentile(lengths, [5, 25, 50, 75, 95]).round(1).tolist()
    return {
        "users": int(n_users),
        "items": int(n_items),
        "interactions": n,
        "density": float(n / max(1, n_users * max(1, n_items))),
        "length_mean": float(lengths.mean()),
        "length_min": int(lengths.min()),
        "length_max": int(lengths.max()),
        "length_percentiles": dict(zip(["p5", "p25", "p50", "p75", "p95"], pct)),
    }


def _int(value: Any) -> int:
    """An integer column's min or max as a Python int (polars types them as any scalar)."""
    return int(value)


def _sorted(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``frame`` in ``by`` order, ties in their order (a stable sort). Integer columns are sorted as one int64
    key (user, then time) with numpy; none when in order."""
    rest = frame.columns
    cols = [frame[c] for c in by]
    if frame.height and all(c.dtype.is_integer() for c in cols):
        lows = [_int(c.min()) for c in cols]
        spans = [_int(c.max()) - lo + 1 for c, lo in zip(cols, lows)]
        small = all(-(1 << 62) < lo and lo + span < 1 << 62 for lo, span in zip(lows, spans))
        if small and np.prod(np.array(spans, dtype=float)) < 2.0**62:
            key = cols[0].to_numpy().astype(np.int64, copy=False) - lows[0]
            if len(by) > 1:
                key = key * spans[1] + (cols[1].to_numpy().astype(np.int64, copy=False) - lows[1])
            if np.all(key[1:] >= key[:-1]):
                return frame.select(rest)
            order = np.argsort(key, kind="stable")
            del key
            return frame.select(rest)[order]
    return frame.sort(by, maintain_order=True).select(rest)


def _codes(s: pl.Series, in_order: bool = False) -> tuple[np.ndarray, pl.Series]:
    """Dense codes 0..n-1 of a column's values in value order (int32) and the values (sorted, distinct).
    ``in_order``: the column is sorted, so codes come from where the value changes."""
    if len(s) and in_order:
        x = s.to_numpy() if s.dtype.is_integer() else None
        new = np.empty(len(s), dtype=bool)
        if x is not None:
            new[0] = True
            np.not_equal(x[1:], x[:-1], out=new[1:])
        else:
            new[:] = s.ne_missing(s.shift(1)).fill_null(True).to_numpy()
        return (np.cumsum(new, dtype=np.int32) - 1), s.filter(pl.Series(new))
    if len(s) and s.dtype.is_integer():
        lo, hi = _int(s.min()), _int(s.max())
        if (
            -(1 << 62) < lo and hi < 1 << 62 and hi - lo <= max(2 * len(s), 1 << 20) and hi - lo < 1 << 25
        ):  # a small range of ids: a lookup table
            x = (s.to_numpy() - lo).astype(np.int64, copy=False)
            present = np.bincount(x, minlength=hi - lo + 1) > 0
            code = np.cumsum(present, dtype=np.int32) - 1
            return code[x], pl.Series(s.name, np.flatnonzero(present) + lo).cast(s.dtype)
    return (s.rank("dense").cast(pl.Int32) - 1).to_numpy(), s.unique().sort()


def _k_core_codes(
    users: np.ndarray, items: np.ndarray, times: np.ndarray | None, n_users: int, n_items: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[dict[str, int]]]:
    """Iterated k-core on code arrays (users, items in 0..n-1; times alongside, if any): the rows kept and
    one record per pass (users, items, interactions left)."""
    steps: list[dict[str, int]] = []
    if k <= 1:
        return users, items, times, steps
    while True:
        before = len(users)
        keep = np.bincount(users, minlength=n_users)[users] >= k  # users first, then items, as k_core
        if not keep.all():
            users, items, times = users[keep], items[keep], None if times is None else times[keep]
        keep = np.bincount(items, minlength=n_items)[items] >= k
        if not keep.all():
            users, items, times = users[keep], items[keep], None if times is None else times[keep]
        steps.append(
            {
                "users": int(np.count_nonzero(np.bincount(users, minlength=n_users))),
                "items": int(np.count_nonzero(np.bincount(items, minlength=n_items))),
                "interactions": len(users),
            }
        )
        if len(users) == before or len(users) == 0:
            return users, items, times, steps
