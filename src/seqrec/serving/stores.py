"""One way to open an event store, whichever kind: ``open_store(spec)`` gives the SQLite ``EventStore`` for a
file name (the default: nothing extra to install) and the PostgreSQL ``PgEventStore`` for a
``postgresql://user@host:port/db`` URL (``pip install seqrec[postgres]``). The service, ``seqrec export-events``
and ``seqrec train --from-store`` open their store here, so each takes either.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import polars as pl

from seqrec.errors import SeqrecError
from seqrec.files import atomic_write_bytes
from seqrec.serving.store import COLUMNS, EXPORT_SUFFIXES, READ_CHUNK, EventStore
from seqrec.serving.store_pg import PgEventStore, is_url, shown_url

ENV_STORE = "SEQREC_STORE"  # the store of ``seqrec serve`` when --store is not given

AnyStore = EventStore | PgEventStore


def open_store(spec: str | os.PathLike, *, create: bool = True) -> AnyStore:
    """The event store ``spec`` names: a PostgreSQL URL or an SQLite file (``create=False``: an existing one only)."""
    if is_url(spec):
        return PgEventStore(str(spec), create=create)
    return EventStore(spec, create=create)


def store_identity(spec: str | os.PathLike) -> str:
    """What names a store in a model's ``store_mark``: the URL without its password, or the file's full path."""
    return shown_url(str(spec)) if is_url(spec) else str(Path(spec).resolve())


def same_store(recorded: Any, store: Any) -> bool:
    """Whether the store a model's mark names (``store_identity``) is ``store``."""
    if not isinstance(recorded, str):
        return False
    if isinstance(store, PgEventStore):
        return recorded == store.path
    try:
        return not is_url(recorded) and Path(recorded).resolve() == Path(store.path).resolve()
    except (OSError, TypeError, ValueError):
        return False


def _kept(frame: pl.DataFrame, policy: Any) -> pl.DataFrame:
    """The events of ``frame`` whose type enters the history under ``policy`` (all of them without one)."""
    if policy is None or not frame.height:
        return frame
    types = frame["type"].unique().to_list()
    dropped = [t for t in types if not policy.in_history(t)]
    return frame.filter(~pl.col("type").is_in(dropped).fill_null(False)) if dropped else frame


def read_marked(spec: str | os.PathLike, policy: Any = None) -> tuple[pl.DataFrame, int]:
    """``read_events`` and the store's mark at that moment (the last event's row id, 0 when empty), read in
    one snapshot: a model trained on these events records the mark, and the service, serving that model
    on this store, adds to users' histories only the events stored after it (none is counted twice)."""
    with open_store(spec, create=False) as store:
        schema = {**COLUMNS, "rowid": pl.Int64}
        parts = [pl.DataFrame(rows, schema=schema, orient="row") for rows in store._chunks(READ_CHUNK, rowid=True)]
    frame = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    mark = int(frame["rowid"].max() or 0) if frame.height else 0  # type: ignore[arg-type]
    return _kept(frame.drop("rowid"), policy), mark


def read_events(spec: str | os.PathLike, policy: Any = None) -> pl.DataFrame:
    """An existing store's events as a polars frame (``user_id``, ``item_id``, ``timestamp``, ``type``), in the
    order stored; the frame ``seqrec.data.readers.load_dataset`` reads like any interaction table. With
    ``policy`` (``seqrec.serving.policy.EventPolicy``) only the events that enter the history."""
    with open_store(spec, create=False) as store:
        return _kept(store.frame(), policy)


def export_events(spec: str | os.PathLike, out: str | os.PathLike, policy: Any = None) -> tuple[Path, int]:
    """Write an existing store's events to ``out`` (Parquet or CSV, by its extension), atomically (with
    ``policy``, those that enter the history); returns the file and the number of events."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise SeqrecError(f"{out}: expected a file name ending in .parquet or .csv")
    if out.is_dir():
        raise SeqrecError(f"{out}: is a folder; give the name of the file to write")
    frame = read_events(spec, policy)
    buffer = io.BytesIO()
    if suffix == ".parquet":
        frame.write_parquet(buffer)
    else:
        frame.write_csv(buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return out, frame.height
