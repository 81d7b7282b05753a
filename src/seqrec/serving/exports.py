"""Files written from a model's data for other tools: ``export_items`` (the item table, items.csv)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from seqrec.data.dataset import Dataset
from seqrec.files import atomic_write_bytes


def export_items(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write items.csv (item = internal id, raw_id, title, genres joined with ``|``) atomically."""
    frame = dataset.catalog.sort("item").select(
        pl.col("item"), pl.col("raw_id").cast(pl.String), pl.col("title"), pl.col("genres").list.join("|"),
    )
    atomic_write_bytes(path, frame.write_csv().encode("utf-8"))
    return Path(path)
