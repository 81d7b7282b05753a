"""Recommender: raw ids in and out, fallbacks, masks, batch = singles, similar items, ONNX = torch."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError
from seqrec.serving.onnx import export_onnx
from seqrec.serving.recommender import Recommender, UnknownIdError, export_items


@pytest.fixture(scope="module")
def data(tiny_dataset) -> Dataset:
    return tiny_dataset()


@pytest.fixture(scope="module")
def rec(data: Dataset, make_scorer) -> Recommender:
    return Recommender(make_scorer(data.n_items), data, name="tiny")


def ids(result) -> list:
    return [i.item_id for i in result.items]


def test_raw_ids_in_and_out(rec: Recommender, titles) -> None:
    a = rec.recommend([101, 102], k=5)
    b = rec.recommend(["101", "102"], k=5)
    assert ids(a) == ids(b) and len(a.items) == 5
    assert all(i in titles for i in ids(a))
    assert [i.rank for i in a.items] == [1, 2, 3, 4, 5]
    top = a.items[0]
    assert (top.title, top.genres) == titles[top.item_id]
    assert [i.score for i in a.items] == sorted((i.score for i in a.items), reverse=True)
    assert not a.fallback and a.unknown_items == []


def test_unknown_ids_are_skipped_and_reported(rec: Recommender) -> None:
    res = rec.recommend([101, 999, "nope", 102], k=5)
    assert res.unknown_items == [999, "nope"]
    assert ids(res) == ids(rec.recommend([101, 102], k=5)) and not res.fallback


@pytest.mark.parametrize("history", [[], [999], ["x", "y"]])
def test_fallback_is_popularity(rec: Recommender, data: Dataset, history: list) -> None:
    res = rec.recommend(history, k=12)
    assert res.fallback
    counts = np.bincount(data.items, minlength=data.n_items + 1)
    assert [i.score for i in res.items] == sorted((float(c) for c in counts[1:]), reverse=True)
    assert all(i.score == counts[data.item_ids.get(i.item_id)] for i in res.items)


def test_exclude_seen(rec: Recommender, data: Dataset, titles) -> None:
    history = [101, 102, 103]
    res = rec.recommend(history, k=100)
    assert not set(ids(res)) & set(history)
    assert len(res.items) == data.n_items - 3
    full = rec.recommend(history, k=100, exclude_seen=False)
    assert set(ids(full)) == set(titles)


def test_include_and_exclude(rec: Recommender) -> None:
    res = rec.recommend([101], k=10, include=[104, "105", 101, 999])
    assert set(ids(res)) == {104, 105}  # seen 101 stays excluded, unknown 999 ignored
    res = rec.recommend([101], k=20, exclude=[102, "103"])
    assert not {101, 102, 103} & set(ids(res)) and len(res.items) == 9
    assert rec.recommend([], k=5, include=[110, 111]).fallback


def test_history_longer_than_max_len_keeps_the_most_recent(rec: Recommender) -> None:
    long = [104, 105, 110, 111, 101, 102, 103, 112, 106, 107]
    assert rec.max_len == 5
    a = rec.recommend(long, k=12, exclude_seen=False)
    b = rec.recommend(long[-5:], k=12, exclude_seen=False)
    assert ids(a) == ids(b)
    np.testing.assert_allclose([i.score for i in a.items], [i.score for i in b.items], rtol=1e-6)


def test_batch_equals_singles(rec: Recommender) -> None:
    histories = [[101, 102], [], [999], ["104", 105, 110], [106, 107, 108, 109, 101, 102, 103], [111]]
    batch = rec.recommend_many(histories, k=6)
    for h, b in zip(histories, batch):
        s = rec.recommend(h, k=6)
        assert ids(b) == ids(s) and b.fallback == s.fallback and b.unknown_items == s.unknown_items
        np.testing.assert_allclose([i.score for i in b.items], [i.score for i in s.items], rtol=1e-5, atol=1e-6)
    assert rec.recommend_many([], k=3) == []


def test_batch_larger_than_one_chunk(rec: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    import seqrec.serving.recommender as module

    histories = [[101 + i % 12, 101 + (i * 5) % 12] if i % 3 else [] for i in range(10)]
    expected = rec.recommend_many(histories, k=4)
    monkeypatch.setattr(module, "SCORE_CHUNK", 3)
    assert [ids(r) for r in rec.recommend_many(histories, k=4)] == [ids(r) for r in expected]


def test_recommend_users(rec: Recommender, data: Dataset, sequences) -> None:
    res = rec.recommend_users(["u0", "u2"], k=4)
    assert ids(res[0]) == ids(rec.recommend(sequences[0], k=4))
    assert ids(res[1]) == ids(rec.recommend(sequences[2], k=4))
    with pytest.raises(UnknownIdError) as e:
        rec.recommend_users(["u0", "ghost"])
    assert isinstance(e.value, SeqrecError) and isinstance(e.value, LookupError) and "ghost" in str(e.value)


def test_score_matches_recommend(rec: Recommender) -> None:
    res = rec.recommend([101, 102], k=5)
    scores = rec.score(["101", 102], [i.item_id for i in res.items])
    np.testing.assert_allclose(scores, [i.score for i in res.items], rtol=1e-6)
    assert rec.score([], [101, 104]) == [7.0, 4.0]  # popularity counts
    with pytest.raises(UnknownIdError):
        rec.score([101], [999])


def test_similar_items_by_embedding_cosine(data: Dataset, fake_scorer) -> None:
    scorer = fake_scorer(data.n_items)
    rec = Recommender(scorer, data)
    emb = torch.nn.functional.normalize(scorer.item_embeddings().detach(), dim=1)
    i = data.item_ids.get(101)
    sims = (emb @ emb[i]).numpy()
    sims[[0, i]] = -np.inf
    expected = data.item_ids.to_raw(np.argsort(-sims)[:3])
    got = rec.similar_items("101", k=3)
    assert [x.item_id for x in got] == expected and [x.rank for x in got] == [1, 2, 3]
    assert got[0].score == pytest.approx(float(np.sort(sims)[-1]), rel=1e-5)
    assert len(rec.similar_items(101, k=100)) == data.n_items - 1
    with pytest.raises(UnknownIdError):
        rec.similar_items(999)


def test_similar_items_without_embeddings_uses_cooccurrence(data: Dataset, count_scorer) -> None:
    rec = Recommender(count_scorer(data), data)
    got = rec.similar_items(106, k=10)
    # neighbours of 106 in the sequences (either order): 107 three times, 109 twice, 108 once
    assert [(x.item_id, x.score) for x in got] == [(107, 3.0), (109, 2.0), (108, 1.0)]
    res = rec.recommend([101], k=3)  # a baseline returning an expanded view still works
    assert not res.fallback and 101 not in ids(res)
    assert rec.recommend([101], k=3).items == res.items  # the view was not changed in place


def test_item_and_search(rec: Recommender) -> None:
    assert rec.item("103") == {
        "item_id": 103,
        "title": "Alien",
        "genres": ["Horror", "Sci-Fi"],
        "year": 1992,
        "popularity": 3,
    }
    with pytest.raises(UnknownIdError):
        rec.item("nope")
    found = [x["item_id"] for x in rec.search("STAR")]
    assert set(found) == {101, 102, 109, 112}
    assert found[-1] == 109  # "Lone Star": no prefix match, listed after the "Star…" titles
    assert [x["item_id"] for x in rec.search("star", limit=2)] == found[:2]
    assert rec.search("zzz") == []
    assert [x["item_id"] for x in rec.search("", limit=1)] == [101]  # empty query: most popular
    assert [x["item_id"] for x in rec.search("110")] == [110]  # raw ids match too


def test_k_bounds_and_backend_check(rec: Recommender, data: Dataset, make_scorer) -> None:
    assert len(rec.recommend([101], k=1000).items) == data.n_items - 1
    for k in (0, -1):
        with pytest.raises(SeqrecError, match="k must be >= 1"):
            rec.recommend([101], k=k)
        with pytest.raises(SeqrecError, match="k must be >= 1"):
            rec.recommend_many([[101], []], k=k)
        with pytest.raises(SeqrecError, match="k must be >= 1"):
            rec.recommend_users(["u0"], k=k)
    with pytest.raises(SeqrecError):
        Recommender(make_scorer(data.n_items), data, backend="tensorflow")
    with pytest.raises(SeqrecError):
        Recommender(make_scorer(data.n_items + 1), data)


@pytest.mark.parametrize("norm", ["pre", "post", "paper"])
def test_onnx_equals_torch(data: Dataset, tmp_path, norm: str, make_scorer, titles) -> None:
    rec = Recommender(make_scorer(data.n_items, norm=norm), data, name="tiny")
    path = export_onnx(rec.scorer, tmp_path / "model.onnx")
    onnx_rec = Recommender(rec.scorer, data, backend="onnx", onnx_path=path)
    g = torch.Generator().manual_seed(1)
    batch = torch.randint(1, data.n_items + 1, (7, rec.max_len), generator=g)
    batch[0, :3] = 0
    batch[1, :4] = 0
    with torch.inference_mode():
        expected = rec.scorer.score(batch)
    np.testing.assert_allclose(onnx_rec._score(batch).numpy(), expected.numpy(), atol=1e-4)
    histories = [[101, 102], [104], [], list(titles)]
    for a, b in zip(rec.recommend_many(histories, k=5), onnx_rec.recommend_many(histories, k=5)):
        assert ids(a) == ids(b)
        np.testing.assert_allclose([i.score for i in a.items], [i.score for i in b.items], atol=1e-4)
    tmp_export = Recommender(rec.scorer, data, backend="onnx")  # exports to a temp folder itself
    assert ids(tmp_export.recommend([101])) == ids(rec.recommend([101]))


def test_export_items(data: Dataset, tmp_path) -> None:
    out = export_items(data, tmp_path / "items.csv")
    frame = pl.read_csv(out)
    assert frame.columns == ["item", "raw_id", "title", "genres"]
    assert frame.height == data.n_items
    row = frame.filter(pl.col("raw_id") == 101).row(0, named=True)
    assert row == {"item": 1, "raw_id": 101, "title": "Star Wars", "genres": "Sci-Fi|Adventure"}


def test_from_folder(rec: Recommender, data: Dataset, tmp_path) -> None:
    folder = pytest.importorskip("seqrec.models.folder", reason="seqrec.models.folder has not landed yet")
    path = tmp_path / "model"
    folder.save_folder(path, rec.scorer, data, config={}, metrics={"HR@10": 0.5})
    loaded = Recommender.from_folder(path)
    assert loaded.name == "model" and ids(loaded.recommend([101, 102])) == ids(rec.recommend([101, 102]))
    onnx = Recommender.from_folder(path, backend="onnx")
    assert ids(onnx.recommend([101, 102])) == ids(rec.recommend([101, 102]))
