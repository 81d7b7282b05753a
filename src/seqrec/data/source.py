"""Where interactions come from and in what format, found once: ``locate(spec) -> Source``.

A spec is a path (a file, a MovieLens folder, a prepared data folder, a model folder: its data), a data set
name (``synthetic``, ``ml-1m``, ...: downloaded ones live under ``data_home()``), or a pandas / polars frame.
The format is told from names and the first bytes: prepared, ml-100k, movielens-dat, movielens-csv,
sasrec-txt (``user item`` pairs), s3rec-txt (one user per line; ``seqrec.data.layouts`` tells the two apart),
parquet, csv, tsv, synthetic or dataframe.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from seqrec.data.layouts import _head, line_layout
from seqrec.errors import SeqrecError
from seqrec.files import CONFIG, DATA_DIR, META

ML_NAMES = ("ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "ml-20m", "ml-25m", "ml-32m")
NAMES = ("synthetic", *ML_NAMES)


@dataclass(frozen=True)
class Source:
    """A located input: its format, and the file (the ratings file of a MovieLens folder, the folder of a
    prepared data set) or the frame it is read from."""

    format: str
    path: Path | None = None
    frame: pl.DataFrame | None = None

    @property
    def label(self) -> str:
        """How errors name it."""
        return "DataFrame" if self.frame is not None else str(self.path) if self.path is not None else self.format

    @property
    def name(self) -> str:
        """The data set's name: the MovieLens folder's, else the file's stem."""
        if self.path is None:
            return self.format
        if self.format.startswith(("ml-", "movielens")):
            return self.path.parent.name
        return self.path.name if self.format == "prepared" else self.path.stem


def locate(spec: Any) -> Source:
    """The ``Source`` of ``spec`` (see the module's docstring); an unknown name or a missing path is a
    ``SeqrecError``."""
    resolved = _resolve(spec)
    if isinstance(resolved, pl.DataFrame):
        return Source("dataframe", frame=resolved)
    if isinstance(resolved, str):
        return Source("synthetic")
    if resolved.is_dir():
        if (resolved / META).is_file():
            return Source("prepared", resolved)
        resolved = _ratings_file(resolved)
    return Source(_file_format(resolved), resolved)


def format_of(spec: Any) -> str:
    """The format ``locate`` finds for ``spec``."""
    return locate(spec).format


def data_home() -> Path:
    """Where named data sets live: ``$SEQREC_DATA`` or ``~/.cache/seqrec``."""
    env = os.environ.get("SEQREC_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqrec"


def _file_format(path: Path) -> str:
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
    return "tsv" if sniff(text) == "\t" else "csv"


def _resolve(spec: Any) -> Path | str | pl.DataFrame:
    if isinstance(spec, pl.LazyFrame):
        spec = spec.collect()
    if isinstance(spec, pl.DataFrame):
        return spec
    if type(spec).__module__.split(".")[0] == "pandas" and hasattr(spec, "columns"):
        if any(n is not None for n in spec.index.names):
            spec = spec.reset_index()
        names = [str(c) for c in spec.columns]
        if len(set(names)) < len(names):
            twice = next(c for c in names if names.count(c) > 1)
            raise SeqrecError(
                f"DataFrame: column {twice!r} appears {names.count(twice)} times; which one is meant "
                f"is unclear: rename or drop the others"
            )
        try:
            return pl.from_pandas(spec)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as e:
            raise SeqrecError(f"DataFrame: cannot convert the pandas frame ({e})") from e
    if not isinstance(spec, (str, os.PathLike)):
        raise SeqrecError(f"cannot load data from a {type(spec).__name__}; give a path, a name or a DataFrame")
    path = Path(spec).expanduser()
    try:
        if path.is_dir() and (path / CONFIG).is_file() and (path / DATA_DIR / META).is_file():
            return path / DATA_DIR  # a model folder reads as the data it was trained on
        if path.exists():
            return path
    except OSError as e:  # a name the system refuses: a component over 255 characters, no permission
        raise SeqrecError(f"{spec}: cannot read this path ({e.strerror or e})") from None
    if spec == "synthetic":
        return "synthetic"
    if spec in ML_NAMES:
        places = list(dict.fromkeys([data_home() / spec, Path.home() / ".cache" / "seqrec" / spec]))
        if found := next((p for p in places if p.is_dir()), None):
            return found
        raise SeqrecError(
            f"data set {spec!r} is not downloaded (looked in {', '.join(map(str, places))}); "
            f"run `seqrec download {spec}` first"
        )
    raise SeqrecError(f"{spec!r}: no such file or folder, and not a known data set name ({', '.join(NAMES)})")


def _ratings_file(folder: Path) -> Path:
    for name in ("u.data", "ratings.dat", "ratings.csv"):
        if (folder / name).is_file():
            return folder / name
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise SeqrecError(
        f"{folder}: not a recognised data folder (found {found}); expected a prepared data set "
        "(meta.json) or a MovieLens folder (u.data, ratings.dat or ratings.csv)"
    )


_QUOTED = re.compile(r'(?m)(?:^|(?<=[,\t;|]))"(?:[^"]|"")*(?:"|\Z)')  # a quoted field (to the end of a cut sample)


def sniff(text: str) -> str | None:
    """The separator of a delimited text sample: , tab ; | or None for whitespace. Quoted fields (CSV quoting,
    which ``seqrec export-events`` writes) are data: their separators and line ends do not count; lines end
    at ``\n`` only (text may hold U+2028, form feeds and the like)."""
    text = _QUOTED.sub('""', text)
    lines = [ln for ln in text.split("\n") if ln.strip()][:20]
    lines = lines[:-1] if len(lines) > 2 else lines
    best, best_n = None, 0
    for cand in (",", "\t", ";", "|"):
        counts = [ln.count(cand) for ln in lines]
        if counts and min(counts) > 0 and counts[0] > best_n:
            best, best_n = cand, counts[0]
    return best
