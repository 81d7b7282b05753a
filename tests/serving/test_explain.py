"""Explanations: the history items that raised a recommended item's score most, from leave-one-out variants
scored in one batched pass; on a planted log where B always follows A, B is explained by A first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from seqrec.api import SASRec
from seqrec.data.dataset import Dataset
from seqrec.serving.app import create_app
from seqrec.serving.explain import explain_items
from seqrec.serving.recommender import Recommender

A, B = 1, 2


@pytest.fixture(scope="module")
def planted() -> Recommender:
    """A SASRec trained on 400 users over items 1..30 where item B (2) always follows item A (1)."""
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(400):
        s = [int(x) for x in rng.integers(3, 31, int(rng.integers(4, 10)))]
        at = int(rng.integers(0, len(s)))
        seqs.append(s[:at] + [A, B] + s[at:])
    torch.manual_seed(0)
    est = SASRec(
        recipe="paper",
        epochs=15,
        hidden=16,
        blocks=1,
        max_len=10,
        batch_size=64,
        lr=5e-3,
        loss="ce",
        n_negatives=None,
        quiet=True,
        threads=1,
        patience=None,
    ).fit(Dataset.from_sequences(seqs), valid=False)
    return Recommender(est.model_.eval(), est.dataset_, name="planted")


@pytest.mark.parametrize("history", [[7, 12, A], [3, A], [5, 11, 20, 30, 4, A]])
def test_b_is_explained_by_a(planted: Recommender, history: list[int]) -> None:
    res = planted.recommend(history, k=10, explain=True)
    items = [i.item_id for i in res.items]
    assert B in items
    because = res.because[items.index(B)]
    assert because[0]["item_id"] == A and 0 < because[0]["share"] <= 1
    assert len(because) <= 3 and all(b["drop"] > 0 for b in because)
    assert [b["drop"] for b in because] == sorted((b["drop"] for b in because), reverse=True)
    assert abs(sum(b["share"] for b in because) - 1) < 1e-3 or len(because) == 3


def test_drops_are_the_scores_without_each_item(planted: Recommender) -> None:
    history = [7, 12, A, 9]
    ids = planted.dataset.item_ids.lookup(history)[0]
    res = planted.recommend(history, k=5)
    why = explain_items(planted, ids, res.items, top=10)
    for item, reasons in zip(res.items, why):
        full = planted.score(history, [item.item_id])[0]
        for r in reasons:
            without = planted.score([h for h in history if h != r["item_id"]], [item.item_id])[0]
            assert r["drop"] == pytest.approx(full - without, abs=1e-4)


def test_explain_everywhere(planted: Recommender) -> None:
    assert planted.recommend([7, A], k=3).because is None
    assert planted.recommend([], k=3, explain=True).because == [[], [], []]  # popularity: nothing to explain
    many = planted.recommend_many([[7, A], [9, 12]], k=3, explain=True)
    assert many[0].because == planted.recommend([7, A], k=3, explain=True).because
    client = TestClient(create_app(planted))
    answer = client.post("/recommend", json={"history": [7, 12, A], "k": 5, "explain": True}).json()
    b = next(i for i in answer["items"] if i["item_id"] == B)
    assert b["because"][0]["item_id"] == A and set(b["because"][0]) == {"item_id", "title", "drop", "share"}
    plain = client.post("/recommend", json={"history": [7, 12, A], "k": 5}).json()
    assert "because" not in plain["items"][0]
    batch = client.post("/recommend/batch", json={"histories": [[7, 12, A]], "k": 5, "explain": True}).json()
    assert batch["results"][0]["items"] == answer["items"]


@pytest.mark.parametrize("norm", ["pre", "post", "paper"])
def test_last_states_equal_the_forward_pass(norm: str) -> None:
    from seqrec.models.sasrec import SASRecConfig, SASRecModel
    from seqrec.serving.explain import last_states

    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=40, hidden=16, blocks=2, heads=2, max_len=8, norm=norm)).eval()
    batch = torch.randint(1, 41, (6, 8))
    batch[2, :5] = 0  # padded
    batch[3, 3] = 0  # a hole
    with torch.inference_mode():
        torch.testing.assert_close(last_states(model, batch), model.forward(batch)[:, -1], atol=1e-5, rtol=1e-5)
