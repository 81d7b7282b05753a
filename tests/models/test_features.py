"""Item side features: vocabularies and the item -> feature table from a catalogue, a file of extra item
facts, SASRec with features (planted data where the next item's genre is what can be learned), items
added without interactions, model folders and ONNX with features, and cold / warm test targets."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.config import EvalConfig, TrainConfig
from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import evaluate
from seqrec.models.baselines import Popularity
from seqrec.models.feature_files import add_item_features
from seqrec.models.features import NUMERIC_BUCKETS, FeatureVocab, build_vocab, item_features
from seqrec.models.folder import load_folder, register_onnx, save_folder
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.serving.onnx import export_onnx
from seqrec.serving.recommender import Recommender
from seqrec.training.loop import train

GENRES, PER_GENRE = 8, 16


# ----------------------------------------------------------------------------- data
def small_catalogue() -> Dataset:
    """12 items (raw ids 101..112) with genres, years 1990..2001 and attributes; 4 users."""
    sequences = [[101, 102, 103, 104], [105, 106, 107, 108, 101], [109, 110, 111, 112], [102, 104, 106]]
    frame = pl.DataFrame(
        {"user": [u for u, s in enumerate(sequences) for _ in s], "item": [i for s in sequences for i in s]}
    )
    catalog = pl.DataFrame(
        {
            "raw_id": list(range(101, 113)),
            "title": [f"film {i}" for i in range(12)],
            "genres": [
                ["Drama"],
                ["Comedy", "Drama"],
                [],
                ["Horror"],
                ["Comedy"],
                ["Drama", "Horror", "Comedy"],
                ["Drama"],
                ["Comedy"],
                ["Horror"],
                ["Drama"],
                ["Comedy"],
                ["Drama"],
            ],
            "year": [1990 + i for i in range(11)] + [None],
            "attributes": [["3", "7"], ["7"], ["3"], [], ["9"], ["7", "9"], [], ["3"], ["3"], [], ["7"], ["9"]],
        }
    )
    return Dataset.from_interactions(frame, catalog=catalog, config=CleanConfig(k_core=0), name="small")


def genre_chain(seed: int = 0, users: int = 120, length: int = 8) -> Dataset:
    """Items of GENRES genres; every user walks the genres in a ring (g -> g + 1), taking a random item of
    each: the next item's genre follows from the last one's, the item within it is a coin toss."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        g = int(rng.integers(GENRES))
        for t in range(length):
            rows.append((u, g * PER_GENRE + int(rng.integers(PER_GENRE)) + 1, t))
            g = (g + 1) % GENRES
    frame = pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row")
    raw = list(range(1, GENRES * PER_GENRE + 1))
    catalog = pl.DataFrame(
        {"raw_id": raw, "genres": [[f"g{(i - 1) // PER_GENRE}"] for i in raw], "title": [f"item {i}" for i in raw]}
    )
    return Dataset.from_interactions(frame, catalog=catalog, config=CleanConfig(k_core=0), name="chain")


def fit(ds: Dataset, seed: int = 0, epochs: int = 10, **options) -> tuple[SASRecModel, dict]:
    torch.manual_seed(seed)
    model = SASRecModel.for_data(
        SASRecConfig(n_items=ds.n_items, hidden=16, blocks=1, max_len=8, dropout=0.1, **options), ds
    )
    cfg = TrainConfig(
        epochs=epochs, batch_size=32, lr=3e-3, quiet=True, device="cpu", threads=1, eval_every=0, seed=seed
    )
    return model, train(model, LeaveOneOut(ds), cfg).test


@pytest.fixture(scope="module")
def chain() -> Dataset:
    return genre_chain()


@pytest.fixture(scope="module")
def chain_model(chain) -> SASRecModel:
    return fit(chain, epochs=15, item_features="genres", feature_output=True)[0].eval()


