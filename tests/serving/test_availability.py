"""Availability: an item made unavailable is never recommended until made available again; the flag is kept
in the event store, so it survives a SIGKILL of the server, a restart and a reload."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from seqrec.models.folder import save_folder
from seqrec.serving.app import create_app
from seqrec.serving.recommender import Recommender
from seqrec.serving.store import EventStore

KEY = "availability-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def ids(answer: dict) -> list:
    return [i["item_id"] for i in answer["items"]]


def test_the_admin_route_and_the_store(tmp_path, tiny_dataset, make_scorer) -> None:
    data = tiny_dataset()
    store = EventStore(tmp_path / "events.db")
    client = TestClient(create_app(Recommender(make_scorer(data.n_items), data), store=store, api_key=KEY))
    body = {"available": False}
    assert client.put("/admin/items/104/available", json=body).status_code == 401
    assert client.put("/admin/items/104/available", json=body, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.put("/admin/items/999/available", json=body, headers=AUTH).status_code == 404
    assert client.put("/admin/items/104/available", json={"available": "no"}, headers=AUTH).status_code == 422
    r = client.put("/admin/items/104/available", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"item_id": 104, "available": False, "changed": True, "unavailable": 1}
    assert client.put("/admin/items/104/available", json=body, headers=AUTH).json()["changed"] is False
    assert client.get("/items/104").json()["available"] is False and client.get("/items/105").json()["available"]
    found = {
        i["item_id"]: i["available"] for i in client.get("/items", params={"query": "", "limit": 12}).json()["items"]
    }
    assert found[104] is False and found[105] is True
    every = {"history": [101], "k": 12}
    assert 104 not in ids(client.post("/recommend", json=every).json())
    assert 104 not in ids(client.post("/recommend", json={**every, "include": [104, 105]}).json())
    batch = client.post("/recommend/batch", json={"histories": [[101], []], "k": 12}).json()
    assert all(104 not in ids(r) for r in batch["results"])
    assert 104 not in ids(client.get("/users/u0/recommendations", params={"k": 12}).json())
    assert store.unavailable() == ["104"]
    # a new service over the same store (a restart) starts with the item unavailable
    again = TestClient(create_app(Recommender(make_scorer(data.n_items), data), store=store, api_key=KEY))
    assert again.get("/items/104").json()["available"] is False
    assert 104 not in ids(again.post("/recommend", json=every).json())
    assert again.put("/admin/items/104/available", json={"available": True}, headers=AUTH).json()["changed"]
    assert 104 in ids(again.post("/recommend", json=every).json()) and store.unavailable() == []
    store.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(port: int, method: str, path: str, body: dict | None = None, key: bool = False) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    headers = {"Content-Type": "application/json", **(AUTH if key else {})}
    conn.request(method, path, None if body is None else json.dumps(body), headers)
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def _start(model: Path, store: Path, log: Path) -> tuple[subprocess.Popen, int]:
    port = _port()
    code = (
        f"from seqrec.serving.server import run; run({str(model)!r}, port={port}, backend='torch', "
        f"access_log=False, store={str(store)!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        env={**os.environ, "OMP_NUM_THREADS": "1", "SEQREC_API_KEY": KEY},
    )
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if _call(port, "GET", "/ready")[0] == 200:
                return proc, port
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)


def test_unavailable_survives_sigkill_restart_and_reload(tmp_path, tiny_dataset, make_scorer) -> None:
    data = tiny_dataset()
    model = save_folder(tmp_path / "model", make_scorer(data.n_items), data, config={}, metrics={})
    store = tmp_path / "events.db"
    every = {"history": [101], "k": 12}
    proc, port = _start(model, store, tmp_path / "a.log")
    try:
        status, answer = _call(port, "PUT", "/admin/items/104/available", {"available": False}, key=True)
        assert status == 200 and answer["available"] is False
        assert 104 not in ids(_call(port, "POST", "/recommend", every)[1])
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown: only what the store synced remains
        proc.wait(20)
    proc, port = _start(model, store, tmp_path / "b.log")
    try:
        assert _call(port, "GET", "/items/104")[1]["available"] is False
        assert 104 not in ids(_call(port, "POST", "/recommend", every)[1])
        status, _ = _call(port, "POST", "/admin/reload", {}, key=True)
        assert status == 200
        assert _call(port, "GET", "/items/104")[1]["available"] is False
        assert 104 not in ids(_call(port, "POST", "/recommend", every)[1])
        _call(port, "PUT", "/admin/items/104/available", {"available": True}, key=True)
        assert 104 in ids(_call(port, "POST", "/recommend", every)[1])
    finally:
        proc.terminate()
        proc.wait(20)


def test_workers_over_one_store_agree(tmp_path, tiny_dataset, make_scorer, monkeypatch) -> None:
    """Two services over one store file (as two workers): a change on one is read by the other."""
    from seqrec.serving.routes import service

    monkeypatch.setattr(service, "AVAILABILITY_SYNC_S", 0.0)
    data = tiny_dataset()
    stores = [EventStore(tmp_path / "events.db") for _ in range(2)]
    one, two = (
        TestClient(create_app(Recommender(make_scorer(data.n_items), data), store=s, api_key=KEY)) for s in stores
    )
    every = {"history": [101], "k": 12}
    assert one.put("/admin/items/107/available", json={"available": False}, headers=AUTH).status_code == 200
    assert 107 not in ids(two.post("/recommend", json=every).json())
    assert two.get("/items/107").json()["available"] is False
    two.put("/admin/items/107/available", json={"available": True}, headers=AUTH)
    assert 107 in ids(one.post("/recommend", json=every).json())
    for s in stores:
        s.close()
