"""Item side features from the catalogue: a vocabulary per field and the item -> feature-id table.

A field is a catalogue column other than ``item``, ``raw_id`` and ``title``:

* categorical: a list-of-text column (``genres``, ``attributes``, any list column; numbers in a list are
  read as their text), a text column or a boolean one: one feature per distinct value;
* numeric: an integer or float column (``year``, ...): ``NUMERIC_BUCKETS`` quantile buckets of its values
  (edges at the deciles, repeated edges merged), a missing value has no feature.

Feature ids are global over the fields: field ``f``'s values are ``offset_f + 1 .. offset_f + size_f`` in
the order of ``FeatureVocab.fields``, and ``0`` means none. The table ``[n_items + 1, columns]`` holds, per
item, each field's ids in that field's ``width`` columns (the most values one item has, at most
``MAX_WIDTH``; an item's further values are dropped in its own order), zero-padded; row 0 is padding.
``FeatureVocab`` is JSON (``to_json`` / ``from_json``), so a model folder holds it as ``features.json``
beside the weights, which hold the table.

``add_item_features(ds, path)`` merges a CSV / TSV / Parquet / JSON file of extra item facts (an item id
column and feature columns: lists, or text with ``|`` between values) into a data set's catalogue by raw
id (``seqrec.data.dataset.id_key``); ``encode_items`` turns facts of items added later into table rows with an
existing vocabulary (values it does not know are left out and reported).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError

CATEGORICAL, NUMERIC = "categorical", "numeric"
RESERVED = ("item", "raw_id", "title")  # catalogue columns that are never features
NUMERIC_BUCKETS = 10
MAX_WIDTH = 64  # feature ids one item keeps per field
MAX_VOCAB = 1 << 24  # feature values over all fields
VOCAB_FORMAT = 1


# ----------------------------------------------------------------------------- the vocabulary
@dataclass(frozen=True)
class FeatureField:
    """One field: its values (categorical) or bucket edges (numeric), and its columns in the table."""

    name: str
    kind: str
    values: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    width: int = 1

    @property
    def size(self) -> int:
        """How many feature ids the field has."""
        return len(self.values) if self.kind == CATEGORICAL else len(self.edges) + 1


@dataclass(frozen=True)
class FeatureVocab:
    """The fields of a feature table, in column order."""

    fields: tuple[FeatureField, ...]

    @property
    def size(self) -> int:
        """Feature ids over all fields (0, none, not counted)."""
        return sum(f.size for f in self.fields)

    @property
    def columns(self) -> int:
        return sum(f.width for f in self.fields)

    def offsets(self) -> list[int]:
        """The id before each field's first one."""
        return np.cumsum([0] + [f.size for f in self.fields])[:-1].tolist()

    def column_slices(self) -> list[tuple[int, int]]:
        """(first column, end) of each field in the table."""
        ends = np.cumsum([f.width for f in self.fields]).tolist()
        return [(e - f.width, e) for f, e in zip(self.fields, ends)]

    def column_fields(self) -> list[int]:
        """The field index of every table column."""
        return [i for i, f in enumerate(self.fields) for _ in range(f.width)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": VOCAB_FORMAT,
            "fields": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "width": f.width,
                    **({"values": list(f.values)} if f.kind == CATEGORICAL else {"edges": list(f.edges)}),
                }
                for f in self.fields
            ],
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> FeatureVocab:
        """The vocabulary ``to_json`` wrote; anything else is a ``SeqrecError`` naming ``where``."""
        if (
            not isinstance(doc, dict)
            or doc.get("format") != VOCAB_FORMAT
            or not isinstance(doc.get("fields"), list)
            or not doc["fields"]
        ):
            raise SeqrecError(
                f"{where}: expected a JSON object with format {VOCAB_FORMAT} and a non-empty 'fields' list"
            )
        fields = []
        for i, f in enumerate(doc["fields"]):
            kind = f.get("kind") if isinstance(f, dict) else None
            key = "values" if kind == CATEGORICAL else "edges"
            items: Any = f.get(key) if isinstance(f, dict) else None
            width: Any = f.get("width") if isinstance(f, dict) else None
            ok = (
                kind in (CATEGORICAL, NUMERIC)
                and isinstance(f.get("name"), str)
                and isinstance(items, list)
                and set(f) == {"name", "kind", "width", key}
                and isinstance(width, int)
                and not isinstance(width, bool)
                and 1 <= width <= (MAX_WIDTH if kind == CATEGORICAL else 1)
            )
            if ok and kind == CATEGORICAL:
                ok = len(items) > 0 and all(isinstance(v, str) for v in items) and len(set(items)) == len(items)
            elif ok:
                ok = all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items
                ) and all(a < b for a, b in zip(items, items[1:]))
            if not ok:
                raise SeqrecError(
                    f"{where}: field {i} must be an object with name, kind (categorical or numeric), "
                    f"width (1..{MAX_WIDTH}) and distinct text values or rising finite edges"
                )
            assert isinstance(f, dict) and kind is not None
            fields.append(
                FeatureField(
                    f["name"],
                    kind,
                    tuple(items) if kind == CATEGORICAL else (),
                    tuple(float(e) for e in items) if kind == NUMERIC else (),
                    width,
                )
            )
        vocab = cls(tuple(fields))
        if len({f.name for f in fields}) < len(fields) or vocab.size > MAX_VOCAB:
            raise SeqrecError(f"{where}: field names must be distinct and hold at most {MAX_VOCAB:,} values in all")
        return vocab

    def check_table(self, table: np.ndarray, where: str) -> None:
        """Every column of ``table`` holds 0 or ids of its own field; row 0 is all zeros."""
        if table.ndim != 2 or table.shape[1] != self.columns:
            raise SeqrecError(f"{where}: the feature table must have {self.columns} columns, got shape {table.shape}")
        for f, (lo, hi), off in zip(self.fields, self.column_slices(), self.offsets()):
            part = table[:, lo:hi]
            if ((part != 0) & ((part <= off) | (part > off + f.size))).any() or (part[0] != 0).any():
                raise SeqrecError(
                    f"{where}: the feature table's {f.name} columns hold ids outside "
                    f"{off + 1}..{off + f.size} (or the padding row has features)"
                )

    # ------------------------------------------------------------------------- encoding
    def encode(self, catalog: pl.DataFrame) -> tuple[np.ndarray, dict[str, list[str]]]:
        """Feature ids [catalog.height, columns] of the catalogue's rows, and per categorical field the
        values this vocabulary does not know (left out). A field the catalogue lacks gives no ids."""
        out = np.zeros((catalog.height, self.columns), dtype=np.int64)
        unknown: dict[str, list[str]] = {}
        for f, (lo, _), off in zip(self.fields, self.column_slices(), self.offsets()):
            if f.name not in catalog.columns:
                continue
            col = catalog[f.name]
            if f.kind == NUMERIC:
                values = _numbers(col, f.name)
                ok = np.isfinite(values)
                out[ok, lo] = off + 1 + np.searchsorted(np.asarray(f.edges), values[ok], side="right")
                continue
            rows, texts = _exploded(col)
            index = {v: off + 1 + i for i, v in enumerate(f.values)}
            ids = np.fromiter((index.get(t, 0) for t in texts), dtype=np.int64, count=len(texts))
            missing = sorted({t for t, i in zip(texts, ids) if i == 0})
            if missing:
                unknown[f.name] = missing
            rows, ids = rows[ids > 0], ids[ids > 0]
            _place(out, rows, ids, lo, f.width)
        return out, unknown


