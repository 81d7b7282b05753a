"""Approximate item indexes (seqrec.serving.ann): exact ranking unchanged, HNSW / IVF recall against it, exclusions,
baselines refused, and the service answering through an index."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from fastapi.testclient import TestClient

from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.models.baselines import make_baseline
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.serving.ann import IndexParams, ItemIndex, item_vectors
from seqrec.serving.app import create_app
from seqrec.serving.recommender import Recommender

N_BIG = 20_000


def ids(result) -> list:
    return [i.item_id for i in result.items]


@pytest.fixture(scope="module")
def big() -> tuple[SASRecModel, Dataset]:
    """A SASRec over a 20k-item catalogue whose item rows are clustered (as trained ones are), and its data:
    400 users of 3..12 items each, drawn mostly from one cluster."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100, 32)).astype(np.float32)
    cluster = rng.integers(0, 100, N_BIG)
    rows = centres[cluster] + 0.5 * rng.standard_normal((N_BIG, 32)).astype(np.float32)
    users, items = [], []
    for u in range(400):
        c = rng.integers(0, 100)
        members = np.flatnonzero(cluster == c)
        for i in rng.choice(members, int(rng.integers(3, 13))):
            users.append(f"u{u}")
            items.append(int(i) + 1)
    items += list(range(1, N_BIG + 1))  # every item occurs: one user holds the rest of the catalogue
    users += ["all"] * N_BIG
    frame = pl.DataFrame({"user": users, "item": items})
    data = Dataset.from_interactions(frame, config=CleanConfig(k_core=0), name="big")
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=data.n_items, hidden=32, blocks=1, heads=1, max_len=10)).eval()
    order = np.asarray(data.item_ids.raw, dtype=np.int64) - 1  # internal id -> our row
    with torch.no_grad():
        model.item_emb.weight[1:] = torch.from_numpy(0.1 * rows[order])
    return model, data


@pytest.fixture(scope="module")
def histories(big) -> list[list[int]]:
    _, data = big
    return [
        list(data.item_ids.to_raw(data.sequence(u)))
        for u in range(min(300, data.n_users))
        if data.sequence(u).size < 100
    ]


@pytest.fixture(scope="module")
def recommenders(big) -> dict[str, Recommender]:
    model, data = big
    return {kind: Recommender(model, data, name="big", index=kind) for kind in ("exact", "hnsw", "ivf")}


def test_exact_is_the_plain_ranking(big, histories, recommenders) -> None:
    model, data = big
    plain = Recommender(model, data, name="big")
    exact = recommenders["exact"]
    assert exact.index is None and plain.index is None
    for h in histories[:50]:
        assert ids(exact.recommend(h, k=10)) == ids(plain.recommend(h, k=10))
    assert [ids(r) for r in exact.recommend_many(histories[:50], k=10)] == [
        ids(r) for r in plain.recommend_many(histories[:50], k=10)
    ]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_recall_at_10(kind, histories, recommenders) -> None:
    exact = [set(ids(r)) for r in recommenders["exact"].recommend_many(histories, k=10)]
    approx = recommenders[kind].recommend_many(histories, k=10)
    recall = np.mean([len(e & set(ids(a))) / 10 for e, a in zip(exact, approx)])
    assert recall >= 0.95, recall
    single = [set(ids(recommenders[kind].recommend(h, k=10))) for h in histories[:20]]
    assert single == [set(ids(a)) for a in approx[:20]]  # the single and batch routes agree


def test_hnsw_recall_on_isotropic_rows() -> None:
    """Rows without any cluster structure (the hard case: IVF's lists then hold no neighbourhoods)."""
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((N_BIG, 32)).astype(np.float32)
    queries = rng.standard_normal((200, 32)).astype(np.float32)
    truth = np.argsort(-(queries @ rows.T), axis=1)[:, :10] + 1
    _, found = ItemIndex("hnsw", rows).search(queries, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]) >= 0.95


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_exclusions_honoured(kind, big, histories, recommenders) -> None:
    rec, exact = recommenders[kind], recommenders["exact"]
    for h in histories[:30]:
        top = ids(rec.recommend(h, k=20))
        assert len(top) == 20 and not set(top) & set(h) and 0 not in top
        banned = top[:5]
        again = ids(rec.recommend(h, k=20, exclude=banned))
        assert len(again) == 20 and not set(again) & (set(h) | set(banned))
        seen = ids(rec.recommend(h, k=10, exclude_seen=False))
        assert len(seen) == 10
        allowed = top[3:8] + [h[0]]
        assert set(ids(rec.recommend(h, k=10, include=allowed))) == set(top[3:8])
        assert ids(rec.recommend(h, k=3, include=allowed, exclude=top[3:5])) == ids(
            exact.recommend(h, k=3, include=allowed, exclude=top[3:5])
        )
    assert rec.recommend([], k=5).fallback and ids(rec.recommend([], k=5)) == ids(exact.recommend([], k=5))


def test_short_answers_fall_back_to_exact(big, histories) -> None:
    """An index asked for more than it holds near the query (a tiny search) still answers k items."""
    model, data = big
    rec = Recommender(model, data, index="ivf", index_params=IndexParams(nlist=400, nprobe=1, margin=0))
    exact = Recommender(model, data)
    long = list(data.item_ids.to_raw(data.sequence(data.user_ids.get("all"))[:5000]))
    got, want = rec.recommend(long, k=50), exact.recommend(long, k=50)
    assert len(got.items) == 50 and not set(ids(got)) & set(long)
    assert ids(got) == ids(want)  # ranked exactly: the probed list had too few items left