# ----------------------------------------------------------------------------- vocabulary and table
def test_vocabulary_and_table_of_a_small_catalogue():
    ds = small_catalogue()
    vocab, table, trained = item_features(ds, "genres,year,attributes")
    genres, year, attributes = vocab.fields
    assert (genres.kind, genres.values, genres.width) == ("categorical", ("Comedy", "Drama", "Horror"), 3)
    assert (attributes.values, attributes.width) == (("3", "7", "9"), 2)
    assert year.kind == "numeric" and year.width == 1
    assert np.allclose(year.edges, np.quantile(np.arange(1990, 2001), np.arange(1, NUMERIC_BUCKETS) / NUMERIC_BUCKETS))
    assert vocab.size == 3 + len(year.edges) + 1 + 3 and vocab.columns == 6
    assert vocab.offsets() == [0, 3, 3 + year.size] and vocab.column_fields() == [0, 0, 0, 1, 2, 2]
    assert table.shape == (13, 6) and not table[0].any()
    a = 3 + year.size  # the attributes' first id is a + 1
    row = {raw: table[i] for i, raw in enumerate(ds.item_ids.raw.tolist(), start=1)}
    assert row[101].tolist() == [2, 0, 0, 4, a + 1, a + 2]  # Drama; 1990, the lowest bucket; attributes 3 and 7
    assert row[106].tolist() == [2, 3, 1, 3 + 1 + int(np.searchsorted(year.edges, 1995, side="right")), a + 2, a + 3]
    assert row[103].tolist()[:3] == [0, 0, 0] and row[104].tolist()[4:] == [0, 0]  # no genres; no attributes
    assert row[112].tolist()[3] == 0  # no year
    # items in the training part (every history but its last two)
    assert trained.tolist() == [False] + [raw in {101, 102, 105, 106, 107, 109, 110} for raw in range(101, 113)]
    assert FeatureVocab.from_json(json.loads(json.dumps(vocab.to_json())), "x") == vocab
    vocab.check_table(table, "x")
    bad = table.copy()
    bad[1, 0] = a + 1  # an attribute's id in the genre columns
    with pytest.raises(SeqrecError, match="genres columns hold ids outside 1..3"):
        vocab.check_table(bad, "x")


def test_all_fields_and_bad_field_names():
    ds = small_catalogue()
    assert [f.name for f in build_vocab(ds.catalog, "all").fields] == ["genres", "year", "attributes"]
    extra = ds.catalog.with_columns(
        pl.format("text {}", pl.col("item")).alias("description"),
        pl.lit(date(2020, 1, 1)).alias("added"),
        pl.lit(True).alias("in_stock"),
    )
    assert [f.name for f in build_vocab(extra, "all").fields] == ["genres", "year", "attributes", "in_stock"]
    with pytest.raises(SeqrecError, match="item feature 'added': a Date column is neither categorical"):
        build_vocab(extra, "added")
    assert build_vocab(extra, "description").fields[0].size == 12  # named, a text column is taken as it is
    empty = ds.catalog.with_columns(pl.lit(None, dtype=pl.Int32).alias("year"))
    assert [f.name for f in build_vocab(empty, "all").fields] == ["genres", "attributes"]
    with pytest.raises(SeqrecError, match="no item has a value in the catalogue field 'year'"):
        build_vocab(empty, "genres,year")
    with pytest.raises(
        SeqrecError,
        match=r"'colour' is not a feature field of the catalogue \(its fields: genres, "
        r"year, attributes\)",
    ):
        build_vocab(ds.catalog, "genres,colour")
    with pytest.raises(SeqrecError, match="'title' is not a feature field"):
        build_vocab(ds.catalog, "title")
    for spec in ("", "genres,,year", "genres,genres", "all,genres", 3):
        with pytest.raises(SeqrecError, match="item_features must be"):
            SASRecConfig(n_items=5, item_features=spec)
    with pytest.raises(SeqrecError, match="feature_fusion must be one of"):
        SASRecConfig(n_items=5, item_features="genres", feature_fusion="product")
    with pytest.raises(SeqrecError, match=r"feature_dropout must be a number in \[0, 1\)"):
        SASRecConfig(n_items=5, feature_dropout=1.0)
    assert SASRecConfig(n_items=5, item_features=" genres , year").item_features == "genres,year"
    for doc in (
        {},
        {"format": 1, "fields": []},
        {"format": 1, "fields": [{"name": "g", "kind": "categorical", "width": 1, "values": ["a", "a"]}]},
        {"format": 1, "fields": [{"name": "y", "kind": "numeric", "width": 1, "edges": [2.0, 1.0]}]},
    ):
        with pytest.raises(SeqrecError, match="features.json"):
            FeatureVocab.from_json(doc, "features.json")


