"""The HTTP service: every route, the older aliases, 404/413/422, metrics, and a schemathesis run."""

from __future__ import annotations

import gc
import json
import logging
import sys

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqrec.serving.app import create_app
from seqrec.serving.recommender import Recommender

MAX_BATCH = 5


@pytest.fixture(scope="module")
def build(tiny_app):
    """``build() -> (recommender, app)``: a fresh tiny service, with metrics and small limits."""
    return lambda: tiny_app(metrics={"HR@10": 0.5, "bad": float("nan")}, max_batch=MAX_BATCH, max_body_bytes=20_000)


@pytest.fixture(scope="module")
def service(build) -> tuple[Recommender, object]:
    return build()


@pytest.fixture(scope="module")
def rec(service) -> Recommender:
    return service[0]


@pytest.fixture(scope="module")
def app(service):
    return service[1]


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app)


def item_ids(body: dict) -> list:
    return [i["item_id"] for i in body["items"]]


def test_recommend(client: TestClient, rec: Recommender, titles: dict) -> None:
    r = client.post("/recommend", json={"history": [101, "102", 999], "k": 3})
    assert r.status_code == 200
    body = r.json()
    expected = rec.recommend([101, 102], k=3)
    assert item_ids(body) == [i.item_id for i in expected.items]
    assert body["unknown_items"] == [999] and body["fallback"] is False and body["model"] == "tiny"
    assert body["items"][0].keys() == {"rank", "item_id", "score", "title", "genres", "features", "interactions"}
    assert body["items"][0]["title"] == titles[body["items"][0]["item_id"]][0]
    assert body["took_ms"] >= 0
    assert client.post("/recommend", json={"history": []}).json()["fallback"] is True
    full = client.post("/recommend", json={"history": [101], "k": 20, "exclude_seen": False}).json()
    assert 101 in item_ids(full)
    only = client.post("/recommend", json={"history": [101], "include": [104, 105], "exclude": [105]}).json()
    assert item_ids(only) == [104]


def test_recommend_older_names(client: TestClient) -> None:
    new = client.post("/recommend", json={"history": [101, 102], "k": 4, "exclude_seen": False}).json()
    old = client.post("/recommend", json={"user_history": [101, 102], "top_k": 4, "exclude_history": False}).json()
    assert item_ids(new) == item_ids(old) and len(item_ids(old)) == 4


def test_batch_and_its_older_name(client: TestClient, rec: Recommender) -> None:
    histories = [[101, 102], [], [104, "nope"]]
    body = client.post("/recommend/batch", json={"histories": histories, "k": 3}).json()
    assert [item_ids(x) for x in body["results"]] == [
        [i.item_id for i in rec.recommend(h, k=3).items] for h in histories
    ]
    assert [x["fallback"] for x in body["results"]] == [False, True, False]
    assert body["results"][2]["unknown_items"] == ["nope"]
    old = client.post("/recommend_batch", json={"user_histories": histories, "top_k": 3}).json()
    assert old["results"] == body["results"]


def test_batch_over_the_limit_is_413(client: TestClient) -> None:
    r = client.post("/recommend/batch", json={"histories": [[101]] * (MAX_BATCH + 1)})
    assert r.status_code == 413 and str(MAX_BATCH) in r.json()["detail"]


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = {"history": ["x" * 200] * 200}  # ~40 kB > 20 kB
    assert client.post("/recommend", json=big).status_code == 413

    def chunks():  # streamed without Content-Length
        data = json.dumps(big).encode()
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    r = client.post("/recommend", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "20000" in r.json()["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"k": 3}, "history"),
        ({"history": "101"}, "history"),
        ({"history": [101], "k": 0}, "k"),
        ({"history": [101], "k": 1001}, "k"),
        ({"history": [101], "k": "many"}, "k"),
        ({"history": [1.5]}, "history"),
        ({"history": [{"id": 1}]}, "history"),
        ({"history": [101], "exclude_seen": "perhaps"}, "exclude_seen"),
    ],
)
def test_bad_input_is_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    r = client.post("/recommend", json=body)
    assert r.status_code == 422
    assert any(field in e["loc"] for e in r.json()["detail"])


