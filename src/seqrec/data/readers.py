"""Reading: a located ``Source`` in, a ``Raw`` out (the interactions as a frame with the standard columns
``user``, ``item`` and, where the input has them, ``timestamp`` and ``rating``; the item catalogue where the
format has one), and ``load_dataset``, the whole data path in one pass::

    locate(spec) -> Source            seqrec.data.source: where, and which format (detected once)
    read_raw(source, columns) -> Raw  this module: parse, standardise the columns (seqrec.data.columns)
    clean(raw.frame, config) -> Cleaned   seqrec.data.clean: order, filters, k-core, dense codes
    Dataset.build(cleaned, catalog)   seqrec.data.dataset: CSR sequences, id maps, catalogue

Formats: MovieLens folders, headerless integer line files (the SASRec paper's ``user item`` pairs and the
one-user-per-line ``user item1 item2 ...`` layout, with any ``item2attributes.json`` beside them; see
``seqrec.data.layouts``), CSV / TSV / Parquet files and pandas / polars frames. Parsing is vectorised: fixed
layouts take a fast native parse first; if that fails a checked (still vectorised) line parse finds the first
offending line for a ``SeqrecError`` naming file, line, text and what was expected. Delimited tables whose user,
item and timestamp columns are plain integers (the common case, MovieLens 25M-sized logs among them) are read
typed in one pass (``_plain_table``, the file's size proving that no value is spelt otherwise); anything else
goes through the checked text reader.

Raw ids follow one rule in every format, set out in ``seqrec.data.columns``: text is trimmed; empty ids,
missing-value markers and text that is not UTF-8 are refused; ``242``, ``242.0`` and ``2.42e2`` are one id."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from seqrec.data.clean import DEFAULT_K_CORE, clean
from seqrec.data.columns import _pick, _standardise, decimal_chars
from seqrec.data.dataset import CATALOG_COLUMNS, CleanConfig, Dataset
from seqrec.data.layouts import (
    LINE_LAYOUTS,
    PAIRS,
    _fail,
    _fixed,
    _head,
    _lines,
    _split,
    attributes_beside,
    read_sequences,
)
from seqrec.data.movielens import MOVIELENS, RATINGS
from seqrec.data.source import NAMES, Source, data_home, format_of, locate, sniff
from seqrec.errors import SeqrecError

__all__ = [
    "NAMES",
    "Columns",
    "Raw",
    "data_home",
    "format_of",
    "load_dataset",
    "locate",
    "read_interactions",
    "read_raw",
]


class Columns(NamedTuple):
    """Which input column plays each role (None: found by its common names; ``seqrec.data.columns``)."""

    user: str | None = None
    item: str | None = None
    timestamp: str | None = None
    rating: str | None = None


@dataclass(frozen=True)
class Raw:
    """Interactions as read: ``frame`` (user, item, [timestamp], [rating]); ``catalog`` (raw_id, title, genres,
    year, [attributes]) where the format has one; ``k_core``, the format's default (0 for line files their
    authors filtered already)."""

    frame: pl.DataFrame
    catalog: pl.DataFrame | None
    k_core: int
    name: str
    source: str
    format: str

    def clean_config(self, config: CleanConfig) -> CleanConfig:
        """``config`` with the format's k-core where it leaves it to the format (``k_core=None``)."""
        if config.k_core is None and self.k_core != DEFAULT_K_CORE:
            return replace(config, k_core=self.k_core)
        return config


# ----------------------------------------------------------------------------------------- public API
def load_dataset(
    spec: Any,
    config: CleanConfig = CleanConfig(),
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    sep: str | None = None,
) -> Dataset:
    """Read any input (name, path, prepared folder, model folder: its data, DataFrame) and clean it into a
    Dataset. ``k_core=None`` means the format's default: 5, or 0 for the already-filtered line files
    (``user item`` pairs and one user per line); prepared folders load as saved."""
    source = locate(spec)
    if source.format == "prepared":
        assert source.path is not None
        return Dataset.load(source.path)
    raw = read_raw(source, Columns(user_col, item_col, time_col, rating_col), sep)
    cleaned = clean(raw.frame, raw.clean_config(config), raw.source)
    ds = Dataset.build(cleaned, raw.catalog, name=raw.name, source=raw.source)
    ds.meta["format"] = raw.format
    return ds


def read_interactions(
    spec: Any,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    sep: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None, int]:
    """The raw interactions before cleaning: (frame, catalogue or None, the format's default k-core)."""
    raw = read_raw(locate(spec), Columns(user_col, item_col, time_col, rating_col), sep)
    return raw.frame, raw.catalog, raw.k_core


def read_raw(source: Source, columns: Columns = Columns(), sep: str | None = None) -> Raw:
    """``source`` read into a ``Raw``: its columns standardised, its catalogue where the format has one. A
    file that cannot be parsed is one ``SeqrecError`` naming it (and the line, where one is at fault)."""
    if source.format == "synthetic":
        from seqrec.data.synthetic.story import generate  # lazily: only the synthetic data set needs it

        frame, catalog = generate(seed=0)
        return Raw(frame, catalog, DEFAULT_K_CORE, "synthetic", "synthetic", "synthetic")
    cols = columns._asdict()
    try:
        if source.frame is not None:
            frame = _standardise(source.frame.with_row_index("_line", 1), cols, source.label, "row")
            return Raw(frame, None, DEFAULT_K_CORE, "dataframe", "<DataFrame>", "dataframe")
        return _read_file(source, cols, sep)
    except pl.exceptions.PolarsError as e:
        raise SeqrecError(f"{source.label}: could not read it ({str(e).strip().splitlines()[0]})") from e
    except OSError as e:
        raise SeqrecError(f"{source.label}: cannot read ({e.strerror or e})") from e