def test_a_file_of_item_features_is_merged_by_raw_id(tmp_path):
    ds = small_catalogue()
    csv = tmp_path / "extra.csv"
    csv.write_text(
        "item_id,brand,genres,tags,weight\n101.0,acme,Western|Drama,a|b,1.5\n103,acme,Noir,,2\n999,nobody,Drama,a,3\n"
    )
    out = add_item_features(ds, csv)
    cat = out.catalog.sort("item")
    by_raw = {r["raw_id"]: r for r in cat.iter_rows(named=True)}
    assert by_raw[101]["brand"] == "acme" and by_raw[101]["genres"] == ["Western", "Drama"]
    assert by_raw[101]["tags"] == ["a", "b"] and by_raw[103]["tags"] == [] and by_raw[103]["genres"] == ["Noir"]
    assert by_raw[102]["genres"] == ["Comedy", "Drama"] and by_raw[102]["brand"] is None  # not listed: kept
    assert by_raw[103]["weight"] == 2.0
    assert out.meta["item_features_file"] == {
        "path": str(csv),
        "columns": ["brand", "genres", "tags", "weight"],
        "items": 2,
        "unknown_items": 1,
    }
    names = [(f.name, f.kind) for f in build_vocab(out.catalog, "all").fields]
    assert names == [
        ("genres", "categorical"),
        ("year", "numeric"),
        ("attributes", "categorical"),
        ("brand", "categorical"),
        ("weight", "numeric"),
    ]  # no two items share a tag
    assert [f.values for f in build_vocab(out.catalog, "brand,tags").fields] == [("acme",), ("a", "b")]
    saved = Dataset.load(out.save(tmp_path / "prepared"))  # the extra columns are kept in a prepared folder
    assert saved.catalog.equals(out.catalog)

    pq = tmp_path / "extra.parquet"
    pl.DataFrame({"raw_id": [104, 105], "attributes": [["1", "2"], []]}).write_parquet(pq)
    got = add_item_features(ds, pq).catalog.sort("item")["attributes"].to_list()
    assert got[3] == ["1", "2"] and got[4] == [] and got[0] == ["3", "7"]
    js = tmp_path / "extra.json"
    js.write_text(json.dumps({"106": {"brand": "x", "year": 1999}}))
    assert add_item_features(ds, js).catalog.filter(pl.col("raw_id") == 106).row(0, named=True)["year"] == 1999

    for text, message in (
        ("item_id,brand\n101,a\n101.0,b\n", "item '101' is listed more than once"),
        ("name,brand\n101,a\n", r"no item id column \(one of item_id"),
        ("item_id,year\n101,soon\n", "column 'year' must hold a number"),
    ):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(SeqrecError, match=f"{bad}.*{message}|{message}"):
            add_item_features(ds, bad)
    with pytest.raises(SeqrecError, match="no such item-features file"):
        add_item_features(ds, tmp_path / "absent.csv")


def test_the_command_line_reads_an_item_features_file(tmp_path, cli):
    log = tmp_path / "log.csv"
    log.write_text("user,item\n" + "".join(f"u{u},{i}\n" for u in range(4) for i in range(1, 6)))
    extra = tmp_path / "facts.csv"
    extra.write_text("item_id,brand\n1,acme\n2,zeta\n")
    code, _, err = cli("prepare", log, "--k-core", "0", "--item-features-file", extra, "--out", tmp_path / "prep", "-q")
    assert code == 0, err
    assert Dataset.load(tmp_path / "prep").catalog.sort("item")["brand"].to_list()[:3] == ["acme", "zeta", None]


