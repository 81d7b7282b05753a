"""The live service: events into the store and the very next recommendation, API keys, CORS, hot reload
(over HTTP and by SIGHUP) and acknowledged events surviving a SIGKILL of the server."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqrec.models.folder import save_folder
from seqrec.serving.app import create_app
from seqrec.serving.limits import Limits
from seqrec.serving.recommender import Recommender
from seqrec.serving.store import EventStore

KEY = "live-test-key-4f1d9c"
AUTH = {"X-API-Key": KEY}
ORIGIN = "https://shop.example"
TRIALS = 5


@pytest.fixture
def live(tiny_app, tmp_path):
    """``live(**create_app options) -> (client, recommender, store)``: the tiny service with a store and a key."""
    stores: list[EventStore] = []

    def build(**options):
        store = EventStore(tmp_path / f"events{len(stores)}.db")
        stores.append(store)
        options = {"store": store, "api_key": KEY, "backend": "torch", **options}
        rec, app = tiny_app(**options)
        return TestClient(app), rec, store

    yield build
    for s in stores:
        s.close()


def ids(body: dict) -> list:
    return [i["item_id"] for i in body["items"]]


# ---------------------------------------------------------------------------- events and fresh answers
def test_events_are_acknowledged_with_counts_and_unknown_items(live) -> None:
    client, _, store = live(limits=Limits(max_events=3))
    r = client.post("/events", json={"user_id": "u0", "item_id": 104, "ts": 50}, headers=AUTH)
    assert r.status_code == 200 and r.json()["stored"] == 1 and r.json()["duplicates"] == 0
    body = client.post(
        "/events",
        headers=AUTH,
        json=[
            {"user_id": "u0", "item_id": "104.0", "ts": 50},
            {"user_id": 7, "item_id": 999, "timestamp": 51},
            {"user_id": "7.0", "item_id": "zz"},
        ],
    ).json()
    assert (body["stored"], body["duplicates"], body["unknown_items"]) == (2, 1, [999, "zz"])
    assert store.count() == 3 and [e.item_id for e in store.history(7)] == ["999", "zz"]
    assert client.post("/events", json=[], headers=AUTH).json()["stored"] == 0
    r = client.post("/events", json=[{"user_id": "u", "item_id": i} for i in range(4)], headers=AUTH)
    assert r.status_code == 413 and "max_events" in r.json()["detail"]
    spec = client.get("/openapi.json").json()["components"]["schemas"]["EventsRequest"]
    assert spec["anyOf"][1]["maxItems"] == 3 and spec["anyOf"][0] == {"$ref": "#/components/schemas/EventIn"}


@pytest.mark.parametrize(
    "event, field",
    [
        ({"user_id": "u0"}, "item_id"),
        ({"user_id": None, "item_id": 1}, "user_id"),
        ({"user_id": "u0", "item_id": " NaN "}, "item_id"),
        ({"user_id": "", "item_id": 1}, "user_id"),
        ({"user_id": "u0", "item_id": 1, "ts": 1.7e12}, "ts"),
        ({"user_id": "u0", "item_id": 1, "ts": "now"}, "ts"),
        ({"user_id": "u0", "item_id": 1, "ts": -1}, "ts"),
        ({"user_id": "u0", "item_id": 1.5}, "item_id"),
        ({"user_id": "u0", "item_id": 1, "when": 3}, "when"),
        ({"user_id": "u0", "item_id": 2**60}, "item_id"),
    ],
)
def test_bad_events_are_422_naming_the_field(live, event: dict, field: str) -> None:
    client, _, store = live()
    r = client.post("/events", json=[{"user_id": "ok", "item_id": 101}, event], headers=AUTH)
    assert r.status_code == 422, r.text
    assert all(e["loc"][:2] == ["body", 1] and field in e["loc"] for e in r.json()["detail"]), r.json()
    assert store.count() == 0  # the valid event of the refused request is not stored either


def test_bodies_that_are_not_events_never_give_a_500(live) -> None:
    client, _, _ = live()
    scalar = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    )
    value = st.recursive(
        scalar,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["user_id", "item_id", "ts", "x"]), inner, max_size=4)
        ),
        max_leaves=8,
    )
    statuses: list[int] = []

    @given(body=value)
    @settings(max_examples=150, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(body) -> None:
        r = client.post("/events", content=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"})
        statuses.append(r.status_code)
        assert r.status_code in (200, 422), r.text
        if r.status_code == 422:
            assert all(e["loc"][0] == "body" for e in r.json()["detail"])

    check()
    assert {200, 422} <= set(statuses)


def test_the_next_recommendation_reads_the_new_event(live) -> None:
    client, rec, _ = live()
    before = client.get("/users/u0/recommendations", params={"k": 5}).json()
    assert before["store_events"] == 0 and before["unknown_items"] == []
    top = before["items"][0]["item_id"]
    assert client.post("/events", json={"user_id": "u0", "item_id": top, "ts": 1000}, headers=AUTH).status_code == 200
    after = client.get("/users/u0/recommendations", params={"k": 5}).json()
    assert after["store_events"] == 1 and top not in ids(after)  # seen now
    assert ids(after) != ids(before)
    expected = rec.recommend([*rec.dataset.item_ids.to_raw(rec.dataset.sequence(0)), top], k=5)
    assert ids(after) == [i.item_id for i in expected.items]
    history = client.get("/users/u0/history").json()
    assert [(i["item_id"], i["source"]) for i in history["items"]] == [
        (101, "training"),
        (102, "training"),
        (112, "training"),
        (103, "training"),
        (top, "store"),
    ]
    assert history["training_items"] == 4 and history["store_events"] == 1 and history["items"][-1]["ts"] == 1000
    assert [i["item_id"] for i in client.get("/users/u0/history", params={"limit": 2}).json()["items"]] == [103, top]


def test_a_new_user_is_served_from_their_first_event(live) -> None:
    client, _, _ = live()
    assert client.get("/users/newcomer/recommendations").status_code == 404
    assert client.get("/users/newcomer/history").status_code == 404
    client.post(
        "/events",
        json=[{"user_id": "newcomer", "item_id": 999, "ts": 1}, {"user_id": "newcomer", "item_id": 101, "ts": 2}],
        headers=AUTH,
    )
    body = client.get("/users/newcomer/recommendations", params={"k": 20}).json()
    assert body["fallback"] is False and body["unknown_items"] == [999] and body["store_events"] == 2
    assert len(ids(body)) == 11 and 101 not in ids(body)  # 12 items, one seen
    history = client.get("/users/newcomer/history").json()["items"]
    assert [(i["item_id"], i["known"], i["title"]) for i in history] == [(999, False, None), (101, True, "Star Wars")]
    latest = client.get("/users/newcomer/history", params={"limit": 1}).json()
    assert [i["item_id"] for i in latest["items"]] == [101] and latest["store_events"] == 2
    client.post("/events", json={"user_id": "only-unknown", "item_id": "x"}, headers=AUTH)
    body = client.get("/users/only-unknown/recommendations").json()
    assert body["fallback"] is True and body["unknown_items"] == ["x"]  # the popularity ranking, and why
    for odd in ("nan", "%20", "null", "-"):  # never an event's user: 404, not 500
        assert client.get(f"/users/{quote(odd)}/history").status_code == 404


def test_events_without_a_store_are_404_naming_the_flag(tiny_app) -> None:
    _, app = tiny_app(api_key=KEY)
    r = TestClient(app).post("/events", json={"user_id": "u", "item_id": 1}, headers=AUTH)
    assert r.status_code == 404 and "--store" in r.json()["detail"]


# ---------------------------------------------------------------------------- keys and CORS
def test_keys_guard_writes_and_admin_and_reads_on_request(live, tiny_app) -> None:
    client, _, _ = live()
    event = {"user_id": "u", "item_id": 101}
    r = client.post("/events", json=event)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/events", json=event, headers={"X-API-Key": KEY + "x"}).status_code == 403
    assert client.post("/events", json=event, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/events", json=event, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.post("/events", json=event, headers={"X-API-Key": KEY}).status_code == 200
    assert client.post("/events", json=event, headers={"X-API-Key": "ключ".encode()}).status_code == 403
    unicode, _, _ = live(api_key="ключ-1")  # a key beyond ASCII: compared as the bytes sent
    assert unicode.post("/events", json=event, headers={"X-API-Key": "ключ-1".encode()}).status_code == 200
    assert client.post("/admin/reload", json={}).status_code == 401
    assert client.get("/users/u0/recommendations").status_code == 200  # reads are open by default
    assert client.post("/recommend", json={"history": [101]}).status_code == 200

    guarded, _, _ = live(protect_reads=True)
    for method, path, body in [
        ("GET", "/users/u0/recommendations", None),
        ("POST", "/recommend", {"history": [1]}),
        ("GET", "/items/101", None),
        ("GET", "/model", None),
        ("GET", "/metrics", None),
        ("GET", "/users/u0/history", None),
        ("GET", "/items?query=star", None),
    ]:
        assert guarded.request(method, path, json=body).status_code == 401, path
        assert guarded.request(method, path, json=body, headers=AUTH).status_code == 200, path
    for open_path in ("/health", "/ready", "/", "/openapi.json"):
        assert guarded.get(open_path).status_code == 200

    _, app = tiny_app()  # no key configured: writes and admin are refused, saying how to set one
    r = TestClient(app).post("/events", json=event, headers=AUTH)
    assert r.status_code == 403 and "--api-key" in r.json()["detail"] and "SEQREC_API_KEY" in r.json()["detail"]
    assert TestClient(app).post("/admin/reload", json={}).status_code == 403


def test_cors_headers_only_for_a_configured_origin(live, tiny_app) -> None:
    client, _, _ = live(cors_origins=[ORIGIN])
    assert client.get("/health", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
    assert (
        "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://evil.example"}).headers
    )
    pre = client.options(
        "/events",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type",
        },
    )
    assert pre.status_code == 200 and "x-api-key" in pre.headers["access-control-allow-headers"].lower()
    r = client.post("/events", json={"user_id": "u", "item_id": 1}, headers={"Origin": ORIGIN})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN  # errors carry it too
    _, app = tiny_app()
    assert "access-control-allow-origin" not in TestClient(app).get("/health", headers={"Origin": ORIGIN}).headers


# ---------------------------------------------------------------------------- hot reload
class GatedScorer:
    """A scorer that holds each call until released, to keep a request in flight across a reload."""

    def __init__(self, inner) -> None:
        self.inner, self.n_items, self.max_len = inner, inner.n_items, inner.max_len
        self.entered, self.release = threading.Event(), threading.Event()

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.release.wait(20)
        return self.inner.score(histories)


def test_reload_swaps_a_good_folder_and_refuses_a_broken_one(tmp_path, tiny_dataset, make_scorer) -> None:
    data = tiny_dataset()
    scorer = make_scorer(data.n_items)
    second = save_folder(tmp_path / "second", scorer, data, config={}, metrics={})
    broken = tmp_path / "broken"
    shutil.copytree(second, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    gated = GatedScorer(scorer)
    app = create_app(Recommender(gated, data, name="first"), api_key=KEY, backend="torch")
    with TestClient(app) as client:
        answers: list[dict] = []
        flight = threading.Thread(
            target=lambda: answers.append(client.post("/recommend", json={"history": [101]}).json())
        )
        flight.start()
        assert gated.entered.wait(20)  # the request has taken the first model and is scoring with it
        r = client.post("/admin/reload", json={"path": str(second)}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "second" and r.json()["previous"] == "first" and r.json()["n_items"] == 12
        assert client.get("/ready").json() == {"ready": True, "model": "second"}
        gated.release.set()
        flight.join(20)
        assert answers[0]["model"] == "first"  # finished on the model it started with
        assert client.post("/recommend", json={"history": [101]}).json()["model"] == "second"

        for path, words in [
            (broken, "model.safetensors"),
            (tmp_path / "nowhere", "no such model folder"),
            (tmp_path, "not a seqrec model folder"),
        ]:
            r = client.post("/admin/reload", json={"path": str(path)}, headers=AUTH)
            assert r.status_code == 400 and words in r.json()["detail"], r.text
            assert client.post("/recommend", json={"history": [101]}).json()["model"] == "second"
        assert client.post("/admin/reload", json={"path": 3}, headers=AUTH).status_code == 422
        r = client.post("/admin/reload", headers=AUTH)  # no path: the folder now served, loaded again
        assert r.status_code == 200 and r.json()["path"] == str(second)


# ---------------------------------------------------------------------------- real servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A start of ``seqrec serve`` spends seconds importing modules; a parent that has imported them once forks
# each server, which then runs ``seqrec.serving.server.run`` as ``seqrec serve`` would. The parent does no work
# (polars' and torch's thread pools must not exist before a fork), it only imports.
FORKER = r"""
import os, signal, sys
import torch._dynamo  # imported by the first model load
from seqrec.models.folder import load_folder
from seqrec.serving.server import run
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the system reaps killed servers
print("ready", flush=True)
while line := sys.stdin.readline():
    model, port, store, log = line.rstrip("\n").split("\t")
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        try:
            run(model, port=int(port), backend="torch", access_log=False, store=store)
        finally:
            os._exit(0)
    print(pid, flush=True)
