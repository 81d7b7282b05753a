"""The event store: interactions recorded while the service runs, in one SQLite file.

``EventStore(path)`` opens (or creates) the file in WAL mode with ``synchronous=FULL``: an event counts as
stored once its transaction is committed and the WAL synced, and ``append`` returns only then. One
writer thread owns the one writing connection; everything queued while a commit runs goes into the
next transaction (group commit), so many small requests share one fsync. Reads use a connection per
thread, beside the writer (WAL readers never wait for it).

The ``events`` table holds ``user_id TEXT``, ``item_id TEXT``, ``ts REAL`` (epoch seconds) with
``UNIQUE(user_id, item_id, ts)``: an event sent twice (a retried request with its ``ts``) is stored once
and counted as a duplicate. Ids are stored in the readers' one form (``seqrec.data.dataset.id_key``: ``242``,
``242.0`` and ``"242"`` are the id ``"242"``; text trimmed; empty ids and missing-value markers refused),
so the service, ``seqrec export-events`` and training from the store see the ids a data file would give.

Each event may carry a ``type`` (``seqrec.serving.policy``: ``view``, ``purchase``, ``dislike``, ...; NULL
for an untyped event). The ``availability`` table holds the items made unavailable (``set_available``),
so that they stay so across restarts and reloads. A store of format 1 gains both when opened.

``read_events(path)`` is the whole store as a polars frame (``user_id``, ``item_id``, ``timestamp``, ``type``),
in the order events were stored; ``export_events`` writes it as Parquet or CSV, atomically. With a policy both
keep only the events that enter the history (``EventPolicy.in_history``).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import polars as pl

from seqrec.errors import SeqrecError
from seqrec.serving.event_rules import Appended, Event, StoreError, _row, normalise_id, normalise_ts  # noqa: F401

APPLICATION_ID = 0x53515243  # "SQRC" in the SQLite header: a file this module made
FORMAT = 2  # PRAGMA user_version (2: events.type and the availability table)
MAX_GROUP = 512  # requests per transaction at most
BUSY_MS = 10_000  # how long a connection waits for another process's write lock
READ_CHUNK = 50_000  # rows per fetch when iterating
EXPORT_SUFFIXES = (".parquet", ".csv")
COLUMNS = {"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Float64, "type": pl.String}
_SCHEMA = (
    (
        "CREATE TABLE IF NOT EXISTS events (user_id TEXT NOT NULL, item_id TEXT NOT NULL, ts REAL NOT NULL, "
        "type TEXT, UNIQUE (user_id, item_id, ts))"
    ),
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts)",
)
_AVAILABILITY = (
    "CREATE TABLE IF NOT EXISTS availability (item_id TEXT PRIMARY KEY, available INTEGER NOT NULL, ts REAL NOT NULL)"
)
_INSERT = "INSERT OR IGNORE INTO events (user_id, item_id, ts, type) VALUES (?, ?, ?, ?)"
_SET_AVAILABLE = (
    "INSERT INTO availability (item_id, available, ts) VALUES (?, ?, ?) "
    "ON CONFLICT (item_id) DO UPDATE SET available = excluded.available, ts = excluded.ts"
)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the event store ({e})") from None
    return conn


class EventStore:
    """Interactions in one SQLite file: ``append`` (durable, idempotent), ``history``, ``events``, ``frame``.

    ``create=False`` opens an existing store only (``SeqrecError`` naming the file otherwise). Thread-safe;
    ``close`` waits for queued writes. Usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise SeqrecError(f"{self.path}: is a folder; give the event store's file name (e.g. events.db)")
        if not create and not self.path.is_file():
            raise SeqrecError(f"{self.path}: no such event store")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path)
        try:
            self._setup(create)
        except BaseException:
            self._conn.close()
            raise
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[list[tuple], Future, str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _setup(self, create: bool) -> None:
        conn, path = self._conn, self.path
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise SeqrecError(f"{path}: not an event store (SQLite says: {e})") from None
        if tables and app_id != APPLICATION_ID:
            raise SeqrecError(
                f"{path}: an SQLite file that seqrec did not make (tables: {', '.join(sorted(tables))}); "
                f"give a new file name for the event store"
            )
        if version > FORMAT:
            raise SeqrecError(f"{path}: event store format {version}; this seqrec reads format {FORMAT}")
        if not tables and not create:
            raise SeqrecError(f"{path}: not an event store (it holds no events table)")
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise SeqrecError(f"{path}: the event store needs WAL mode, SQLite gave {mode!r}")
            conn.execute("PRAGMA synchronous=FULL")
            if not tables:
                conn.execute("BEGIN IMMEDIATE")
                for statement in (*_SCHEMA, _AVAILABILITY):
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={FORMAT}")
                conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{path}: cannot set up the event store ({e})") from None
        columns = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
        if columns not in (["user_id", "item_id", "ts"], ["user_id", "item_id", "ts", "type"]):
            raise SeqrecError(
                f"{path}: not an event store (the events table has columns {columns}, "
                f"expected user_id, item_id, ts, type)"
            )
        if len(columns) == 3 or version < FORMAT:  # a format 1 store: gains event types and availability
            try:
                conn.execute("BEGIN IMMEDIATE")
                if "type" not in [r[1] for r in conn.execute("PRAGMA table_info(events)")]:
                    conn.execute("ALTER TABLE events ADD COLUMN type TEXT")
                conn.execute(_AVAILABILITY)
                conn.execute(f"PRAGMA user_version={FORMAT}")
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"{path}: cannot update the event store to format {FORMAT} ({e})") from None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def submit(self, events: Iterable[Any]) -> Future[Appended]:
        """Queue ``events`` for the writer; the future holds their ``Appended`` once committed and synced.

        Ids and times are checked here (``SeqrecError`` naming the event and field); an event without
        ``ts`` gets the time of this call. The future fails with ``StoreError`` when the commit fails.
        """
        now = time.time()
        return self._submit([_row(e, now, n) for n, e in enumerate(events)], _INSERT)

    def _submit(self, rows: list[tuple], statement: str) -> Future[Appended]:
        future: Future[Appended] = Future()
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.path}: the event store is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_loop, name="seqrec-store", daemon=True)
                self._thread.start()
            self._queue.put((rows, future, statement))
        return future

    def set_available(self, item_ids: Iterable[Any], available: bool) -> Future[Appended]:
        """Record (durably, as events are) whether items may be recommended; the future completes once synced."""
        now = time.time()
        rows = [(normalise_id(i, "item_id"), int(bool(available)), now) for i in item_ids]
        return self._submit(rows, _SET_AVAILABLE)

    def unavailable(self) -> list[str]:
        """The stored ids of the items made unavailable, in the order last changed."""
        return [r[0] for r in self._query("SELECT item_id FROM availability WHERE available = 0 ORDER BY ts, rowid")]

    def available(self, item_id: Any) -> bool:
        """Whether an item may be recommended (true unless made unavailable)."""
        rows = self._query("SELECT available FROM availability WHERE item_id = ?", (normalise_id(item_id, "item_id"),))
        return not rows or bool(rows[0][0])

    def append(self, events: Iterable[Any]) -> Appended:
        """Store ``events`` and return once they are durable: (stored, duplicates)."""
        return self.submit(events).result()

    def _write_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._commit([j for j in jobs if j[1].set_running_or_notify_cancel()])
            if stop:
                return

    def _commit(self, jobs: list[tuple[list[tuple], Future, str]]) -> None:
        if not jobs:
            return
        conn, counts = self._conn, []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rows, _, statement in jobs:
                counts.append(conn.executemany(statement, rows).rowcount if rows else 0)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            error = StoreError(f"{self.path}: the event store could not write ({e})")
            for _, future, _ in jobs:
                future.set_exception(error)
            return
        for (rows, future, _), n in zip(jobs, counts):
            future.set_result(Appended(stored=n, duplicates=len(rows) - n))

    def close(self) -> None:
        """Write what is queued, stop the writer and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()
        for conn in [*self._readers, self._conn]:
            conn.close()

    # ------------------------------------------------------------------ reading
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise StoreError(f"{self.path}: the event store is closed")
                conn = _connect(self.path)
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._reader().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: the event store could not be read ({e})") from None

    def history(self, user: Any, limit: int | None = None, after: int = 0) -> list[Event]:
        """The user's events, oldest first (by ``ts``, then as stored); only the latest ``limit`` when given;
        only those stored after the mark ``after`` (``read_marked``), e.g. those a model has not trained on."""
        key = normalise_id(user, "user_id")
        if limit is not None and limit < 1:
            return []
        rows = self._query(
            "SELECT item_id, ts, type FROM events WHERE user_id = ? AND rowid > ? ORDER BY ts DESC, rowid DESC LIMIT ?",
            (key, int(after), -1 if limit is None else int(limit)),
        )
        return [Event(key, item, ts, kind) for item, ts, kind in reversed(rows)]

    def count(self, user: Any | None = None) -> int:
        """How many events are stored (for one user, when given)."""
        if user is None:
            return int(self._query("SELECT count(*) FROM events")[0][0])
        return int(self._query("SELECT count(*) FROM events WHERE user_id = ?", (normalise_id(user, "user_id"),))[0][0])

    def events(self, chunk: int = READ_CHUNK) -> Iterator[Event]:
        """Every stored event, in the order stored, read ``chunk`` rows at a time (one consistent snapshot)."""
        for rows in self._chunks(chunk):
            yield from (Event(*r) for r in rows)

    def _chunks(self, chunk: int, rowid: bool = False) -> Iterator[list[tuple]]:
        conn = _connect(self.path)  # its own connection: one read transaction for the whole walk
        try:
            conn.execute("BEGIN")
            cursor = conn.execute(
                f"SELECT user_id, item_id, ts, type{', rowid' if rowid else ''} FROM events ORDER BY rowid"
            )
            while rows := cursor.fetchmany(chunk):
                yield rows
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: the event store could not be read ({e})") from None
        finally:
            conn.close()

    def frame(self) -> pl.DataFrame:
        """Every stored event as a polars frame: ``user_id``, ``item_id`` (text), ``timestamp`` (epoch seconds)."""
        parts = [pl.DataFrame(rows, schema=COLUMNS, orient="row") for rows in self._chunks(READ_CHUNK)]
        return pl.concat(parts) if parts else pl.DataFrame(schema=COLUMNS)