def test_refused_where_scores_are_not_inner_products(tiny_dataset, count_scorer, fake_scorer) -> None:
    data = tiny_dataset()
    for scorer in (count_scorer(data), fake_scorer(data.n_items)):
        with pytest.raises(SeqrecError, match="needs a SASRec"):
            Recommender(scorer, data, index="hnsw")
    Recommender(count_scorer(data), data, index="exact")
    with pytest.raises(SeqrecError, match="index must be one of"):
        Recommender(count_scorer(data), data, index="annoy")
    with pytest.raises(SeqrecError, match="nprobe"):
        IndexParams(nprobe=-1)


def test_index_holds_the_scorer_rows(big) -> None:
    model, _ = big
    rows = item_vectors(model)
    index = ItemIndex("hnsw", rows)
    np.testing.assert_array_equal(index.rows(np.array([1, 7, N_BIG])), rows[[0, 6, N_BIG - 1]])
    assert index.nbytes > rows.nbytes
    scores, found = index.search(rows[:3], 5)
    assert (found > 0).all() and found.max() <= N_BIG


def test_service_answers_with_hnsw(tiny_dataset, make_scorer) -> None:
    data = tiny_dataset()
    scorer = make_scorer(data.n_items)
    rec = Recommender(scorer, data, name="tiny", index="hnsw")
    exact = Recommender(scorer, data, name="tiny")
    client = TestClient(create_app(rec))
    body = client.post("/recommend", json={"history": [101, 102], "k": 5}).json()
    assert [i["item_id"] for i in body["items"]] == ids(exact.recommend([101, 102], k=5))
    batch = client.post("/recommend/batch", json={"histories": [[101, 102], [], [104]], "k": 3}).json()
    assert [[i["item_id"] for i in x["items"]] for x in batch["results"]] == [
        ids(exact.recommend(h, k=3)) for h in ([101, 102], [], [104])
    ]
    user = client.get("/users/u0/recommendations?k=4").json()
    assert [i["item_id"] for i in user["items"]] == ids(exact.recommend_users(["u0"], k=4)[0])


def test_folder_and_command_line(tmp_path, tiny_dataset, make_scorer, cli) -> None:
    from seqrec.models.folder import save_folder

    data = tiny_dataset()
    path = save_folder(tmp_path / "m", make_scorer(data.n_items), data, {}, {})
    rec = Recommender.from_folder(path, index="hnsw")  # auto: torch, since the index ranks from the state
    assert rec.backend == "torch" and rec.index_kind == "hnsw" and rec.info()["index"] == "hnsw"
    exact = Recommender.from_folder(path, backend="torch")
    assert ids(rec.recommend([101, 103], k=4)) == ids(exact.recommend([101, 103], k=4))
    with pytest.raises(SeqrecError, match="onnx backend"):
        Recommender.from_folder(path, backend="onnx", index="ivf")
    code, out, err = cli("recommend", path, "--history", "101,103", "-k", "4", "--index", "ivf", "--json")
    assert code == 0, err
    assert [i["item_id"] for i in json.loads(out)["items"]] == ids(exact.recommend([101, 103], k=4))
    base = save_folder(tmp_path / "pop", make_baseline("popularity", LeaveOneOut(data)), data, {}, {})
    code, _, err = cli("recommend", base, "--history", "101", "--index", "hnsw")
    assert code == 2 and "needs a SASRec" in err


def test_a_reloaded_model_is_searched_with_the_same_index(tmp_path, tiny_dataset, make_scorer) -> None:
    from seqrec.models.folder import save_folder

    data = tiny_dataset()
    path = save_folder(tmp_path / "m", make_scorer(data.n_items), data, {}, {})
    app = create_app(Recommender.from_folder(path, index="hnsw"), api_key="k" * 32, backend="auto")
    with TestClient(app) as client:
        r = client.post("/admin/reload", json={"path": str(path)}, headers={"X-API-Key": "k" * 32})
        assert r.status_code == 200, r.text
        assert app.state.recommender.index_kind == "hnsw" and app.state.recommender.index is not None


def test_feature_output_rows_are_indexed(tiny_dataset) -> None:
    """With feature_output the index holds the fused rows the exact scorer multiplies with."""
    data = tiny_dataset()
    torch.manual_seed(0)
    model = SASRecModel.for_data(
        SASRecConfig(n_items=data.n_items, hidden=8, blocks=1, max_len=4, item_features="genres", feature_output=True),
        data,
    ).eval()
    rec = Recommender(model, data, index="hnsw")
    with torch.no_grad():
        np.testing.assert_allclose(rec.index.rows(np.arange(1, data.n_items + 1)), model.item_embeddings()[1:].numpy())
    exact = Recommender(model, data)
    for h in ([101, 102], [104], [106, 107, 108]):
        got, want = rec.recommend(h, k=5), exact.recommend(h, k=5)
        assert ids(got) == ids(want)
        np.testing.assert_allclose([i.score for i in got.items], [i.score for i in want.items], rtol=1e-5, atol=1e-6)
