"""Filters on item facts: exact top-k on the tiny planted catalogue for each kind of condition and for
combinations, errors naming the field, the batch and user paths, the service (422) and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from seqrec.serving.app import create_app
from seqrec.serving.filters import FilterError
from seqrec.serving.recommender import Recommender

# the tiny catalogue (tests/conftest.py): raw id, genres, year
#   101 Sci-Fi Adventure 1990   102 Sci-Fi 1991      103 Horror Sci-Fi 1992     104 Animation Comedy 1993
#   105 Animation 1994          106 Crime 1995       107 Crime Drama 1996       108 Crime Comedy 1997
#   109 Drama 1998              110 Comedy 1999      111 Action 2000            112 Sci-Fi Action 2001


class RankedScorer(torch.nn.Module):
    """Scores every item by its raw id, lowest first (101 best, 112 worst), whatever the history."""

    def __init__(self, raw_ids: list[int], max_len: int = 5) -> None:
        super().__init__()
        self.n_items, self.max_len = len(raw_ids), max_len
        self.scores = torch.tensor([0.0] + [1000.0 - r for r in raw_ids])

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.scores.expand(histories.shape[0], -1).clone()


@pytest.fixture()
def rec(tiny_dataset) -> Recommender:
    data = tiny_dataset()
    return Recommender(RankedScorer(data.item_ids.to_raw(np.arange(1, data.n_items + 1))), data, name="ranked")


def top(res) -> list:
    return [i.item_id for i in res.items]


CASES = [  # (filter, k, expected top-k): the history is [111] with exclude_seen off, so 101..112 is the order
    ({"genres": {"any": ["Comedy", "Drama"]}}, 3, [104, 107, 108]),
    ({"genres": {"all": ["Crime", "Comedy"]}}, 3, [108]),
    ({"genres": {"none": ["Sci-Fi", "Crime"]}}, 4, [104, 105, 109, 110]),
    ({"genres": {"any": []}}, 3, []),
    ({"genres": {"any": ["Western"]}}, 3, []),
    ({"year": {"gte": 1995, "lte": 1998}}, 10, [106, 107, 108, 109]),
    ({"year": {"lte": 1991}}, 5, [101, 102]),
    ({"year": {"gte": 2000.5}}, 5, [112]),
    ({"item_id": {"none": [101, "102"]}}, 3, [103, 104, 105]),
    ({"item_id": {"any": [105, "110", 999]}}, 5, [105, 110]),
    ({"genres": {"any": ["Comedy"]}, "year": {"gte": 1995}, "item_id": {"none": [110]}}, 5, [108]),
    ({"genres": {"any": ["Sci-Fi"], "none": ["Horror"]}, "year": {"lte": 2000}}, 5, [101, 102]),
    ({"genres": {"any": ["Crime", "Animation"], "none": ["Comedy"]}, "year": {"gte": 1994}}, 2, [105, 106]),
    ({}, 3, [101, 102, 103]),
]


@pytest.mark.parametrize(("rules", "k", "expected"), CASES)
def test_each_condition_and_combinations(rec: Recommender, rules: dict, k: int, expected: list) -> None:
    res = rec.recommend([111], k=k, exclude_seen=False, filter=rules)
    assert top(res) == expected
    assert res.fewer_than_k == (len(expected) < k)
    many = rec.recommend_many([[111], [111, 112]], k=k, exclude_seen=False, filter=rules)
    assert [top(r) for r in many] == [expected, expected]
    assert top(rec.recommend_users(["u10"], k=k, exclude_seen=False, filter=rules)[0]) == expected  # u10: 111, ...


def test_filters_meet_exclusions_include_and_fallback(rec: Recommender) -> None:
    rules = {"genres": {"any": ["Comedy", "Drama"]}}
    assert top(rec.recommend([104, 107], k=3, filter=rules)) == [108, 109, 110]  # the seen ones excluded
    assert top(rec.recommend([101], k=5, filter=rules, exclude=[108])) == [104, 107, 109, 110]
    assert top(rec.recommend([101], k=5, filter=rules, include=[101, 108, 109, 111])) == [108, 109]
    res = rec.recommend([], k=3, filter=rules)  # popularity, filtered
    assert res.fallback and all({"Comedy", "Drama"} & set(i.genres) for i in res.items) and len(res.items) == 3


@pytest.mark.parametrize(
    ("rules", "loc", "words"),
    [
        ({"genre": {"any": ["Comedy"]}}, ("genre",), "unknown field"),
        ({"year": {"gte": "1990"}}, ("year", "gte"), "expected a number"),
        ({"year": {"any": [1990]}}, ("year", "any"), "unknown operator"),
        ({"genres": {"gte": 3}}, ("genres", "gte"), "unknown operator"),
        ({"genres": {"any": "Comedy"}}, ("genres", "any"), "expected a list"),
        ({"genres": {"any": [1]}}, ("genres", "any"), "expected text"),
        ({"genres": {}}, ("genres",), "expected an object of operators"),
        ({"genres": ["Comedy"]}, ("genres",), "expected an object of operators"),
        ({"item_id": {"all": [1]}}, ("item_id", "all"), "unknown operator"),
        ({"item_id": {"none": [True]}}, ("item_id", "none"), "expected item ids"),
    ],
)
def test_a_filter_that_does_not_fit_names_the_field(rec: Recommender, rules: dict, loc: tuple, words: str) -> None:
    with pytest.raises(FilterError, match=words) as info:
        rec.recommend([101], filter=rules)
    assert info.value.loc == loc and f"filter.{'.'.join(loc)}" in str(info.value)


def test_availability_is_a_mask_too(rec: Recommender) -> None:
    rules = {"genres": {"any": ["Comedy"]}}
    assert rec.set_available([104, "108"], False) == 2
    assert top(rec.recommend([111], k=3, filter=rules)) == [110]
    assert top(rec.recommend([111], k=3)) == [101, 102, 103]
    assert rec.unavailable() == [104, 108]
    assert rec.set_available([104], True) == 1 and rec.set_available([104], True) == 0
    assert top(rec.recommend([111], k=3, filter=rules)) == [104, 110]


def test_the_service_filters_and_refuses_with_422(rec: Recommender) -> None:
    client = TestClient(create_app(rec))
    body = {"history": [111], "k": 3, "exclude_seen": False, "filter": CASES[0][0]}
    answer = client.post("/recommend", json=body).json()
    assert [i["item_id"] for i in answer["items"]] == [104, 107, 108] and answer["fewer_than_k"] is False
    answer = client.post("/recommend", json={**body, "filter": {"genres": {"all": ["Crime", "Comedy"]}}}).json()
    assert [i["item_id"] for i in answer["items"]] == [108] and answer["fewer_than_k"] is True
    r = client.post("/recommend", json={**body, "filter": {"genre": {"any": ["Comedy"]}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "filter", "genre"]
    assert "unknown field" in r.json()["detail"][0]["msg"]
    r = client.post("/recommend", json={**body, "filter": {"year": {"gte": "x"}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "filter", "year", "gte"]
    r = client.post("/recommend", json={**body, "filter": {"year": 1990}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "filter", "year"]
    batch = client.post(
        "/recommend/batch",
        json={"histories": [[111], [101]], "k": 2, "exclude_seen": False, "filter": {"year": {"gte": 1995}}},
    ).json()
    assert [[i["item_id"] for i in r["items"]] for r in batch["results"]] == [[106, 107], [106, 107]]
    r = client.post("/recommend/batch", json={"histories": [[111]], "filter": {"colour": {"any": ["red"]}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "filter", "colour"]
    q = json.dumps({"genres": {"none": ["Sci-Fi", "Crime"]}})
    user = client.get("/users/u10/recommendations", params={"k": 4, "exclude_seen": False, "filter": q}).json()
    assert [i["item_id"] for i in user["items"]] == [104, 105, 109, 110]
    r = client.get("/users/u10/recommendations", params={"filter": '{"genres": {"any": "x"}}'})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "filter", "genres", "any"]
    assert client.get("/users/u10/recommendations", params={"filter": "{not json"}).status_code == 422


def test_the_command_line_filters(tmp_path, tiny_dataset, make_scorer, cli) -> None:
    from seqrec.models.folder import save_folder

    data = tiny_dataset()
    path = save_folder(tmp_path / "model", make_scorer(data.n_items), data, config={}, metrics={})
    code, out, err = cli(
        "recommend",
        path,
        "--history",
        "101,102",
        "-k",
        "20",
        "--json",
        "--filter",
        '{"genres": {"any": ["Crime"]}, "year": {"lte": 1996}}',
    )
    assert code == 0, err
    answer = json.loads(out)
    assert sorted(i["item_id"] for i in answer["items"]) == [106, 107] and answer["fewer_than_k"] is True
    code, out, err = cli("recommend", path, "--history", "101,102", "-k", "3", "--json", "--explain")
    assert code == 0, err
    assert all(isinstance(i["because"], list) for i in json.loads(out)["items"])
    code, out, err = cli("recommend", path, "--history", "101,102", "-k", "3", "--explain")
    assert code == 0 and "because" in out, err
    code, out, err = cli("recommend", path, "--history", "101", "--filter", '{"genre": {"any": ["Crime"]}}')
    assert code == 2 and "filter.genre: unknown field" in err
    code, out, err = cli("recommend", path, "--history", "101", "--filter", "[1")
    assert code == 2 and "--filter: not JSON" in err
