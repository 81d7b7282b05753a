"""The service under bad and costly input: strict JSON (422 naming the field, never 500), keep-alive
connections that survive any error (against a real uvicorn server), per-request cost limits (413
naming the limit), and scoring off the event loop (503 when too many batches wait)."""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError
from seqrec.serving.app import create_app
from seqrec.serving.http import item_bytes
from seqrec.serving.limits import Limits
from seqrec.serving.recommender import Recommender


@pytest.fixture(scope="module")
def tiny(tiny_app):
    """``tiny(limits=None, **create_app options) -> (recommender, app)``: a fresh tiny service."""
    return lambda limits=None, **kw: tiny_app(limits=limits, **kw)


@pytest.fixture(scope="module")
def client(tiny) -> TestClient:
    return TestClient(tiny()[1])


def post(client: TestClient, path: str, body: bytes, **headers) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


@contextmanager
def served(app):
    """The app under uvicorn on a free loopback port, in a thread; yields the base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# ---------------------------------------------------------------------------- strict JSON
BAD_BODIES = [
    ("/recommend", b'{"history":[101],"k":NaN}', ["body", "k"], "NaN"),
    ("/recommend", b'{"history":[101],"k":Infinity}', ["body", "k"], "Infinity"),
    ("/recommend", b'{"history":[101],"k":-Infinity}', ["body", "k"], "-Infinity"),
    ("/recommend", b'{"history":[101],"k":1e400}', ["body", "k"], "1e400"),
    ("/recommend", b'{"history":[101, NaN]}', ["body", "history", 1], "NaN"),
    ("/recommend", b'{"history":[101],"exclude":[NaN]}', ["body", "exclude", 0], "NaN"),
    ("/recommend", b'{"history":[101],"include":[-1e999]}', ["body", "include", 0], "-1e999"),
    ("/recommend", b'{"history":["\\ud800"]}', ["body", "history", 0], "\\ud800"),
    ("/recommend", b'{"history":["ok\\udfff"]}', ["body", "history", 0], "ok\\udfff"),
    ("/recommend/batch", b'{"histories":[[101],["\\ud800"]]}', ["body", "histories", 1, 0], "\\ud800"),
    ("/recommend/batch", b'{"histories":[[101]],"k":NaN}', ["body", "k"], "NaN"),
    ("/recommend_batch", b'{"user_histories":[[Infinity]]}', ["body", "user_histories", 0, 0], "Infinity"),
]


@pytest.mark.parametrize("path, body, loc, shown", BAD_BODIES)
def test_non_finite_numbers_and_unpaired_surrogates_are_422_naming_the_field(client, path, body, loc, shown) -> None:
    r = post(client, path, body)  # before: 500 (the 422 echoed a value JSON cannot carry)
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == loc and error["input"] == shown
    assert ("finite number" in error["msg"]) != ("surrogate" in error["msg"])


def test_a_surrogate_in_a_key_and_several_problems_at_once(client) -> None:
    r = post(client, "/recommend", b'{"history":[NaN, 101, Infinity],"\\udc00x":1}')
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [
        ["body", "history", 0],
        ["body", "history", 2],
        ["body", "\\udc00x"],
    ]


def test_paired_surrogates_and_integral_numbers_are_fine(client) -> None:
    emoji = post(client, "/recommend", b'{"history":["\\ud83d\\ude00", 101]}')
    assert emoji.status_code == 200 and emoji.json()["unknown_items"] == ["\U0001f600"]
    ints = post(client, "/recommend", b'{"history":[101, 102], "k": 3}').json()
    floats = post(client, "/recommend", b'{"history":[101.0, 1.02e2], "k": 3.0}').json()
    assert [i["item_id"] for i in floats["items"]] == [i["item_id"] for i in ints["items"]] and len(ints["items"]) == 3
    assert floats["unknown_items"] == []
    assert post(client, "/recommend", b'{"history":[101.5]}').status_code == 422
    text = post(client, "/recommend", b'{"history":["101.0", " 102 "], "k": 3}').json()  # one id, one spelling
    assert text["unknown_items"] == [] and [i["item_id"] for i in text["items"]] == [
        i["item_id"] for i in ints["items"]
    ]


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        (b"\xff\xfe{}", "application/json", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "nested too deeply"),
        (b'{"history":[' + b"9" * 5000 + b"]}", "application/json", "out of range"),
        (b'{"history": [101], "k": 3', "application/json", "JSON decode error"),
        (b"\xff\xfe", "text/plain", "dictionary"),  # not read as JSON: the bytes are echoed, as text
        (b"\x80history", None, "dictionary"),
    ],
)
def test_bodies_that_are_not_strict_json_are_422(client, body, content_type, words) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/recommend", content=body, headers=headers)
    assert r.status_code == 422 and words in json.dumps(r.json()), r.text


def test_deeply_nested_values_are_echoed_cut_short(client) -> None:
    deep = b'{"history": [' + b"[" * 500 + b"]" * 500 + b"]}"
    r = post(client, "/recommend", deep)  # before: a RecursionError while rendering the 422 echo
    assert r.status_code == 422
    assert "..." in json.dumps(r.json()) and len(r.content) < 5000


# ---------------------------------------------------------------------------- keep-alive after errors
def test_no_error_leaves_a_keep_alive_connection_unusable(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    rec, app = tiny()
    original = rec.recommend

    def sometimes_broken(history, **kw):
        if 666 in history:
            raise RuntimeError("a bug")
        return original(history, **kw)

    monkeypatch.setattr(rec, "recommend", sometimes_broken)
    bad = [
        ("/recommend", b'{"history":[101],"k":NaN}', 422),
        ("/recommend", b'{"history":["\\ud800"]}', 422),
        ("/recommend/batch", b'{"histories":[["\\ud800"]]}', 422),
        ("/recommend", b'{"history":[666]}', 500),
        ("/recommend", b'{"history":[1e400]}', 422),
    ]
    with served(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        for path, body, status in bad:
            r = client.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, r.text
            where = r.extensions["network_stream"].get_extra_info("client_addr")
            answers = [client.post("/recommend", json={"history": [101, 102], "k": 3}) for _ in range(30)]
            assert [a.status_code for a in answers] == [200] * 30
            # one connection throughout: before, the server closed it after the 500 and the next request failed
            assert {a.extensions["network_stream"].get_extra_info("client_addr") for a in answers} == {where}
            assert all(len(a.json()["items"]) == 3 for a in answers)


# ---------------------------------------------------------------------------- cost limits
def test_batch_cost_limits_are_413_naming_the_limit(tiny) -> None:
    rec, app = tiny(Limits(max_batch=6, max_batch_results=20, max_response_bytes=10_000))
    client = TestClient(app)
    ok = client.post("/recommend/batch", json={"histories": [[101], [102], [103], [104]], "k": 5})
    assert ok.status_code == 200 and [len(x["items"]) for x in ok.json()["results"]] == [5, 5, 5, 5]
    r = client.post("/recommend/batch", json={"histories": [[101], [102], [103]], "k": 7})
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "batch of 3 histories x k 7 = 21 results is over the limit of 20 "
        "(max_batch_results); send fewer histories or a smaller k"
    )
    r = client.post("/recommend/batch", json={"histories": [[101]] * 7})
    assert r.status_code == 413 and r.json()["detail"] == "batch of 7 histories is over the limit of 6 (max_batch)"
    # k beyond the catalogue (12 items) costs only the catalogue
    assert client.post("/recommend/batch", json={"histories": [[101]], "k": 1000}).status_code == 200

    per_item = item_bytes(rec)
    small = TestClient(create_app(rec, limits=Limits(max_response_bytes=int(60 + 4 * per_item) + 1)))
    assert small.post("/recommend/batch", json={"histories": [[101]], "k": 4}).status_code == 200
    r = small.post("/recommend/batch", json={"histories": [[101]], "k": 5})
    assert r.status_code == 413 and "(max_response_bytes)" in r.json()["detail"]


def test_the_answer_size_estimate_is_close(tiny) -> None:
    rec, app = tiny()
    client = TestClient(app)
    histories = [[101], [104, 105], [106], [], [110, 111, 112]]
    r = client.post("/recommend/batch", json={"histories": histories, "k": 6, "exclude_seen": False})
    estimate = len(histories) * 60 + len(histories) * 6 * item_bytes(rec)
    assert 0.8 < estimate / len(r.content) < 1.5, (estimate, len(r.content))


def test_the_costly_request_is_refused_at_once(fake_scorer) -> None:
    """0.9 MB: 1,000 histories of 180 ids, k 1,000, over 1,500 items: before, a 117 MB answer built in 10 s."""
    rng = np.random.default_rng(0)
    data = Dataset.from_sequences([rng.integers(1, 1501, 20).tolist() for _ in range(300)] + [list(range(1, 1501))])
    rec = Recommender(fake_scorer(data.n_items, max_len=50), data, name="wide")
    client = TestClient(create_app(rec))
    body = json.dumps({"histories": rng.integers(1, 1501, (1000, 180)).tolist(), "k": 1000}).encode()
    assert 800_000 < len(body) < 1_000_000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    r = post(client, "/recommend/batch", body)
    took = time.perf_counter() - start
    assert r.status_code == 413 and "1,000,000 results is over the limit of 100,000 (max_batch_results)" in r.text
    assert took < 3.0, took
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 150_000  # KiB
    at_limit = post(client, "/recommend/batch", body.replace(b'"k": 1000', b'"k": 100'))
    assert at_limit.status_code == 200 and [len(x["items"]) for x in at_limit.json()["results"]] == [100] * 1000


def test_limits_come_from_one_place(tiny) -> None:
    assert Limits().max_batch_results == 100_000 and Limits().max_body_bytes == 1_000_000
    assert Limits.from_env('{"max_batch_results": 50000, "batch_queue": 0}') == Limits(
        max_batch_results=50_000, batch_queue=0
    )
    assert Limits.from_env("") == Limits()
    with pytest.raises(SeqrecError, match=r"SEQREC_LIMITS: unknown keys \['max_k'\]"):
        Limits.from_env('{"max_k": 5}')
    with pytest.raises(SeqrecError, match="SEQREC_LIMITS: not valid JSON"):
        Limits.from_env("{max_batch: 5}")
    with pytest.raises(SeqrecError, match=r"limit batch_workers must be an integer >= 1, got 0"):
        Limits(batch_workers=0)
    rec, app = tiny(Limits(max_batch=3), max_body_bytes=500)
    assert app.state.limits == Limits(max_batch=3, max_body_bytes=500)
    schema = app.openapi()["components"]["schemas"]["BatchRequest"]["properties"]["histories"]
    assert schema["maxItems"] == 3 and "100,000 results" in schema["description"]


# ---------------------------------------------------------------------------- off the event loop
def test_scoring_runs_off_the_event_loop_and_batches_queue_boundedly(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    rec, app = tiny(Limits(batch_workers=1, batch_queue=0))
    entered, release = threading.Event(), threading.Event()
    many, one = rec.recommend_many, rec.recommend

    def slow_many(histories, **kw):
        if [666] in histories:
            entered.set()
            release.wait(20)
        return many(histories, **kw)

    def slow_one(history, **kw):
        if 667 in history:
            entered.set()
            release.wait(20)
        return one(history, **kw)

    monkeypatch.setattr(rec, "recommend_many", slow_many)
    monkeypatch.setattr(rec, "recommend", slow_one)
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path, body in (("/recommend", {"history": [667]}), ("/recommend/batch", {"histories": [[666]]})):
            entered.clear()
            release.clear()
            answer: list = []
            heavy = threading.Thread(
                target=lambda a=answer, p=path, b=body: a.append(httpx.post(url + p, json=b, timeout=30))
            )
            heavy.start()
            assert entered.wait(10)
            start = time.perf_counter()
            assert client.get("/health").status_code == 200  # before: a slow /recommend held the event loop
            assert time.perf_counter() - start < 1.0
            assert client.get("/items/101").json()["title"] == "Star Wars"
            if path == "/recommend/batch":
                assert client.post("/recommend", json={"history": [101], "k": 2}).status_code == 200
                busy = client.post("/recommend/batch", json={"histories": [[101]]})
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
                assert "1 batch requests are already running or waiting" in busy.json()["detail"]
            release.set()
            heavy.join(20)
            assert answer[0].status_code == 200
        assert client.post("/recommend/batch", json={"histories": [[101]]}).status_code == 200  # the slot is free
