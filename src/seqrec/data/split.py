"""Splits as views over the data set's arrays: leave-one-out (Kang & McAuley 2018) and a global time cut.

Per user with at least 3 interactions: the last item is the test target, the second last the
validation target, everything before is training. Users with fewer than 3 interactions stay
wholly in training. The validation input is the training part; the test input is the training
part plus the validation item. Nothing is copied: every part is a ``Segments`` view
(start/end offsets into ``Dataset.items``).

``TemporalSplit`` cuts every user at one moment instead (see its docstring); ``make_split(data,
SplitConfig)`` builds the one a configuration names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import torch

from seqrec.data.dataset import PAD, Dataset
from seqrec.errors import SeqrecError

SplitName = Literal["valid", "test"]
MIN_EVAL_LENGTH = 3
BLOCK_EVENTS = 1 << 22  # items per block of Segments.blocks (about 100 MB of temporaries)


@dataclass(frozen=True)
class Segments:
    """A set of contiguous slices ``items[starts[i]:ends[i]]`` of one item array."""

    items: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def sequence(self, i: int | np.integer) -> np.ndarray:
        return self.items[self.starts[i] : self.ends[i]]

    def subset(self, rows: np.ndarray | slice) -> Segments:
        return Segments(self.items, self.starts[rows], self.ends[rows])

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """(row index, item) for every element of every segment, row-major, no Python loop."""
        lengths = self.lengths
        rows = np.repeat(np.arange(len(self)), lengths)
        first = np.repeat(self.starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return rows, self.items[np.arange(len(rows)) + first]

    def left_padded(self, max_len: int, rows: np.ndarray | slice | None = None) -> torch.Tensor:
        """The last ``max_len`` items of each segment, left-padded with PAD: LongTensor [B, max_len]."""
        starts = self.starts if rows is None else self.starts[rows]
        ends = self.ends if rows is None else self.ends[rows]
        return left_pad(self.items, starts, ends, max_len)

    def blocks(self, events: int | None = None) -> Iterator[slice]:
        """Consecutive ranges of rows holding about ``events`` items each (default ``BLOCK_EVENTS``; at least
        one row), so that work over every item of every segment can run a block at a time in bounded memory."""
        events = BLOCK_EVENTS if events is None else events
        cum = np.cumsum(self.lengths, dtype=np.int64)
        lo = 0
        while lo < len(self):
            hi = max(int(np.searchsorted(cum, (cum[lo - 1] if lo else 0) + events, side="right")), lo + 1)
            yield slice(lo, hi)
            lo = hi

    def counts(self, n_items: int) -> np.ndarray:
        """How often each item id 0..n_items occurs over all segments (counted a block of rows at a time)."""
        out = np.zeros(n_items + 1, dtype=np.int64)
        for rows in self.blocks():
            c = np.bincount(self.subset(rows).flat()[1], minlength=n_items + 1)
            if len(c) > len(out):
                out = np.concatenate([out, np.zeros(len(c) - len(out), dtype=np.int64)])
            out[: len(c)] += c
        return out


def left_pad(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> torch.Tensor:
    idx = ends[:, None] - max_len + np.arange(max_len)[None, :]
    valid = idx >= starts[:, None]
    out = np.where(valid, items[np.clip(idx, 0, max(len(items) - 1, 0))] if len(items) else PAD, PAD)
    return torch.from_numpy(out.astype(np.int64))


@dataclass(frozen=True)
class LeaveOneOut:
    data: Dataset

    @property
    def eval_users(self) -> np.ndarray:
        """Users who have a validation and a test target."""
        return np.flatnonzero(self.data.lengths >= MIN_EVAL_LENGTH)

    def _holdout(self) -> np.ndarray:
        """Items held out per user: 2 for evaluated users, 0 otherwise."""
        return np.where(self.data.lengths >= MIN_EVAL_LENGTH, 2, 0)

    def train(self) -> Segments:
        """Training part of every user (whole history for users with fewer than 3 items)."""
        o = self.data.offsets
        return Segments(self.data.items, o[:-1], o[1:] - self._holdout())

    def inputs(self, split: SplitName) -> tuple[np.ndarray, Segments, np.ndarray]:
        """(users, input histories, targets) for the validation or test split."""
        if split not in ("valid", "test"):
            raise SeqrecError(f"split must be 'valid' or 'test', got {split!r}")
        users = self.eval_users
        o = self.data.offsets
        ends = o[users + 1] - (2 if split == "valid" else 1)
        segs = Segments(self.data.items, o[users], ends)
        return users, segs, self.data.items[ends].astype(np.int64)

    def full(self) -> Segments:
        """Every interaction of every user (for a final model trained on all data)."""
        o = self.data.offsets
        return Segments(self.data.items, o[:-1], o[1:])


@dataclass(frozen=True)
class TemporalSplit:
    """One global cut in time (``cut``, epoch seconds): the test asks each user with events at or after it for
    their first such event, from their whole history before it; validation asks the same at ``valid_cut``, an
    earlier cut inside the training part; training sees only events before ``valid_cut``. The same interface as
    ``LeaveOneOut`` (``train``, ``inputs``, ``full``), so every model, baseline and evaluation takes either.
    ``horizon`` (seconds): the test also gathers every item a user takes in ``[cut, cut + horizon)``."""

    data: Dataset
    cut: int
    valid_cut: int
    horizon: int | None = None

    @classmethod
    def of(cls, data: Dataset, cutoff: str | float | None = None, horizon: int | None = None) -> TemporalSplit:
        """The split of ``data`` at ``cutoff`` (a date, UTC, or a quantile of event times in (0, 1); default 0.9).
        The validation cut lies as far before the test cut as the test part reaches after it (``horizon``, else
        the last event)."""
        times = data.times
        name = data.meta.get("name", "the data set")
        if times is None or len(times) == 0:
            raise SeqrecError(
                f"the temporal scheme needs a time for every interaction; {name} has none (its "
                f"format {data.meta.get('format', '')!r} carries no timestamps): use --scheme loo"
            )
        cut = _cut_time(times, 0.9 if cutoff is None else cutoff)
        first, last = int(times.min()), int(times.max())
        if not first < cut <= last:
            raise SeqrecError(
                f"cutoff {cutoff!r} ({_date(cut)}) leaves no events on one side: the data runs from "
                f"{_date(first)} to {_date(last)}"
            )
        valid_cut = cut - (horizon if horizon is not None else last + 1 - cut)
        if valid_cut <= first:
            raise SeqrecError(
                f"cutoff {cutoff!r}: the validation cut ({_date(valid_cut)}) falls before the first "
                f"event ({_date(first)}); choose a later cut or a shorter horizon"
            )
        return cls(data, cut, valid_cut, horizon)

    def _position(self, t: int) -> np.ndarray:
        """Per user, the index into ``items`` of their first event at or after ``t`` (their end when none)."""
        before = np.concatenate([[0], np.cumsum(self.data.times < t)])  # type: ignore[operator]
        o = self.data.offsets
        return o[:-1] + (before[o[1:]] - before[o[:-1]])

    @property
    def eval_users(self) -> np.ndarray:
        """Users the test asks: a history before the cut and an event after it."""
        return self.inputs("test")[0]

    def train(self) -> Segments:
        """Every user's events before the validation cut."""
        o = self.data.offsets
        return Segments(self.data.items, o[:-1], self._position(self.valid_cut))

    def inputs(self, split: SplitName) -> tuple[np.ndarray, Segments, np.ndarray]:
        """(users, histories before the cut, their first item at or after it) for ``valid`` or ``test``."""
        if split not in ("valid", "test"):
            raise SeqrecError(f"split must be 'valid' or 'test', got {split!r}")
        o = self.data.offsets
        lo = self._position(self.valid_cut if split == "valid" else self.cut)
        hi = self._position(self.cut) if split == "valid" else o[1:]
        users = np.flatnonzero((lo > o[:-1]) & (lo < hi))
        return users, Segments(self.data.items, o[users], lo[users]), self.data.items[lo[users]].astype(np.int64)

    def full(self) -> Segments:
        o = self.data.offsets
        return Segments(self.data.items, o[:-1], o[1:])

    def horizon_targets(self, users: np.ndarray) -> Segments:
        """Per test user, the items they take in ``[cut, cut + horizon)`` (all after the cut without a horizon)."""
        start = self._position(self.cut)[users]
        end = self.data.offsets[users + 1] if self.horizon is None else self._position(self.cut + self.horizon)[users]
        return Segments(self.data.items, start, end)

    def describe(self) -> dict[str, Any]:
        """The cut, and what it leaves: users and events on each side, users first seen after the cut (cold
        users: nothing to read a history from), test targets first seen after the cut (cold items)."""
        o, items, n = self.data.offsets, self.data.items, self.data.n_items
        cut_pos = self._position(self.cut)
        users, _, targets = self.inputs("test")
        seen = np.bincount(items[self.data.times < self.cut], minlength=n + 1)  # type: ignore[operator]
        after = o[1:] > cut_pos
        return {
            "scheme": "temporal",
            "cut": _date(self.cut),
            "valid_cut": _date(self.valid_cut),
            "horizon_s": self.horizon,
            "events_before": int((cut_pos - o[:-1]).sum()),
            "events_after": int((o[1:] - cut_pos).sum()),
            "test_users": int(len(users)),
            "cold_users": int((after & (cut_pos == o[:-1])).sum()),
            "cold_targets": int((seen[targets] == 0).sum()),
        }


Split = LeaveOneOut | TemporalSplit


def make_split(data: Dataset, config: Any = None) -> Split:
    """The split ``config`` (a ``SplitConfig``; None: leave-one-out) names, over ``data``."""
    if config is None or config.scheme == "loo":
        return LeaveOneOut(data)
    from seqrec.config import parse_duration

    horizon = None if config.horizon is None else parse_duration(config.horizon)
    return TemporalSplit.of(data, config.cutoff, horizon)


def _cut_time(times: np.ndarray, cutoff: str | float) -> int:
    text = str(cutoff).strip()
    try:
        q = float(text)
    except ValueError:
        q = None
    if q is not None:
        if not 0 < q < 1:
            raise SeqrecError(f"cutoff must be a quantile in (0, 1) or a date such as 2018-01-01, got {cutoff!r}")
        return int(np.quantile(times, q, method="higher"))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SeqrecError(f"cutoff must be a quantile in (0, 1) or a date such as 2018-01-01, got {cutoff!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _date(t: int) -> str:
    return datetime.fromtimestamp(int(t), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
