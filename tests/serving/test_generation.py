"""Reloads that reach every worker and replica: the model in service is a generation recorded in the store;
``POST /admin/reload`` records it once the folder passed its checks, every worker follows within about a
second, ``GET /model`` says which generation a worker holds, and a broken folder changes nothing."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seqrec.models.folder import save_folder
from seqrec.serving.app import create_app
from seqrec.serving.generation import follow
from seqrec.serving.recommender import Recommender
from seqrec.serving.stores import open_store

KEY = "generation-test-key-8c2e"
AUTH = {"X-API-Key": KEY}
SRC = str(Path(__file__).resolve().parents[2] / "src")
REACH_S = 2.0


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_dataset, make_scorer):
    """Three model folders of the tiny catalogue (metrics build 1, 2, 3) and a broken one."""
    root = tmp_path_factory.mktemp("generations")
    data = tiny_dataset()
    models = [
        save_folder(root / f"model{n}", make_scorer(data.n_items), data, config={}, metrics={"build": n})
        for n in (1, 2, 3)
    ]
    broken = root / "broken"
    shutil.copytree(models[0], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)
    return models, broken


def test_a_reload_on_one_app_reaches_another_on_the_same_store(folders, tmp_path) -> None:
    (first, second, _), broken = folders
    store = open_store(tmp_path / "events.db")
    a, b = (
        create_app(
            Recommender.from_folder(first, backend="torch"), store=store, api_key=KEY, model_path=first, backend="torch"
        )
        for _ in range(2)
    )
    client_a, client_b = TestClient(a), TestClient(b)
    assert client_a.get("/model").json()["generation"] is None
    r = client_a.post("/admin/reload", json={"path": str(second)}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert client_a.get("/model").json()["generation"]["counter"] == 1
    assert client_b.get("/model").json()["metrics"] == {"build": 1}
    assert asyncio.run(follow(b)) is True and not asyncio.run(follow(b))
    answer = client_b.get("/model").json()
    assert answer["metrics"] == {"build": 2} and answer["generation"]["counter"] == 1
    assert answer["generation"]["path"] == str(second) and answer["generation"]["worker"] == os.getpid()
    r = client_a.post("/admin/reload", json={"path": str(broken)}, headers=AUTH)
    assert r.status_code == 400 and "model.safetensors" in r.json()["detail"]
    assert not asyncio.run(follow(b))  # nothing recorded: both keep generation 1
    assert client_a.get("/model").json()["generation"]["counter"] == 1
    store.close()


# ---------------------------------------------------------------------------- real servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(port: int, method: str, path: str, body: object = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            method,
            path,
            None if body is None else json.dumps(body),
            {"Content-Type": "application/json", "Connection": "close", **AUTH},
        )
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


class Service:
    """``seqrec serve`` in its own process group, its log in a file."""

    def __init__(self, model: Path, store: str, log: Path, workers: int = 1) -> None:
        self.port, self.log = _free_port(), log
        argv = [
            sys.executable,
            "-m",
            "seqrec",
            "serve",
            str(model),
            "--port",
            str(self.port),
            "--backend",
            "torch",
            "--workers",
            str(workers),
            "--store",
            store,
        ]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": SRC, "SEQREC_API_KEY": KEY, "OMP_NUM_THREADS": "1"},
            )

    def wait_ready(self, deadline: float) -> None:
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if _call(self.port, "GET", "/ready")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "the service did not start: " + self.log.read_text()[-3000:]
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


def _followers(log: Path, counter: int) -> set[str]:
    return set(re.findall(rf"worker (\d+): generation {counter}: now serving", log.read_text()))


def test_one_reload_reaches_four_workers_within_two_seconds(folders, tmp_path) -> None:
    (first, second, _), _ = folders
    service = Service(first, str(tmp_path / "events.db"), tmp_path / "serve.log", workers=4)
    try:
        service.wait_ready(time.monotonic() + 180)
        time.sleep(2)  # every worker up (each answers /ready once its model is loaded)
        status, body = _call(service.port, "POST", "/admin/reload", {"path": str(second)})
        answered = time.monotonic()
        assert status == 200, body
        while len(_followers(service.log, 1)) < 3:  # the worker that answered swapped it in itself
            assert time.monotonic() - answered < REACH_S, (
                f"only {_followers(service.log, 1)} followed: " + service.log.read_text()[-3000:]
            )
            time.sleep(0.02)
        took = time.monotonic() - answered
        seen = {}
        for _ in range(40):  # and what the workers answer says so
            status, model = _call(service.port, "GET", "/model")
            seen[model["generation"]["worker"]] = (model["generation"]["counter"], model["metrics"]["build"])
        assert set(seen.values()) == {(1, 2)}, seen
        print(f"one reload reached the 4 workers in {took:.2f} s")
    finally:
        service.stop()


def _burst(port: int, thread: int, acked: list, stop: threading.Event) -> None:
    """POST /events until the service dies, recording what it acknowledged."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    while not stop.is_set():
        batch = [{"user_id": f"burst{thread}", "item_id": 101 + i, "ts": n * 10 + i + 0.5} for i in range(1 + n % 4)]
        n += 1
        try:
            conn.request("POST", "/events", json.dumps(batch), {"Content-Type": "application/json", **AUTH})
            answer = conn.getresponse()
            body = json.loads(answer.read())
        except (OSError, http.client.HTTPException, ValueError):
            return  # killed: this batch was never acknowledged
        assert answer.status == 200 and body["stored"] == len(batch), body
        acked.extend(batch)


