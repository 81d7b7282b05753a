"""``seqrec synthetic``: a synthetic log (and optionally its catalogue) written to CSV or Parquet.

Files are written atomically (a temp file beside the target, fsynced, renamed, the folder fsynced),
the interactions a chunk of users at a time (``seqrec.data.synthetic.scale.iter_chunks``) while the next
chunk is generated, so memory stays that of a chunk or two. An existing file is replaced only when
seqrec wrote it (a Parquet file with seqrec's key in its metadata, a CSV whose first line is the header
seqrec writes) or with ``force``; anything else is refused naming the file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from seqrec.errors import SeqrecError
from seqrec.files import atomic_write_with

SUFFIXES = (".csv", ".parquet")
_KEY = b"created_by"
_VALUE = b"seqrec synthetic"
INTERACTION_HEADER = "user,item,timestamp"
CATALOG_HEADER = "raw_id,title,genres,year"
TABLE_HEADER = "user_id,rank,item_id,score"  # seqrec recommend --all-users


def _seqrec_wrote(path: Path) -> bool:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return (pq.read_metadata(path).metadata or {}).get(_KEY, b"").startswith(b"seqrec ")
        with open(path, "rb") as f:
            first = f.readline(200).rstrip(b"\r\n").decode("utf-8", "replace")
        return first in (INTERACTION_HEADER, CATALOG_HEADER, TABLE_HEADER)
    except (OSError, ValueError):  # unreadable or not Parquet (pyarrow's errors are these): not seqrec's
        return False


def check_output_file(path: Path, force: bool, flag: str = "--out") -> None:
    """Refuse (before any work) a name that is not .csv / .parquet, a folder, or a file seqrec did not write."""
    if path.suffix.lower() not in SUFFIXES:
        raise SeqrecError(f"{flag}: {path}: expected a file name ending in .csv or .parquet")
    if path.is_dir():
        raise SeqrecError(f"{flag}: {path} is a folder; give the name of the file to write")
    if path.exists() and not force and not _seqrec_wrote(path):
        raise SeqrecError(f"{flag}: {path} exists and was not written by seqrec; give --force to replace it")


def write_frames(path: Path, frames: Iterator[pl.DataFrame], created_by: bytes = _VALUE) -> int:
    """Write the frames one after the other as one CSV or Parquet file (by suffix), atomically; the rows.
    A Parquet file records ``created_by`` in its metadata (how seqrec knows the files it may replace)."""
    parquet = path.suffix.lower() == ".parquet"
    rows = 0

    def write(f: Any) -> None:
        nonlocal rows
        writer = None
        with ThreadPoolExecutor(1) as pool:  # write one chunk while the next is generated
            pending = None
            for i, frame in enumerate(frames):
                if pending is not None:
                    pending.result()
                if parquet:
                    import pyarrow.parquet as pq

                    table = frame.to_arrow()
                    if writer is None:
                        writer = pq.ParquetWriter(f, table.schema.with_metadata({_KEY: created_by}), compression="zstd")
                    pending = pool.submit(writer.write_table, table)
                else:
                    pending = pool.submit(frame.write_csv, f, include_header=i == 0)
                rows += frame.height
            if pending is not None:
                pending.result()
        if writer is not None:
            writer.close()

    atomic_write_with(path, write, public=True)
    return rows


def _catalog_csv(catalog: pl.DataFrame) -> pl.DataFrame:
    return catalog.with_columns(pl.col("genres").list.join("|"))


def write_synthetic(
    out: str | os.PathLike,
    n_users: int | None = None,
    n_items: int | None = None,
    n_interactions: int | None = None,
    seed: int = 0,
    catalog: str | os.PathLike | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write a synthetic log to ``out`` (and its catalogue to ``catalog``); without sizes the embedded
    data set (``seqrec.data.synthetic.story.generate(seed)``), else ``seqrec.data.synthetic.scale`` at those sizes
    (all three needed). Returns counts and seconds."""
    out = Path(out)
    check_output_file(out, force)
    cat_path = Path(catalog) if catalog is not None else None
    if cat_path is not None:
        check_output_file(cat_path, force, "--catalog")
        if cat_path.resolve() == out.resolve():
            raise SeqrecError("--catalog: must be another file than --out")
    sizes = (n_users, n_items, n_interactions)
    t = time.perf_counter()
    if all(s is None for s in sizes):
        from seqrec.data.synthetic.story import generate

        frame, cat = generate(seed=seed)
        frames: Iterator[pl.DataFrame] = iter([frame])
    elif any(s is None for s in sizes):
        raise SeqrecError("synthetic: give all of --users, --items and --interactions, or none (the embedded data set)")
    else:
        from seqrec.data.synthetic.scale import iter_chunks, layout

        assert n_users is not None and n_items is not None and n_interactions is not None
        lay = layout(seed, n_items)
        cat = lay.catalog
        frames = iter_chunks(n_users, n_items, n_interactions, seed, lay=lay)
    rows = write_frames(out, frames)
    if cat_path is not None:
        write_frames(cat_path, iter([cat if cat_path.suffix.lower() == ".parquet" else _catalog_csv(cat)]))
    return {
        "out": str(out),
        "interactions": rows,
        "items": cat.height,
        "catalog": str(cat_path or ""),
        "seconds": time.perf_counter() - t,
    }