"""


class Server:
    """A ``seqrec.serving.server.run`` process with a store (its key from SEQREC_API_KEY), its log in a file."""

    def __init__(self, forker: subprocess.Popen, model: Path, store: Path, log: Path) -> None:
        self.port, self.log = _free_port(), log
        forker.stdin.write(f"{model}\t{self.port}\t{store}\t{log}\n")
        forker.stdin.flush()
        self.pid = int(forker.stdout.readline())

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def ready(self) -> bool:
        if not self.alive():
            raise AssertionError(f"the server exited: {self.log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def get(self, path: str) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())

    def kill(self) -> None:
        """SIGKILL, then wait until the process is gone."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while self.alive():
            assert time.monotonic() < deadline, "a killed server is still there"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_dataset, make_scorer):
    """TRIALS + 1 servers of the tiny model, each with its own folder and store."""
    root = tmp_path_factory.mktemp("live")
    data = tiny_dataset()
    models = [
        save_folder(root / f"model{n}", make_scorer(data.n_items), data, config={}, metrics={"build": 1})
        for n in range(TRIALS + 1)
    ]
    forker = subprocess.Popen(
        [sys.executable, "-c", FORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "SEQREC_API_KEY": KEY},
    )
    started: list[Server] = []
    try:
        assert forker.stdout.readline().strip() == "ready"
        started += [Server(forker, m, root / f"events{n}.db", root / f"server{n}.log") for n, m in enumerate(models)]
        deadline = time.monotonic() + 30
        waiting = list(started)
        while waiting:
            waiting = [s for s in waiting if not s.ready()]
            assert time.monotonic() < deadline, "the servers did not start"
            time.sleep(0.05)
        yield started, root
    finally:
        for s in started:
            s.kill()
        forker.stdin.close()
        forker.wait(20)