def _exploded(col: pl.Series) -> tuple[np.ndarray, list[str]]:
    """(row, value) of every non-empty text value of a list, text or boolean column, first of each repeat."""
    text = col.cast(pl.List(pl.String)) if isinstance(col.dtype, pl.List) else col.cast(pl.String)
    frame = pl.DataFrame({"v": text}).with_row_index("r")
    frame = (frame.explode("v") if isinstance(col.dtype, pl.List) else frame).drop_nulls("v")
    frame = frame.filter(pl.col("v").str.strip_chars() != "").unique(["r", "v"], keep="first", maintain_order=True)
    return frame["r"].to_numpy().astype(np.int64), frame["v"].to_list()


def _place(out: np.ndarray, rows: np.ndarray, ids: np.ndarray, lo: int, width: int) -> None:
    """Write each row's ids (in order) into ``out[row, lo:lo + width]``; ids beyond the width are dropped."""
    if len(rows) == 0:
        return
    starts = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
    pos = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    keep = pos < width
    out[rows[keep], lo + pos[keep]] = ids[keep]


def _kind(col: pl.Series) -> str | None:
    dtype = col.dtype
    if dtype in (pl.Boolean, pl.String, pl.Categorical) or (
        isinstance(dtype, pl.List) and (dtype.inner in (pl.String, pl.Null, pl.Categorical) or dtype.inner.is_numeric())
    ):
        return CATEGORICAL
    return NUMERIC if dtype.is_numeric() else None


def _numbers(col: pl.Series, name: str) -> np.ndarray:
    try:
        return col.cast(pl.Float64).fill_null(float("nan")).to_numpy().astype(np.float64)
    except Exception as e:  # polars raises several types for values that are no numbers
        raise SeqrecError(f"item feature {name!r}: expected numbers, got {col.dtype} ({e})") from e


