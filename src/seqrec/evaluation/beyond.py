"""Beyond accuracy: what the top-k lists of a full-ranking evaluation recommend, gathered as they are ranked.

For each k, from every evaluated user's top k (items the user has seen left out, as ranked):

* ``Coverage@k``: the share of the catalogue's items recommended to anyone;
* ``Novelty@k``: the mean self-information ``-log2 p(i)`` of the recommended items, ``p(i)`` the share of
  training users who took item i (an item nobody took counts as taken by one): higher is less obvious;
* ``Popularity@k``: the mean ``p(i)`` of the recommended items (the share of users who took them);
* ``Diversity@k``: the mean over lists of the mean pairwise distance ``1 - Jaccard`` between the items'
  catalogue features (genres, else attributes); left out when the catalogue has neither.

Counting costs one ``bincount`` per list block; diversity one small batched product of feature rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import torch

MAX_FEATURE_CELLS = 50_000_000  # items x feature values held for diversity (200 MB of float32); beyond it none


def feature_rows(catalog: pl.DataFrame, n_items: int) -> torch.Tensor | None:
    """Multi-hot float rows [N+1, F] of the items' genres (else attributes); None without any."""
    for column in ("genres", "attributes"):
        if column not in catalog.columns:
            continue
        lists = catalog.sort("item")[column]
        flat = lists.explode().drop_nulls()
        if flat.len() == 0:
            continue
        values = flat.unique().sort()
        if (n_items + 1) * len(values) > MAX_FEATURE_CELLS:
            return None
        code = {v: j for j, v in enumerate(values.to_list())}
        rows = torch.zeros(n_items + 1, len(code))
        items = catalog.sort("item")["item"].to_numpy()
        for item, entries in zip(items, lists.to_list()):
            for v in entries or ():
                rows[int(item), code[v]] = 1.0
        return rows
    return None


class ListStats:
    """Accumulates the top-k lists of an evaluation (see the module's docstring)."""

    def __init__(
        self,
        ks: tuple[int, ...],
        n_items: int,
        device: torch.device | str = "cpu",
        takers: np.ndarray | None = None,
        users: int = 1,
        features: torch.Tensor | None = None,
    ) -> None:
        self.ks, self.n_items = ks, n_items
        self.counts = {k: torch.zeros(n_items + 1, dtype=torch.int64, device=device) for k in ks}
        self.takers, self.users = takers, max(int(users), 1)
        self.features = features
        self.pairs: dict[int, list[float]] = {k: [] for k in ks}  # per-list mean distances, summed exactly at the end

    def update(self, idx: torch.Tensor, ok: torch.Tensor) -> None:
        """Lists ``idx`` [B, >= max k] of internal ids, best first; ``ok`` marks real entries (not -inf)."""
        for k in self.ks:
            top, real = idx[:, :k], ok[:, :k]
            self.counts[k] += torch.bincount(top[real], minlength=self.n_items + 1)
            if self.features is not None and top.shape[1] > 1:
                mask = real.cpu().double()
                rows = self.features[top.cpu()].double()  # [B, k, F]
                inter = rows @ rows.transpose(1, 2)
                size = rows.sum(2)
                union = size[:, :, None] + size[:, None, :] - inter
                dist = torch.where(union > 0, 1 - inter / union.clamp_min(1e-9), torch.zeros_like(union))
                dist = dist * mask[:, :, None] * mask[:, None, :]  # pairs of real entries only
                n = mask.sum(1).double()
                pairs = n * (n - 1)
                full = pairs > 0
                self.pairs[k].extend((dist.sum((1, 2))[full] / pairs[full]).tolist())

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        p = None
        if self.takers is not None:
            p = np.maximum(self.takers.astype(np.float64), 1.0) / self.users
        for k in self.ks:
            c = self.counts[k].cpu().numpy().astype(np.float64)
            c[0] = 0.0
            out[f"Coverage@{k}"] = float((c[1:] > 0).sum()) / max(self.n_items, 1)
            if p is not None and c.sum() > 0:
                out[f"Novelty@{k}"] = float((c * -np.log2(p)).sum() / c.sum())
                out[f"Popularity@{k}"] = float((c * p).sum() / c.sum())
            if self.features is not None and self.pairs[k]:  # fsum: the same whatever the blocks' sizes
                out[f"Diversity@{k}"] = math.fsum(self.pairs[k]) / len(self.pairs[k])
        return out


def takers_of(train: Any, n_items: int) -> tuple[np.ndarray, int]:
    """(per item the number of training users who took it, the number of training users with any item)."""
    rows, items = train.flat()
    pairs = np.unique(rows.astype(np.int64) * (n_items + 1) + items)
    return np.bincount(pairs % (n_items + 1), minlength=n_items + 1), int((train.lengths > 0).sum())
