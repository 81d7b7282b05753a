"""Recommendations for raw item ids, loaded once and answered fast.

``Recommender`` wraps any ``Scorer`` (SASRec or a baseline) and the ``Dataset`` it was trained on.
Raw ids go in and come out (``50`` and ``"50"`` find the same item); unknown ids are skipped and
reported; an empty or wholly unknown history gets the popularity ranking (training counts) with
``fallback=True``. Nothing here raises for an odd history: only unknown *users* and *items* asked
for by id raise ``UnknownIdError`` (a ``SeqrecError`` and a ``LookupError``; the service answers 404).

The hot path avoids per-call polars work: popularity is a tensor and the item facts are Python lists
indexed by internal id (``seqrec.serving.catalogue.Catalogue``, which also answers ``item``, ``search`` and
``similar_items``), so building a top-k answer costs O(k).

Backends: ``"torch"`` calls ``scorer.score`` under ``torch.inference_mode``; ``"onnx"`` runs the
graph written by ``seqrec.serving.onnx.export_onnx`` with onnxruntime (scores equal torch within 1e-4).

Indexes (``seqrec.serving.ann``): ``index="exact"`` scores every item; ``"hnsw"`` / ``"ivf"`` (a SASRec only, torch
backend) build a faiss inner-product index over the item rows when the recommender is made and rank from it
(``seqrec.serving.indexed``: over-fetched candidates, exact ranking where too few are left).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.data.dataset import PAD, Dataset
from seqrec.data.split import left_pad
from seqrec.errors import SeqrecError
from seqrec.serving.ann import INDEX_KINDS, IndexParams, build_index, check_kind
from seqrec.serving.catalogue import NEG_INF, AddedItems, Catalogue, Item, UnknownIdError
from seqrec.serving.explain import explain_items
from seqrec.serving.exports import export_items, model_facts
from seqrec.serving.filters import FilterIndex, FilterSpec, ShopRules
from seqrec.serving.growing import grown
from seqrec.serving.indexed import ann_include, ann_top
from seqrec.serving.onnx import onnx_session

__all__ = [
    "BACKENDS",
    "INDEX_KINDS",
    "SCORE_CHUNK",
    "AddedItems",
    "IndexParams",
    "Item",
    "RecommendResult",
    "Recommender",
    "UnknownIdError",
    "export_items",
]
BACKENDS = ("torch", "onnx")
log = logging.getLogger("seqrec.recommend")
SCORE_CHUNK = 256  # histories per scorer call in batch paths (bounds memory at chunk x (N+1) floats)


@dataclass(frozen=True, slots=True)
class RecommendResult:
    items: list[Item]
    unknown_items: list[Any]
    fallback: bool
    fewer_than_k: bool = False  # fewer items than asked for passed the filter, exclusions and availability
    because: list[list[dict[str, Any]]] | None = None  # per item with explain: the history items behind it


class Recommender(ShopRules):
    """Top-k recommendations over raw ids for one scorer and its training data set (with the shop rules of
    ``seqrec.serving.filters.ShopRules``: filters on item facts, availability)."""

    def __init__(
        self,
        scorer: Any,
        dataset: Dataset,
        name: str = "model",
        backend: str = "torch",
        *,
        config: dict | None = None,
        metrics: dict | None = None,
        onnx_path: str | os.PathLike | None = None,
        onnx_threads: int = 1,
        index: str = "exact",
        index_params: IndexParams | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise SeqrecError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if int(scorer.n_items) != dataset.n_items:
            raise SeqrecError(f"scorer has {scorer.n_items} items but the data set has {dataset.n_items}")
        check_kind(index, scorer)
        if index != "exact" and backend == "onnx":
            raise SeqrecError(
                f"index {index!r} ranks from the model's state, which the torch backend computes; the "
                f"onnx backend scores every item: use backend 'torch' (or 'auto') with an index"
            )
        self.scorer, self.dataset, self.name, self.backend = scorer, dataset, name, backend
        self.max_len = int(scorer.max_len)
        self.n_items = dataset.n_items
        if config is None and hasattr(getattr(scorer, "config", None), "to_dict"):
            config = scorer.config.to_dict()
        self.config, self.metrics = dict(config or {}), dict(metrics or {})
        self.catalogue = Catalogue(dataset, scorer)
        self.filters = FilterIndex(dataset.catalog, dataset.item_ids)  # per-field indexes for filter masks
        self.available = np.ones(self.n_items + 1, dtype=bool)  # False: never recommended (set_available)
        self.counts = self.catalogue.counts
        self._popularity = torch.from_numpy(self.counts.astype(np.float32))  # [N+1]
        self._session = None
        self._info: dict[str, Any] | None = None
        self._onnx_threads = onnx_threads
        if backend == "onnx":
            self._session = onnx_session(self.scorer, onnx_path, onnx_threads, owner=self)
        self.index_kind, self.index_params = index, index_params or IndexParams()
        self.index = build_index(index, scorer, self.index_params)  # None for "exact"
        if self.index is not None:
            log.info("%s index over %d items built in %.1f s", index, self.n_items, self.index.build_seconds)

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        backend: str = "auto",
        name: str | None = None,
        onnx_threads: int = 1,
        index: str = "exact",
        index_params: IndexParams | None = None,
    ) -> Recommender:
        """Load a model folder (``seqrec.models.folder``); the ONNX backend uses the folder's ``model.onnx`` when
        ``load_folder`` found it holds these weights (``ModelBundle.onnx``), else a private export.

        ``backend="auto"`` picks ONNX Runtime for neural scorers (about twice as fast per request
        as torch in ``benchmarks/serve_latency.py``) and torch for baselines or when export fails, or with
        an ``index`` other than ``"exact"`` (built from the item rows as the folder loads).
        """
        from seqrec.models.folder import load_folder

        bundle = load_folder(path)

        def build(chosen: str) -> Recommender:
            return cls(
                bundle.scorer,
                bundle.dataset,
                name=name or Path(path).resolve().name,
                backend=chosen,
                config=bundle.config,
                metrics=bundle.metrics,
                onnx_path=bundle.onnx,
                onnx_threads=onnx_threads,
                index=index,
                index_params=index_params,
            )

        if index != "exact" and backend == "auto":
            return build("torch")
        if backend != "auto":
            return build(backend)
        if not isinstance(bundle.scorer, torch.nn.Module):
            return build("torch")
        try:
            return build("onnx")
        except Exception as e:  # an exporter or runtime limitation: torch still answers correctly
            log.warning("ONNX backend unavailable (%s); using torch", e)
            return build("torch")

    # ------------------------------------------------------------------ scoring core
    def _score(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, L] left-padded internal ids -> float32 [B, N+1] scores that may be changed in place."""
        if self._session is not None:
            out = self._session.run(None, {"histories": batch.numpy()})[0]
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        out = self.scorer.score(batch)
        if out.dtype != torch.float32:
            out = out.float()
        if out._is_view() or not out.is_contiguous():  # e.g. a baseline's expanded count vector
            out = out.contiguous().clone()
        return out

    def _scores_for(self, seqs: Sequence[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        """Scores [B, N+1] for up to SCORE_CHUNK internal-id histories (one scorer call) and the
        rows without any known item, which get popularity instead."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        empty = lengths == 0
        rows = np.flatnonzero(~empty)
        if len(rows) == len(seqs):
            return self._score(self._batch(seqs, rows, lengths)), empty
        scores = self._popularity.expand(len(seqs), -1).clone()
        if len(rows):
            scores[torch.from_numpy(rows)] = self._score(self._batch(seqs, rows, lengths))
        return scores, empty

    def _batch(self, seqs: Sequence[np.ndarray], rows: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """Left-padded [len(rows), max_len] LongTensor of the most recent items of ``seqs[rows]``."""
        if len(rows) == 1:  # single history: skip the concatenation
            s = np.asarray(seqs[rows[0]][-self.max_len :], dtype=np.int64)
            batch = torch.zeros(1, self.max_len, dtype=torch.long)
            batch[0, self.max_len - len(s) :] = torch.from_numpy(s)
            return batch
        flat = np.concatenate([seqs[i] for i in rows])
        ends = np.cumsum(lengths[rows])
        return left_pad(flat, ends - lengths[rows], ends, self.max_len)

    def _top(
        self,
        scores: torch.Tensor,
        seqs: Sequence[np.ndarray],
        k: int,
        exclude_seen: bool,
        allowed: np.ndarray | None = None,
        banned: np.ndarray | None = None,
    ) -> list[list[Item]]:
        """Mask padding, seen, non-allowed and banned items in place, take the top k of every row."""
        scores[:, PAD] = NEG_INF
        if exclude_seen:
            lengths = [len(s) for s in seqs]
            if sum(lengths):
                rows = np.repeat(np.arange(len(seqs)), lengths)
                cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
                scores[torch.from_numpy(rows), torch.from_numpy(cols)] = NEG_INF
        if allowed is not None:
            scores.masked_fill_(torch.from_numpy(~allowed), NEG_INF)
        if banned is not None and len(banned):
            scores[:, torch.from_numpy(banned)] = NEG_INF
        k = min(int(k), self.n_items)
        values, index = torch.topk(scores, k, dim=1)
        ranked = self.catalogue.ranked  # masked candidates (and NaN) end each list
        return [ranked(v, i) for v, i in zip(values.tolist(), index.tolist())]

    def _lookup(self, raws: Sequence[Any] | None) -> np.ndarray | None:
        return None if raws is None else self.dataset.item_ids.lookup(raws)[0]

    # ------------------------------------------------------------------ public API
    def recommend(
        self,
        history: Sequence[Any],
        k: int = 10,
        exclude_seen: bool = True,
        include: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        filter: FilterSpec = None,
        explain: bool = False,
    ) -> RecommendResult:
        """Top-k raw ids after ``history`` (oldest first). Only the last ``max_len`` known items are read.

        ``include`` restricts the candidates to those raw ids, ``exclude`` removes raw ids; unknown ids
        in either are ignored. ``filter`` keeps the items whose catalogue facts pass it
        (``seqrec.serving.filters``; a ``FilterError`` when it does not fit the catalogue); unavailable items
        (``set_available``) are never returned; ``fewer_than_k`` says when fewer than ``k`` items were left.
        ``explain`` adds ``because``: per item the history items that raised its score most
        (``seqrec.serving.explain``). Unknown history ids are skipped and listed in ``unknown_items``.
        ``k < 1`` is a ``SeqrecError``.
        """
        _check_k(k)
        ids, unknown = self.dataset.item_ids.lookup(history)
        allowed = self.allowed(filter)
        if include is not None:
            wanted = self.dataset.item_ids.lookup(include)[0]
            if self.index is None or not len(ids):
                inc = np.zeros(self.n_items + 1, dtype=bool)
                inc[wanted] = True
                allowed = inc if allowed is None else inc & allowed
        with torch.inference_mode():
            if self.index is not None and len(ids):
                if include is None:
                    items = ann_top(self, [ids], k, exclude_seen, self._lookup(exclude), allowed)[0]
                else:
                    items = ann_include(self, ids, k, exclude_seen, wanted, self._lookup(exclude), allowed)
                fallback = False
            else:
                scores, empty = self._scores_for([ids])
                items = self._top(scores, [ids], k, exclude_seen, allowed, self._lookup(exclude))[0]
                fallback = bool(empty[0])
            because = explain_items(self, ids, items) if explain else None
        return RecommendResult(items, unknown, fallback, len(items) < k, because)

    def recommend_many(
        self,
        histories: Sequence[Sequence[Any]],
        k: int = 10,
        exclude_seen: bool = True,
        filter: FilterSpec = None,
        explain: bool = False,
    ) -> list[RecommendResult]:
        """``recommend`` for many histories, vectorised: one scorer call and one top-k per chunk of 256."""
        looked = [self.dataset.item_ids.lookup(h) for h in histories]
        return self._recommend_internal(
            [ids for ids, _ in looked], [u for _, u in looked], k, exclude_seen, filter, explain
        )

    def recommend_users(
        self,
        user_ids: Sequence[Any],
        k: int = 10,
        exclude_seen: bool = True,
        filter: FilterSpec = None,
        explain: bool = False,
    ) -> list[RecommendResult]:
        """Recommendations for users of the training data, from their stored sequences."""
        users = self.dataset.user_ids
        internal = [users.get(u) for u in user_ids]
        missing = [u for u, i in zip(user_ids, internal) if i is None]
        if missing:
            raise UnknownIdError(f"unknown user id(s): {missing[:10]}")
        seqs = [self.dataset.sequence(u).astype(np.int64) for u in internal if u is not None]
        return self._recommend_internal(seqs, [[] for _ in seqs], k, exclude_seen, filter, explain)

    def _recommend_internal(
        self,
        seqs: list[np.ndarray],
        unknown: list[list],
        k: int,
        exclude_seen: bool,
        filter: FilterSpec = None,
        explain: bool = False,
    ) -> list[RecommendResult]:
        _check_k(k)
        allowed = self.allowed(filter)
        out: list[RecommendResult] = []
        with torch.inference_mode():
            for lo in range(0, len(seqs), SCORE_CHUNK):  # score, mask and rank chunk by chunk: bounded memory
                part = seqs[lo : lo + SCORE_CHUNK]
                if self.index is not None:
                    tops = ann_top(self, part, k, exclude_seen, None, allowed)
                    fallback = [len(s) == 0 for s in part]
                else:
                    scores, empty = self._scores_for(part)
                    tops, fallback = self._top(scores, part, k, exclude_seen, allowed), empty.tolist()
                out += [
                    RecommendResult(t, u, f, len(t) < k, explain_items(self, s, t) if explain else None)
                    for t, u, f, s in zip(tops, unknown[lo : lo + SCORE_CHUNK], fallback, part)
                ]
        return out

    def score(self, history: Sequence[Any], items: Sequence[Any]) -> list[float]:
        """Scores of the raw ``items`` after ``history`` (popularity counts when no history id is known)."""
        cand, missing = self.dataset.item_ids.lookup(items)
        if missing:
            raise UnknownIdError(f"unknown item id(s): {missing[:10]}")
        ids, _ = self.dataset.item_ids.lookup(history)
        with torch.inference_mode():
            scores, _ = self._scores_for([ids])
            return scores[0, torch.from_numpy(cand)].tolist()

    def item(self, item_id: Any) -> dict[str, Any]:
        """Catalogue facts of one raw item id (``UnknownIdError`` when unknown)."""
        return self.catalogue.item(item_id)

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Items whose title (or raw id) contains ``query``, case-insensitive; prefix matches first,
        then by popularity. An empty query lists the most popular items."""
        return self.catalogue.search(query, limit)

    def similar_items(self, item: Any, k: int = 10) -> list[Item]:
        """Items most like ``item``: cosine of item embeddings, else adjacent-item co-occurrence counts."""
        return self.catalogue.similar(item, k)

    # ------------------------------------------------------------------ items without interactions
    def with_items(self, items: Sequence[Mapping[str, Any]]) -> tuple[Recommender, AddedItems]:
        """A new recommender whose model and catalogue also hold ``items`` (``[{"item_id": ..., "title"?,
        "genres"?, "attributes"?, "year"?, ...}]``, the catalogue's columns), items nobody has interacted
        with, for a SASRec with ``item_features``: each new id row is the mean of those of the trained items
        whose features overlap its own most (``SASRecModel.with_items``), and with ``feature_output`` its
        features take part in its score too; an item sharing no feature with a trained one is ranked by
        its features alone (``feature_output``) or not at all (score 0). Feature values the vocabulary does
        not know are left out and reported. This recommender is unchanged (a service swaps the new one in
        with one assignment)."""
        model, dataset, config, added = grown(self.scorer, self.dataset, self.config, items)
        new = Recommender(
            model,
            dataset,
            name=self.name,
            backend=self.backend,
            config=config,
            metrics=self.metrics,
            onnx_threads=self._onnx_threads,
            index=self.index_kind,
            index_params=self.index_params,
        )
        new.available[: len(self.available)] = self.available  # the old items keep theirs; new ones are available
        return new, added

    def add_items(self, items: Sequence[Mapping[str, Any]]) -> AddedItems:
        """``with_items``, taking the new model and catalogue into this recommender; not to be called while
        another thread scores with it."""
        rec, added = self.with_items(items)
        self.__dict__.update(rec.__dict__)
        return added

    def info(self) -> dict[str, Any]:
        """Facts about the model and its data for ``GET /model``; non-finite numbers become None."""
        if self._info is None:
            self._info = model_facts(self)
        return self._info


def _check_k(k: int) -> None:
    if int(k) < 1:
        raise SeqrecError(f"k must be >= 1 (how many items to recommend), got {k!r}")
