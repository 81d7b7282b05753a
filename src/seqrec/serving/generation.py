"""The model in service as a *generation* recorded in the event store, so that a reload reaches every worker
and every replica sharing the store.

A generation is (counter, model folder, digest of the folder's ``manifest.json``). ``POST /admin/reload``
loads and checks the folder first (``seqrec.serving.live.load_checked``: a broken folder is refused and
nothing is recorded), then records the next generation (``record_generation``) and swaps the model in.
Every worker of every replica runs ``watch``: at most once a second (``GENERATION_CHECK_S``) it reads the
recorded generation (one small query) and, when it is newer than the one it holds, loads that folder the same
checked way, checks that its manifest still has the recorded digest, and swaps it in. A folder that fails is
logged and the worker keeps its model (and tries that generation again every ``REFUSED_RETRY_S``). A worker that starts on a
store with a generation serves that generation (the fleet's model), not the folder it was started with.

``GET /model`` says which generation a worker holds (``generation_info``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from seqrec.errors import SeqrecError
from seqrec.files import MANIFEST
from seqrec.serving.store import BUSY_MS, StoreError
from seqrec.serving.store_pg import PgEventStore

log = logging.getLogger("seqrec.serve")
GENERATION_CHECK_S = 1.0  # seconds between a worker's reads of the recorded generation
REFUSED_RETRY_S = 30.0  # a generation a worker could not load is tried again after this long (a late copy)
_TABLE = (
    "CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL, "
    "path TEXT NOT NULL, digest TEXT NOT NULL, ts REAL NOT NULL)"
)


@dataclass(frozen=True)
class Generation:
    counter: int
    path: str
    digest: str


def folder_digest(path: str | os.PathLike) -> str:
    """The sha256 of a model folder's manifest (which lists every file's sha256); of nothing without one."""
    try:
        data = (Path(path) / MANIFEST).read_bytes()
    except OSError:
        data = b""
    return hashlib.sha256(data).hexdigest()


def _sqlite(store: Any) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(store.path, timeout=BUSY_MS / 1000, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as e:
        raise StoreError(f"{store.path}: cannot open the event store ({e})") from None
    return conn


def current_generation(store: Any) -> Generation | None:
    """The generation recorded in ``store``, None before the first reload."""
    if isinstance(store, PgEventStore):
        row = store.generation()
        return None if row is None else Generation(*row)
    conn = _sqlite(store)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'generation'").fetchone():
            return None
        rows = conn.execute("SELECT counter, path, digest FROM generation WHERE id = 1").fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"{store.path}: cannot read the model generation ({e})") from None
    finally:
        conn.close()
    return Generation(int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def record_generation(store: Any, path: str, digest: str) -> Generation:
    """Record the next generation (durably) and return it."""
    if isinstance(store, PgEventStore):
        return Generation(store.record_generation(path, digest), path, digest)
    conn = _sqlite(store)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_TABLE)
        conn.execute(
            "INSERT INTO generation VALUES (1, 1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "counter = counter + 1, path = excluded.path, digest = excluded.digest, ts = excluded.ts",
            (path, digest, time.time()),
        )
        counter = conn.execute("SELECT counter FROM generation WHERE id = 1").fetchone()[0]
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"{store.path}: could not record the model generation ({e})") from None
    finally:
        conn.close()
    return Generation(int(counter), path, digest)


def generation_info(app: FastAPI) -> dict[str, Any] | None:
    """The generation a worker holds, for ``GET /model`` (None without a store or before the first reload)."""
    held: Generation | None = getattr(app.state, "generation", None)
    if held is None:
        return None
    return {"counter": held.counter, "path": held.path, "digest": held.digest, "worker": os.getpid()}


async def follow(app: FastAPI) -> bool:
    """Swap in the recorded generation when it is newer than the one held; whether the model changed."""
    from seqrec.serving.loading import apply_availability, load_checked

    store = app.state.store
    recorded = await asyncio.to_thread(current_generation, store)
    held: Generation | None = getattr(app.state, "generation", None)
    if recorded is None or (held is not None and held.counter >= recorded.counter):
        return False
    refused = getattr(app.state, "refused_generation", None)
    if refused is not None and refused[0] == recorded.counter and time.monotonic() - refused[1] < REFUSED_RETRY_S:
        return False
    served = getattr(app.state, "served_digest", None)
    if held is None and recorded.digest == served:
        app.state.generation = recorded  # started on the recorded folder: nothing to load
        return False
    lock: asyncio.Lock = app.state.reload_lock
    if lock.locked():
        return False  # a reload of this worker is running; look again next time
    async with lock:
        old = app.state.recommender
        index = "exact" if old is None else old.index_kind
        try:
            new = await asyncio.to_thread(load_checked, recorded.path, app.state.backend, index)
            digest = await asyncio.to_thread(folder_digest, recorded.path)
            if digest != recorded.digest:
                raise SeqrecError(
                    f"{recorded.path}: its manifest changed since generation {recorded.counter} was recorded"
                )
        except SeqrecError as e:
            app.state.refused_generation = (recorded.counter, time.monotonic())
            log.error(
                "worker %d: generation %s refused, keeping %s: %s",
                os.getpid(),
                recorded.counter,
                None if old is None else old.name,
                e,
            )
            return False
        await asyncio.to_thread(apply_availability, new, store)
        app.state.recommender = new  # requests that took the old reference finish on it
        app.state.model_path, app.state.generation = recorded.path, recorded
        app.state.served_digest = recorded.digest
        del old
        log.warning(
            "worker %d: generation %s: now serving %s from %s", os.getpid(), recorded.counter, new.name, recorded.path
        )
        return True


async def watch(app: FastAPI, interval: float = GENERATION_CHECK_S) -> None:
    """Follow the recorded generation until cancelled (a failed look is logged and tried again)."""
    while True:
        try:
            await follow(app)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a store that is away for a moment: the model in service keeps serving
            log.warning("could not read the model generation: %s", e)
        await asyncio.sleep(interval)
