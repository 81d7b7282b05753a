"""The catalogue side of recommendations: the ``Item`` a ranking returns, item facts, search and
similar items.

``Item`` is the one definition of a recommended item's fields: ``seqrec.serving.schemas.ItemOut`` and the
service's JSON answers (``seqrec.serving.http``) are derived from its dataclass fields.

``Catalogue`` precomputes what answers need per internal id (raw ids, titles, genres, years, training
counts) as Python lists, so turning a top-k into ``Item``s costs O(k) and no polars work. An item's
``features`` are its catalogue facts that can be features (``seqrec.models.features``: every catalogue column
but ``item``, ``raw_id`` and ``title``, e.g. ``{"genres": [...], "year": 1994}``; missing values left
out), built on first use per item; ``interactions`` is its count in the training data, 0 for an item
nobody has interacted with yet (added with ``add_to_catalogue``, ranked by its features alone).

``add_to_catalogue`` extends a data set with items nobody has interacted with yet (their facts and
feature ids), for ``Recommender.add_items``.

``Catalogue.similar`` uses the cosine similarity of item embeddings when the scorer has
``item_embeddings()`` (SASRec). Scorers without embeddings (the baselines) fall back to counts of
items that are adjacent in some training sequence (either order), kept as a ``scipy.sparse`` CSR
matrix; only items that co-occur at least once are returned, so the list may hold fewer than k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from seqrec.data.columns import id_problem
from seqrec.data.dataset import PAD, Dataset, IdMap, id_key
from seqrec.errors import SeqrecError
from seqrec.models.features import RESERVED, FeatureVocab, encode_items

NEG_INF = float("-inf")


class UnknownIdError(SeqrecError, LookupError):
    """A user or item asked for by id is not in the training data (the service answers 404)."""


@dataclass(slots=True)
class Item:
    """One item of a ranking: its place (from 1), raw id, score and catalogue facts.

    ``features``: the item's catalogue fields that can be features (``{"genres": [...], "year": 1994}``;
    missing values left out). ``interactions``: how often it occurs in the training data; 0 for an item
    nobody has interacted with yet, which a model ranks by its features alone."""

    rank: int
    item_id: int | str
    score: float
    title: str | None
    genres: list[str]
    features: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'the item\'s catalogue fields that can be features, e.g. {"genres": [...], "year": 1994}'},
    )
    interactions: int = field(
        default=0,
        metadata={
            "help": "interactions in the training data; 0: nobody has interacted with it yet (ranked by its features)"
        },
    )


class Catalogue:
    """Facts of every item of ``dataset`` indexed by internal id, and the lookups built on them:
    ``Item``s of a ranking, one item's facts, search, similar items (``scorer``'s embeddings if any)."""

    def __init__(self, dataset: Dataset, scorer: Any = None) -> None:
        self.dataset, self.scorer = dataset, scorer
        self.n_items = dataset.n_items
        counts = np.bincount(dataset.items, minlength=self.n_items + 1).astype(np.int64)
        counts[PAD] = 0
        self.counts = counts  # training interactions per internal id
        cat = dataset.catalog.sort("item")
        self.raw: list[Any] = [None, *dataset.item_ids.raw.tolist()]
        self.titles: list[str | None] = [None, *cat["title"].to_list()]
        self.genres: list[list[str]] = [[], *[list(g or []) for g in cat["genres"].to_list()]]
        self.years: list[int | None] = [None, *cat["year"].to_list()]
        self.interactions: list[int] = counts.tolist()
        self._fields = [(c, cat[c].to_list()) for c in cat.columns if c not in RESERVED]
        self._features: dict[int, dict[str, Any]] = {}
        self._search = pl.DataFrame(
            {
                "item": np.arange(1, self.n_items + 1, dtype=np.int64),
                "title": cat["title"].fill_null("").str.to_lowercase(),
                "raw": pl.Series([str(r) for r in self.raw[1:]], dtype=pl.String).str.to_lowercase(),
                "pop": counts[1:],
            }
        )
        self._unit_emb: torch.Tensor | None = None
        self._cooc: Any = None

    def ranked(self, values: list[float], index: list[int]) -> list[Item]:
        """``Item``s for scores ``values`` of internal ids ``index`` (best first); a masked (-inf) or NaN
        score ends the list."""
        raw, titles, genres, counts, features = self.raw, self.titles, self.genres, self.interactions, self._features
        out = []
        for rank, (v, i) in enumerate(zip(values, index), start=1):
            if v == NEG_INF or v != v:
                break
            feats = features.get(i)
            if feats is None:
                feats = self.features(i)
            out.append(Item(rank, raw[i], v, titles[i], genres[i], feats, counts[i]))
        return out

    def features(self, i: int) -> dict[str, Any]:
        """The feature fields of internal id ``i`` (catalogue columns but item, raw_id and title) that have a
        value, as JSON values: lists of text, numbers, text, booleans; cached per item."""
        feats = self._features.get(i)
        if feats is None:
            feats = {}
            if i != PAD:
                for name, column in self._fields:
                    value = _json_value(column[i - 1])
                    if value is not None and value != []:
                        feats[name] = value
            self._features[i] = feats
        return feats

    def internal(self, item_id: Any) -> int:
        """The internal id of a raw item id; ``UnknownIdError`` when it is not in the catalogue."""
        i = self.dataset.item_ids.get(item_id)
        if i is None:
            raise UnknownIdError(f"unknown item id: {item_id!r}")
        return i

    def item(self, item_id: Any) -> dict[str, Any]:
        """Catalogue facts of one raw item id."""
        return self.facts(self.internal(item_id))

    def facts(self, i: int) -> dict[str, Any]:
        """Catalogue facts of internal id ``i``: raw id, title, genres, year, training popularity."""
        return {
            "item_id": self.raw[i],
            "title": self.titles[i],
            "genres": self.genres[i],
            "year": self.years[i],
            "popularity": int(self.counts[i]),
        }

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Items whose title (or raw id) contains ``query``, case-insensitive; prefix matches first,
        then by popularity. An empty query lists the most popular items."""
        q = str(query).strip().lower()
        frame = self._search
        if q:
            frame = frame.filter(
                pl.col("title").str.contains(q, literal=True) | pl.col("raw").str.contains(q, literal=True)
            )
        frame = (
            frame.with_columns((pl.col("title").str.starts_with(q) | (pl.col("raw") == q)).alias("prefix"))
            .sort(["prefix", "pop", "item"], descending=[True, True, False])
            .head(max(0, int(limit)))
        )
        return [self.facts(i) for i in frame["item"].to_list()]

    def similar(self, item_id: Any, k: int = 10) -> list[Item]:
        """Items most like ``item_id``: cosine of item embeddings, else adjacent-item co-occurrence counts."""
        i = self.internal(item_id)
        k = max(0, min(int(k), self.n_items - 1))
        if hasattr(self.scorer, "item_embeddings"):
            with torch.inference_mode():
                if self._unit_emb is None:
                    emb = self.scorer.item_embeddings().detach().float().cpu()
                    self._unit_emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
                sims = self._unit_emb @ self._unit_emb[i]  # [N+1]
                sims[PAD] = NEG_INF
                sims[i] = NEG_INF
                values, index = torch.topk(sims, k)
                return self.ranked(values.tolist(), index.tolist())
        row = self.cooccurrence()[i]
        cols, counts = row.indices, row.data
        order = np.lexsort((-self.counts[cols], -counts))[:k]  # by count, then popularity
        return self.ranked(counts[order].astype(float).tolist(), cols[order].tolist())

    def cooccurrence(self) -> Any:
        """[N+1, N+1] ``scipy.sparse`` CSR counts of items adjacent in a training sequence (either order),
        built on first use."""
        if self._cooc is None:
            from scipy import sparse

            items = self.dataset.items.astype(np.int64)
            starts = np.zeros(len(items), dtype=bool)
            starts[self.dataset.offsets[:-1][self.dataset.lengths > 0]] = True
            same = ~starts[1:]  # position p+1 continues the sequence of position p
            a, b = items[:-1][same], items[1:][same]
            keep = a != b
            a, b = a[keep], b[keep]
            n = self.n_items + 1
            m = sparse.coo_matrix((np.ones(2 * len(a), dtype=np.int64), (np.r_[a, b], np.r_[b, a])), shape=(n, n))
            self._cooc = m.tocsr()
            self._cooc.sum_duplicates()
        return self._cooc


