"""Fuzzing the service with JSON bodies JSON should not hold (NaN, infinities, unpaired surrogates, huge
integers, deep nesting, bytes that are not UTF-8) and with mutated valid bodies: never a 500, and every
answer is JSON."""

from __future__ import annotations

import json
import math
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqrec.serving.limits import Limits

PATHS = ["/recommend", "/recommend/batch", "/recommend_batch"]
KEYS = [
    "history",
    "user_history",
    "histories",
    "user_histories",
    "k",
    "top_k",
    "exclude_seen",
    "exclude_history",
    "include",
    "exclude",
]

surrogate = st.integers(0xD800, 0xDFFF).map(chr)
odd_text = st.lists(st.one_of(st.characters(), surrogate), max_size=6).map("".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([101, 102, "103", "nope", 0, -1, 1000, 1001, 2**53, 3.0, 1.5]),
    st.integers(-(2**70), 2**70),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.one_of(st.sampled_from(KEYS), odd_text), inner, max_size=4)
    ),
    max_leaves=25,
)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)


@pytest.fixture(scope="module")
def client(tiny_app) -> TestClient:
    _, app = tiny_app(limits=Limits(max_batch=20, max_body_bytes=200_000))
    return TestClient(app, raise_server_exceptions=False)


def encode(value, ascii_only: bool) -> bytes:
    """JSON text as Python writes it (NaN, Infinity allowed); surrogates as escapes, or as raw bytes."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["object", "object", "any", "deep", "digits", "mutated", "constant"]))
    if kind == "object":
        return encode(draw(objects), draw(st.booleans()))
    if kind == "any":
        return encode(draw(values), draw(st.booleans()))
    if kind == "deep":
        depth = draw(st.integers(1, 3000))
        key = draw(st.sampled_from(KEYS))
        return b'{"%s": %s%s}' % (key.encode(), b"[" * depth, b"]" * depth)
    if kind == "digits":
        digits = draw(st.integers(1, 6000))
        return b'{"history": [%s], "k": %s}' % (
            b"7" * digits,
            draw(st.sampled_from([b"3", b"1e400", b"-0.0", b"7" * 30])),
        )
    if kind == "constant":
        word = draw(
            st.sampled_from(
                [
                    b"NaN",
                    b"Infinity",
                    b"-Infinity",
                    b"1e999",
                    b"-1e999",
                    b'"\\ud800"',
                    b'"\\udfff"',
                    b'"\\ud83d\\ude00"',
                    b"1E400",
                    b"0.0",
                    b"1e-400",
                ]
            )
        )
        key = draw(st.sampled_from(KEYS))
        return (
            b'{"history": [101], "%s": %s}' % (key.encode(), word)
            if draw(st.booleans())
            else b'{"histories": [[%s]]}' % word
        )
    base = bytearray(encode({"history": [101, "102"], "k": 3, "exclude": [103]}, True))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(base) - 1))
        base[i : i + draw(st.integers(0, 3))] = draw(st.binary(max_size=4))
    return bytes(base)


def test_json_bodies_never_give_a_500(client: TestClient) -> None:
    statuses: list[int] = []

    @given(
        path=st.sampled_from(PATHS),
        body=bodies(),
        content_type=st.sampled_from(
            ["application/json", "application/json", "application/x+json", "text/plain", None]
        ),
    )
    @settings(
        max_examples=600,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def check(path: str, body: bytes, content_type: str | None) -> None:
        headers = {"content-type": content_type} if content_type else {}
        r = client.post(path, content=body, headers=headers)
        statuses.append(r.status_code)
        assert r.status_code < 500, (r.status_code, body[:200], r.text[:500])
        answer = json.loads(r.content)  # the standard reader: answers are strict JSON too
        if r.status_code == 200:
            items = answer["items"] if "items" in answer else [i for x in answer["results"] for i in x["items"]]
            assert all(math.isfinite(i["score"]) for i in items)
        else:
            assert "detail" in answer

    check()
    print(f"service fuzz, bodies: {len(statuses)} requests, statuses {sorted(set(statuses))}")
    assert len(statuses) >= 600 and {200, 422} <= set(statuses)  # the fuzzing reached the service


def test_odd_path_and_query_values_never_give_a_500(client: TestClient) -> None:
    statuses: list[int] = []

    @given(item=st.text(max_size=20), k=st.one_of(st.integers(-5, 2000).map(str), st.text(max_size=5)))
    @settings(max_examples=100, derandomize=True, deadline=None, database=None)
    def check(item: str, k: str) -> None:
        segment = quote(item, safe="")
        for url, params in (
            (f"/items/{segment}", None),
            (f"/items/{segment}/similar", {"k": k}),
            (f"/users/{segment}/recommendations", {"k": k}),
            ("/items", {"query": item, "limit": k}),
        ):
            r = client.get(url, params=params)
            statuses.append(r.status_code)
            assert r.status_code < 500, (url, params, r.text[:300])

    check()
    print(f"service fuzz, paths: {len(statuses)} requests, statuses {sorted(set(statuses))}")
    assert len(statuses) >= 400  # four requests an example


def test_reload_paths_never_give_a_500(tiny_app) -> None:
    """Paths with components over 255 characters, NUL bytes, odd characters: 400 or 422, never 500."""
    _, app = tiny_app(api_key="fuzz-reload-key", backend="torch")
    client = TestClient(app, raise_server_exceptions=False)
    statuses: list[int] = []
    component = st.one_of(
        st.text(min_size=1, max_size=8),
        st.integers(250, 600).map(lambda n: "c" * n),
        st.sampled_from(["..", ".", "\0", "~", "%2e"]),
    )

    @given(parts=st.lists(component, min_size=1, max_size=6), absolute=st.booleans())
    @settings(max_examples=60, derandomize=True, deadline=None, database=None)
    def check(parts: list[str], absolute: bool) -> None:
        path = ("/" if absolute else "") + "/".join(parts)
        r = client.post("/admin/reload", json={"path": path}, headers={"X-API-Key": "fuzz-reload-key"})
        statuses.append(r.status_code)
        assert r.status_code in (400, 422), (path[:80], r.status_code, r.text[:300])
        assert "detail" in json.loads(r.content)

    check()
    assert 400 in statuses


LIMIT_IDS = st.one_of(
    st.sampled_from(
        [
            2**53 - 1,
            -(2**53 - 1),
            2**53,
            -(2**53),
            2**63 - 1,
            2**63,
            10**30,
            0,
            -1,
            "NaN",
            "null",
            "<NA>",
            " nat ",
            "",
            " ",
            "a\0b",
            "\0",
            "x" * 256,
            "x" * 257,
            "007",
            "+5",
            "5.0",
            "1e3",
            "new-1",
            "'",
            "O'Brien",
            '"',
            ",",
            "\t",
            "é",
            "😀",
        ]
    ),
    st.integers(-(2**64), 2**64),
    st.text(max_size=10),
)


def test_ids_added_to_an_integer_catalogue_follow_the_event_rule(tiny_dataset, tmp_path) -> None:
    """Text ids added to integer catalogues and ids at the limits: /admin/items and /events agree on every
    id; an added id takes events as a known item; integer ids stay JSON integers; never a 500."""
    from seqrec.models.sasrec import SASRecConfig, SASRecModel
    from seqrec.serving.app import create_app
    from seqrec.serving.recommender import Recommender
    from seqrec.serving.store import EventStore

    data = tiny_dataset()
    model = SASRecModel.for_data(
        SASRecConfig(n_items=data.n_items, hidden=16, blocks=1, max_len=5, item_features="genres,year"), data
    ).eval()
    key = {"X-API-Key": "fuzz-items-key"}
    store = EventStore(tmp_path / "events.db")
    client = TestClient(
        create_app(Recommender(model, data, name="f", backend="torch"), api_key=key["X-API-Key"], store=store),
        raise_server_exceptions=False,
    )
    statuses: list[int] = []

    @given(item=LIMIT_IDS)
    @settings(max_examples=120, derandomize=True, deadline=None, database=None)
    def check(item) -> None:
        event = client.post("/events", json={"user_id": "u0", "item_id": item}, headers=key)
        added = client.post("/admin/items", json={"items": [{"item_id": item, "genres": ["Sci-Fi"]}]}, headers=key)
        statuses.append(added.status_code)
        assert added.status_code < 500 and event.status_code < 500, (item, added.text[:200], event.text[:200])
        if added.status_code == 422 or event.status_code == 422:
            assert added.status_code == event.status_code == 422, (item, added.text[:200], event.text[:200])
            return
        if added.status_code == 200:
            again = client.post("/events", json={"user_id": "u0", "item_id": item, "ts": 5.0}, headers=key)
            assert again.status_code == 200 and again.json()["unknown_items"] == [], (item, again.text)
        else:
            assert added.status_code == 400 and "already" in added.json()["detail"], (item, added.text[:200])
        ids = [x["item_id"] for x in client.post("/recommend", json={"history": [101], "k": 12}).json()["items"]]
        assert all(isinstance(i, int) for i in ids if str(i) in {str(k) for k in range(101, 113)}), ids

    check()
    store.close()
    assert {200, 422} <= set(statuses)
