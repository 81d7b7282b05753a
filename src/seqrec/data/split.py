"""Leave-one-out split (Kang & McAuley 2018), as views over the data set's arrays.

Per user with at least 3 interactions: the last item is the test target, the second last the
validation target, everything before is training. Users with fewer than 3 interactions stay
wholly in training. The validation input is the training part; the test input is the training
part plus the validation item. Nothing is copied: every part is a ``Segments`` view
(start/end offsets into ``Dataset.items``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

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
