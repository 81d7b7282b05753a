"""Headerless line files of whitespace-separated integers, and the item attributes beside them.

Two layouts of already-filtered sequential-recommendation data share this look:

* ``sasrec-txt``: one ``user item`` pair per line (the SASRec paper's files: ml-1m.txt, games.txt);
* ``s3rec-txt``: one user per line, ``user item1 item2 ...`` (S3Rec and its successors: Toys_and_Games.txt).

In both a user's items are in time order in file order (there is no timestamp; the pipeline's sort is
stable, so that order is kept). ``line_layout`` decides from the first 64 KiB of the file, which must start
with a line of two or more integers:

* one user per line when the first line has 3 or more fields, or when some line has 3 or more fields and
  no first field repeats across lines (a line of 2 fields is then a user with one item);
* otherwise ``user item`` pairs (every line has 2 fields, or a first field repeats);
* when every sampled line has 2 fields and no first field repeats, the sample cannot tell: the whole file
  is read and the rule above applied to it.

In the one-user-per-line layout a user on two lines is an error naming both lines. Lines that do not fit
the layout chosen raise a one-line ``SeqrecError`` naming the file, the first bad line and what was expected.

Item attributes (the S3Rec ``item2attributes.json``, ``{"item id": [attribute ids]}``) are looked for
beside such a file: ``<stem>_item2attributes.json``, else the one ``*item2attributes.json`` in the same
folder whose prefix (the name before ``item2attributes.json``, without a trailing ``_``, ``-`` or ``.``)
matches the file's stem: one starts with the other, ignoring case. They become the catalogue column
``attributes``: a list of strings per item (JSON integers as their decimal text, so ``3`` and ``"3"`` agree),
keyed by the raw item id (by the readers' id rule: key ``"242.0"`` is item 242); items without an entry get
an empty list.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqrec.data.dataset import id_key
from seqrec.errors import SeqrecError

PAIRS, SEQUENCES = "sasrec-txt", "s3rec-txt"
LINE_LAYOUTS = (PAIRS, SEQUENCES)
SEQUENCES_EXPECTED = "expected one user per line 'user item1 item2 ...' (integers)"
ATTRIBUTES_SUFFIX = "item2attributes.json"
_INT_LINE = re.compile(r"^\s*-?\d+(?:\s+-?\d+)+\s*$")
_HEAD = 65536


# ----------------------------------------------------------------------------------------- line primitives
def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        if not (head := f.read(_HEAD)).strip():
            raise SeqrecError(f"{path}: the file is empty")
    return head


def _lines(source: Any) -> pl.DataFrame:
    """Non-blank lines with their 1-based line numbers: columns lineno, line."""
    df = pl.read_csv(
        source,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        schema={"line": pl.String},
        encoding="utf8-lossy",
        raise_if_empty=False,
        truncate_ragged_lines=True,
    )
    return df.with_row_index("lineno", 1).filter(pl.col("line").fill_null("").str.strip_chars() != "")


def _fail(label: Any, bad: pl.DataFrame, expected: str) -> None:
    """Raise for the first row of ``bad`` (columns lineno, line), if any."""
    if bad.height:
        text = bad["line"][0] if len(bad["line"][0]) <= 200 else bad["line"][0][:200] + "..."
        raise SeqrecError(f"{label} line {bad['lineno'][0]}: {expected}, got {text!r}")


def _fields() -> pl.Expr:
    return pl.col("line").str.extract_all(r"\S+")


# ----------------------------------------------------------------------------------------- the two layouts
def line_layout(path: Path, head: bytes) -> str | None:
    """``sasrec-txt``, ``s3rec-txt``, or None when the file does not start with a line of 2+ integers."""
    text = head.decode("utf-8", "replace")
    rows = text.splitlines()
    if len(head) == _HEAD and len(rows) > 1:
        rows = rows[:-1]  # the last sampled line may be cut short
    first = next((ln for ln in rows if ln.strip()), "")
    if not _INT_LINE.match(first):  # a header line is never integers only
        return None
    parts = [ln.split() for ln in rows if _INT_LINE.match(ln)]  # lines that do not fit are the reader's to report
    users = [int(p[0]) for p in parts]
    unique, wide = len(set(users)) == len(users), any(len(p) >= 3 for p in parts)
    if len(parts[0]) >= 3 or (unique and wide):
        return SEQUENCES
    if unique and len(head) == _HEAD:  # all pairs with distinct users so far: the whole file decides
        df = _lines(path).select(_fields().alias("_p"))
        wide, repeats = df.select(
            (pl.col("_p").list.len() >= 3).any().alias("wide"),
            pl.col("_p").list.first().is_duplicated().any().alias("repeats"),
        ).row(0)
        return SEQUENCES if wide and not repeats else PAIRS
    return PAIRS


def read_sequences(path: Path) -> pl.DataFrame:
    """Columns user, item (Int64) of a one-user-per-line file, items in line order; a bad line raises."""
    df = _lines(path).with_columns(_fields().list.eval(pl.element().str.to_integer(strict=False)).alias("_n"))
    n = pl.col("_n").list
    _fail(path, df.filter((n.len() < 2) | (n.drop_nulls().list.len() < n.len())).head(1), SEQUENCES_EXPECTED)
    if df.height == 0:
        raise SeqrecError(f"{path}: no data lines")
    df = df.select("lineno", "line", n.first().alias("user"), n.slice(1).alias("item"))
    again = df.filter(~pl.col("user").is_first_distinct()).head(1)
    if again.height:
        user = again["user"][0]
        first = df.filter(pl.col("user") == user)["lineno"][0]
        _fail(path, again, f"user {user} is already on line {first}; {SEQUENCES_EXPECTED} with each user once")
    return df.select("user", "item").explode("item")


# ----------------------------------------------------------------------------------------- item attributes
def _prefix(name: str) -> str:
    return name[: -len(ATTRIBUTES_SUFFIX)].rstrip("_-.").lower()


def attributes_file(path: Path) -> Path | None:
    """The ``item2attributes.json`` beside a data file (see the module docstring), or None."""
    exact = path.with_name(f"{path.stem}_{ATTRIBUTES_SUFFIX}")
    if exact.is_file():
        return exact
    stem = path.stem.lower()
    found = sorted(
        p
        for p in path.parent.iterdir()
        if p.name.lower().endswith(ATTRIBUTES_SUFFIX)
        and p.is_file()
        and (pre := _prefix(p.name))
        and (stem.startswith(pre) or pre.startswith(stem))
    )
    if len(found) > 1:
        raise SeqrecError(
            f"{path}: several item attribute files beside it ({', '.join(p.name for p in found)}); "
            f"keep one, or name it {exact.name}"
        )
    return found[0] if found else None


def read_attributes(path: Path) -> pl.DataFrame:
    """Columns raw_id (String), attributes (List[String]) from ``{"item id": [attribute ids]}``."""
    expected = 'expected a JSON object {"item id": [attribute ids]}'
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        raise SeqrecError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); {expected}") from e
    except ValueError as e:  # not UTF-8
        raise SeqrecError(f"{path}: not valid JSON ({e}); {expected}") from e
    if not isinstance(data, dict):
        raise SeqrecError(f"{path}: {expected}, got a JSON {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(value, list) or not all(type(a) in (int, str) for a in value):  # bool is no id
            shown = json.dumps(value)
            shown = shown if len(shown) <= 80 else shown[:80] + "..."
            raise SeqrecError(
                f"{path}: item {key!r}: expected a list of attribute ids (integers or strings), got {shown}"
            )
    lengths = [len(v) for v in data.values()]  # built flat: polars makes list columns slowly from Python lists
    flat = pl.DataFrame(
        {
            "_r": np.repeat(np.arange(len(data), dtype=np.uint32), lengths),
            "attributes": [str(a) for v in data.values() for a in v],
        },
        schema={"_r": pl.UInt32, "attributes": pl.String},
    )
    keys = pl.DataFrame({"raw_id": [id_key(k) for k in data]}, schema={"raw_id": pl.String}).with_row_index("_r")
    out = keys.join(flat.group_by("_r").agg("attributes"), on="_r", how="left").sort("_r").drop("_r")
    return out.with_columns(pl.col("attributes").fill_null(pl.lit([], dtype=pl.List(pl.String))))


def attributes_beside(path: Path) -> pl.DataFrame | None:
    """The item attributes beside a data file as a catalogue (raw_id, attributes), or None."""
    found = attributes_file(path)
    return read_attributes(found) if found is not None else None


# ----------------------------------------------------------------------------------------- headerless fixed layouts
def _decoded(path: Path) -> io.BytesIO:
    """A small text file as UTF-8 bytes: as is when it is UTF-8, else read as latin-1 (older MovieLens)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = data.decode("latin-1").encode("utf-8")
    return io.BytesIO(data)