def _read_file(source: Source, cols: dict[str, str | None], sep: str | None) -> Raw:
    path, fmt = source.path, source.format
    assert path is not None
    if fmt == "prepared":
        return _from_prepared(path)
    folder, src, name = path.parent, str(path), source.name
    if fmt in MOVIELENS:
        sep, skip, layout, meta, read_catalog = MOVIELENS[fmt]
        frame = _fixed(path, sep, RATINGS, f"expected {layout} (integers; rating a number)", skip)
        catalog = read_catalog(folder / meta) if (folder / meta).is_file() else None
        return Raw(frame, catalog, DEFAULT_K_CORE, name, src, fmt)
    if fmt in LINE_LAYOUTS:  # already filtered by their authors: no k-core by default
        frame = (
            _fixed(path, None, RATINGS[:2], "expected two integers 'user item'")
            if fmt == PAIRS
            else read_sequences(path)
        )
        return Raw(frame, attributes_beside(path), 0, name, src, fmt)
    if fmt == "parquet":
        frame = _standardise(pl.read_parquet(path).with_row_index("_line", 1), cols, src, "row")
    else:
        frame = _text_table(path, cols, sep)
    return Raw(frame, None, DEFAULT_K_CORE, name, src, fmt)


def _from_prepared(path: Path) -> Raw:
    ds = Dataset.load(path)
    frame = pl.DataFrame({"user": np.repeat(ds.user_ids.raw, ds.lengths), "item": ds.item_ids.raw[ds.items - 1]})
    catalog = ds.catalog.select(c for c in (*CATALOG_COLUMNS, "attributes") if c in ds.catalog.columns)
    return Raw(frame, catalog, 0, str(ds.meta.get("name", path.name)), str(path), "prepared")


# ----------------------------------------------------------------------------------------- generic tables
def _text_table(path: Path, cols: dict[str, str | None], sep: str | None) -> pl.DataFrame:
    if sep is None:
        sep = sniff(_head(path).decode("utf-8", "replace"))
    sep = {"\\t": "\t", "tab": "\t", "whitespace": " "}.get(sep, sep) if sep else None
    if sep is None or sep == " ":  # whitespace-separated, with a header line
        df = _lines(path).with_columns(_split(None).alias("_p"))
        if df.height == 0:
            raise SeqrecError(f"{path}: no data lines")
        header = df["_p"][0].to_list()
        _pick(header, cols, str(path))  # a column named twice is refused here, naming it
        body = df.slice(1)
        _fail(
            path,
            body.filter(pl.col("_p").list.len() != len(header)).head(1),
            f"expected {len(header)} whitespace-separated fields like the header",
        )
        fields = (pl.col("_p").list.get(i).alias(h) for i, h in enumerate(header))
        frame = body.select(pl.col("lineno").alias("_line"), *fields)
        return _standardise(frame, cols, str(path), "line")
    if len(sep) != 1:
        raise SeqrecError(f"{path}: the separator must be one character, got {sep!r}")
    header = pl.read_csv(path, separator=sep, infer_schema=False, n_rows=0, encoding="utf8-lossy").columns
    roles = _pick(header, cols, str(path), _written_header(path, sep))
    if (plain := _plain_table(path, sep, header, roles)) is not None:
        return plain
    wanted = list(dict.fromkeys(roles.values()))
    try:
        frame = pl.read_csv(
            path,
            separator=sep,
            infer_schema=False,
            columns=wanted,
            row_index_name="_line",
            row_index_offset=2,
            encoding="utf8-lossy",
        )
    except pl.exceptions.ComputeError:
        count = pl.col("line").str.count_matches(re.escape(sep), literal=True)
        _fail(
            path,
            _lines(path).filter(count != len(header) - 1).head(1),
            f"expected {len(header)} fields separated by {sep!r}",
        )
        raise
    return _standardise(frame, cols, str(path), "line")


def _written_header(path: Path, sep: str) -> list[str]:
    """The column names of the header line as written (polars renames a repeated one)."""
    first = _head(path).decode("utf-8", "replace").lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    return next(csv.reader([first], delimiter=sep), [])


def _plain_table(path: Path, sep: str, header: list[str], roles: dict[str, str]) -> pl.DataFrame | None:
    """The common case, read typed in one pass: user, item and timestamp columns of plain integers (``-`` and
    digits, no leading zeros, spaces or quotes), other columns as text. The file's size proves the form: every
    other spelling of a value is longer. None when anything differs; the checked text reader then decides."""
    ints = {c for role, c in roles.items() if role != "rating"}
    if len(set(header)) != len(header) or "" in header:
        return None
    with open(path, "rb") as f:
        first = f.readline()
        if not first:
            return None
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
    eol = 2 if first.endswith(b"\r\n") else 1
    schema = {c: pl.Int64 if c in ints else pl.String for c in header}
    try:
        pl.read_csv(path, separator=sep, schema=schema, encoding="utf8", n_rows=1000)  # text ids fail here, cheaply
        df = pl.read_csv(path, separator=sep, schema=schema, encoding="utf8")
    except pl.exceptions.PolarsError:
        return None
    if df.height == 0 or any(df[c].null_count() for c in roles.values()):
        return None
    chars = sum(decimal_chars(df[c]) if c in ints else int(df[c].str.len_bytes().sum() or 0) for c in header)
    size = len(first) + chars + df.height * (len(header) - 1 + eol) - (0 if last == b"\n" else eol)
    if size != path.stat().st_size:
        return None
    out = {role: df[c] for role, c in roles.items() if role != "rating"}
    if "rating" in roles:
        out["rating"] = df[roles["rating"]].str.strip_chars().cast(pl.Float64, strict=False)
        if out["rating"].null_count() or out["rating"].is_nan().any():
            return None
    return pl.DataFrame(out)
