"""Recall and NDCG over the items a user takes after a time cut, against hand-computed values."""

import math

import polars as pl
import pytest
import torch

from seqrec.config import CleanConfig
from seqrec.data.dataset import Dataset
from seqrec.data.split import TemporalSplit
from seqrec.evaluation.horizon import evaluate_horizon


class Fixed:
    """Scores item i as i (so the ranking is n, n-1, ..., 1), whatever the history."""

    def __init__(self, n_items: int) -> None:
        self.n_items, self.max_len = n_items, 5

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return torch.arange(self.n_items + 1, dtype=torch.float32).repeat(len(histories), 1)


def test_set_metrics_by_hand() -> None:
    # items 1..6; user a saw 6 before the cut, then takes 5 and 2 (and 1 after the horizon);
    # user b saw 1, then takes 6 and 1 (1 already seen: left out of the set)
    rows = [
        ("a", 6, 0),
        ("a", 5, 10),
        ("a", 2, 11),
        ("a", 1, 40),
        ("b", 1, 1),
        ("b", 6, 12),
        ("b", 1, 13),
        ("c", 3, 2),
        ("c", 4, 3),
    ]
    frame = pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row")
    ds = Dataset.from_interactions(frame, config=CleanConfig(k_core=0))
    split = TemporalSplit(ds, cut=10, valid_cut=5, horizon=20)
    out = evaluate_horizon(Fixed(ds.n_items), split, ks=(1, 2))
    # a: ranking without seen 6: 5, 4, 3, 2, 1 -> top1 [5] hit; top2 [5, 4]: 1 hit of set {5, 2}
    # b: ranking without seen 1: 6, 5, ... -> set {6}: top1 hit
    assert out["horizon_users"] == 2 and out["horizon_items"] == 3
    assert out["Recall@1 (horizon)"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert out["Recall@2 (horizon)"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg_a2 = 1.0 / (1.0 + 1 / math.log2(3))
    assert out["NDCG@2 (horizon)"] == pytest.approx((ndcg_a2 + 1.0) / 2)
    assert out["NDCG@1 (horizon)"] == pytest.approx(1.0)
