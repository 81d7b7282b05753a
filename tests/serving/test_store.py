"""The event store: one form for raw ids, idempotent appends, histories, group commits from many threads,
files that are not stores refused, and ``seqrec export-events`` to Parquet and CSV."""

from __future__ import annotations

import sqlite3
import threading

import polars as pl
import pytest

from seqrec.data.dataset import CleanConfig
from seqrec.data.readers import load_dataset
from seqrec.errors import SeqrecError
from seqrec.serving.store import APPLICATION_ID, Appended, Event, EventStore
from seqrec.serving.stores import export_events, read_events


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "events.db") as s:
        yield s


def test_ids_take_the_readers_form_and_a_repeated_event_is_stored_once(store: EventStore) -> None:
    assert store.append([("u1", 242, 5), ("u1", "242.0", 5), (" u1 ", 2.42e2, 5.0), ("u1", "+242", 5)]) == Appended(
        stored=1, duplicates=3
    )
    assert store.append([{"user_id": 7, "item_id": "007", "ts": 6}, Event("7.0", "7", 6.0)]) == Appended(2, 0)
    assert store.append([("u1", 242, 5)]) == Appended(0, 1)  # a retried request
    assert store.history("u1") == [Event("u1", "242", 5.0)]
    assert store.history(7) == [Event("7", "007", 6.0), Event("7", "7", 6.0)]  # a code keeps its zeros
    assert store.count() == 3 and store.count("7.0") == 2
    rows = (
        sqlite3.connect(store.path).execute("SELECT user_id, item_id, typeof(ts) FROM events ORDER BY rowid").fetchall()
    )
    assert rows == [("u1", "242", "real"), ("7", "007", "real"), ("7", "7", "real")]


def test_bad_events_are_refused_naming_the_event_and_field(store: EventStore) -> None:
    for event, words in [
        (("u", "NaN", 1), "event 0: item_id"),
        (("  ", 1, 1), "event 0: user_id"),
        (("u", None, 1), "event 0: item_id"),
        (("u", 1, float("inf")), "event 0: ts"),
        (("u", True, 1), "event 0: item_id"),
        (("u", 1, "soon"), "event 0: ts"),
        (("u", float("nan"), 1), "event 0: item_id"),
        ("u1", "event 0: expected"),
    ]:
        with pytest.raises(SeqrecError, match=words):
            store.append([event])
    with pytest.raises(SeqrecError, match="event 1: user_id"):
        store.append([("u", 1, 1), ("null", 2, 2)])
    assert store.count() == 0  # nothing of a refused call is stored


def test_history_is_by_time_then_order_stored_and_limited_to_the_latest(store: EventStore) -> None:
    store.append([("u", "c", 30), ("u", "a", 10), ("v", "x", 1), ("u", "b", 20), ("u", "b2", 20)])
    assert [e.item_id for e in store.history("u")] == ["a", "b", "b2", "c"]
    assert [e.item_id for e in store.history("u", limit=2)] == ["b2", "c"]
    assert store.history("nobody") == [] and store.history("u", limit=0) == []
    before = store.count()
    store.append([("u", "now", None)])  # no ts: the time of the call
    assert store.history("u")[-1].item_id == "now" and store.count() == before + 1


def test_threads_share_commits_and_every_event_lands_once(store: EventStore) -> None:
    results: list[Appended] = []

    def client(t: int) -> None:
        for i in range(40):
            results.append(store.append([(f"u{t}", i, i), (f"u{t}", i, i)]))  # each call repeats its event

    threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 240 and all(r == Appended(1, 1) for r in results)
    assert store.count() == 240
    assert [e.item_id for e in store.history("u3")] == [str(i) for i in range(40)]


def test_the_file_is_wal_synced_and_marked(store: EventStore) -> None:
    store.append([("u", 1, 1)])
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: the WAL is synced at each commit
    assert [r[1] for r in conn.execute("PRAGMA index_list(events)")].count("events_user") == 1


