"""Item facts from a file of their own (``--item-features-file``): a CSV, Parquet or JSON of records keyed by
raw item id, merged into a data set's catalogue (``add_item_features``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqrec.data.dataset import Dataset, id_key
from seqrec.errors import SeqrecError
from seqrec.models.features import dtype_text

ID_COLUMNS = ("item_id", "item", "raw_id", "id", "itemid", "movieid", "asin")  # an item-features file's id column


def read_item_features(path: str | Path) -> tuple[pl.DataFrame, str]:
    """The frame of an item-features file (CSV / TSV / Parquet / JSON) and the name of its id column."""
    path = Path(path)
    if not path.is_file():
        raise SeqrecError(f"{path}: no such item-features file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif suffix in (".json", ".jsonl", ".ndjson"):
            frame = _read_json_records(path)
        else:
            frame = pl.read_csv(path, separator="\t" if suffix in (".tsv", ".tab") else ",", infer_schema_length=10000)
    except SeqrecError:
        raise
    except Exception as e:  # polars raises many types for damaged or foreign files
        raise SeqrecError(f"{path}: not a readable item-features file ({type(e).__name__}: {e})") from e
    lower = {c.lower(): c for c in frame.columns}
    id_col = next((lower[c] for c in ID_COLUMNS if c in lower), None)
    if id_col is None:
        raise SeqrecError(
            f"{path}: no item id column (one of {', '.join(ID_COLUMNS)}); its columns are {', '.join(frame.columns)}"
        )
    if frame.width < 2:
        raise SeqrecError(f"{path}: only the id column {id_col!r}; expected feature columns beside it")
    return frame, id_col


def _read_json_records(path: Path) -> pl.DataFrame:
    text = path.read_bytes().decode("utf-8", "strict")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        docs: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        docs = json.loads(text)
    if isinstance(docs, dict):  # {"item id": {field: value}}
        if not all(isinstance(v, dict) for v in docs.values()):
            raise SeqrecError(f"{path}: expected a JSON list of objects or an object of objects (item id -> fields)")
        docs = [{"item_id": k, **v} for k, v in docs.items()]
    if not isinstance(docs, list) or not docs or not all(isinstance(d, dict) for d in docs):
        raise SeqrecError(f"{path}: expected a non-empty JSON list of objects (one per item)")
    return pl.DataFrame(docs, infer_schema_length=None)


def _feature_column(col: pl.Series, like: pl.DataType | None, where: str) -> pl.Series:
    """A file's column as a catalogue column: ``|``-separated text as a list (always for a list column)."""
    if col.dtype == pl.String and (isinstance(like, pl.List) or bool(col.str.contains("|", literal=True).any())):
        col = (
            col.str.split("|")
            .list.eval(pl.element().str.strip_chars())
            .list.eval(pl.element().filter(pl.element() != ""))
        )
    if like is None:
        return col
    try:
        return col.cast(like, strict=True)
    except Exception as e:  # polars raises several types for a failed cast
        raise SeqrecError(
            f"{where}: column {col.name!r} must hold {dtype_text(like)} like the catalogue's, got {col.dtype}"
        ) from e


def add_item_features(ds: Dataset, path: str | Path) -> Dataset:
    """``ds`` with the item facts of the file at ``path`` merged into its catalogue by raw id: a column the
    catalogue has is replaced for the items the file lists, a new column is added (empty for the others).
    Items the data set does not hold are ignored; ``meta["item_features_file"]`` says how many matched."""
    frame, id_col = read_item_features(path)
    where = str(path)
    keys = [id_key(v) for v in frame[id_col].to_list()]
    if len(set(keys)) < len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise SeqrecError(f"{where}: item {twice!r} is listed more than once")
    columns = [c for c in frame.columns if c != id_col]
    clash = [c for c in columns if c in ("item", "raw_id")]
    if clash:
        raise SeqrecError(f"{where}: column {clash[0]!r} is reserved for the catalogue's own ids")
    catalog = ds.catalog.sort("item")
    row = {k: i for i, k in enumerate(id_key(r) for r in catalog["raw_id"].to_list())}
    pos = np.array([row.get(k, -1) for k in keys], dtype=np.int64)
    found = pos >= 0
    target = pos[found]
    updates = []
    for c in columns:
        like = catalog.schema.get(c)
        col = _feature_column(frame[c], like, where).filter(pl.Series(found))
        if like is None:
            empty: list[Any] | None = [] if isinstance(col.dtype, pl.List) else None
            base = pl.Series(c, [empty] * catalog.height, dtype=col.dtype)
        else:
            base = catalog[c]
        values = base.to_list()
        is_list = isinstance(col.dtype, pl.List)
        for i, v in zip(target.tolist(), col.to_list()):
            values[i] = [] if v is None and is_list else v
        updates.append(pl.Series(c, values, dtype=col.dtype))
    meta = {
        **ds.meta,
        "item_features_file": {
            "path": where,
            "columns": columns,
            "items": int(found.sum()),
            "unknown_items": int((~found).sum()),
        },
    }
    return replace(ds, catalog=catalog.with_columns(updates), meta=meta)
