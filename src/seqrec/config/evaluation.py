"""What to evaluate and how (``EvalConfig``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from seqrec.config.base import _is_int, _opt, parse_bytes
from seqrec.errors import MAX_SEED, SeqrecError

SEEN_TARGET = ("miss", "drop", "keep")  # EvalConfig.seen_target's choices
TARGETS = ("all", "cold", "warm")  # EvalConfig.targets' choices


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; values are checked at construction."""

    split: Literal["valid", "test"] = _opt("test", "which held-out item to rank: the validation or the test one")
    protocol: Literal["full", "sampled"] = _opt("full", "full ranking over every item, or 1 target + sampled negatives")
    ks: tuple[int, ...] = _opt((1, 5, 10, 20), "cut-offs of HR@k and NDCG@k")
    n_negatives: int = _opt(100, "sampled protocol: negatives per user (paper: 100)")
    negatives: Literal["uniform", "popularity"] = _opt("uniform", "sampled protocol: how negatives are drawn")
    exclude_seen: bool = _opt(True, "remove the items a user already saw from the ranking (off: repeat consumption)")
    batch_size: int = _opt(1024, "users scored at a time, at most (fewer when memory_budget asks for it)")
    seed: int = _opt(0, "seed of the sampled protocol's negatives and of max_users' sample")
    max_users: int | None = _opt(None, "evaluate a seeded sample of this many users (None: all)")
    seen_target: Literal["miss", "drop", "keep"] = _opt(
        "miss",
        "full protocol, a target already in the user's history: miss (removed like every seen item, counts "
        "as a miss), drop (leave out users with a seen or cold target) or keep (always scored)",
    )
    targets: Literal["all", "cold", "warm"] = _opt(
        "all",
        "which users to evaluate by their target: all, cold (a target that never occurs in the training part, "
        "e.g. a new item) or warm (the others)",
    )
    memory_budget: str | int = _opt(
        "2GB",
        "memory evaluation may use: the scorer's own (a baseline's matrices, a model's weights) plus the "
        "scores of the users ranked at a time, whose number follows from it and the catalogue size "
        "(KB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024)",
    )

    def __post_init__(self) -> None:
        parse_bytes(self.memory_budget)
        if self.split not in ("valid", "test"):
            raise SeqrecError(f"split must be 'valid' or 'test', got {self.split!r}")
        if self.protocol not in ("full", "sampled"):
            raise SeqrecError(f"protocol must be 'full' or 'sampled', got {self.protocol!r}")
        if self.negatives not in ("uniform", "popularity"):
            raise SeqrecError(f"negatives must be 'uniform' or 'popularity', got {self.negatives!r}")
        ks = (self.ks,) if isinstance(self.ks, int) else self.ks
        try:
            ks_ok = len(ks) > 0 and all(_is_int(k) and k >= 1 for k in ks)
        except TypeError:
            ks_ok = False
        if not ks_ok:
            raise SeqrecError(f"ks must be a non-empty list of positive integers, got {self.ks!r}")
        object.__setattr__(self, "ks", tuple(sorted({int(k) for k in ks})))
        for name in ("n_negatives", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise SeqrecError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise SeqrecError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        if self.max_users is not None and (not _is_int(self.max_users) or self.max_users < 1):
            raise SeqrecError(f"max_users must be a positive integer or None, got {self.max_users!r}")
        if not isinstance(self.exclude_seen, (bool, np.bool_)):
            raise SeqrecError(f"exclude_seen must be true or false, got {self.exclude_seen!r}")
        if not isinstance(self.seen_target, str) or self.seen_target not in SEEN_TARGET:
            raise SeqrecError(f"seen_target must be 'miss', 'drop' or 'keep', got {self.seen_target!r}")
        if not isinstance(self.targets, str) or self.targets not in TARGETS:
            raise SeqrecError(f"targets must be 'all', 'cold' or 'warm', got {self.targets!r}")

    @property
    def budget_bytes(self) -> int:
        """``memory_budget`` in bytes."""
        return parse_bytes(self.memory_budget)
