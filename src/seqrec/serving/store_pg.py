"""The event store on PostgreSQL (``--store postgresql://user@host:port/db``), for several replicas.

``PgEventStore(url)`` keeps the contract of ``seqrec.serving.store.EventStore``: ``append`` returns once the
transaction is committed (PostgreSQL's ``synchronous_commit`` on: the WAL is flushed before the commit
returns); ``(user_id, item_id, ts)`` is stored once (``ON CONFLICT DO NOTHING``); ids are stored in the
readers' one form (``normalise_id``). One writer thread per process groups what is queued into one
transaction, which takes a transaction-level advisory lock first: writers of every replica commit one at a
time, so event ids grow in commit order and the mark ``read_marked`` records (the last id) never leaves
behind an event committed later with a smaller id. Reads borrow connections from a ``psycopg_pool``.

PostgreSQL text cannot hold the NUL character: an id with one is refused (``SeqrecError``, a 400) rather
than failing the transaction it would share with other requests.

Needs the ``postgres`` extra: ``pip install seqrec[postgres]`` (psycopg 3 and psycopg_pool).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import polars as pl

from seqrec.errors import SeqrecError
from seqrec.serving.store import (
    COLUMNS,
    MAX_GROUP,
    READ_CHUNK,
    Appended,
    Event,
    StoreError,
    _row,
    normalise_id,
)

LOCK_KEY = 0x53515243  # the advisory lock the writers take ("SQRC")
FORMAT = 2
POOL_MAX = 8
CONNECT_S = 10.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seqrec_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    (
        "CREATE TABLE IF NOT EXISTS events (id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, item_id TEXT NOT NULL, "
        "ts DOUBLE PRECISION NOT NULL, type TEXT, UNIQUE (user_id, item_id, ts))"
    ),
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts)",
    (
        "CREATE TABLE IF NOT EXISTS availability (item_id TEXT PRIMARY KEY, available BOOLEAN NOT NULL, "
        "ts DOUBLE PRECISION NOT NULL, seq BIGSERIAL)"
    ),
    (
        "CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), counter BIGINT NOT NULL, "
        "path TEXT NOT NULL, digest TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)"
    ),
)
_INSERT = (
    "INSERT INTO events (user_id, item_id, ts, type) SELECT * FROM unnest(%s::text[], %s::text[], "
    "%s::float8[], %s::text[]) ON CONFLICT DO NOTHING"
)
_SET_AVAILABLE = (
    "INSERT INTO availability (item_id, available, ts) SELECT * FROM unnest(%s::text[], %s::bool[], "
    "%s::float8[]) ON CONFLICT (item_id) DO UPDATE SET available = excluded.available, ts = excluded.ts, "
    "seq = nextval(pg_get_serial_sequence('availability', 'seq'))"
)
_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")


def is_url(spec: Any) -> bool:
    """Whether a ``--store`` value names a PostgreSQL database rather than a file."""
    return isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://"))


def shown_url(url: str) -> str:
    """The URL without its password (for messages, logs and the mark a model records)."""
    return _PASSWORD.sub(r"\1@", url)


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise SeqrecError("a postgresql:// event store needs psycopg: pip install 'seqrec[postgres]'") from None
    return psycopg, psycopg_pool


def _no_nul(row: tuple, n: int) -> tuple:
    for what, value in (("user_id", row[0]), ("item_id", row[1]), ("type", row[3])):
        if value is not None and "\x00" in value:
            raise SeqrecError(f"event {n}: {what}: {value!r} holds a NUL character, which PostgreSQL cannot store")
    return row


class PgEventStore:
    """Interactions in a PostgreSQL database: the interface of ``EventStore`` (``append``, ``submit``, ``history``,
    ``count``, ``events``, ``frame``, ``set_available``, ``unavailable``, ``available``, ``close``)."""

    def __init__(self, url: str, *, create: bool = True, pool_max: int = POOL_MAX) -> None:
        psycopg, psycopg_pool = _psycopg()
        self.url, self.path = url, shown_url(url)  # ``path``: what messages and marks name
        self._errors = psycopg.Error
        try:
            self._pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=pool_max, open=False, kwargs={"autocommit": True}, name="seqrec-store"
            )
            self._pool.open(wait=True, timeout=CONNECT_S)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            raise StoreError(f"{self.path}: cannot connect to the event store ({e})") from None
        try:
            self._setup(create)
        except BaseException:
            self._pool.close()
            raise
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[list[tuple], Future, str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _setup(self, create: bool) -> None:
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # two replicas creating at once
                exists = conn.execute("SELECT to_regclass('events') IS NOT NULL").fetchone()[0]
                meta = conn.execute("SELECT to_regclass('seqrec_meta') IS NOT NULL").fetchone()[0]
                if exists and not meta:
                    raise SeqrecError(
                        f"{self.path}: holds an events table that seqrec did not make; give another "
                        f"database for the event store"
                    )
                if not exists and not create:
                    raise SeqrecError(f"{self.path}: not an event store (it holds no events table)")
                if meta:
                    row = conn.execute("SELECT value FROM seqrec_meta WHERE key = 'format'").fetchone()
                    if row and int(row[0]) > FORMAT:
                        raise SeqrecError(
                            f"{self.path}: event store format {row[0]}; this seqrec reads format {FORMAT}"
                        )
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO seqrec_meta VALUES ('format', %s) ON CONFLICT DO NOTHING", (str(FORMAT),))
        except self._errors as e:
            raise StoreError(f"{self.path}: cannot set up the event store ({e})") from None

    def __enter__(self) -> PgEventStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def submit(self, events: Iterable[Any]) -> Future[Appended]:
        """Queue ``events``; the future holds their ``Appended`` once committed (see ``EventStore.submit``)."""
        now = time.time()
        return self._submit([_no_nul(_row(e, now, n), n) for n, e in enumerate(events)], _INSERT)

    def append(self, events: Iterable[Any]) -> Appended:
        """Store ``events`` and return once they are durable: (stored, duplicates)."""
        return self.submit(events).result()

    def set_available(self, item_ids: Iterable[Any], available: bool) -> Future[Appended]:
        """Record (durably) whether items may be recommended; the future completes once committed."""
        now = time.time()
        rows = [(normalise_id(i, "item_id"), bool(available), now) for i in item_ids]
        for n, row in enumerate(rows):
            _no_nul((row[0], "", None, None), n)
        return self._submit(rows, _SET_AVAILABLE)

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

    def _write_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, stop = [job], False
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
        counts = []
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                for rows, _, statement in jobs:
                    if not rows:
                        counts.append(0)
                        continue
                    columns = [list(c) for c in zip(*rows)]
                    counts.append(conn.execute(statement, columns).rowcount)
        except Exception as e:  # a lost connection, a full disk, a pool that timed out
            error = StoreError(f"{self.path}: the event store could not write ({e})")
            for _, future, _ in jobs:
                future.set_exception(error)
            return
        for (rows, future, _), n in zip(jobs, counts):
            future.set_result(Appended(stored=n, duplicates=len(rows) - n))

    def close(self) -> None:
        """Write what is queued, stop the writer and close the pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()
        self._pool.close()

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        if self._closed:
            raise StoreError(f"{self.path}: the event store is closed")
        try:
            with self._pool.connection() as conn:
                return conn.execute(sql, args).fetchall()
        except Exception as e:
            raise StoreError(f"{self.path}: the event store could not be read ({e})") from None

    def unavailable(self) -> list[str]:
        """The stored ids of the items made unavailable, in the order last changed."""
        return [r[0] for r in self._query("SELECT item_id FROM availability WHERE NOT available ORDER BY ts, seq")]

    def available(self, item_id: Any) -> bool:
        """Whether an item may be recommended (true unless made unavailable)."""
        key = normalise_id(item_id, "item_id")
        if "\x00" in key:
            return True
        rows = self._query("SELECT available FROM availability WHERE item_id = %s", (key,))
        return not rows or bool(rows[0][0])

    def history(self, user: Any, limit: int | None = None, after: int = 0) -> list[Event]:
        """The user's events, oldest first (by ``ts``, then as stored); see ``EventStore.history``."""
        key = normalise_id(user, "user_id")
        if (limit is not None and limit < 1) or "\x00" in key:
            return []
        rows = self._query(
            "SELECT item_id, ts, type FROM events WHERE user_id = %s AND id > %s ORDER BY ts DESC, id DESC LIMIT %s",
            (key, int(after), limit),
        )
        return [Event(key, item, ts, kind) for item, ts, kind in reversed(rows)]

    def count(self, user: Any | None = None) -> int:
        """How many events are stored (for one user, when given)."""
        if user is None:
            return int(self._query("SELECT count(*) FROM events")[0][0])
        key = normalise_id(user, "user_id")
        return 0 if "\x00" in key else int(self._query("SELECT count(*) FROM events WHERE user_id = %s", (key,))[0][0])

    def events(self, chunk: int = READ_CHUNK) -> Iterator[Event]:
        """Every stored event, in the order stored, read ``chunk`` rows at a time (one consistent snapshot)."""
        for rows in self._chunks(chunk):
            yield from (Event(*r) for r in rows)

    def _chunks(self, chunk: int, rowid: bool = False) -> Iterator[list[tuple]]:
        try:
            with self._pool.connection() as conn:
                conn.autocommit = False  # a named cursor lives in a transaction; its one statement is one snapshot
                try:
                    with conn.cursor(name="seqrec_events") as cursor:
                        cursor.execute(
                            f"SELECT user_id, item_id, ts, type{', id' if rowid else ''} FROM events ORDER BY id"
                        )
                        while rows := cursor.fetchmany(chunk):
                            yield rows
                    conn.commit()
                finally:
                    if not conn.closed:
                        conn.rollback()
                        conn.autocommit = True
        except self._errors as e:
            raise StoreError(f"{self.path}: the event store could not be read ({e})") from None

    def frame(self) -> pl.DataFrame:
        """Every stored event as a polars frame: ``user_id``, ``item_id`` (text), ``timestamp``, ``type``."""
        parts = [pl.DataFrame(rows, schema=COLUMNS, orient="row") for rows in self._chunks(READ_CHUNK)]
        return pl.concat(parts) if parts else pl.DataFrame(schema=COLUMNS)

    # ------------------------------------------------------------------ the model in service
    def generation(self) -> tuple[int, str, str] | None:
        """The model generation recorded (counter, folder, manifest digest), None before the first."""
        rows = self._query("SELECT counter, path, digest FROM generation WHERE id = 1")
        return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None

    def record_generation(self, path: str, digest: str) -> int:
        """Record a new generation (the counter one more than the last) and return its counter."""
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "INSERT INTO generation VALUES (1, 1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                    "counter = generation.counter + 1, path = excluded.path, digest = excluded.digest, ts = excluded.ts "
                    "RETURNING counter",
                    (path, digest, time.time()),
                ).fetchone()
                return int(row[0])
        except self._errors as e:
            raise StoreError(f"{self.path}: could not record the model generation ({e})") from None
