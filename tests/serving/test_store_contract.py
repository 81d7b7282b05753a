"""The event store's contract, which the SQLite file and the PostgreSQL database both keep: an acknowledged
event survives its process being killed, a retried event is stored once, ids take the readers' one form
(hostile ones too), histories by time then order stored, many threads and processes appending at once,
export and read-back with the training mark, item availability and the model generation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from seqrec.errors import SeqrecError
from seqrec.serving.generation import current_generation, record_generation
from seqrec.serving.store import Appended, Event, normalise_id
from seqrec.serving.store_pg import PgEventStore
from seqrec.serving.stores import export_events, open_store, read_events, read_marked

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request, tmp_path) -> str:
    """Where a new store lives: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "events.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(spec):
    with open_store(spec) as s:
        yield s


def test_open_store_picks_the_kind_by_the_spec(spec) -> None:
    with open_store(spec) as s:
        assert isinstance(s, PgEventStore) == spec.startswith("postgresql://")
    with open_store(spec, create=False) as s:  # now it exists
        assert s.count() == 0


def test_a_retried_event_is_stored_once_in_the_readers_form(store) -> None:
    assert store.append([("u1", 242, 5), ("u1", "242.0", 5), (" u1 ", 2.42e2, 5.0), ("u1", "+242", 5)]) == Appended(
        stored=1, duplicates=3
    )
    assert store.append([{"user_id": 7, "item_id": "007", "ts": 6}, Event("7.0", "7", 6.0)]) == Appended(2, 0)
    assert store.append([("u1", 242, 5)]) == Appended(0, 1)  # a retried request
    assert store.history("u1") == [Event("u1", "242", 5.0)]
    assert store.history(7) == [Event("7", "007", 6.0), Event("7", "7", 6.0)]
    assert store.count() == 3 and store.count("7.0") == 2
    with pytest.raises(SeqrecError, match="event 1: user_id"):
        store.append([("u", 1, 1), ("null", 2, 2)])
    assert store.count() == 3  # nothing of a refused call is stored


HOSTILE = [
    "'; DROP TABLE events; --",
    "%s",
    "%(x)s",
    "\\",
    "é\u0301",
    "日本語",
    "🙂",
    "a\tb",
    "x" * 5000,
    "$1",
    '"quoted"',
    "0x1F",
    "1e3",
    "-0",
    "a\u2028b",
]


def test_hostile_ids_round_trip_exactly(store) -> None:
    rows = [(u, i, n) for n, (u, i) in enumerate(zip(HOSTILE, reversed(HOSTILE)))]
    assert store.append(rows).stored == len(rows)
    assert store.append(rows) == Appended(0, len(rows))
    for user, item, n in rows:
        assert [(e.item_id, e.ts) for e in store.history(user)] == [(normalise_id(item), float(n))], user
    assert store.count() == len(rows) and store.count("nobody") == 0
    assert sorted(e.user_id for e in store.events()) == sorted(normalise_id(u) for u in HOSTILE)


def test_a_nul_character_is_refused_never_a_failed_commit(store) -> None:
    """The id rule refuses NUL on both stores (PostgreSQL text could not hold it), before the writer sees it."""
    with pytest.raises(SeqrecError, match="NUL"):
        store.append([("a\x00b", 1, 1)])
    assert store.append([("u", 1, 1)]) == Appended(1, 0)  # the writer still works


def test_history_is_by_time_then_order_stored(store) -> None:
    store.append([("u", "c", 30), ("u", "a", 10), ("v", "x", 1), ("u", "b", 20), ("u", "b2", 20)])
    assert [e.item_id for e in store.history("u")] == ["a", "b", "b2", "c"]
    assert [e.item_id for e in store.history("u", limit=2)] == ["b2", "c"]
    assert store.history("nobody") == [] and store.history("u", limit=0) == []
    store.append([("u", "now", None), ("u", "typed", 40, "purchase")])
    assert store.history("u")[-2].item_id == "now" or store.history("u")[-1].item_id == "now"
    assert [e.type for e in store.history("u") if e.item_id == "typed"] == ["purchase"]
    assert [e.item_id for e in store.events(chunk=2)][:5] == ["c", "a", "x", "b", "b2"]


