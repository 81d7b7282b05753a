import time

import numpy as np
import polars as pl
import pytest

from seqrec.data.dataset import Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.data.synthetic.story import DEFAULT_SEED, GENRES, generate
from seqrec.errors import SeqrecError


@pytest.fixture(scope="module")
def default():
    return generate()


def test_default_seed_is_zero():
    assert DEFAULT_SEED == 0


def test_deterministic_by_seed(default):
    inter, cat = default
    again_inter, again_cat = generate(seed=DEFAULT_SEED)
    assert inter.equals(again_inter) and cat.equals(again_cat)
    other, _ = generate(seed=1)
    assert not inter.equals(other)


def test_columns_and_dtypes(default):
    inter, cat = default
    assert inter.schema == pl.Schema({"user": pl.Int64, "item": pl.Int64, "timestamp": pl.Int64})
    assert cat.schema == pl.Schema(
        {"raw_id": pl.Int64, "title": pl.String, "genres": pl.List(pl.String), "year": pl.Int64}
    )
    assert inter.null_count().sum_horizontal().item() == 0
    assert cat.null_count().sum_horizontal().item() == 0


def test_timestamps_strictly_increase_per_user(default):
    inter, _ = default
    user, ts = inter["user"].to_numpy(), inter["timestamp"].to_numpy()
    assert np.all(np.diff(user) >= 0)  # sorted by user
    same = user[1:] == user[:-1]
    assert np.all(np.diff(ts)[same] > 0)
    assert ts.min() >= 946_684_800  # not before 2000


def test_catalogue_covers_items(default):
    inter, cat = default
    assert cat["raw_id"].to_list() == list(range(1, 1501))
    assert set(inter["item"].unique().to_list()) <= set(cat["raw_id"].to_list())
    assert cat["title"].n_unique() == cat.height  # readable and distinct
    assert cat["title"].str.len_chars().min() > 3
    n_genres = cat["genres"].list.len()
    assert n_genres.min() >= 1 and n_genres.max() <= 3
    assert set(cat["genres"].explode().unique().to_list()) == set(GENRES[:12])
    assert cat["year"].min() >= 1970 and cat["year"].max() <= 2024
    sequels = cat.filter(pl.col("title").str.contains(r" II: "))
    assert 100 <= sequels.height <= 200  # about one per series


def test_no_repeats_and_plausible_size(default):
    inter, _ = default
    assert inter.select(pl.struct("user", "item").is_duplicated().any()).item() is False
    lengths = inter.group_by("user").len()["len"].to_numpy()
    assert len(lengths) == 2000
    assert lengths.min() >= 5 and lengths.max() <= 200
    assert 30 <= lengths.mean() <= 50
    assert np.median(lengths) < lengths.mean()  # long-tailed
    assert 60_000 <= inter.height <= 100_000
    counts = inter.group_by("item").len()["len"].sort(descending=True).to_numpy()
    assert counts[0] > 10 * np.median(counts)  # Zipf-like head


def test_series_parts_follow_in_order(default):
    inter, cat = default
    # series part k+1 ("Base II: ...", "Base III: ...") is watched after part k by the same user
    parts = cat.filter(pl.col("title").str.contains(r" [IV]+: ")).with_columns(
        pl.col("title").str.extract(r"^(.*) ([IV]+): ").alias("base"),
        pl.col("title").str.extract(r" ([IV]+): ").alias("roman"),
    )
    roman = {"II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
    firsts = cat.select(pl.col("raw_id"), pl.col("title").alias("base"), pl.lit(1).alias("part"))
    series = pl.concat(
        [
            firsts,
            parts.select("raw_id", "base", pl.col("roman").replace_strict(roman, return_dtype=pl.Int32).alias("part")),
        ]
    ).filter(pl.col("base").is_in(parts["base"].implode()))
    seen = inter.with_row_index("pos").join(series, left_on="item", right_on="raw_id")
    pairs = seen.join(seen, on=["user", "base"], suffix="_next").filter(pl.col("part_next") == pl.col("part") + 1)
    assert pairs.height > 1000
    assert (pairs["pos_next"] > pairs["pos"]).all()
    assert (pairs["pos_next"] - pairs["pos"]).max() <= 2  # at most one item in between


def test_fast():
    t = time.perf_counter()
    generate(seed=3)
    assert time.perf_counter() - t < 3.0


def test_small_and_edge_sizes():
    inter, cat = generate(seed=5, n_users=30, n_items=300, n_genres=3, n_series=10, n_hubs=4, max_length=50)
    assert inter["user"].n_unique() == 30 and cat.height == 300
    assert set(cat["genres"].explode().to_list()) <= set(GENRES[:3])
    inter, _ = generate(n_users=20, n_series=0, n_hubs=0)
    assert inter["user"].n_unique() == 20
    _, cat = generate(n_users=5, n_genres=20)
    assert "Genre 20" in set(cat["genres"].explode().to_list())


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_items=500), dict(n_users=0), dict(p_hub=0.9, p_other=0.2), dict(min_length=10, mean_length=5)],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(SeqrecError):
        generate(**kwargs)


