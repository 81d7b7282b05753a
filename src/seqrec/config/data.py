"""The data's configurations: how raw interactions are cleaned (``CleanConfig``) and split (``SplitConfig``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seqrec.config.base import _opt, parse_duration
from seqrec.errors import SeqrecError


@dataclass(frozen=True)
class CleanConfig:
    """How raw interactions are filtered before ids are mapped."""

    min_rating: float | None = _opt(None, "keep interactions rated at least this (implicit feedback)")
    dedupe: bool = _opt(False, "keep only the first of repeated (user, item) pairs")
    k_core: int | None = _opt(
        None, "min interactions per user and item (None: 5 for raw logs, 0 for the papers' already-filtered files)"
    )

    def __post_init__(self) -> None:
        if self.k_core is not None and self.k_core < 0:
            raise SeqrecError(f"k_core must be >= 0, got {self.k_core}")


@dataclass(frozen=True)
class SplitConfig:
    """How interactions are split into training, validation and test parts; values are checked at construction."""

    scheme: Literal["loo", "temporal"] = _opt(
        "loo",
        "loo: each user's last item is the test target, the one before it the validation target (the "
        "literature's protocol); temporal: one global cut in time, training only before it",
    )
    cutoff: str | None = _opt(
        None,
        "temporal: the test cut, a date (2018-01-01, 2018-01-01T12:00, UTC) or a quantile of the event "
        "times in (0, 1) (default 0.9); validation cuts as far before it as the test part reaches after it",
    )
    horizon: str | None = _opt(
        None,
        "temporal: also score, per test user, every item taken within this time after the cut (7d, 12h, "
        "30m, 3600s): recall and NDCG at k over that set",
    )

    def __post_init__(self) -> None:
        if self.scheme not in ("loo", "temporal"):
            raise SeqrecError(f"scheme must be 'loo' or 'temporal', got {self.scheme!r}")
        if self.scheme == "loo" and (self.cutoff is not None or self.horizon is not None):
            raise SeqrecError(
                "cutoff and horizon belong to the temporal scheme: add scheme='temporal' (--scheme temporal)"
            )
        if self.horizon is not None:
            parse_duration(self.horizon)
        if self.cutoff is not None and not isinstance(self.cutoff, str):
            object.__setattr__(self, "cutoff", str(self.cutoff))