def test_a_422_quotes_a_bounded_part_of_the_input(tiny_app) -> None:
    _, app = tiny_app(api_key="quote-test-key")
    client = TestClient(app)
    big = "x" * 900_000
    for path, body, headers in (
        ("/recommend", {"history": [big]}, {}),
        ("/recommend", {"history": [101], "include": [big[:300_000]] * 2, "k": big[:300_000]}, {}),
        ("/recommend/batch", {"histories": [[big[:9000]]] * 100}, {}),
        ("/events", {"user_id": big, "item_id": 1}, {"X-API-Key": "quote-test-key"}),
        ("/admin/items", {"items": [{"item_id": big}]}, {"X-API-Key": "quote-test-key"}),
    ):
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 422, (path, r.status_code)
        assert len(r.content) < 25_000, (path, len(r.content))
        assert all(e["loc"][0] == "body" for e in r.json()["detail"])
    r = client.post("/recommend", json={"history": ["y" * 500]})
    quoted = r.json()["detail"][0]["input"]
    assert quoted.startswith("y" * 200) and "500 characters" in quoted


def test_k_below_one_is_422_on_every_route(client: TestClient) -> None:
    for k in (0, -1):  # the schemas refuse it before the recommender (which raises for it) is asked
        for path, body in (
            ("/recommend", {"history": [101]}),
            ("/recommend/batch", {"histories": [[101]]}),
            ("/recommend_batch", {"histories": [[101]]}),
        ):
            r = client.post(path, json={**body, "k": k})
            assert r.status_code == 422 and any("k" in e["loc"] for e in r.json()["detail"])
        for path in ("/users/u0/recommendations", "/items/101/similar"):
            assert client.get(path, params={"k": k}).status_code == 422
        assert client.get("/similar_items/101", params={"top_k": k}).status_code == 422


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/recommend", content=b'{"history": [1,', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/recommend", content=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert client.get("/users/u0/recommendations?k=0").status_code == 422
    assert client.get("/items/101/similar?k=abc").status_code == 422


def test_users(client: TestClient, rec: Recommender) -> None:
    body = client.get("/users/u0/recommendations", params={"k": 4}).json()
    assert body["user_id"] == "u0"
    assert item_ids(body) == [i.item_id for i in rec.recommend_users(["u0"], k=4)[0].items]
    r = client.get("/users/ghost/recommendations")
    assert r.status_code == 404 and "ghost" in r.json()["detail"]


def test_items_search_and_similar(client: TestClient) -> None:
    assert client.get("/items/103").json() == {
        "item_id": 103,
        "title": "Alien",
        "genres": ["Horror", "Sci-Fi"],
        "year": 1992,
        "popularity": 3,
        "available": True,
    }
    assert client.get("/items/nope").status_code == 404
    found = client.get("/items", params={"query": "STAR", "limit": 3}).json()
    assert found["query"] == "STAR" and len(found["items"]) == 3
    assert all("star" in x["title"].lower() for x in found["items"])
    sim = client.get("/items/101/similar", params={"k": 3}).json()
    assert sim["item"]["item_id"] == 101 and sim["method"] == "embedding" and len(sim["items"]) == 3
    old = client.get("/similar_items/101", params={"top_k": 3}).json()
    assert item_ids(old) == item_ids(sim)
    assert client.get("/items/999/similar").status_code == 404
    assert client.get("/similar_items/999").status_code == 404


def test_similar_for_a_baseline_uses_cooccurrence(tiny_dataset, count_scorer) -> None:
    data = tiny_dataset()
    client = TestClient(create_app(Recommender(count_scorer(data), data, name="counts")))
    sim = client.get("/items/106/similar").json()
    assert sim["method"] == "cooccurrence" and item_ids(sim) == [107, 109, 108]