def _split(sep: str | None) -> pl.Expr:
    line = pl.col("line")
    return line.str.extract_all(r"\S+") if sep is None else line.str.strip_chars().str.split(sep)


def _parse_lines(path: Path, sep: str | None, fields: list, expected: str, skip: int) -> pl.DataFrame:
    """Split lines by ``sep`` (None: whitespace) into typed fields; the first bad line raises."""
    df = _lines(path).filter(pl.col("lineno") > skip).with_columns(_split(sep).alias("_p"))
    part = pl.col("_p").list
    df = df.with_columns(
        part.get(i, null_on_oob=True).str.strip_chars().cast(dtype, strict=False).alias(name)
        for i, (name, dtype) in enumerate(fields)
    )
    bad = (part.len() != len(fields)) | pl.any_horizontal(pl.col(n).is_null() for n, _ in fields)
    _fail(path, df.filter(bad).head(1), expected)
    if df.height == 0:
        raise SeqrecError(f"{path}: no data lines")
    return df.select(n for n, _ in fields)


def _fixed(path: Path, sep: str | None, fields: list, expected: str, skip: int = 0) -> pl.DataFrame:
    """Fast native parse of a headerless fixed-layout file; on any doubt the checked line parser decides."""
    schema = dict(fields)
    try:
        if sep == "::":  # parsing on ':' leaves an empty column between fields
            wide = {k: v for name, dtype in fields for k, v in ((name, dtype), (f"_{name}", pl.String))}
            wide.popitem()
            df = pl.read_csv(path, separator=":", has_header=False, quote_char=None, schema=wide)
            gaps = [c for c in wide if c not in schema]
            clean = df.select(gaps).null_count().sum_horizontal()[0] == df.height * len(gaps)
            df = df.select(list(schema)) if clean else df.clear()  # text between the ':' pairs: check by line
        else:
            df = pl.read_csv(
                path, separator=sep or " ", has_header=False, quote_char=None, schema=schema, skip_rows=skip
            )
        if df.height and df.null_count().sum_horizontal()[0] == 0:
            return df
    except pl.exceptions.PolarsError:
        pass
    return _parse_lines(path, sep, fields, expected, skip)