def test_dataset_round_trip(default):
    ds = Dataset.from_interactions(*default, name="synthetic")
    assert ds.n_users == 2000 and ds.n_items >= 1450
    assert ds.catalog["title"].null_count() == 0
    assert len(ds.item_genres()) == 12


def test_planted_order_ar2_beats_ar1_beats_popularity(default):
    baselines = pytest.importorskip("seqrec.models.baselines")
    evaluate_mod = pytest.importorskip("seqrec.evaluation.evaluator")
    loo = LeaveOneOut(Dataset.from_interactions(*default, name="synthetic"))
    config = evaluate_mod.EvalConfig(split="test", ks=(10,))
    ndcg = {
        name: evaluate_mod.evaluate(baselines.make_baseline(name, loo), loo, config)["NDCG@10"]
        for name in ("popularity", "markov", "ar2")
    }
    assert ndcg["ar2"] >= 1.3 * ndcg["markov"], ndcg
    assert ndcg["markov"] >= 3.0 * ndcg["popularity"], ndcg


# ------------------------------------------------------------------ the generator at scale
from seqrec.data.synthetic.scale import generate_large, iter_chunks  # noqa: E402


@pytest.fixture(scope="module")
def large():
    return generate_large(1500, 1500, 60_000, seed=3)


def test_scale_exact_size_order_and_no_repeats(large):
    inter, cat = large
    assert inter.height == 60_000 and inter["user"].n_unique() == 1500
    assert inter.schema == pl.Schema({"user": pl.Int64, "item": pl.Int64, "timestamp": pl.Int64})
    user, ts = inter["user"].to_numpy(), inter["timestamp"].to_numpy()
    assert np.all(np.diff(user) >= 0)
    assert np.all(np.diff(ts)[user[1:] == user[:-1]] > 0)
    assert inter.select(pl.struct("user", "item").is_duplicated().any()).item() is False
    assert cat.height == 1500 and cat["raw_id"].to_list() == list(range(1, 1501))
    assert set(inter["item"].unique().to_list()) <= set(cat["raw_id"].to_list())
    assert cat["genres"].list.len().min() >= 1 and cat["title"].null_count() == 0
    lengths = inter.group_by("user").len()["len"].to_numpy()
    assert lengths.min() >= 5 and np.median(lengths) < lengths.mean()  # long-tailed
    counts = inter.group_by("item").len()["len"].sort(descending=True).to_numpy()
    assert counts[0] > 10 * np.median(counts)  # Zipf-like head


