"""Format detection and readers: names, prepared folders, MovieLens folders, headerless integer line files
(the SASRec paper's ``user item`` pairs and the one-user-per-line ``user item1 item2 ...`` layout, with any
``item2attributes.json`` beside them; see ``seqrec.layouts`` for how the two are told apart), CSV / TSV /
Parquet files and pandas / polars frames all become a ``Dataset``. Parsing is vectorised:
fixed layouts take a fast native parse first; if that fails a checked (still vectorised) line parse finds the
first offending line for a ``SeqrecError`` naming file, line, text and what was expected. Delimited tables whose
user, item and timestamp columns are plain integers (the common case, MovieLens 25M-sized logs among them) are
read typed in one pass (``_plain_table``, the file's size proving that no value is spelt otherwise), without a
text column per field; anything else goes through the checked text reader.

Raw ids follow one rule in every format, set out in ``seqrec.columns``: text is trimmed; empty ids, missing-value
markers and text that is not UTF-8 are refused; ``242``, ``242.0`` and ``2.42e2`` are the one id 242."""

from __future__ import annotations

import io
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from seqrec.columns import _pick, _standardise, decimal_chars
from seqrec.data import CATALOG_COLUMNS, DEFAULT_K_CORE, CleanConfig, Dataset
from seqrec.errors import SeqrecError
from seqrec.files import CONFIG, DATA_DIR, META
from seqrec.layouts import LINE_LAYOUTS, PAIRS, _fail, _head, _lines, attributes_beside, line_layout, read_sequences