# ----------------------------------------------------------------------------- the model
def test_without_item_features_the_model_and_its_config_are_unchanged(chain):
    cfg = SASRecConfig(n_items=chain.n_items, hidden=16, blocks=1, max_len=8)
    torch.manual_seed(0)
    plain = SASRecModel(cfg)
    torch.manual_seed(0)
    made = SASRecModel.for_data(cfg, chain)
    assert made.features is None and list(made.state_dict()) == list(plain.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(made.state_dict().values(), plain.state_dict().values()))
    assert "item_features" not in cfg.to_dict() and SASRecConfig.from_dict(cfg.to_dict()) == cfg
    torch.manual_seed(0)
    with_features = SASRecModel.for_data(
        SASRecConfig(n_items=chain.n_items, hidden=16, blocks=1, max_len=8, item_features="genres"), chain
    )
    keys = list(with_features.state_dict())
    assert keys[: len(plain.state_dict())] == list(
        plain.state_dict()
    )  # the id model's weights come first, as they were
    assert keys[len(plain.state_dict()) :] == ["features.table", "features.id_weight", "features.emb.weight"]
    assert torch.equal(with_features.item_emb.weight, plain.item_emb.weight)
    with pytest.raises(SeqrecError, match="needs their vocabulary"):
        SASRecModel(SASRecConfig(n_items=chain.n_items, item_features="genres"))


def test_features_beat_ids_when_the_next_items_genre_is_what_can_be_learned(chain):
    _, ids = fit(chain)
    _, features = fit(chain, item_features="genres", feature_output=True)
    assert features["NDCG@10"] > 1.5 * ids["NDCG@10"] and features["HR@10"] > 1.5 * ids["HR@10"]


@pytest.mark.parametrize("fusion", ["gated", "concat"])
def test_every_fusion_learns_from_the_features(chain, fusion):
    _, ids = fit(chain)
    _, features = fit(chain, item_features="genres", feature_fusion=fusion, feature_output=True)
    assert features["NDCG@10"] > 1.3 * ids["NDCG@10"]


def test_feature_dropout_and_untrained_items(chain):
    model = SASRecModel.for_data(
        SASRecConfig(
            n_items=chain.n_items,
            hidden=8,
            blocks=1,
            max_len=4,
            item_features="genres",
            feature_output=True,
            feature_dropout=0.5,
        ),
        chain,
    )
    f = model.features
    trained = LeaveOneOut(chain).train().counts(chain.n_items) > 0
    assert f.id_weight[:, 0].bool().tolist() == trained.tolist() and 0 < (~trained[1:]).sum() < 3
    model.train()
    a, b = model.item_embeddings().detach(), model.item_embeddings().detach()
    dropped = (a - model.item_emb.weight.detach()).abs().sum(1) == 0  # rows whose features were dropped
    assert not torch.equal(a, b) and 0.3 < dropped[1:].float().mean() < 0.7
    model.eval()
    assert torch.equal(model.item_embeddings(), model.item_embeddings())
    i, j = [int(x) for x in np.flatnonzero(trained)[[2, 40]]]
    with torch.no_grad():
        f.id_weight[[i, j]] = 0.0  # as if items i and j never occurred in training
    rows = model.item_embeddings().detach()
    assert torch.allclose(rows[i], f.vectors()[i]) and torch.allclose(rows[j], f.vectors()[j])
    genre = (i - 1) // PER_GENRE
    neighbours = [k for k in range(genre * PER_GENRE + 1, (genre + 1) * PER_GENRE + 1) if f.id_weight[k] > 0]
    expected = model.item_emb.weight[neighbours].mean(0).detach()
    assert model.fill_untrained_items() == (~trained[1:]).sum() + 2 and f.id_weight.sum() == chain.n_items
    assert torch.allclose(model.item_emb.weight[i], expected, atol=1e-6)
    assert model.fill_untrained_items() == 0


