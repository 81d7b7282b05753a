"""Set metrics over a horizon after a time cut: for each test user of a ``TemporalSplit``, every item they took
in ``[cut, cut + horizon)`` (items already in their history left out, as the ranking leaves them out) against
their top k, ranked from the whole history before the cut.

``Recall@k`` = hits in the top k / the size of the set; ``NDCG@k`` = the hits' discounted gain over the best
possible for a set that size (min(set, k) hits at the top). Users whose set is empty are not counted.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from seqrec.data.dataset import PAD
from seqrec.data.split import TemporalSplit
from seqrec.evaluation.evaluator import Scorer


def evaluate_horizon(
    scorer: Scorer, split: TemporalSplit, ks: tuple[int, ...] = (10,), batch_size: int = 512, exclude_seen: bool = True
) -> dict[str, float]:
    """``{"horizon_users", "horizon_items", "Recall@k (horizon)", "NDCG@k (horizon)"}`` (see the module)."""
    users, history, _ = split.inputs("test")
    sets = split.horizon_targets(users)
    n_items, kmax = split.data.n_items, max(ks)
    sums = {f"{m}@{k}": 0.0 for m in ("Recall", "NDCG") for k in ks}
    counted, items = 0, 0
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    for lo in range(0, len(users), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(users)))
        with torch.no_grad():
            scores = scorer.score(history.left_padded(scorer.max_len, rows)).float().clone()
        scores[:, PAD] = -math.inf
        seen_r, seen_i = history.subset(rows).flat()
        if exclude_seen and len(seen_r):
            scores[torch.from_numpy(seen_r), torch.from_numpy(seen_i.astype(np.int64))] = -math.inf
        wanted = torch.zeros((len(rows), n_items + 1), dtype=torch.bool)
        set_r, set_i = sets.subset(rows).flat()
        wanted[torch.from_numpy(set_r), torch.from_numpy(set_i.astype(np.int64))] = True
        if exclude_seen and len(seen_r):
            wanted[torch.from_numpy(seen_r), torch.from_numpy(seen_i.astype(np.int64))] = False
        wanted[:, PAD] = False
        size = wanted.sum(1).numpy()
        top = torch.topk(scores, min(kmax, n_items), dim=1).indices
        hits = wanted.gather(1, top).numpy().astype(np.float64)
        keep = size > 0
        counted += int(keep.sum())
        items += int(size.sum())
        for k in ks:
            h = hits[keep, :k]
            sums[f"Recall@{k}"] += float((h.sum(1) / size[keep]).sum())
            gain = (h * discount[: h.shape[1]]).sum(1)
            sums[f"NDCG@{k}"] += float((gain / ideal[np.minimum(size[keep], k)]).sum())
    out: dict[str, float] = {"horizon_users": counted, "horizon_items": items}
    out.update({f"{name} (horizon)": value / max(counted, 1) for name, value in sums.items()})
    return out