def _burst(port: int, thread: int, acked: list, stop: threading.Event) -> None:
    """POST /events until the server dies: batches of 1-8 new events, every third request a retry of the
    last acknowledged batch (which must come back all duplicates)."""
    rng = random.Random(thread)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    last: list[dict] | None = None
    n = 0
    while not stop.is_set():
        retry = last is not None and n % 3 == 2
        batch = (
            last
            if retry
            else [
                {
                    "user_id": f"t{thread}-u{rng.randrange(4)}",
                    "item_id": rng.choice([101, 105, 999]),
                    "ts": thread * 1e6 + n * 10 + i + 0.5,
                }
                for i in range(rng.randint(1, 8))
            ]
        )
        n += 1
        try:
            conn.request("POST", "/events", json.dumps(batch), {"Content-Type": "application/json", **AUTH})
            answer = conn.getresponse()
            body = json.loads(answer.read())
        except (OSError, http.client.HTTPException, ValueError):
            return  # killed: this batch was never acknowledged
        assert answer.status == 200, body
        if retry:
            assert body["stored"] == 0 and body["duplicates"] == len(batch), body
        else:
            assert body["stored"] == len(batch) and body["duplicates"] == 0, body
            acked.extend(batch)
            last = batch


def test_acknowledged_events_survive_sigkill(servers) -> None:
    """Five servers, each killed with SIGKILL at a random moment of a burst from three clients; then every
    event the server acknowledged is in its store exactly once, and nothing else is."""
    started, root = servers
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    acknowledged, unacknowledged = [], []
    for trial, server in enumerate(started[:TRIALS]):
        acked: list[dict] = []
        stop = threading.Event()
        clients = [threading.Thread(target=_burst, args=(server.port, t, acked, stop)) for t in range(3)]
        for c in clients:
            c.start()
        time.sleep(rng.uniform(0.2, 0.8))
        server.kill()
        stop.set()
        for c in clients:
            c.join(20)
        with EventStore(root / f"events{trial}.db", create=False) as store:  # a restart: the store recovers
            stored = store.frame()
            counts = stored.group_by(["user_id", "item_id", "timestamp"]).len()
            assert counts["len"].max() in (None, 1), f"seed {seed}: an event stored twice"
            have = set(stored.select("user_id", "item_id", "timestamp").iter_rows())
            want = {(e["user_id"], str(e["item_id"]), e["ts"]) for e in acked}
            assert want <= have, f"seed {seed}, trial {trial}: {len(want - have)} acknowledged events lost"
            assert len(have - want) <= 3 * 8, f"seed {seed}: more unacknowledged events than were in flight"
            if acked:  # and a service started on it answers from the recovered history
                user = acked[-1]["user_id"]
                app = create_app(Recommender.from_folder(root / f"model{trial}", backend="torch"), store=store)
                history = TestClient(app).get(f"/users/{user}/history", params={"limit": 1000}).json()
                assert history["store_events"] == sum(1 for e in have if e[0] == user)
        acknowledged.append(len(want))
        unacknowledged.append(len(have - want))
    print(
        f"sigkill: seed {seed}, events acknowledged per trial {acknowledged}, stored but not acknowledged "
        f"(in flight at the kill) {unacknowledged}"
    )
    assert sum(acknowledged) > 0, f"seed {seed}: no event was acknowledged before the kills"