def _json_value(value: Any) -> Any:
    """A catalogue value as JSON: lists of text (``None`` left out), finite numbers, text, booleans;
    missing and non-finite values are ``None``; anything else its text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else str(v) for v in value if v is not None]
    return str(value)


# ----------------------------------------------------------------------------- items added without interactions
@dataclass
class AddedItems:
    """What ``Recommender.add_items`` did: the raw ids added (in order), the feature values the model's
    vocabulary does not know (left out, per field) and the added items without any known feature."""

    items: list[Any]
    unknown_values: dict[str, list[str]] = field(default_factory=dict)
    without_features: list[Any] = field(default_factory=list)


def _new_raw_ids(dataset: Dataset, records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The raw ids of ``records`` (``item_id``), checked: present, distinct and new to ``dataset``."""
    raws = []
    seen: set[str] = set()
    for n, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise SeqrecError(
                f"items[{n}]: expected an object with item_id and the item's facts, got {type(r).__name__}"
            )
        raw = r.get("item_id")
        problem = "it is missing" if raw is None else id_problem(raw)  # the rule of events (seqrec.data.columns)
        if problem is not None:
            shown = raw if not isinstance(raw, str) or len(raw) <= 60 else raw[:60] + "..."
            raise SeqrecError(f"items[{n}]: item_id {shown!r}: {problem}")
        if isinstance(raw, np.integer):
            raw = int(raw)
        key = id_key(raw)
        if key in seen:
            raise SeqrecError(f"items[{n}]: item {raw!r} is listed twice")
        if dataset.item_ids.get(raw) is not None:
            raise SeqrecError(f"items[{n}]: item {raw!r} is already in the catalogue")
        seen.add(key)
        raws.append(raw)
    if not raws:
        raise SeqrecError("no items to add")
    return raws