def test_training_fills_the_untrained_items_unless_told_not_to(chain):
    trained = LeaveOneOut(chain).train().counts(chain.n_items) > 0
    results = {}
    for fill in (True, False):
        torch.manual_seed(0)
        model = SASRecModel.for_data(
            SASRecConfig(
                n_items=chain.n_items, hidden=8, blocks=1, max_len=4, item_features="genres", feature_output=True
            ),
            chain,
        )
        cfg = TrainConfig(
            epochs=1, batch_size=32, quiet=True, device="cpu", threads=1, eval_every=0, fill_cold_items=fill
        )
        results[fill] = train(model, LeaveOneOut(chain), cfg).test
        weight = model.features.id_weight[:, 0].bool()
        assert weight[1:].all() if fill else weight.tolist() == trained.tolist()
        assert evaluate(model, LeaveOneOut(chain), EvalConfig(split="test")) == results[fill]  # as fit reported


# ----------------------------------------------------------------------------- items without interactions
def new_items() -> list[dict]:
    return [
        {"item_id": f"new-{g}-{j}", "genres": [f"g{g}"], "title": f"new {g}.{j}"}
        for g in range(GENRES)
        for j in range(2)
    ]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_added_items_are_recommended_after_histories_of_the_genre_before(chain, chain_model, backend):
    rec = Recommender(chain_model, chain, backend=backend)
    before = rec.recommend([1], k=5)
    added = rec.add_items(new_items() + [{"item_id": "odd", "genres": ["g99"], "year": None}])
    assert (
        added.items[-1] == "odd" and added.unknown_values == {"genres": ["g99"]} and added.without_features == ["odd"]
    )
    assert rec.n_items == chain.n_items + 17 and rec.scorer.n_items == chain.n_items + 17
    assert rec.item("new-3-1")["title"] == "new 3.1" and rec.item("new-3-1")["popularity"] == 0
    for g in range(GENRES):
        nxt = (g + 1) % GENRES
        top = [i.item_id for i in rec.recommend([g * PER_GENRE + 1], k=PER_GENRE + 2).items]
        assert {f"new-{nxt}-0", f"new-{nxt}-1"} <= set(top), (g, top)
        assert not any(str(i).startswith("new-") and not i.startswith(f"new-{nxt}-") for i in top)
        assert all(isinstance(i, int) for i in top if not str(i).startswith("new-"))  # the others keep their form
    assert rec.recommend([], k=3).fallback  # popularity: the new items have none
    # the original model is untouched
    assert [i.item_id for i in Recommender(chain_model, chain).recommend([1], k=5).items] == [
        i.item_id for i in before.items
    ]


def test_added_items_keep_the_old_items_availability(chain, chain_model):
    rec = Recommender(chain_model, chain, backend="torch")
    gone = rec.recommend([1], k=1).items[0].item_id
    rec.set_available([gone], False)
    grown, _ = rec.with_items(new_items())
    assert gone in grown.unavailable() and not any(str(i).startswith("new-") for i in grown.unavailable())
    assert gone not in [i.item_id for i in grown.recommend([1], k=20).items]


def test_added_items_take_their_feature_neighbours_id_rows_without_feature_output(chain):
    model = fit(chain, epochs=15, item_features="genres")[0].eval()  # features at the input only
    rec = Recommender(model, chain)
    rec.add_items(new_items())
    for g in range(GENRES):
        top = [i.item_id for i in rec.recommend([g * PER_GENRE + 1], k=PER_GENRE + 2).items]
        assert {f"new-{(g + 1) % GENRES}-0", f"new-{(g + 1) % GENRES}-1"} <= set(top), (g, top)
    rows = rec.scorer.item_emb.weight.detach()
    genre0 = [i for i in range(1, PER_GENRE + 1) if model.features.id_weight[i] > 0]
    assert torch.allclose(rows[chain.n_items + 1], rows[genre0].mean(0), atol=1e-6)  # new-0-0