def _field(col: pl.Series, name: str, every: bool = False) -> FeatureField | None:
    """The field a catalogue column makes, or None when no item has a value in it; with ``every`` (the
    fields of ``"all"``) also None for a column of another type or whose values no two items share."""
    kind = _kind(col)
    if kind is None and every:
        return None
    if kind is None:
        raise SeqrecError(
            f"item feature {name!r}: a {col.dtype} column is neither categorical (text, lists of "
            f"text, booleans) nor numeric"
        )
    if kind == NUMERIC:
        values = _numbers(col, name)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return None
        qs = np.quantile(values, np.arange(1, NUMERIC_BUCKETS) / NUMERIC_BUCKETS)
        return FeatureField(name, NUMERIC, edges=tuple(float(e) for e in np.unique(qs)))
    rows, texts = _exploded(col)
    if not texts or (every and len(set(texts)) == len(texts)):
        return None
    width = int(min(MAX_WIDTH, np.bincount(rows).max()))
    return FeatureField(name, CATEGORICAL, values=tuple(sorted(set(texts))), width=width)


def feature_names(catalog: pl.DataFrame, spec: str) -> list[str]:
    """The catalogue fields ``spec`` names (``"all"``: every column but item, raw_id and title)."""
    if spec.strip() == "all":
        return [c for c in catalog.columns if c not in RESERVED]
    names = [n.strip() for n in spec.split(",")]
    for n in names:
        if n in RESERVED or n not in catalog.columns:
            usable = ", ".join(c for c in catalog.columns if c not in RESERVED)
            raise SeqrecError(f"item_features: {n!r} is not a feature field of the catalogue (its fields: {usable})")
    return names


def build_vocab(catalog: pl.DataFrame, spec: str) -> FeatureVocab:
    """The vocabulary of the fields ``spec`` names (``"all"``: the catalogue's list, text, boolean and numeric
    columns that hold values, leaving out text whose values no two items share, such as descriptions)."""
    fields = []
    every = spec.strip() == "all"
    for name in feature_names(catalog, spec):
        f = _field(catalog[name], name, every)
        if f is None and not every:
            raise SeqrecError(f"item_features: no item has a value in the catalogue field {name!r}")
        if f is not None:
            fields.append(f)
    if not fields:
        raise SeqrecError(
            "item_features='all': no catalogue field holds any item's features (a catalogue with "
            "genres, attributes or years, or --item-features-file, gives some)"
        )
    vocab = FeatureVocab(tuple(fields))
    if vocab.size > MAX_VOCAB:
        raise SeqrecError(f"item_features: {vocab.size:,} feature values, more than the {MAX_VOCAB:,} seqrec allows")
    return vocab


def item_features(ds: Dataset, spec: str) -> tuple[FeatureVocab, np.ndarray, np.ndarray]:
    """(vocabulary, feature ids int64 [n_items + 1, columns] with row 0 all zeros, bool [n_items + 1]: whether
    each item occurs in the training part of the leave-one-out split) of ``ds``'s catalogue."""
    from seqrec.data.split import LeaveOneOut

    catalog = ds.catalog.sort("item")
    vocab = build_vocab(catalog, spec)
    rows, _ = vocab.encode(catalog)
    table = np.zeros((ds.n_items + 1, vocab.columns), dtype=np.int64)
    table[catalog["item"].to_numpy().astype(np.int64)] = rows
    return vocab, table, LeaveOneOut(ds).train().counts(ds.n_items) > 0


def encode_items(
    vocab: FeatureVocab, records: Sequence[Mapping[str, Any]], schema: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame, np.ndarray, dict[str, list[str]]]:
    """Catalogue rows (columns and types of ``schema``, without item and raw_id) of item facts, their
    feature ids and the values ``vocab`` does not know. A field that is not a catalogue column, or a
    value of the wrong type, is a ``SeqrecError`` naming the item and the field."""
    columns = [c for c in schema if c not in ("item", "raw_id")]
    for r in records:
        extra = sorted(set(r) - set(columns) - {"item_id"})
        if extra:
            raise SeqrecError(
                f"item {r.get('item_id')!r}: unknown field(s) {extra}; the catalogue has {', '.join(columns)}"
            )
    data: dict[str, pl.Series] = {}
    for c in columns:
        dtype = schema[c]
        values = [r.get(c) for r in records]
        if isinstance(dtype, pl.List):
            values = [[] if v is None else ([v] if isinstance(v, str) else v) for v in values]
        try:
            data[c] = pl.Series(c, values, dtype=dtype, strict=True)
        except Exception as e:  # polars raises several types for values of the wrong type
            bad = next((r.get("item_id") for r, v in zip(records, values) if not _fits(v, dtype)), None)
            raise SeqrecError(f"item {bad!r}: field {c!r} must hold {dtype_text(dtype)} ({type(e).__name__})") from e
    frame = pl.DataFrame(data) if data else pl.DataFrame(height=len(records))
    ids, unknown = vocab.encode(frame)
    return frame, ids, unknown


def _fits(value: Any, dtype: pl.DataType) -> bool:
    try:
        pl.Series([value], dtype=dtype, strict=True)
        return True
    except Exception:
        return False


def dtype_text(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List):
        return "a list of text"
    return "text" if dtype == pl.String else "a number" if dtype.is_numeric() else str(dtype)