def add_to_catalogue(
    dataset: Dataset, records: Sequence[Mapping[str, Any]], vocab: FeatureVocab
) -> tuple[Dataset, np.ndarray, AddedItems]:
    """``dataset`` with ``records`` (``{"item_id": ..., "title"?, "genres"?, ...}``: the catalogue's columns)
    appended as items ``n_items + 1 ..`` without interactions, their feature ids [len(records), columns]
    under ``vocab``, and what was added. Histories and users are unchanged."""
    raws = _new_raw_ids(dataset, records)
    text: dict[str, Any] = {
        c: pl.List(pl.String) if t == pl.List(pl.Null) else pl.String if t == pl.Null else t
        for c, t in dataset.catalog.schema.items()
    }  # a column that held no value yet takes text
    frame, rows, unknown = encode_items(vocab, records, text)
    old = dataset.item_ids.raw
    keys = [id_key(r) for r in raws]
    whole = [k.isascii() and k.lstrip("-").isdigit() and str(int(k)) == k and abs(int(k)) < 2**53 for k in keys]
    if old.dtype.kind in "iu" and all(whole):
        raw = np.concatenate([old, np.array([int(k) for k in keys], dtype=old.dtype)])
    elif old.dtype.kind in "iu" or any(isinstance(r, int) for r in old.tolist()):
        # every id keeps its form: the integers stay integers, the new text stays text
        raw = np.array(old.tolist() + [int(k) if w else k for k, w in zip(keys, whole)], dtype=object)
    else:  # text ids for all, in the readers' form
        raw = np.array([id_key(r) for r in old.tolist()] + keys, dtype=object)
    n = dataset.n_items
    column = raw.tolist() if raw.dtype.kind in "iu" else [id_key(r) for r in raw.tolist()]  # the catalogue's: one type
    new = frame.with_columns(
        pl.Series("item", np.arange(n + 1, n + 1 + len(raws)), dtype=pl.Int32), pl.Series("raw_id", column[n:])
    )
    catalog = dataset.catalog.sort("item").cast({c: t for c, t in text.items() if c != "raw_id"})
    catalog = catalog.with_columns(pl.Series("raw_id", column[:n]))
    catalog = pl.concat([catalog, new.select(catalog.columns).cast(catalog.schema)], how="vertical")
    meta = dict(dataset.meta)
    grown = Dataset(
        dataset.offsets, dataset.items, dataset.user_ids, IdMap(raw, offset=1), catalog, meta, dataset.times
    )
    meta.update(grown.counts())
    meta["added_items"] = int(meta.get("added_items", 0)) + len(raws)
    bare = [r for r, ids in zip(raws, rows) if not ids.any()]
    return grown, rows, AddedItems(raws, unknown, bare)