def test_scale_series_parts_in_order(large):
    inter, cat = large
    parts = cat.filter(pl.col("title").str.contains(r" [IV]+: ")).select(
        "raw_id",
        pl.col("title").str.extract(r"^(.*) [IV]+: ").alias("base"),
        pl.col("title")
        .str.extract(r" ([IV]+): ")
        .replace_strict({"II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}, return_dtype=pl.Int32)
        .alias("part"),
    )
    firsts = cat.filter(pl.col("title").is_in(parts["base"].implode())).select(
        "raw_id", pl.col("title").alias("base"), pl.lit(1, pl.Int32).alias("part")
    )
    seen = inter.with_row_index("pos").join(pl.concat([firsts, parts]), left_on="item", right_on="raw_id")
    pairs = seen.join(seen, on=["user", "base"], suffix="_next").filter(pl.col("part_next") == pl.col("part") + 1)
    assert pairs.height > 1000
    assert (pairs["pos_next"] > pairs["pos"]).all()
    assert (pairs["pos_next"] - pairs["pos"]).max() <= 2  # at most one item in between


def test_scale_planted_order_ar2_beats_ar1_beats_popularity(large):
    from seqrec.data.readers import load_dataset
    from seqrec.evaluation.evaluator import EvalConfig, evaluate
    from seqrec.models.baselines import make_baseline

    loo = LeaveOneOut(load_dataset(large[0]))
    config = EvalConfig(split="test", ks=(10,))
    ndcg = {
        name: evaluate(make_baseline(name, loo), loo, config)["NDCG@10"] for name in ("popularity", "markov", "ar2")
    }
    assert ndcg["ar2"] >= 1.2 * ndcg["markov"], ndcg
    assert ndcg["markov"] >= 3.0 * ndcg["popularity"], ndcg


def test_scale_deterministic_and_chunked():
    one = pl.concat(iter_chunks(400, 800, 12_345, seed=7))
    assert one.equals(pl.concat(iter_chunks(400, 800, 12_345, seed=7)))
    chunks = list(iter_chunks(400, 800, 12_345, seed=7, chunk_rows=1000))
    assert len(chunks) > 5
    many = pl.concat(chunks)
    assert many.height == 12_345 and many["user"].n_unique() == 400
    assert many.select(pl.struct("user", "item").is_duplicated().any()).item() is False
    assert not one.equals(pl.concat(iter_chunks(400, 800, 12_345, seed=8)))


def test_scale_memory_does_not_grow_with_users_times_items():
    import tracemalloc

    tracemalloc.start()
    try:
        inter, _ = generate_large(20_000, 20_000, 200_000, seed=1)  # a dense users x items array: 3.2 GB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert inter.height == 200_000 and peak < 200e6


@pytest.mark.parametrize("sizes", [(0, 100, 10), (10, 20, 100), (10, 1000, 10), (10, 1000, 10**6)])
def test_scale_invalid_sizes(sizes):
    with pytest.raises(SeqrecError, match="synthetic"):
        generate_large(*sizes)


def test_cli_synthetic_files(tmp_path):
    from seqrec.cli.commands import main
    from seqrec.data.readers import read_interactions

    csv, pq, cat = tmp_path / "s.csv", tmp_path / "s.parquet", tmp_path / "movies.csv"
    args = ["synthetic", "--users", "300", "--items", "500", "--interactions", "9000", "--seed", "4"]
    assert main([*args, "--out", str(csv), "--catalog", str(cat)]) == 0
    assert main([*args, "--out", str(pq)]) == 0
    frame, _, _ = read_interactions(csv)
    assert frame.equals(pl.read_parquet(pq)) and frame.height == 9000
    assert cat.read_text().startswith("raw_id,title,genres,year\n")
    assert not list(tmp_path.glob(".*.tmp"))  # written through temp files beside, then renamed
    assert main([*args, "--out", str(csv)]) == 0  # seqrec's own file: replaced
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    assert main([*args, "--out", str(mine)]) == 2 and mine.read_text() == "a,b\n1,2\n"
    assert main([*args, "--out", str(mine), "--force"]) == 0 and mine.read_text().startswith("user,item,timestamp\n")
    assert main([*args, "--out", str(tmp_path / "s.txt")]) == 2
    assert main(["synthetic", "--users", "300", "--out", str(csv)]) == 2  # all three sizes or none
    assert main(["synthetic", "--out", str(tmp_path / "default.parquet")]) == 0  # the embedded data set
    assert pl.read_parquet(tmp_path / "default.parquet").equals(generate()[0])
