"""Approximate top-k for huge catalogues: an inner-product index (faiss) over a SASRec's item vectors.

A SASRec's score of item ``i`` after a history is ``state @ item_embeddings()[i]``, the history's last hidden
state against the item's output-side row (the fused id and feature row with ``feature_output``). Exact
ranking computes all N of them; an index finds the largest inner products while visiting a small part:

* ``"exact"``: no index, every item scored (``seqrec.serving.recommender``'s own path);
* ``"hnsw"``: ``faiss.IndexHNSWFlat`` (a graph; no training, the best recall per visited item);
* ``"ivf"``: ``faiss.IndexIVFFlat`` (k-means lists, trained on a sample; quicker to build, less memory).

``ItemIndex`` is built from the same rows the exact scorer multiplies with (``item_vectors``) when a
``Recommender`` is made, in the calling process: at 1 M items of width 64 HNSW took 68 s and 504 MB, IVF
13 s and 260 MB, on two quiet cores (``benchmarks/scale_ann.py``). Index id ``j`` is internal item ``j + 1``, so padding (id 0) is
never in the index; a slot the index could not fill (-1) comes back as 0 and is dropped by the caller.

``IndexParams`` is the one home of the index settings; its defaults give recall@10 >= 0.95 against exact
ranking in that benchmark. Only the index kind is a command-line flag. Search uses as many OpenMP threads as
torch's intra-op setting in the calling thread (``seqrec serve`` sets 1 per worker); a build uses every core.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from seqrec.errors import SeqrecError

INDEX_KINDS = ("exact", "hnsw", "ivf")


@dataclass(frozen=True, slots=True)
class IndexParams:
    """Settings of the approximate indexes (faiss's names in brackets)."""

    hnsw_m: int = 32  # graph neighbours per item (M): more is better recall, more memory and build time
    ef_construction: int = 80  # candidates kept while an item is inserted (efConstruction); 40: recall 0.90 at 1 M
    ef_search: int = 128  # candidates kept while searching (efSearch); at least the number asked for
    nlist: int = 0  # IVF lists; 0: 4 sqrt(N), at most N / 40, so each list has training points
    nprobe: int = 0  # IVF lists visited per query; 0: nlist / 32 (at least 1; recall@10 0.98 at 1 M)
    train_per_list: int = 40  # k-means training points per IVF list (a random sample of the items)
    margin: int = 32  # extra candidates asked for beyond k and the items a request excludes
    seed: int = 0  # the k-means sample and initialisation

    def __post_init__(self) -> None:
        for f in fields(self):
            value, least = getattr(self, f.name), 0 if f.name in ("nlist", "nprobe", "margin", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SeqrecError(f"index setting {f.name} must be an integer >= {least}, got {value!r}")

    def lists(self, n: int) -> tuple[int, int]:
        """(nlist, nprobe) for ``n`` items."""
        nlist = self.nlist or int(round(4 * math.sqrt(n)))
        nlist = max(1, min(nlist, n // 40 if self.nlist == 0 else n))
        return nlist, max(1, min(nlist, self.nprobe or nlist // 32))


def check_kind(kind: str, scorer: Any) -> None:
    """Refuse an unknown index kind, or an approximate one for a scorer whose scores are not a state's inner
    product with item rows (the baselines, any scorer but ``SASRecModel``)."""
    if kind not in INDEX_KINDS:
        raise SeqrecError(f"index must be one of {INDEX_KINDS}, got {kind!r}")
    if kind == "exact":
        return
    from seqrec.models.sasrec import SASRecModel

    if not isinstance(scorer, SASRecModel):
        raise SeqrecError(
            f"index {kind!r} needs a SASRec model (its scores are inner products of a history's "
            f"state with item embeddings, which the index searches); {type(scorer).__name__} ranks "
            f"otherwise: use index 'exact'"
        )


def item_vectors(scorer: Any) -> np.ndarray:
    """float32 [N, d]: the output-side rows of items 1..N, those the exact scorer multiplies with."""
    with torch.inference_mode():
        was_training = scorer.training
        scorer.eval()
        try:
            rows = scorer.item_embeddings().detach()[1:]
        finally:
            scorer.train(was_training)
        return np.ascontiguousarray(rows.float().cpu().numpy())


def query_vectors(scorer: Any, batch: torch.Tensor) -> np.ndarray:
    """float32 [B, d]: the state after each left-padded history of ``batch`` [B, L] (``SASRecModel.score``'s
    left operand)."""
    weight = scorer.item_emb.weight
    h = batch[:, -scorer.max_len :].to(weight.device, torch.long)
    was_training = scorer.training
    if was_training:
        scorer.eval()
    try:
        with torch.no_grad():
            last = scorer.forward(h)[:, -1, :]
    finally:
        if was_training:
            scorer.train()
    return np.ascontiguousarray(last.float().cpu().numpy())


class ItemIndex:
    """An inner-product index over ``vectors`` [N, d] (row j = internal item j + 1)."""

    def __init__(self, kind: str, vectors: np.ndarray, params: IndexParams | None = None) -> None:
        # faiss's SWIG stubs miss most of its API (SearchParametersHNSW, IndexIVF.cp, ...): untyped here
        faiss: Any = importlib.import_module("faiss")

        if kind not in ("hnsw", "ivf"):
            raise SeqrecError(f"an item index is 'hnsw' or 'ivf', got {kind!r}")
        self.kind, self.params = kind, params or IndexParams()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.n, self.dim = vectors.shape
        if self.n < 1:
            raise SeqrecError("an item index needs at least one item")
        p, start = self.params, time.perf_counter()
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(max(1, os.cpu_count() or 1))
        try:
            if kind == "hnsw":
                index = faiss.IndexHNSWFlat(self.dim, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = p.ef_construction
                index.add(vectors)
                self._search_params = faiss.SearchParametersHNSW(efSearch=p.ef_search)
            else:
                nlist, nprobe = p.lists(self.n)
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
                index.cp.seed = p.seed
                index.cp.min_points_per_centroid = 1  # the sample is sized below; no warning about it
                sample = min(self.n, nlist * p.train_per_list)
                rows = np.random.default_rng(p.seed).choice(self.n, sample, replace=False) if sample < self.n else None
                index.train(vectors if rows is None else vectors[np.sort(rows)])
                index.add(vectors)
                index.make_direct_map()  # for rows()
                self._search_params = faiss.SearchParametersIVF(nprobe=nprobe)
        finally:
            faiss.omp_set_num_threads(before)
        self._faiss, self._index = faiss, index
        self.build_seconds = time.perf_counter() - start

    @property
    def nbytes(self) -> int:
        """Bytes the index holds: the vectors, and the graph links (HNSW) or the list ids and centroids (IVF)."""
        flat = self.n * self.dim * 4
        if self.kind == "hnsw":
            hnsw = self._index.hnsw
            return flat + 4 * hnsw.neighbors.size() + 8 * hnsw.offsets.size() + 4 * hnsw.levels.size()
        return flat + 16 * self.n + 4 * self._index.nlist * self.dim  # ids in the lists and the direct map

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 [len(ids), d]: the stored vectors of internal items ``ids`` (1..N)."""
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64) - 1)

    def search(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``fetch`` largest inner products of each query [B, d]: (scores float32 [B, fetch], internal ids
        int64 [B, fetch], best first; id 0 where the index found fewer)."""
        fetch = max(1, min(int(fetch), self.n))
        self._faiss.omp_set_num_threads(torch.get_num_threads())  # this thread's OpenMP team, as torch's
        params = self._search_params
        if self.kind == "hnsw" and fetch > self.params.ef_search:  # the graph search keeps ef candidates
            params = self._faiss.SearchParametersHNSW(efSearch=fetch)
        scores, labels = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch, params=params)
        return scores, labels + 1  # -1 (none) becomes PAD


def build_index(kind: str, scorer: Any, params: IndexParams | None = None) -> ItemIndex | None:
    """The index of ``kind`` over ``scorer``'s item rows (None for ``"exact"``), checked by ``check_kind``."""
    check_kind(kind, scorer)
    return None if kind == "exact" else ItemIndex(kind, item_vectors(scorer), params)


MAX_FETCH = 4096  # candidates one filtered search asks for at most; beyond, the allowed items are scored exactly
OVERFETCH = 1.25  # slack over the expected share of candidates that pass a filter


def fetch_size(base: int, n: int, n_allowed: int) -> int | None:
    """Candidates to ask the index for so that about ``base`` of them pass a filter that lets ``n_allowed`` of
    ``n`` items through; None when that is so many (over ``MAX_FETCH``, or all the allowed items) that scoring
    the allowed items exactly is cheaper."""
    if n_allowed >= n:
        return base
    fetch = math.ceil(base * n / max(1, n_allowed) * OVERFETCH)
    return None if fetch > MAX_FETCH or fetch >= n_allowed else fetch


def subset_top(
    index: ItemIndex, queries: np.ndarray, cand: np.ndarray, ban: list[np.ndarray], k: int
) -> list[tuple[list[float], list[int]]]:
    """Exact top ``k`` of the (sorted) internal ids ``cand`` for each query [B, d], scored with the index's rows,
    without the ids in ``ban[j]`` for query j: (scores, ids) per query, a dropped id's score -inf."""
    if not len(cand):
        return [([], []) for _ in range(len(queries))]
    scores = torch.from_numpy(np.ascontiguousarray(queries @ index.rows(cand).T, dtype=np.float32))
    for j, b in enumerate(ban):
        pos = np.minimum(np.searchsorted(cand, b), len(cand) - 1)
        hit = pos[cand[pos] == b]
        scores[j, torch.from_numpy(hit)] = float("-inf")
    values, top = torch.topk(scores, min(int(k), len(cand)), dim=1)
    return [(v, cand[t].tolist()) for v, t in zip(values.tolist(), top.numpy())]