def test_sighup_reloads_the_served_folder(servers, tiny_dataset, make_scorer) -> None:
    started, root = servers
    server, folder = started[TRIALS], root / f"model{TRIALS}"
    assert server.get("/model")["metrics"] == {"build": 1}
    data = tiny_dataset()
    save_folder(folder, make_scorer(data.n_items), data, config={}, metrics={"build": 2}, force=True)
    os.kill(server.pid, signal.SIGHUP)
    deadline = time.monotonic() + 120  # a loaded machine can be slow to reload
    while server.get("/model")["metrics"] != {"build": 2}:
        assert time.monotonic() < deadline and server.alive(), server.log.read_text()[-2000:]
        time.sleep(0.1)
    while "SIGHUP: now serving" not in server.log.read_text():  # the reload is over (swap, then clean-up)
        assert time.monotonic() < deadline and server.alive(), server.log.read_text()[-2000:]
        time.sleep(0.1)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # broken in place: the next reload must refuse it
    os.kill(server.pid, signal.SIGHUP)
    while "reload refused" not in server.log.read_text():
        assert time.monotonic() < deadline and server.alive(), server.log.read_text()[-2000:]
        time.sleep(0.1)
    assert "model.safetensors" in server.log.read_text().split("reload refused")[-1]
    assert server.get("/model")["metrics"] == {"build": 2}  # the loaded model keeps serving
    assert server.get("/users/u0/recommendations?k=3")["items"]


