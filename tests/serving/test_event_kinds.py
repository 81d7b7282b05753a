"""Kinds of events: the policy says whether a type enters the history and whether it removes the item from the
user's recommendations; through the HTTP API, the export and training from the store."""

from __future__ import annotations

import json
import sqlite3

import polars as pl
import pytest
from fastapi.testclient import TestClient

from seqrec.errors import SeqrecError
from seqrec.serving.app import create_app
from seqrec.serving.policy import DEFAULT_POLICY, EventPolicy
from seqrec.serving.recommender import Recommender
from seqrec.serving.store import EventStore
from seqrec.serving.stores import read_marked

KEY = "event-kinds-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture()
def served(tmp_path, tiny_dataset, make_scorer):
    data = tiny_dataset()
    rec = Recommender(make_scorer(data.n_items), data, name="tiny")
    store = EventStore(tmp_path / "events.db")
    yield rec, store, TestClient(create_app(rec, store=store, api_key=KEY))
    store.close()


def post(client: TestClient, events: list[dict]) -> dict:
    r = client.post("/events", json=events, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def ids(answer: dict) -> list:
    return [i["item_id"] for i in answer["items"]]


def test_a_purchased_item_is_never_recommended_again(served) -> None:
    rec, _, client = served
    post(
        client,
        [{"user_id": "n1", "item_id": 104, "ts": 1}, {"user_id": "n1", "item_id": 105, "ts": 2, "type": "purchase"}],
    )
    for exclude_seen in (True, False):
        got = ids(client.get("/users/n1/recommendations", params={"k": 12, "exclude_seen": exclude_seen}).json())
        assert 105 not in got
        assert (104 in got) == (not exclude_seen)  # an untyped event: as before, excluded only with exclude_seen
    want = rec.recommend([104, 105], k=12, exclude_seen=False, exclude=[105])  # a purchase is in the history
    got = client.get("/users/n1/recommendations", params={"k": 12, "exclude_seen": False}).json()
    assert ids(got) == [i.item_id for i in want.items]
    post(client, [{"user_id": "u0", "item_id": 110, "ts": 5, "type": "purchase"}])  # a user of the training data
    assert 110 not in ids(client.get("/users/u0/recommendations", params={"k": 12, "exclude_seen": False}).json())


def test_a_disliked_item_is_neither_recommended_nor_read(served) -> None:
    rec, _, client = served
    post(
        client,
        [
            {"user_id": "n2", "item_id": 101, "ts": 1, "type": "view"},
            {"user_id": "n2", "item_id": 112, "ts": 2, "type": "dislike"},
        ],
    )
    for exclude_seen in (True, False):
        got = client.get("/users/n2/recommendations", params={"k": 12, "exclude_seen": exclude_seen}).json()
        want = rec.recommend([101], k=12, exclude_seen=exclude_seen, exclude=[112])  # 112 not in the history
        assert ids(got) == [i.item_id for i in want.items] and 112 not in ids(got)
        assert [i["score"] for i in got["items"]] == pytest.approx([i.score for i in want.items], rel=1e-5)
    history = client.get("/users/n2/history").json()["items"]
    assert [(h["item_id"], h["type"]) for h in history] == [(101, "view"), (112, "dislike")]


def test_types_are_checked(served) -> None:
    _, store, client = served
    r = client.post("/events", json={"user_id": "n3", "item_id": 101, "type": "wishlist"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 0, "type"]
    assert "view, purchase, dislike" in r.json()["detail"][0]["msg"]
    for bad in ("View", "", "x" * 40, 3):
        assert (
            client.post("/events", json={"user_id": "n3", "item_id": 101, "type": bad}, headers=AUTH).status_code == 422
        )
    assert store.count() == 0


def test_a_policy_file(tmp_path, tiny_dataset, make_scorer) -> None:
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps({"view": {"history": True, "exclude": "seen"}, "wishlist": {"history": False, "exclude": "seen"}})
    )
    policy = EventPolicy.from_file(path)
    data = tiny_dataset()
    with EventStore(tmp_path / "e.db") as store:
        client = TestClient(
            create_app(Recommender(make_scorer(data.n_items), data), store=store, api_key=KEY, event_policy=policy)
        )
        post(
            client,
            [
                {"user_id": "n4", "item_id": 101, "ts": 1},
                {"user_id": "n4", "item_id": 110, "ts": 2, "type": "wishlist"},
            ],
        )
        assert (
            client.post("/events", json={"user_id": "n4", "item_id": 1, "type": "purchase"}, headers=AUTH).status_code
            == 422
        )
        assert 110 not in ids(client.get("/users/n4/recommendations", params={"k": 12}).json())
        assert 110 in ids(client.get("/users/n4/recommendations", params={"k": 12, "exclude_seen": False}).json())
    for text, words in [
        ("[]", "expected an object"),
        ('{"Bad": {}}', "a lower-case letter"),
        ('{"x": {"exclude": "never"}}', "exclude must be one of"),
        ("{", "cannot read"),
    ]:
        path.write_text(text)
        with pytest.raises(SeqrecError, match=words):
            EventPolicy.from_file(path)


def test_export_and_training_apply_the_policy(tmp_path, cli) -> None:
    db = tmp_path / "e.db"
    with EventStore(db) as store:
        store.append([("a", 1, 1), ("a", 2, 2, "purchase"), ("a", 3, 3, "dislike"), ("b", 4, 4, "view")])
    code, out, err = cli("export-events", db, "--out", tmp_path / "kept.csv")
    assert code == 0 and "3 events" in out, err
    kept = pl.read_csv(tmp_path / "kept.csv", schema_overrides={"item_id": pl.String})
    assert kept.columns == ["user_id", "item_id", "timestamp", "type"]
    assert kept["item_id"].to_list() == ["1", "2", "4"] and kept["type"].to_list() == [None, "purchase", "view"]
    code, out, err = cli("export-events", db, "--out", tmp_path / "all.csv", "--all-types")
    assert code == 0 and "4 events" in out, err
    frame, mark = read_marked(db, DEFAULT_POLICY)
    assert frame["item_id"].to_list() == ["1", "2", "4"] and mark == 4  # the mark counts every stored event
    assert read_marked(db)[0].height == 4


def test_a_format_1_store_gains_types_and_availability(tmp_path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT NOT NULL, ts REAL NOT NULL, "
        "UNIQUE (user_id, item_id, ts))"
    )
    conn.execute("INSERT INTO events VALUES ('a', '1', 1.0)")
    conn.execute(f"PRAGMA application_id={0x53515243}")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with EventStore(db) as store:
        assert [(e.item_id, e.type) for e in store.history("a")] == [("1", None)]
        store.append([("a", 2, 2, "purchase")])
        store.set_available(["1"], False).result()
        assert store.history("a")[-1].type == "purchase" and store.unavailable() == ["1"]
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 2