def test_adding_items_is_checked(chain, chain_model):
    rec = Recommender(chain_model, chain)
    for items, message in (
        ([{"genres": ["g1"]}], r"items\[0\]: item_id None: it is missing"),
        ([{"item_id": 10**30}], r"items\[0\]: item_id .*beyond \+-\(2\*\*53 - 1\)"),
        ([{"item_id": 2**63}], r"items\[0\]: item_id .*beyond"),
        ([{"item_id": "NaN"}], "missing-value markers"),
        ([{"item_id": " null "}], "missing-value markers"),
        ([{"item_id": "a\0b"}], "NUL"),
        ([{"item_id": True}], "expected an integer or a string"),
        ([{"item_id": 5}], r"item 5 is already in the catalogue"),
        ([{"item_id": "a"}, {"item_id": "a"}], "listed twice"),
        ([{"item_id": "a", "colour": "red"}], r"unknown field\(s\) \['colour'\]"),
        ([{"item_id": "a", "genres": [3]}], "field 'genres' must hold a list of text"),
        ([], "no items to add"),
    ):
        with pytest.raises(SeqrecError, match=message):
            rec.add_items(items)
    assert rec.n_items == chain.n_items
    plain = fit(chain, epochs=1)[0].eval()
    with pytest.raises(SeqrecError, match="needs a SASRec trained with item_features"):
        Recommender(plain, chain).add_items(new_items())
    ids = rec.add_items([{"item_id": 1000, "genres": ["g0"]}]).items  # integer ids stay integers
    assert ids == [1000] and rec.item(1000)["item_id"] == 1000 and rec.dataset.item_ids.raw.dtype.kind == "i"
    rec.add_items([{"item_id": "text-1", "genres": ["g0"]}])  # a text id: the others keep their form
    assert (
        rec.item(1000)["item_id"] == 1000 and rec.item(5)["item_id"] == 5 and rec.item("text-1")["item_id"] == "text-1"
    )
    assert [x.item_id for x in rec.recommend([5], k=rec.n_items).items if not isinstance(x.item_id, int)] == ["text-1"]


# ----------------------------------------------------------------------------- folders and ONNX
@pytest.mark.parametrize("fusion", ["sum", "gated", "concat"])
def test_folder_round_trip_and_onnx_parity_with_features(tmp_path, fusion):
    ds = small_catalogue()
    torch.manual_seed(0)
    model = SASRecModel.for_data(
        SASRecConfig(
            n_items=ds.n_items,
            hidden=8,
            blocks=1,
            max_len=4,
            item_features="all",
            feature_fusion=fusion,
            feature_output=True,
        ),
        ds,
    ).eval()
    path = save_folder(tmp_path / "m", model, ds, {}, {})
    assert "features.json" in json.loads((path / "manifest.json").read_text())["files"]
    bundle = load_folder(path)
    assert bundle.scorer.features.vocab == model.features.vocab
    assert all(torch.equal(a, b) for a, b in zip(bundle.scorer.state_dict().values(), model.state_dict().values()))
    g = torch.Generator().manual_seed(1)
    batch = torch.randint(1, ds.n_items + 1, (6, 4), generator=g)
    batch[0, :2] = 0
    expected = model.score(batch)
    assert torch.equal(bundle.scorer.score(batch), expected)
    export_onnx(bundle.scorer, path / "model.onnx")
    assert load_folder(path).onnx == path / "model.onnx"  # unrecorded, but it holds these item embeddings
    register_onnx(path)
    rec = Recommender.from_folder(path, backend="onnx")
    assert rec.backend == "onnx"
    np.testing.assert_allclose(rec._score(batch).numpy(), expected.numpy(), atol=1e-4)
    torch_rec = Recommender.from_folder(path, backend="torch")
    for a, b in zip(
        rec.recommend_many([[101, 102], [105], []], k=5), torch_rec.recommend_many([[101, 102], [105], []], k=5)
    ):
        assert [i.item_id for i in a.items] == [i.item_id for i in b.items]