def test_files_that_are_not_stores_are_refused(tmp_path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database, just some text that is long enough to look like a header" * 20)
    with pytest.raises(SeqrecError, match="notes.db: not an event store"):
        EventStore(text)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(SeqrecError, match="did not make .tables: customers"):
        EventStore(other)
    with pytest.raises(SeqrecError, match="no such event store"):
        EventStore(tmp_path / "missing.db", create=False)
    with pytest.raises(SeqrecError, match="is a folder"):
        EventStore(tmp_path)
    assert not (tmp_path / "missing.db").exists()


def test_events_come_back_as_a_frame_and_close_waits_for_queued_writes(tmp_path) -> None:
    store = EventStore(tmp_path / "e.db")
    futures = [store.submit([(f"u{i % 3}", i, i)]) for i in range(50)]
    store.close()
    assert all(f.result() == Appended(1, 0) for f in futures)
    with pytest.raises(SeqrecError, match="closed"):
        store.append([("u", 1, 1)])
    frame = read_events(tmp_path / "e.db")
    assert frame.columns == ["user_id", "item_id", "timestamp", "type"] and frame.height == 50
    assert frame.schema == pl.Schema(
        {"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Float64, "type": pl.String}
    )
    assert frame["item_id"].to_list() == [str(i) for i in range(50)]  # the order stored
    with EventStore(tmp_path / "e.db", create=False) as again:
        assert [e.item_id for e in again.events(chunk=7)] == [str(i) for i in range(50)]


def test_export_events_round_trip(tmp_path, cli) -> None:
    db = tmp_path / "events.db"
    with EventStore(db) as store:
        store.append([(f"u{u}", 100 + (u + t) % 9, 1000 + t) for u in range(8) for t in range(6)])
        store.append([("u0", "x-1", 2000)])
    for name in ("events.parquet", "events.csv"):
        out = tmp_path / name
        code, stdout, err = cli("export-events", db, "--out", out)
        assert code == 0 and stdout.strip() == f"wrote {out}: 49 events" and err == ""
        back = pl.read_parquet(out) if name.endswith(".parquet") else pl.read_csv(out, schema=read_events(db).schema)
        assert back.equals(read_events(db))
        data = load_dataset(out, CleanConfig(k_core=0))  # an exported file reads like any interaction table
        assert data.n_users == 8 and data.n_interactions == 49 and data.item_ids.get("x-1") is not None
        assert data.item_ids.lookup(data.item_ids.to_raw(data.sequence(data.user_ids.get("u0"))))[1] == []
        assert data.item_ids.to_raw(data.sequence(data.user_ids.get("u0")))[-1] == "x-1"  # by timestamp: last
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_export_events_errors_are_one_line(tmp_path, cli) -> None:
    db = tmp_path / "events.db"
    EventStore(db).close()
    for argv, words in [
        (["missing.db", "--out", tmp_path / "e.csv"], "no such event store"),
        ([db, "--out", tmp_path / "e.json"], "ending in .parquet or .csv"),
        ([db, "--out", tmp_path], "is a folder"),
    ]:
        code, out, err = cli("export-events", *argv)
        assert code == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1, err
    assert export_events(db, tmp_path / "empty.csv") == (tmp_path / "empty.csv", 0)
    assert (tmp_path / "empty.csv").read_text().strip() == "user_id,item_id,timestamp,type"


def test_an_exported_csv_with_quotes_and_line_separators_reads_back(tmp_path, cli) -> None:
    db, out = tmp_path / "events.db", tmp_path / "events.csv"
    odd = ["it's", "O'Brien's \"best\"", "a\u2028b", "c\x0cd", "e,f", "g\nh\ni", "'"]
    with EventStore(db) as store:
        store.append([(f"u{u}", item, 1000 + t) for u in range(3) for t, item in enumerate(odd)])
    assert cli("export-events", db, "--out", out)[0] == 0
    data = load_dataset(out, CleanConfig(k_core=0))
    assert data.n_users == 3 and data.n_items == len(odd)
    assert data.item_ids.to_raw(data.sequence(data.user_ids.get("u1"))) == odd
