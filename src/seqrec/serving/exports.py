"""Facts written from a model and its data for other tools: ``export_items`` (the item table, items.csv) and
``model_facts`` (what ``GET /model`` answers)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqrec.data.dataset import Dataset
from seqrec.files import atomic_write_bytes


def export_items(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write items.csv (item = internal id, raw_id, title, genres joined with ``|``) atomically."""
    frame = dataset.catalog.sort("item").select(
        pl.col("item"),
        pl.col("raw_id").cast(pl.String),
        pl.col("title"),
        pl.col("genres").list.join("|"),
    )
    atomic_write_bytes(path, frame.write_csv().encode("utf-8"))
    return Path(path)


def model_facts(rec: Any) -> dict[str, Any]:
    """Facts about ``rec``'s model and data for ``GET /model``; non-finite numbers become None."""
    return _json_safe(
        {
            "name": rec.name,
            "backend": rec.backend,
            "index": rec.index_kind,
            "scorer": type(rec.scorer).__name__,
            "max_len": rec.max_len,
            "n_items": rec.n_items,
            "has_embeddings": hasattr(rec.scorer, "item_embeddings"),
            "config": rec.config,
            "metrics": rec.metrics,
            "data": rec.dataset.counts(),
            "data_name": rec.dataset.meta.get("name"),
        }
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.generic,)):
        return _json_safe(value.item())
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
