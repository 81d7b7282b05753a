"""Warm starts: a grown catalogue keeps the old items' ids and weights, new items start at the mean
item, events are appended to histories, and a short fine-tune from yesterday's model learns today's."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.api import SASRec
from seqrec.config import CleanConfig
from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.training.warm import NEW_ITEM_NOISE, extend_items, warm_model, with_events


def frame_ds(rows: list[tuple], titles: dict | None = None) -> Dataset:
    users, items = zip(*rows)
    catalog = None if titles is None else pl.DataFrame({"raw_id": list(titles), "title": list(titles.values())})
    return Dataset.from_interactions(
        pl.DataFrame({"user": list(users), "item": list(items)}), catalog=catalog, config=CleanConfig(k_core=0)
    )


def test_extend_items_keeps_old_ids_and_adds_new_ones_after():
    old = frame_ds([("u1", "a"), ("u1", "b"), ("u2", "c")], {"a": "A", "b": "B", "c": "C"})
    new = frame_ds([("u1", "b"), ("u1", "e"), ("u3", "c"), ("u3", "d")], {"b": "B2", "c": "C", "d": "D", "e": "E"})
    got, n_new = extend_items(new, old)
    assert n_new == 2 and got.n_items == 5
    assert got.item_ids.raw.tolist() == ["a", "b", "c", "d", "e"]  # old ids 1..3 kept, 'a' absent but kept
    for u in range(got.n_users):  # the histories, as raw ids, are the new data's
        assert got.item_ids.to_raw(got.sequence(u)) == new.item_ids.to_raw(new.sequence(u))
    assert got.catalog["item"].to_list() == [1, 2, 3, 4, 5]
    assert got.catalog["title"].to_list() == ["A", "B2", "C", "D", "E"]  # the new data's rows win
    assert got.meta["warm_start"] == {"old_items": 3, "new_items": 2, "old_items_absent": 1}


def test_warm_model_carries_every_weight_and_starts_new_items_at_the_mean():
    torch.manual_seed(0)
    old = SASRecModel(SASRecConfig(n_items=20, hidden=16, blocks=1, max_len=8))
    new = warm_model(old, 25, seed=3)
    a, b = old.state_dict(), new.state_dict()
    assert set(a) == set(b)
    for k in a:
        if k != "item_emb.weight":
            assert torch.equal(a[k], b[k]), k
    emb_old, emb_new = a["item_emb.weight"], b["item_emb.weight"]
    assert torch.equal(emb_new[:21], emb_old)
    mean, std = emb_old[1:].mean(0), emb_old[1:].std(0)
    spread = (emb_new[21:] - mean) / std
    assert spread.abs().max() < 6 * NEW_ITEM_NOISE and spread.std() > NEW_ITEM_NOISE / 3
    with pytest.raises(SeqrecError, match="fewer than the model's 20"):
        warm_model(old, 19)


def test_with_events_appends_in_time_order_and_adds_users_and_items():
    ds = frame_ds([(1, 10), (1, 11), (2, 12)])
    events = pl.DataFrame(
        {"user_id": ["2", "1", "3", "1"], "item_id": ["13", "12", "10", "10.0"], "timestamp": [5.0, 2.0, 9.0, 1.0]}
    )
    out = with_events(ds, events)
    hist = {u: out.item_ids.to_raw(out.sequence(out.user_ids.get(u))) for u in ("1", "2", "3")}
    assert hist == {"1": ["10", "11", "10", "12"], "2": ["12", "13"], "3": ["10"]}
    assert out.meta["events_added"] == 4
    with pytest.raises(SeqrecError, match="missing \\['item_id'\\]"):
        with_events(ds, events.drop("item_id"))


def planted(n_users: int, n_items: int, seed: int) -> list[list[int]]:
    """Each user walks a ring of items: the next item is the last one + 1."""
    rng = np.random.default_rng(seed)
    return [[(s + j) % n_items + 1 for j in range(int(rng.integers(6, 14)))] for s in rng.integers(0, n_items, n_users)]


def test_a_short_fine_tune_from_yesterdays_model_learns_todays_items(tmp_path):
    today = planted(300, 40, 1)  # items 1..40
    yesterday = [[i for i in h if i <= 30] for h in today]  # items 31..40 are new today
    yesterday = [h for h in yesterday if len(h) >= 3]
    opts = dict(hidden=16, blocks=1, max_len=10, batch_size=32, lr=5e-3, quiet=True, threads=1, patience=None)
    old = SASRec(recipe="paper", epochs=30, loss="ce", n_negatives=None, **opts).fit(
        Dataset.from_sequences(yesterday), out_dir=tmp_path / "yesterday"
    )
    warm = SASRec(recipe="paper", epochs=8, loss="ce", n_negatives=None, **opts).fit(
        Dataset.from_sequences(today), init_from=tmp_path / "yesterday"
    )
    ids = warm.dataset_.item_ids
    assert ids.to_raw(np.arange(1, 31)) == old.dataset_.item_ids.to_raw(np.arange(1, 31))  # old ids kept
    assert warm.result_.test["HR@10"] > 0.9  # the ring, new items included, after 8 epochs
    scores = warm.score([[int(ids.get(34)), int(ids.get(35))]])[0]  # after new items, the next one ranks first
    scores[[0, ids.get(34), ids.get(35)]] = -float("inf")  # PAD and the history, as recommendations exclude them
    assert int(scores.argmax()) == int(ids.get(36))
    with pytest.raises(SeqrecError, match="has hidden=16; a warm start keeps the model's shape"):
        SASRec(recipe="paper", hidden=32, quiet=True).fit(
            Dataset.from_sequences(today), init_from=tmp_path / "yesterday"
        )


def test_cli_retrains_on_a_model_folders_data_plus_stored_events(tmp_path, cli):
    from seqrec.models.folder import load_folder
    from seqrec.serving.store import EventStore

    csv = tmp_path / "log.csv"
    rows = ["user_id,item_id,timestamp"] + [f"{u},{(u + j) % 20 + 1},{j}" for u in range(40) for j in range(6)]
    csv.write_text("\n".join(rows) + "\n")
    flags = [
        "--k-core",
        "0",
        "--hidden",
        "16",
        "--blocks",
        "1",
        "--max-len",
        "8",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--quiet",
    ]
    assert cli("train", csv, "--out", tmp_path / "m1", *flags)[0] == 0
    with EventStore(tmp_path / "events.db") as store:
        store.append(
            [
                {"user_id": 1, "item_id": 99, "ts": 10.0},
                {"user_id": "new", "item_id": 3, "ts": 11.0},
                {"user_id": "new", "item_id": 99, "ts": 12.0},
            ]
        )
    code, out, err = cli(
        "train",
        tmp_path / "m1",
        "--from-store",
        tmp_path / "events.db",
        "--init-from",
        tmp_path / "m1",
        "--out",
        tmp_path / "m2",
        *flags,
    )
    assert code == 0, err
    old, new = load_folder(tmp_path / "m1"), load_folder(tmp_path / "m2")
    assert new.dataset.n_items == old.dataset.n_items + 1 and new.dataset.n_users == old.dataset.n_users + 1
    n = old.dataset.n_items
    kept = [str(r) for r in new.dataset.item_ids.to_raw(range(1, n + 1))]
    assert kept == [str(r) for r in old.dataset.item_ids.to_raw(range(1, n + 1))]  # the old items keep their ids
    hist = new.dataset.item_ids.to_raw(new.dataset.sequence(new.dataset.user_ids.get("1")))
    assert [str(h) for h in hist[-2:]] == ["7", "99"]  # user 1's history, then the stored event
    # served on the same store, the retrained model's users get only the events stored after its training
    from seqrec.serving.live import live_history
    from seqrec.serving.recommender import Recommender

    rec = Recommender.from_folder(tmp_path / "m2", backend="torch")
    with EventStore(tmp_path / "events.db") as store:
        assert live_history(rec, store, "1").events == []  # 99 is in its training history already
        store.append([{"user_id": 1, "item_id": 5, "ts": 20.0}])
        assert [e.item_id for e in live_history(rec, store, "1").events] == ["5"]
        assert [str(x) for x in live_history(rec, store, "1").raw(rec)[-3:]] == ["7", "99", "5"]
    with EventStore(tmp_path / "other.db") as other:  # another store: its events all count
        other.append([{"user_id": 1, "item_id": 5, "ts": 1.0}])
        assert [e.item_id for e in live_history(rec, other, "1").events] == ["5"]


def test_cli_retrains_a_model_with_item_features(tmp_path, cli):
    """The nightly retrain of a model with item features: the vocabulary is carried over, new items' facts are
    encoded under it, and a feature value it never saw is added to its field."""
    from seqrec.models.folder import load_folder
    from seqrec.serving.recommender import Recommender
    from seqrec.serving.store import EventStore

    genres = {i: f"g{i % 4}|g{(i + 1) % 4}" for i in range(1, 21)}
    log = tmp_path / "log.csv"
    log.write_text(
        "user_id,item_id,timestamp\n" + "".join(f"{u},{(u + j) % 20 + 1},{j}\n" for u in range(40) for j in range(6))
    )
    feats = tmp_path / "features.csv"
    feats.write_text("item_id,genres,year\n" + "".join(f"{i},{g},{1990 + i}\n" for i, g in genres.items()))
    flags = [
        "--k-core",
        "0",
        "--hidden",
        "16",
        "--blocks",
        "1",
        "--max-len",
        "8",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--quiet",
    ]
    code, _, err = cli(
        "train", log, "--item-features-file", feats, "--item-features", "genres,year", "--out", tmp_path / "m1", *flags
    )
    assert code == 0, err
    # the README's nightly retrain: the model folder's data plus the stored events, from the model itself
    with EventStore(tmp_path / "events.db") as store:
        store.append([{"user_id": 1, "item_id": 5, "ts": 10.0}, {"user_id": "new", "item_id": 3, "ts": 11.0}])
    code, _, err = cli(
        "train",
        tmp_path / "m1",
        "--from-store",
        tmp_path / "events.db",
        "--init-from",
        tmp_path / "m1",
        "--out",
        tmp_path / "m2",
        *flags,
    )
    assert code == 0, err
    old, nightly = load_folder(tmp_path / "m1"), load_folder(tmp_path / "m2")
    assert nightly.scorer.features.vocab == old.scorer.features.vocab
    assert torch.equal(nightly.scorer.features.table, old.scorer.features.table)
    # new data with new items, one of a genre the model never saw
    log2 = tmp_path / "log2.csv"
    log2.write_text(log.read_text() + "".join(f"{u},{21 + u % 3},{7}\n" for u in range(40)))
    feats2 = tmp_path / "features2.csv"
    feats2.write_text(feats.read_text() + "21,g1,2011\n22,g-new|g2,2012\n23,g0,2013\n")
    code, out, err = cli(
        "train",
        log2,
        "--item-features-file",
        feats2,
        "--init-from",
        tmp_path / "m1",
        "--out",
        tmp_path / "m3",
        *flags[:-1],
    )
    assert code == 0, err
    assert "new feature values: 1 genres" in out
    grown = load_folder(tmp_path / "m3")
    vocab, table = grown.scorer.features.vocab, grown.scorer.features.table
    field = next(f for f in vocab.fields if f.name == "genres")
    old_field = next(f for f in old.scorer.features.vocab.fields if f.name == "genres")
    assert field.values[: len(old_field.values)] == old_field.values and field.values[-1] == "g-new"
    ids = grown.dataset.item_ids
    assert [str(r) for r in ids.to_raw(range(1, 21))] == [str(r) for r in old.dataset.item_ids.to_raw(range(1, 21))]
    off = vocab.offsets()[[f.name for f in vocab.fields].index("genres")]
    g_new = off + 1 + field.values.index("g-new")
    assert g_new in table[ids.get(22)].tolist() and g_new not in table[ids.get(5)].tolist()
    assert table[ids.get(21)].any() and table[ids.get(23)].any()
    rec = Recommender.from_folder(tmp_path / "m3", backend="torch")
    assert rec.recommend([1, 2, 3], k=5).items
    assert rec.add_items([{"item_id": "fresh", "genres": ["g-new"]}]).unknown_values == {}


def test_warm_model_with_item_features_keeps_the_vocabulary_and_grows_it():
    def data(rows, genres):
        frame = pl.DataFrame({"user": [u for u, _ in rows], "item": [i for _, i in rows]})
        catalog = pl.DataFrame({"raw_id": list(genres), "title": list(genres), "genres": list(genres.values())})
        return Dataset.from_interactions(frame, catalog=catalog, config=CleanConfig(k_core=0))

    old = data([("u1", "a"), ("u1", "b"), ("u2", "c"), ("u2", "a")], {"a": ["x"], "b": ["y"], "c": ["x", "z"]})
    torch.manual_seed(0)
    model = SASRecModel.for_data(
        SASRecConfig(n_items=old.n_items, hidden=8, blocks=1, max_len=4, item_features="genres"), old
    )
    new = data([("u1", "b"), ("u1", "e"), ("u3", "c"), ("u3", "e")], {"b": ["y"], "c": ["x", "z"], "e": ["w", "y"]})
    grown, _ = extend_items(new, old)
    with pytest.raises(SeqrecError, match="needs the grown data set"):
        warm_model(model, grown.n_items)
    warm = warm_model(model, grown.n_items, dataset=grown)
    old_field, field = model.features.vocab.fields[0], warm.features.vocab.fields[0]
    assert field.values == (*old_field.values, "w")  # the new value joins its field, the old ones keep their ids
    assert torch.equal(warm.features.emb.weight[: old_field.size + 1], model.features.emb.weight)
    ids = grown.item_ids
    table, before = warm.features.table, model.features.table
    assert torch.equal(table[ids.get("a")], before[old.item_ids.get("a")])  # absent from the new data: kept
    assert torch.equal(table[ids.get("c")], before[old.item_ids.get("c")])
    w = field.values.index("w") + 1
    assert w in table[ids.get("e")].tolist()
    assert grown.meta["warm_start"]["new_feature_values"] == {"genres": 1}
    assert warm.score(torch.tensor([[0, 1, 2, 4]])).shape == (1, grown.n_items + 1)