def test_reload_of_a_path_the_system_refuses_is_400_naming_it(tmp_path, tiny_app, caplog) -> None:
    rec, app = tiny_app(api_key=KEY, backend="torch")
    client = TestClient(app, raise_server_exceptions=False)
    for path in [
        str(tmp_path / ("x" * 300)),
        "/" + "y" * 256 + "/model",
        str(tmp_path / ("z" * 300) / "m"),
        "a\0b",
        "/" + "/".join(["w" * 250] * 15),
    ]:
        r = client.post("/admin/reload", json={"path": path}, headers=AUTH)
        assert r.status_code == 400, (path[:40], r.status_code, r.text[:300])
        assert path.replace("\0", "") in r.json()["detail"].replace("\0", "") or "cannot read" in r.json()["detail"]
    assert "Traceback" not in caplog.text
    assert client.post("/recommend", json={"history": [101]}).json()["model"] == "tiny"


def test_models_dir_limits_reload_to_folders_inside_it(tmp_path, tiny_dataset, make_scorer) -> None:
    data = tiny_dataset()
    scorer = make_scorer(data.n_items)
    models = tmp_path / "models"
    inside = save_folder(models / "inside", scorer, data, config={}, metrics={})
    outside = save_folder(tmp_path / "outside", scorer, data, config={}, metrics={})
    (models / "link").symlink_to(outside, target_is_directory=True)
    app = create_app(Recommender(scorer, data, name="first"), api_key=KEY, backend="torch", models_dir=models)
    client = TestClient(app)
    for path in [outside, models / "link", models / ".." / "outside", "../outside"]:
        r = client.post("/admin/reload", json={"path": str(path)}, headers=AUTH)
        assert r.status_code == 400 and "not inside the models folder" in r.json()["detail"], r.text
    assert client.get("/ready").json()["model"] == "first"
    r = client.post("/admin/reload", json={"path": "inside"}, headers=AUTH)  # relative: inside the folder
    assert r.status_code == 200 and r.json()["model"] == "inside" and r.json()["path"] == str(inside.resolve())
    assert client.post("/admin/reload", json={"path": str(inside)}, headers=AUTH).status_code == 200
    assert client.post("/admin/reload", headers=AUTH).status_code == 200  # the folder served
    # without models_dir any readable folder loads
    free = TestClient(create_app(Recommender(scorer, data, name="first"), api_key=KEY, backend="torch"))
    assert free.post("/admin/reload", json={"path": str(outside)}, headers=AUTH).status_code == 200
    with pytest.raises(Exception, match="no such folder"):
        create_app(None, models_dir=tmp_path / "nowhere")


def test_serve_takes_models_dir_into_the_workers(tmp_path, monkeypatch, tiny_dataset, make_scorer) -> None:
    import seqrec.serving.server as A
    from seqrec.cli.commands import build_parser

    data = tiny_dataset()
    folder = save_folder(tmp_path / "m", make_scorer(data.n_items), data, config={}, metrics={})
    args = build_parser().parse_args(["serve", str(folder), "--models-dir", str(tmp_path)])
    assert args.models_dir == str(tmp_path)
    monkeypatch.setenv(A.ENV_MODEL, str(folder))
    monkeypatch.setenv(A.ENV_MODELS_DIR, str(tmp_path))
    monkeypatch.setattr(A, "_settle", lambda: None)
    assert A.app_from_env().state.models_dir == str(tmp_path.resolve())