def test_threads_append_at_once_and_every_event_lands_once(store) -> None:
    results: list[Appended] = []

    def client(t: int) -> None:
        for i in range(30):
            results.append(store.append([(f"u{t}", i, i), (f"u{t}", i, i)]))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 180 and all(r == Appended(1, 1) for r in results)
    assert store.count() == 180
    assert [e.item_id for e in store.history("u3")] == [str(i) for i in range(30)]


WRITER = r"""
import sys
from seqrec.serving.stores import open_store
spec, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open_store(spec) as store:
    i = 0
    while n < 0 or i < n:
        batch = [(name, f"i{i}-{j}", i * 10 + j) for j in range(1 + i % 4)]
        got = store.append(batch)
        assert got.stored == len(batch), got
        print(i, len(batch), flush=True)  # acknowledged
        i += 1
"""


def _writer(spec: str, name: str, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, spec, name, str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        stdin=subprocess.DEVNULL,
    )


def test_processes_append_at_once(spec) -> None:
    open_store(spec).close()
    procs = [_writer(spec, f"p{k}", 25) for k in range(3)]
    for p in procs:
        assert p.wait(120) == 0
    with open_store(spec, create=False) as store:
        for k in range(3):
            assert store.count(f"p{k}") == sum(1 + i % 4 for i in range(25))
        ids = [e.user_id for e in store.events()]
        assert len(ids) == store.count()


def test_acknowledged_events_survive_kill_9(spec) -> None:
    """A process appending as fast as it can is killed with SIGKILL at a random moment: every event it was
    told was stored is there, once."""
    open_store(spec).close()
    rng = random.Random()
    proc = _writer(spec, "k", -1)
    assert proc.stdout is not None
    acked: list[tuple[int, int]] = []
    first = proc.stdout.readline()
    acked.append(tuple(map(int, first.split())))  # type: ignore[arg-type]
    time.sleep(rng.uniform(0.1, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    for line in proc.stdout:  # what was acknowledged before the kill
        if line.endswith("\n"):
            acked.append(tuple(map(int, line.split())))  # type: ignore[arg-type]
    with open_store(spec, create=False) as store:
        have = [(e.item_id, e.ts) for e in store.history("k")]
        assert len(have) == len(set(have))
        want = {(f"i{i}-{j}", float(i * 10 + j)) for i, n in acked for j in range(n)}
        assert want <= set(have), f"{len(want - set(have))} acknowledged events lost"
        assert len(set(have) - want) <= 4  # at most the batch in flight


def test_export_and_the_training_mark(spec, tmp_path) -> None:
    with open_store(spec) as store:
        store.append([(f"u{u}", 100 + (u + t) % 9, 1000 + t) for u in range(4) for t in range(5)])
        store.append([("u0", "x-1", 2000, "dislike")])
    frame, mark = read_marked(spec)
    assert frame.height == 21 and mark > 0
    assert frame.columns == ["user_id", "item_id", "timestamp", "type"]
    with open_store(spec) as store:
        store.append([("u0", "later", 3000)])
        assert [e.item_id for e in store.history("u0", after=mark)] == ["later"]
    for name in ("events.parquet", "events.csv"):
        out, n = export_events(spec, tmp_path / name)
        assert n == 22
        back = pl.read_parquet(out) if name.endswith(".parquet") else pl.read_csv(out, schema=read_events(spec).schema)
        assert back.equals(read_events(spec))
    with pytest.raises(SeqrecError, match="ending in .parquet or .csv"):
        export_events(spec, tmp_path / "e.json")


def test_availability_is_durable_and_ordered(spec) -> None:
    with open_store(spec) as store:
        store.set_available(["a", 7, "b"], False).result()
        store.set_available(["7.0"], True).result()
        assert store.unavailable() == ["a", "b"] and not store.available("a") and store.available(7)
    with open_store(spec, create=False) as store:  # across a restart
        assert store.unavailable() == ["a", "b"] and store.available("nothing")


def test_the_model_generation_counts_up(store) -> None:
    assert current_generation(store) is None
    first = record_generation(store, "/models/a", "d1")
    assert first.counter == 1 and current_generation(store) == first
    second = record_generation(store, "/models/b", "d2")
    assert second.counter == 2 and current_generation(store) == second