def test_a_damaged_feature_vocabulary_is_refused(tmp_path):
    ds = small_catalogue()
    model = SASRecModel.for_data(
        SASRecConfig(n_items=ds.n_items, hidden=8, blocks=1, max_len=4, item_features="genres"), ds
    ).eval()
    path = save_folder(tmp_path / "m", model, ds, {}, {})
    doc = json.loads((path / "features.json").read_text())
    doc["fields"][0]["values"].append("Western")  # one value more: the weights no longer fit
    (path / "features.json").write_text(json.dumps(doc))
    with pytest.raises(SeqrecError, match=r"features\.emb\.weight is F32\[4, 8\], the config needs F32\[5, 8\]"):
        load_folder(path)
    (path / "features.json").write_text("{")
    with pytest.raises(SeqrecError, match="features.json: the item feature vocabulary is not valid JSON"):
        load_folder(path)
    (path / "features.json").unlink()
    with pytest.raises(SeqrecError, match=r"the item feature vocabulary is missing \(features.json\)"):
        load_folder(path)


# ----------------------------------------------------------------------------- cold and warm targets
def test_cold_and_warm_targets_are_counted():
    # training parts hold items 1 and 2 only; test targets 4, 5, 7 are cold, 1 is warm
    ds = Dataset.from_sequences([[1, 2, 3, 4], [1, 2, 5], [2, 1, 3, 1], [1, 6, 7]])
    loo = LeaveOneOut(ds)
    pop = Popularity(ds.n_items).fit(loo)
    everyone = evaluate(pop, loo)
    cold = evaluate(pop, loo, EvalConfig(targets="cold"))
    warm = evaluate(pop, loo, EvalConfig(targets="warm"))
    assert "excluded_users" not in everyone and everyone["users"] == 4
    assert (cold["users"], cold["excluded_users"], warm["users"], warm["excluded_users"]) == (3, 1, 1, 3)
    assert warm["HR@10"] == 0.0  # user 2's target (item 1) is in their history: a miss
    assert cold["HR@10"] == 1.0 and everyone["HR@10"] == 0.75  # seven items: every candidate is in the top 10
    sampled = evaluate(pop, loo, EvalConfig(targets="cold", protocol="sampled", n_negatives=2))
    assert (sampled["users"], sampled["excluded_users"]) == (3, 1)
    valid = evaluate(pop, loo, EvalConfig(targets="warm", split="valid"))
    assert (valid["users"], valid["excluded_users"]) == (1, 3)  # valid targets 3, 2, 3, 6: only 2 is warm
    with pytest.raises(SeqrecError, match="no users to evaluate"):
        evaluate(pop, loo, EvalConfig(targets="cold", seen_target="drop"))
    with pytest.raises(SeqrecError, match="targets must be 'all', 'cold' or 'warm'"):
        EvalConfig(targets="new")


def test_admin_items_route_adds_items_the_next_request_recommends(chain, chain_model):
    from fastapi.testclient import TestClient

    from seqrec.serving.app import create_app

    key = {"X-API-Key": "features-test-key"}
    client = TestClient(create_app(Recommender(chain_model, chain, backend="torch"), api_key=key["X-API-Key"]))
    items = [{"item_id": f"new-{g}-{j}", "genres": [f"g{g}"]} for g in range(GENRES) for j in range(2)]
    assert client.post("/admin/items", json={"items": items}).status_code == 401
    answer = client.post("/admin/items", json={"items": items}, headers=key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == [i["item_id"] for i in items] and answer.json()["n_items"] == chain.n_items + 16
    top = [i["item_id"] for i in client.post("/recommend", json={"history": [1], "k": PER_GENRE + 2}).json()["items"]]
    assert {"new-1-0", "new-1-1"} <= set(top)  # genre 0 is followed by genre 1
    again = client.post("/admin/items", json={"items": items[:1]}, headers=key)
    assert again.status_code == 400 and "new-0-0" in again.text  # already there
    assert (
        client.post("/admin/items", json={"items": [{"item_id": "x", "colour": "red"}]}, headers=key).status_code == 422
    )
    plain = SASRecModel(SASRecConfig(n_items=chain.n_items, hidden=8, blocks=1, max_len=4))
    client = TestClient(create_app(Recommender(plain, chain, backend="torch"), api_key=key["X-API-Key"]))
    refused = client.post("/admin/items", json={"items": items}, headers=key)
    assert refused.status_code == 400 and "item_features" in refused.text
