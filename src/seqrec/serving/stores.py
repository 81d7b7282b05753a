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
from seqrec.serving import store as sqlite_store
from seqrec.serving.store import COLUMNS, EXPORT_SUFFIXES, READ_CHUNK, EventStore, _kept
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


def read_marked(spec: str | os.PathLike, policy: Any = None) -> tuple[pl.DataFrame, int]:
    """``seqrec.serving.store.read_marked`` for either kind of store."""
    if not is_url(spec):
        return sqlite_store.read_marked(spec, policy)
    with PgEventStore(str(spec), create=False) as store:
        schema = {**COLUMNS, "rowid": pl.Int64}
        parts = [pl.DataFrame(rows, schema=schema, orient="row") for rows in store._chunks(READ_CHUNK, rowid=True)]
    frame = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    mark = int(frame["rowid"].max() or 0) if frame.height else 0  # type: ignore[arg-type]
    return _kept(frame.drop("rowid"), policy), mark


def read_events(spec: str | os.PathLike, policy: Any = None) -> pl.DataFrame:
    """``seqrec.serving.store.read_events`` for either kind of store."""
    with open_store(spec, create=False) as store:
        return _kept(store.frame(), policy)


def export_events(spec: str | os.PathLike, out: str | os.PathLike, policy: Any = None) -> tuple[Path, int]:
    """``seqrec.serving.store.export_events`` for either kind of store."""
    if not is_url(spec):
        return sqlite_store.export_events(spec, out, policy)
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
