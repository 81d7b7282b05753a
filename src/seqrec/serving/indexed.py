"""Ranking through a faiss item index (``seqrec.serving.ann``) for the ``Recommender``: over-fetched candidates
with the excluded and filtered ones dropped, exact ranking where too few are left; ``include`` lists scored
exactly from the index's rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqrec.data.dataset import PAD
from seqrec.serving.ann import fetch_size, query_vectors, subset_top
from seqrec.serving.catalogue import Item


def ann_top(
    rec: Any,
    seqs: Sequence[np.ndarray],
    k: int,
    exclude_seen: bool,
    banned: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> list[list[Item]]:
    """``Recommender._top`` through the item index: each history with a known item asks it for ``k`` + its excluded
    items + ``margin`` candidates (over-fetched by the share of items ``allowed`` lets through); the excluded
    (and unfilled) ones are dropped; a history left with fewer than it may get, and an empty history
    (popularity), is ranked exactly. When so few items are allowed that over-fetching would ask for most
    of them, the allowed items are scored exactly from the index's rows instead."""
    k = min(int(k), rec.n_items)
    banned = np.zeros(0, np.int64) if banned is None else np.unique(np.asarray(banned, dtype=np.int64))
    out: list[list[Item] | None] = [None] * len(seqs)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    rows = np.flatnonzero(lengths > 0)
    assert rec.index is not None
    n_ok = rec.n_items if allowed is None else int(allowed.sum())
    if len(rows):
        ban = [np.union1d(np.asarray(seqs[int(r)], dtype=np.int64), banned) if exclude_seen else banned for r in rows]
        fetch = fetch_size(k + max(len(b) for b in ban) + rec.index_params.margin, rec.n_items, n_ok)
        queries = query_vectors(rec.scorer, rec._batch(seqs, rows, lengths))
        if fetch is None:  # few items allowed: score them all from the index's rows
            assert allowed is not None
            for j, (values, index) in enumerate(subset_top(rec.index, queries, np.flatnonzero(allowed), ban, k)):
                out[rows[j]] = rec.catalogue.ranked(values, index)
        else:
            scores, ids = rec.index.search(queries, fetch)
            n1 = rec.n_items + 1  # (row, id) pairs as one code each, to drop the excluded ones at once
            codes = np.concatenate([j * n1 + b for j, b in enumerate(ban)])
            keep = (ids > PAD) & ~np.isin(np.arange(len(rows))[:, None] * n1 + ids, codes)
            if allowed is not None:
                keep &= allowed[ids]
            for j, r in enumerate(rows):
                sel = np.flatnonzero(keep[j])[:k]
                may = n_ok - (len(ban[j]) if allowed is None else int(allowed[ban[j]].sum()))
                if len(sel) >= min(k, may):
                    out[r] = rec.catalogue.ranked(scores[j, sel].tolist(), ids[j, sel].tolist())
    rest = [i for i, o in enumerate(out) if o is None]
    if rest:
        part = [seqs[i] for i in rest]
        for i, items in zip(rest, rec._top(rec._scores_for(part)[0], part, k, exclude_seen, allowed, banned)):
            out[i] = items
    return out  # type: ignore[return-value]


def ann_include(
    rec: Any,
    ids: np.ndarray,
    k: int,
    exclude_seen: bool,
    include: np.ndarray,
    banned: np.ndarray | None,
    allowed: np.ndarray | None = None,
) -> list[Item]:
    """The top ``k`` of the ``include``d items, scored exactly with the index's rows."""
    drop = np.asarray(ids if exclude_seen else [], dtype=np.int64)
    if banned is not None:
        drop = np.union1d(drop, banned)
    cand = np.setdiff1d(np.asarray(include, dtype=np.int64), drop)
    cand = cand[cand > PAD]
    if allowed is not None:
        cand = cand[allowed[cand]]
    if not len(cand):
        return []
    query = query_vectors(rec.scorer, rec._batch([ids], np.zeros(1, np.int64), np.array([len(ids)])))[0]
    assert rec.index is not None
    scores = rec.index.rows(cand) @ query
    order = np.argsort(-scores, kind="stable")[: int(k)]
    return rec.catalogue.ranked(scores[order].tolist(), cand[order].tolist())