def test_operations(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"ready": True, "model": "tiny"}
    m = client.get("/model").json()
    assert m["name"] == "tiny" and m["n_items"] == 12 and m["max_len"] == 5 and m["has_embeddings"]
    assert m["metrics"] == {"HR@10": 0.5, "bad": None}  # NaN is not JSON
    assert m["data"]["users"] == 15 and m["data"]["interactions"] == 47
    assert client.get("/docs").status_code == 200
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_not_ready_without_a_model() -> None:
    client = TestClient(create_app(None))
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503
    assert client.post("/recommend", json={"history": [1]}).status_code == 503


def test_app_factory_loads_the_folder_named_in_the_environment(
    rec: Recommender, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = pytest.importorskip("seqrec.models.folder", reason="seqrec.models.folder has not landed yet")
    from seqrec.serving.server import ENV_LIMITS, ENV_MODEL, SWITCH_INTERVAL, app_from_env

    path = folder.save_folder(tmp_path / "model", rec.scorer, rec.dataset, config={}, metrics={})
    monkeypatch.setenv(ENV_MODEL, str(path))
    monkeypatch.setenv(ENV_LIMITS, '{"max_batch": 2}')
    switch = sys.getswitchinterval()
    try:
        app = app_from_env()
        # the server process is tuned once the model is loaded (see serve._settle)
        assert sys.getswitchinterval() == SWITCH_INTERVAL and gc.get_freeze_count() > 0
    finally:
        sys.setswitchinterval(switch)
        gc.unfreeze()
    client = TestClient(app)
    assert client.get("/ready").json() == {"ready": True, "model": "model"}
    assert item_ids(client.post("/recommend", json={"history": [101]}).json()) == [
        i.item_id for i in rec.recommend([101]).items
    ]
    assert client.post("/recommend/batch", json={"histories": [[101]] * 3}).status_code == 413  # SEQREC_LIMITS


def test_metrics_count_requests_per_route_template(client: TestClient) -> None:
    client.get("/items/101")
    client.get("/items/nope")
    text = client.get("/metrics").text
    assert 'seqrec_http_requests_total{method="GET",route="/items/{item_id}",status="200"}' in text
    assert 'seqrec_http_requests_total{method="GET",route="/items/{item_id}",status="404"}' in text
    assert 'seqrec_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/recommend"}' in text
    assert "/items/101" not in text  # templates, not raw paths


def test_web_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="search-input"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_unexpected_errors_are_json_500_and_not_hidden(
    build, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug is answered 500 and logged with its traceback; it is not re-raised to the server (which would
    close the keep-alive connection: see test_serve_limits.py for that against uvicorn)."""
    rec, app = build()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(rec, "recommend", broken)
    client = TestClient(app)
    with caplog.at_level(logging.ERROR, logger="seqrec.serve"):
        r = client.post("/recommend", json={"history": [101]})
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    [record] = [x for x in caplog.records if x.name == "seqrec.serve"]
    assert record.exc_info[0] is RuntimeError and "POST /recommend" in record.getMessage()
    assert 'route="/recommend",status="500"} 1.0' in client.get("/metrics").text
    assert client.get("/health").status_code == 200


# ---------------------------------------------------------------------------- schemathesis
# The byte limit on bodies (413) is not expressible in OpenAPI: a schema-valid body can exceed it (10,000
# ids of 256 characters), and an invalid one (an array over maxItems) may be refused for its size first.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {"expected-statuses": REJECTED},
            "positive_data_acceptance": {"expected-statuses": ACCEPTED},
        }
    }
)


def test_schema_conformance(rec: Recommender) -> None:
    """No 5xx and no response that breaks the declared schema, for generated valid and invalid requests to
    every operation (up to 170 each); self-contained: it counts its own requests."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(rec, max_batch=MAX_BATCH), config=CONFIG)
    calls: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        cases = st.one_of([operation.as_strategy(generation_mode=mode) for mode in schemathesis.GenerationMode])

        @given(case=cases)
        @settings(max_examples=170, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            calls.append(case.call_and_validate().status_code)

        check()
    print(f"schemathesis: {len(operations)} operations, {len(calls)} requests, statuses {sorted(set(calls))}")
    assert len(operations) >= 12 and len(calls) >= 1000, (len(operations), len(calls))
    assert not [c for c in calls if c >= 500]


def test_several_workers_answer_without_waiting_for_delayed_acks(rec: Recommender, tmp_path) -> None:
    """Two uvicorn workers behind one socket: each answer (head, then body) leaves at once.

    With Nagle's algorithm on, the body waited for the client's delayed ACK: about 40 ms a request
    whatever its cost. Twenty requests one after another on one keep-alive connection must take far less.
    """
    import http.client
    import os
    import socket
    import subprocess
    import time

    from seqrec.models.folder import save_folder

    path = save_folder(tmp_path / "model", rec.scorer, rec.dataset, config={}, metrics={})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from seqrec.serving.server import run; run({str(path)!r}, port={port}, workers=2, access_log=False)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/ready")
                if conn.getresponse().read() and proc.poll() is None:
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        body = json.dumps({"history": [101], "k": 3})
        took = []
        for _ in range(25):
            start = time.perf_counter()
            conn.request("POST", "/recommend", body, {"Content-Type": "application/json"})
            answer = conn.getresponse()
            assert answer.status == 200 and item_ids(json.loads(answer.read()))
            took.append(time.perf_counter() - start)
        took.sort()
        assert took[len(took) // 2] < 0.025, f"median {took[len(took) // 2] * 1000:.1f} ms a request"
    finally:
        proc.terminate()
        proc.wait(20)


def test_answer_items_carry_their_features_and_interactions(
    client: TestClient, rec: Recommender, titles: dict, sequences: list
) -> None:
    counts = {i: sum(s.count(i) for s in sequences) for i in titles}
    years = {raw: 1990 + n for n, raw in enumerate(titles)}
    answers = [
        client.post("/recommend", json={"history": [101, 102], "k": 5}).json()["items"],
        client.post("/recommend/batch", json={"histories": [[104]], "k": 5}).json()["results"][0]["items"],
        client.get("/users/u0/recommendations", params={"k": 5}).json()["items"],
        client.get("/items/101/similar", params={"k": 5}).json()["items"],
    ]
    for items in answers:
        assert items
        for x in items:
            assert list(x) == ["rank", "item_id", "score", "title", "genres", "features", "interactions"]
            assert x["features"] == {"genres": titles[x["item_id"]][1], "year": years[x["item_id"]]}
            assert x["interactions"] == counts[x["item_id"]] > 0
    assert client.get("/items/103").json()["popularity"] == counts[103]  # the same count


def test_an_added_item_is_answered_with_no_interactions_and_its_features(tiny_dataset) -> None:
    from seqrec.models.sasrec import SASRecConfig, SASRecModel

    data = tiny_dataset()
    model = SASRecModel.for_data(
        SASRecConfig(
            n_items=data.n_items, hidden=16, blocks=1, max_len=5, item_features="genres,year", feature_output=True
        ),
        data,
    ).eval()
    key = {"X-API-Key": "items-answer-test-key"}
    client = TestClient(
        create_app(Recommender(model, data, name="features", backend="torch"), api_key=key["X-API-Key"])
    )
    new = {"item_id": "new-1", "title": "Star Voyage", "genres": ["Sci-Fi"], "year": 1995}
    assert client.post("/admin/items", json={"items": [new, {"item_id": "bare"}]}, headers=key).status_code == 200
    body = client.post("/recommend", json={"history": [101, 102], "k": 3, "include": ["new-1", "bare", 103]}).json()
    got = {x["item_id"]: x for x in body["items"]}
    assert set(got) == {"new-1", "bare", 103}  # the integer ids stay integers beside the text ones
    assert got["new-1"]["interactions"] == 0 and got["new-1"]["features"] == {"genres": ["Sci-Fi"], "year": 1995}
    assert got["bare"]["interactions"] == 0 and got["bare"]["features"] == {} and got["bare"]["genres"] == []
    assert got[103]["interactions"] == 3 and got[103]["features"]["genres"] == ["Horror", "Sci-Fi"]
    assert client.get("/items/new-1").json()["popularity"] == 0


def _features_client(tiny_dataset, store=None) -> tuple[TestClient, dict]:
    from seqrec.models.sasrec import SASRecConfig, SASRecModel

    data = tiny_dataset()
    model = SASRecModel.for_data(
        SASRecConfig(
            n_items=data.n_items, hidden=16, blocks=1, max_len=5, item_features="genres,year", feature_output=True
        ),
        data,
    ).eval()
    key = {"X-API-Key": "items-forms-test-key"}
    app = create_app(Recommender(model, data, name="features", backend="torch"), api_key=key["X-API-Key"], store=store)
    return TestClient(app, raise_server_exceptions=False), key


def test_a_text_id_added_to_integer_ids_leaves_their_form(tiny_dataset, tmp_path) -> None:
    from seqrec.serving.store import EventStore

    store = EventStore(tmp_path / "events.db")
    client, key = _features_client(tiny_dataset, store)
    before = client.post("/recommend", json={"history": [101, 102], "k": 5}).json()["items"]
    assert all(isinstance(x["item_id"], int) for x in before)
    r = client.post(
        "/admin/items",
        json={
            "items": [
                {"item_id": "new-1", "genres": ["Sci-Fi"]},
                {"item_id": 7001},
                {"item_id": "7002"},
                {"item_id": "007"},
            ]
        },
        headers=key,
    )
    assert r.status_code == 200 and r.json()["added"] == ["new-1", 7001, "7002", "007"], r.text
    after = client.post("/recommend", json={"history": [101, 102], "k": 16}).json()["items"]
    forms = {x["item_id"] for x in after}
    assert {x["item_id"] for x in before} <= forms  # the very ids, as integers
    assert {"new-1", 7001, 7002, "007"} <= forms and "101" not in forms and "103" not in forms
    assert client.get("/items/103").json()["item_id"] == 103 and client.get("/items/7002").json()["item_id"] == 7002
    assert client.get("/items/new-1").json()["item_id"] == "new-1"
    assert all(
        isinstance(x["item_id"], int)
        for x in client.get("/items/103/similar", params={"k": 11}).json()["items"]
        if x["item_id"] not in ("new-1", "007")
    )
    assert client.post("/events", json={"user_id": "u0", "item_id": 103}, headers=key).status_code == 200
    assert client.post("/events", json={"user_id": "u0", "item_id": "new-1"}, headers=key).status_code == 200
    hist = client.get("/users/u0/history").json()["items"]
    assert hist[-2]["item_id"] == 103 and hist[-1]["item_id"] == "new-1" and all(h["known"] for h in hist)
    assert isinstance(hist[0]["item_id"], int)
    store.close()


@pytest.mark.parametrize("bad", ["NaN", "null", " None ", "", "a\0b", 10**30, 2**63, 2**53, -(2**53), True, "x" * 257])
def test_added_items_follow_the_id_rule_of_events(tiny_dataset, tmp_path, bad) -> None:
    from seqrec.serving.store import EventStore

    store = EventStore(tmp_path / "events.db")
    client, key = _features_client(tiny_dataset, store)
    event = client.post("/events", json={"user_id": "u0", "item_id": bad}, headers=key)
    added = client.post("/admin/items", json={"items": [{"item_id": bad}]}, headers=key)
    assert event.status_code == added.status_code == 422, (event.text[:300], added.text[:300])
    assert added.json()["detail"][0]["loc"][:4] == ["body", "items", 0, "item_id"], added.text[:300]
    assert client.get("/model").json()["n_items"] == 12
    store.close()
