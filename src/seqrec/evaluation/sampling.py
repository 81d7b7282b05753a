"""Negatives for the sampled evaluation protocol: ``sample_negatives`` draws, per user, items the user
never interacted with, without replacement, uniformly or in proportion to training counts, from a
``numpy`` ``Generator`` (reproducible for a given seed, user subset and batch size). Vectorised:
candidates are drawn in bulk and rejected by a sorted-key membership test, round by round.
"""

from __future__ import annotations

import numpy as np

from seqrec.data.split import Segments
from seqrec.errors import SeqrecError

_MAX_ROUNDS = 30
_MAX_DRAW = 4096


def _member(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Elementwise ``query in sorted_keys`` via binary search."""
    if len(sorted_keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    return sorted_keys[idx] == query


def sample_negatives(
    exclude: Segments,
    n_items: int,
    n: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` distinct items per row of ``exclude``, never one of that row's items: int64 [B, n].

    Uniform over items 1..n_items, or proportional to ``weights`` (length n_items + 1; items of
    weight 0 are never drawn). Oversampled candidates are drawn in bulk and rejected with a sorted
    (row, item) key membership test; rows still short are redrawn (a loop over rounds, not items).
    The scheme is sequential sampling without replacement, as ``Generator.choice(replace=False)``.
    """
    n_rows, width = len(exclude), n_items + 1
    allowed = np.ones(width, dtype=bool) if weights is None else np.asarray(weights) > 0
    allowed[0] = False
    rows, items = exclude.flat()
    keys = np.unique(rows.astype(np.int64) * width + items)
    k_row, k_item = keys // width, keys % width
    blocked = allowed[k_item]
    avail = int(allowed.sum()) - np.bincount(k_row[blocked], minlength=n_rows)
    if n_rows and avail.min() < n:
        raise SeqrecError(
            f"sampled evaluation needs {n} negatives per user but some user has only {int(avail.min())} "
            f"eligible items (catalogue of {n_items}); lower n_negatives or use protocol='full'"
        )
    if weights is None:
        cdf = None
        accept = 1.0 - np.bincount(k_row, minlength=n_rows) / n_items
    else:
        w = np.where(allowed, np.asarray(weights, dtype=np.float64), 0.0)
        cdf = np.cumsum(w[1:])
        accept = 1.0 - np.bincount(k_row, weights=w[k_item], minlength=n_rows) / cdf[-1]

    def draw(count: int, size: int) -> np.ndarray:
        if cdf is None:
            return rng.integers(1, width, size=(count, size), dtype=np.int64)
        u = rng.random((count, size)) * cdf[-1]
        return np.minimum(np.searchsorted(cdf, u, side="right"), n_items - 1).astype(np.int64) + 1

    out = np.zeros((n_rows, n), dtype=np.int64)
    have = np.zeros(n_rows, dtype=np.int64)
    pending = np.arange(n_rows)
    for _ in range(_MAX_ROUNDS):
        if len(pending) == 0:
            return out
        need = n - have[pending]
        size = int(min(_MAX_DRAW, np.max(np.ceil(need / np.maximum(accept[pending], 1e-3) * 1.2)) + 8))
        combined = np.concatenate([out[pending], draw(len(pending), size)], axis=1)
        ok = np.concatenate([np.arange(n)[None, :] < have[pending][:, None], np.ones((len(pending), size), bool)], 1)
        ckeys = pending[:, None] * width + combined
        ok &= ~_member(keys, ckeys) & allowed[combined]
        # Drop repeats: stable sort per row, later copies of a key are duplicates.
        ckeys = np.where(ok, ckeys, -1 - np.arange(ckeys.size).reshape(ckeys.shape))
        order = np.argsort(ckeys, axis=1, kind="stable")
        s = np.take_along_axis(ckeys, order, axis=1)
        dup_sorted = np.zeros_like(ok)
        dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
        dup = np.empty_like(ok)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        ok &= ~dup
        cum = np.cumsum(ok, axis=1)
        take = ok & (cum <= n)
        r_idx, _ = np.nonzero(take)
        out[pending[r_idx], cum[take] - 1] = combined[take]
        have[pending] = np.minimum(cum[:, -1], n)
        pending = pending[have[pending] < n]
    for row in pending:  # pathological rows only (nearly every likely item already seen)
        mask = allowed.copy()
        mask[exclude.sequence(row)] = False
        mask[out[row, : have[row]]] = False
        pool = np.flatnonzero(mask)
        p = None if weights is None else w[pool] / w[pool].sum()
        out[row, have[row] :] = rng.choice(pool, n - have[row], replace=False, p=p)
    return out