ML_NAMES = ("ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "ml-20m", "ml-25m", "ml-32m")
NAMES = ("synthetic", *ML_NAMES)
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
RATINGS = [("user", pl.Int64), ("item", pl.Int64), ("rating", pl.Float64), ("timestamp", pl.Int64)]
_YEAR_IN_TITLE = r"\((\d{4})[^()]*\)\s*$"


class Raw(NamedTuple):  # frame: user, item, [timestamp], [rating]; catalog: raw_id, title, genres, year, [attributes]
    frame: pl.DataFrame
    catalog: pl.DataFrame | None
    k_core: int  # the format's default k-core
    name: str
    source: str
    format: str


def data_home() -> Path:
    """Where named data sets live: ``$SEQREC_DATA`` or ``~/.cache/seqrec``."""
    env = os.environ.get("SEQREC_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqrec"


# ----------------------------------------------------------------------------------------- public API
def load_dataset(spec: Any, config: CleanConfig = CleanConfig(), *, user_col: str | None = None,
                 item_col: str | None = None, time_col: str | None = None, rating_col: str | None = None,
                 sep: str | None = None) -> Dataset:
    """Read any input (name, path, prepared folder, model folder: its data, DataFrame) and clean it into a Dataset. ``k_core=None``
    means the format's default: 5, or 0 for the already-filtered line files (``user item`` pairs and one user
    per line); prepared folders load as saved."""
    resolved = _resolve(spec)
    if isinstance(resolved, Path) and format_of(resolved) == "prepared":
        return Dataset.load(resolved)
    raw = _read(resolved, dict(user=user_col, item=item_col, timestamp=time_col, rating=rating_col), sep)
    if config.k_core is None and raw.k_core != DEFAULT_K_CORE:
        config = replace(config, k_core=raw.k_core)
    ds = Dataset.from_interactions(raw.frame, raw.catalog, config, name=raw.name, source=raw.source)
    ds.meta["format"] = raw.format
    return ds


def read_interactions(spec: Any, *, user_col: str | None = None, item_col: str | None = None,
                      time_col: str | None = None, rating_col: str | None = None,
                      sep: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame | None, int]:
    """The raw interactions before cleaning: (frame, catalogue or None, the format's default k-core)."""
    raw = _read(_resolve(spec), dict(user=user_col, item=item_col, timestamp=time_col, rating=rating_col), sep)
    return raw.frame, raw.catalog, raw.k_core


def format_of(spec: Any) -> str:
    """prepared, ml-100k, movielens-dat, movielens-csv, sasrec-txt (``user item`` pairs), s3rec-txt (one user per
    line), parquet, csv, tsv (or synthetic, dataframe)."""
    path = _resolve(spec)
    if not isinstance(path, Path):
        return "synthetic" if isinstance(path, str) else "dataframe"
    if path.is_dir():
        return "prepared" if (path / META).is_file() else format_of(_ratings_file(path))
    head = _head(path)
    if path.name in ("u.data", "ratings.dat"):
        return "ml-100k" if path.name == "u.data" else "movielens-dat"
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.decode("utf-8", "replace")
    if path.name == "ratings.csv" and text.startswith("userId,movieId"):
        return "movielens-csv"
    if layout := line_layout(path, head):
        return layout
    return "tsv" if _sniff(text) == "\t" else "csv"


# ----------------------------------------------------------------------------------------- dispatch
def _resolve(spec: Any) -> Path | str | pl.DataFrame:
    if isinstance(spec, pl.LazyFrame):
        spec = spec.collect()
    if isinstance(spec, pl.DataFrame):
        return spec
    if type(spec).__module__.split(".")[0] == "pandas" and hasattr(spec, "columns"):
        if any(n is not None for n in spec.index.names):
            spec = spec.reset_index()
        try:
            return pl.from_pandas(spec)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as e:
            raise SeqrecError(f"DataFrame: cannot convert the pandas frame ({e})") from e
    if not isinstance(spec, (str, os.PathLike)):
        raise SeqrecError(f"cannot load data from a {type(spec).__name__}; give a path, a name or a DataFrame")
    path = Path(spec).expanduser()
    if path.is_dir() and (path / CONFIG).is_file() and (path / DATA_DIR / META).is_file():
        return path / DATA_DIR  # a model folder reads as the data it was trained on
    if path.exists():
        return path
    if spec == "synthetic":
        return "synthetic"
    if spec in ML_NAMES:
        places = list(dict.fromkeys([data_home() / spec, Path.home() / ".cache" / "seqrec" / spec]))
        if found := next((p for p in places if p.is_dir()), None):
            return found
        raise SeqrecError(f"data set {spec!r} is not downloaded (looked in {', '.join(map(str, places))}); "
                          f"run `seqrec download {spec}` first")
    raise SeqrecError(f"{spec!r}: no such file or folder, and not a known data set name ({', '.join(NAMES)})")


def _read(spec: Path | str | pl.DataFrame, cols: dict[str, str | None], sep: str | None) -> Raw:
    if isinstance(spec, str):
        from seqrec.synthetic import generate  # lazily: only the synthetic data set needs it

        frame, catalog = generate(seed=0)
        return Raw(frame, catalog, DEFAULT_K_CORE, "synthetic", "synthetic", "synthetic")
    label = "DataFrame" if isinstance(spec, pl.DataFrame) else str(spec)
    try:
        if isinstance(spec, pl.DataFrame):
            frame = _standardise(spec.with_row_index("_line", 1), cols, label, "row")
            return Raw(frame, None, DEFAULT_K_CORE, "dataframe", "<DataFrame>", "dataframe")
        return _read_path(spec, cols, sep)
    except pl.exceptions.PolarsError as e:
        raise SeqrecError(f"{label}: could not read it ({str(e).strip().splitlines()[0]})") from e
    except OSError as e:
        raise SeqrecError(f"{label}: cannot read ({e.strerror or e})") from e


def _read_path(path: Path, cols: dict[str, str | None], sep: str | None) -> Raw:
    fmt = format_of(path)
    if fmt == "prepared":
        return _from_prepared(path)
    if path.is_dir():
        path = _ratings_file(path)
    folder, src = path.parent, str(path)
    name = folder.name if fmt.startswith(("ml-", "movielens")) else path.stem
    if fmt in _MOVIELENS:
        sep, skip, layout, meta, read_catalog = _MOVIELENS[fmt]
        frame = _fixed(path, sep, RATINGS, f"expected {layout} (integers; rating a number)", skip)
        catalog = read_catalog(folder / meta) if (folder / meta).is_file() else None
        return Raw(frame, catalog, DEFAULT_K_CORE, name, src, fmt)
    if fmt in LINE_LAYOUTS:  # already filtered by their authors: no k-core by default
        frame = (_fixed(path, None, RATINGS[:2], "expected two integers 'user item'") if fmt == PAIRS
                 else read_sequences(path))
        return Raw(frame, attributes_beside(path), 0, name, src, fmt)
    if fmt == "parquet":
        frame = _standardise(pl.read_parquet(path).with_row_index("_line", 1), cols, src, "row")
    else:
        frame = _text_table(path, cols, sep)
    return Raw(frame, None, DEFAULT_K_CORE, name, src, fmt)


def _ratings_file(folder: Path) -> Path:
    for name in ("u.data", "ratings.dat", "ratings.csv"):
        if (folder / name).is_file():
            return folder / name
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise SeqrecError(f"{folder}: not a recognised data folder (found {found}); expected a prepared data set "
                      "(meta.json) or a MovieLens folder (u.data, ratings.dat or ratings.csv)")


def _from_prepared(path: Path) -> Raw:
    ds = Dataset.load(path)
    frame = pl.DataFrame({"user": np.repeat(ds.user_ids.raw, ds.lengths), "item": ds.item_ids.raw[ds.items - 1]})
    catalog = ds.catalog.select(c for c in (*CATALOG_COLUMNS, "attributes") if c in ds.catalog.columns)
    return Raw(frame, catalog, 0, str(ds.meta.get("name", path.name)), str(path), "prepared")


# ----------------------------------------------------------------------------------------- line files
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
    df = df.with_columns(part.get(i, null_on_oob=True).str.strip_chars().cast(dtype, strict=False).alias(name)
                         for i, (name, dtype) in enumerate(fields))
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
            df = pl.read_csv(path, separator=sep or " ", has_header=False, quote_char=None, schema=schema,
                             skip_rows=skip)
        if df.height and df.null_count().sum_horizontal()[0] == 0:
            return df
    except pl.exceptions.PolarsError:
        pass
    return _parse_lines(path, sep, fields, expected, skip)


# ----------------------------------------------------------------------------------------- MovieLens catalogues
def _year(title: pl.Expr) -> pl.Expr:
    return title.str.extract(_YEAR_IN_TITLE, 1).cast(pl.Int32, strict=False)


def _genre_list(genres: pl.Expr) -> pl.Expr:
    empty = genres.is_null() | genres.str.strip_chars().is_in(["(no genres listed)", ""])
    return pl.when(empty).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(genres.str.split("|"))


def _ml100k_catalog(item_file: Path) -> pl.DataFrame:
    folder = item_file.parent
    names = list(ML100K_GENRES)
    if (folder / "u.genre").is_file():
        names = _lines(_decoded(folder / "u.genre")).select(_split("|").list.first())["line"].to_list() or names
    p = pl.col("_p").list
    df = _lines(_decoded(folder / "u.item")).with_columns(_split("|").alias("_p"))
    df = df.with_columns(p.get(0).str.to_integer(strict=False).alias("raw_id"))
    _fail(folder / "u.item", df.filter(pl.col("raw_id").is_null() | (p.len() < 3 + len(names))).head(1),
          f"expected 'id|title|release date|video date|url|{len(names)} genre flags'")
    title = p.get(1).str.strip_chars()
    date_year = p.get(2).str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False)
    flags = p.slice(-len(names)).list
    genres = pl.concat_list(pl.when(flags.get(j) == "1").then(pl.lit(n)) for j, n in enumerate(names))
    return df.select("raw_id", title.alias("title"), genres.list.drop_nulls().alias("genres"),
                     date_year.fill_null(_year(title)).alias("year"))


def _ml_dat_catalog(path: Path) -> pl.DataFrame:
    p = pl.col("_p").list
    df = _lines(_decoded(path)).with_columns(_split("::").alias("_p"))
    df = df.with_columns(p.get(0).str.to_integer(strict=False).alias("raw_id"))
    _fail(path, df.filter(pl.col("raw_id").is_null() | (p.len() < 3)).head(1), "expected 'id::title::genres'")
    title = p.slice(1, p.len() - 2).list.join("::").str.strip_chars()
    return df.select("raw_id", title.alias("title"), _genre_list(p.last()).alias("genres"), _year(title).alias("year"))


def _ml_csv_catalog(path: Path) -> pl.DataFrame:
    df = pl.read_csv(_decoded(path), infer_schema=False)
    if {"movieId", "title", "genres"} - set(df.columns):
        raise SeqrecError(f"{path}: expected columns movieId,title,genres, found {','.join(df.columns)}")
    title = pl.col("title").str.strip_chars()
    return df.select(pl.col("movieId").str.to_integer(strict=False).alias("raw_id"), title.alias("title"),
                     _genre_list(pl.col("genres")).alias("genres"), _year(title).alias("year")).drop_nulls("raw_id")


_MOVIELENS = {  # format: separator, header lines, layout, catalogue file beside the ratings, its reader
    "ml-100k": ("\t", 0, "4 tab-separated fields 'user item rating timestamp'", "u.item", _ml100k_catalog),
    "movielens-dat": ("::", 0, "'user::item::rating::timestamp'", "movies.dat", _ml_dat_catalog),
    "movielens-csv": (",", 1, "'userId,movieId,rating,timestamp'", "movies.csv", _ml_csv_catalog),
}


# ----------------------------------------------------------------------------------------- generic tables
def _sniff(text: str) -> str | None:
    """The separator of a delimited text sample: , tab ; | or None for whitespace."""
    lines = [ln for ln in text.splitlines() if ln.strip()][:20]
    lines = lines[:-1] if len(lines) > 2 else lines
    best, best_n = None, 0
    for cand in (",", "\t", ";", "|"):
        counts = [ln.count(cand) for ln in lines]
        if counts and min(counts) > 0 and counts[0] > best_n:
            best, best_n = cand, counts[0]
    return best


def _text_table(path: Path, cols: dict[str, str | None], sep: str | None) -> pl.DataFrame:
    if sep is None:
        sep = _sniff(_head(path).decode("utf-8", "replace"))
    sep = {"\\t": "\t", "tab": "\t", "whitespace": " "}.get(sep, sep) if sep else None
    if sep is None or sep == " ":  # whitespace-separated, with a header line
        df = _lines(path).with_columns(_split(None).alias("_p"))
        if df.height == 0:
            raise SeqrecError(f"{path}: no data lines")
        header = df["_p"][0].to_list()
        body = df.slice(1)
        _fail(path, body.filter(pl.col("_p").list.len() != len(header)).head(1),
              f"expected {len(header)} whitespace-separated fields like the header")
        fields = (pl.col("_p").list.get(i).alias(h) for i, h in enumerate(header))
        frame = body.select(pl.col("lineno").alias("_line"), *fields)
        return _standardise(frame, cols, str(path), "line")
    if len(sep) != 1:
        raise SeqrecError(f"{path}: the separator must be one character, got {sep!r}")
    header = pl.read_csv(path, separator=sep, infer_schema=False, n_rows=0, encoding="utf8-lossy").columns
    roles = _pick(header, cols, str(path))
    if (plain := _plain_table(path, sep, header, roles)) is not None:
        return plain
    wanted = list(dict.fromkeys(roles.values()))
    try:
        frame = pl.read_csv(path, separator=sep, infer_schema=False, columns=wanted, row_index_name="_line",
                            row_index_offset=2, encoding="utf8-lossy")
    except pl.exceptions.ComputeError:
        count = pl.col("line").str.count_matches(re.escape(sep), literal=True)
        _fail(path, _lines(path).filter(count != len(header) - 1).head(1),
              f"expected {len(header)} fields separated by {sep!r}")
        raise
    return _standardise(frame, cols, str(path), "line")


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
