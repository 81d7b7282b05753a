"""A prepared data set folder's files, written into a folder being built and read back strictly.

``sequences.npz`` (the CSR arrays ``offsets`` int64 [U+1] and ``items`` int32, and ``times`` int64 epoch seconds
aligned with ``items`` when the data had timestamps; no pickle),
``users.parquet`` (``raw_id`` per user), ``catalog.parquet`` (one row per item: ``item``, ``raw_id``,
``title``, ``genres``, ``year``, optional ``attributes``) and ``meta.json`` (name, source, cleaning,
counts), then ``manifest.json`` (``seqrec.files``). Reading checks the manifest before any binary file
is parsed, then every file's form and their agreement; anything missing, damaged or inconsistent is
a ``SeqrecError`` naming the file and what was expected. ``seqrec.data.dataset.Dataset`` builds on these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqrec import files as _files
from seqrec.errors import SeqrecError
from seqrec.files import (
    CATALOG,
    DATA_FILES,
    META,
    SEQUENCES,
    USERS,
    _write_file,
    read_json,
    read_manifest,
    verify_manifest,
    write_manifest,
)

FORMAT_VERSION = 1


def write_prepared(
    folder: Path,
    offsets: np.ndarray,
    items: np.ndarray,
    user_raw: Any,
    catalog: pl.DataFrame,
    meta: dict[str, Any],
    times: np.ndarray | None = None,
) -> None:
    """The files of a prepared folder into ``folder`` (new, holding only its marker), manifest last."""
    arrays = dict(offsets=offsets, items=items, **({} if times is None else {"times": times}))
    _files._op(f"write {SEQUENCES}", _write_npz, folder / SEQUENCES, **arrays)
    _files._op(f"write {USERS}", pl.DataFrame({"raw_id": user_raw}).write_parquet, folder / USERS)
    _files._op(f"write {CATALOG}", catalog.write_parquet, folder / CATALOG)
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    _files._op(f"write {META}", _write_file, folder / META, text.encode("utf-8"))
    write_manifest(folder, DATA_FILES)


def read_prepared(
    path: Path,
) -> tuple[np.ndarray, np.ndarray, pl.DataFrame, pl.DataFrame, dict[str, Any], np.ndarray | None]:
    """``(offsets, items, users, catalog, meta, times or None)`` of the prepared folder ``path``, checked."""
    meta_file = path / META
    if not meta_file.is_file():
        raise SeqrecError(f"{path}: not a prepared data set (no meta.json)")
    meta = read_json(meta_file, "the data set description")
    if not isinstance(meta, dict):
        raise SeqrecError(f"{meta_file}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise SeqrecError(
            f"{meta_file}: format_version {meta.get('format_version')!r}, this seqrec reads {FORMAT_VERSION}"
        )
    _check_meta(meta, meta_file)
    listed = read_manifest(path, DATA_FILES)
    if listed is not None:
        verify_manifest(path, listed)
    for name in DATA_FILES:
        if not (path / name).is_file():
            raise SeqrecError(f"{path}: prepared data set is incomplete: {name} is missing")
    offsets, items, times = _read_sequences(path / SEQUENCES)
    n_users = len(offsets) - 1
    users = _read_parquet(path / USERS)
    catalog = _read_parquet(path / CATALOG)
    _check_users(users, n_users, path / USERS)
    _check_catalog(catalog, path / CATALOG)
    n_items = catalog.height
    if len(items) and (int(items.min()) < 1 or int(items.max()) > n_items):
        raise SeqrecError(
            f"{path / SEQUENCES}: item ids must be in 1..{n_items} (the catalogue's rows), "
            f"got {int(items.min())}..{int(items.max())}"
        )
    for key, value in (("users", n_users), ("items", n_items), ("interactions", len(items))):
        if key in meta and meta[key] != value:
            raise SeqrecError(f"{meta_file}: says {meta[key]} {key} but the folder's files hold {value}")
    return offsets, items, users, catalog, meta, times


def _write_npz(file: Path, **arrays: np.ndarray) -> None:
    with open(file, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy types the first keyword only


def _check_meta(meta: dict[str, Any], file: Path) -> None:
    for key, kind, expected in (
        ("name", str, "text"),
        ("source", str, "text"),
        ("has_timestamps", bool, "true or false"),
        ("before", dict, "a JSON object"),
        ("cleaning", dict, "a JSON object"),
    ):
        if key in meta and not isinstance(meta[key], kind):
            raise SeqrecError(f"{file}: '{key}' must be {expected}, got {meta[key]!r}")
    for key in ("users", "items", "interactions"):
        v = meta.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SeqrecError(f"{file}: '{key}' must be a count (an integer >= 0), got {v!r}")


def _read_sequences(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        with np.load(file, allow_pickle=False) as z:
            names = sorted(z.files)
            if names not in (["items", "offsets"], ["items", "offsets", "times"]):
                raise SeqrecError(f"{file}: expected the arrays ['items', 'offsets'] (and 'times'), got {names}")
            offsets, items = z["offsets"], z["items"]
            times = z["times"] if "times" in names else None
    except SeqrecError:
        raise
    except Exception as e:  # numpy and zipfile raise many types for a damaged archive
        raise SeqrecError(f"{file}: not a readable sequences file ({type(e).__name__}: {e})") from e
    if times is not None and (times.shape != items.shape or times.dtype.kind not in "iu"):
        raise SeqrecError(
            f"{file}: 'times' must be integers, one per item ({len(items)}), got {times.dtype} of shape {times.shape}"
        )
    for name, a in (("offsets", offsets), ("items", items)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise SeqrecError(f"{file}: '{name}' must be a 1-D integer array, got {a.dtype} of shape {a.shape}")
    offsets, items = offsets.astype(np.int64, copy=False), items.astype(np.int32, copy=False)
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(items) or np.any(np.diff(offsets) < 0):
        raise SeqrecError(
            f"{file}: 'offsets' must rise from 0 to the number of items ({len(items)}), one entry per user plus one"
        )
    return offsets, items, None if times is None else times.astype(np.int64, copy=False)


def _read_parquet(file: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(file)
    except Exception as e:  # polars raises many types for a damaged file
        raise SeqrecError(f"{file}: not a readable Parquet file ({type(e).__name__}: {e})") from e


def _check_users(users: pl.DataFrame, n_users: int, file: Path) -> None:
    if "raw_id" not in users.columns:
        raise SeqrecError(f"{file}: expected a 'raw_id' column, got {users.columns}")
    if users.height != n_users:
        raise SeqrecError(f"{file}: {users.height} users, but {SEQUENCES} holds {n_users}")
    if users["raw_id"].n_unique() != users.height:
        raise SeqrecError(f"{file}: user ids (raw_id) must be distinct")


def _check_catalog(catalog: pl.DataFrame, file: Path) -> None:
    missing = [c for c in ("item", "raw_id", "title", "genres", "year") if c not in catalog.columns]
    if missing:
        raise SeqrecError(f"{file}: missing columns {missing}; a catalogue has item, raw_id, title, genres, year")
    types = catalog.schema
    text_lists = (pl.List(pl.String), pl.List(pl.Null))
    checks = (
        ("item", types["item"].is_integer(), "integers"),
        ("title", types["title"] in (pl.String, pl.Null), "text"),
        ("genres", types["genres"] in text_lists, "lists of text"),
        ("year", types["year"].is_integer() or types["year"] == pl.Null, "integers"),
        ("attributes", "attributes" not in types or types["attributes"] in text_lists, "lists of text"),
    )
    for column, ok, expected in checks:
        if not ok:
            raise SeqrecError(f"{file}: column '{column}' must hold {expected}, got {types[column]}")
    if not catalog["item"].equals(pl.Series("item", np.arange(1, catalog.height + 1)), check_dtypes=False):
        raise SeqrecError(f"{file}: column 'item' must be 1..{catalog.height} in order")
    if catalog["raw_id"].n_unique() != catalog.height:
        raise SeqrecError(f"{file}: item ids (raw_id) must be distinct")