def test_two_replicas_on_one_postgresql_store(folders, tmp_path, pg_url) -> None:
    (first, second, third), broken = folders
    a = Service(first, pg_url, tmp_path / "a.log")
    b = Service(first, pg_url, tmp_path / "b.log")
    try:
        deadline = time.monotonic() + 180
        a.wait_ready(deadline)
        b.wait_ready(deadline)
        # an event posted to one is in the next recommendation of the other
        status, body = _call(a.port, "POST", "/events", {"user_id": "newcomer", "item_id": 101, "ts": 1000})
        assert status == 200 and body["stored"] == 1, body
        status, recs = _call(b.port, "GET", "/users/newcomer/recommendations?k=3")
        assert status == 200 and recs["items"], recs
        status, history = _call(b.port, "GET", "/users/newcomer/history")
        assert [i["item_id"] for i in history["items"]] == [101] and history["store_events"] == 1
        for n, folder in enumerate((second, third), start=1):  # one reload request reaches both
            status, body = _call(a.port, "POST", "/admin/reload", {"path": str(folder)})
            answered = time.monotonic()
            assert status == 200, body
            while (_call(b.port, "GET", "/model")[1]["generation"] or {}).get("counter") != n:
                assert time.monotonic() - answered < REACH_S, b.log.read_text()[-3000:]
                time.sleep(0.02)
            assert _call(b.port, "GET", "/model")[1]["metrics"] == {"build": n + 1}
        # a kill -9 of a replica while clients post loses no acknowledged event
        acked: list[dict] = []
        stop = threading.Event()
        clients = [threading.Thread(target=_burst, args=(b.port, t, acked, stop)) for t in range(3)]
        for c in clients:
            c.start()
        time.sleep(random.uniform(0.3, 0.8))
        os.killpg(b.proc.pid, signal.SIGKILL)
        b.proc.wait(30)
        stop.set()
        for c in clients:
            c.join(30)
        assert acked, "nothing was acknowledged before the kill"
        with open_store(pg_url, create=False) as store:
            have = {(e.user_id, e.item_id, e.ts) for t in range(3) for e in store.history(f"burst{t}")}
            assert sum(store.count(f"burst{t}") for t in range(3)) == len(have)
        want = {(e["user_id"], str(e["item_id"]), e["ts"]) for e in acked}
        assert want <= have, f"{len(want - have)} acknowledged events lost"
        b = Service(first, pg_url, tmp_path / "b2.log")  # a new replica joins the recorded generation
        b.wait_ready(time.monotonic() + 180)
        deadline = time.monotonic() + 10
        while (_call(b.port, "GET", "/model")[1]["generation"] or {}).get("counter") != 2:
            assert time.monotonic() < deadline, b.log.read_text()[-3000:]
            time.sleep(0.05)
        assert _call(b.port, "GET", "/model")[1]["metrics"] == {"build": 3}
        status, body = _call(a.port, "POST", "/admin/reload", {"path": str(broken)})
        assert status == 400 and "model.safetensors" in body["detail"], body
        time.sleep(REACH_S)  # a broken folder leaves both on the old one
        for s in (a, b):
            model = _call(s.port, "GET", "/model")[1]
            assert model["generation"]["counter"] == 2 and model["metrics"] == {"build": 3}, model
    finally:
        a.stop()
        b.stop()


def test_a_worker_that_cannot_load_the_recorded_folder_keeps_its_model_and_tries_again(
    folders, tmp_path, monkeypatch
) -> None:
    from seqrec.serving import generation
    from seqrec.serving.generation import folder_digest, record_generation

    (first, second, _), _ = folders
    store = open_store(tmp_path / "events.db")
    app = create_app(Recommender.from_folder(first, backend="torch"), store=store, model_path=first, backend="torch")
    late = tmp_path / "late"  # recorded by another replica, not yet copied to this machine
    record_generation(store, str(late), folder_digest(second))
    assert not asyncio.run(follow(app))
    assert app.state.recommender.metrics == {"build": 1} and app.state.generation is None
    shutil.copytree(second, late)
    assert not asyncio.run(follow(app))  # not before REFUSED_RETRY_S
    monkeypatch.setattr(generation, "REFUSED_RETRY_S", 0.0)
    assert asyncio.run(follow(app))
    assert app.state.recommender.metrics == {"build": 2} and app.state.generation.counter == 1
    store.close()
