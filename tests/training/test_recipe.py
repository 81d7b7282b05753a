import json

import numpy as np
import pytest
import torch

from seqrec.api import SASRec
from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError
from seqrec.training.recipe import (
    CE_MAX_ITEMS,
    EVAL_SHARE,
    MIN_EVAL_USERS,
    SPARSE_DROPOUT,
    SPARSE_MIN_BATCH,
    SPARSE_STEPS,
    DataStats,
    choose,
)


def sequences(n_users: int, length: int, n_items: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset.from_sequences([rng.integers(1, n_items + 1, length).tolist() for _ in range(n_users)])


def test_stats_read_the_training_part():
    ds = Dataset.from_sequences([[1, 2, 3, 4, 5], [1, 2], [3, 4, 5]])
    s = DataStats.of(ds)
    # training parts: 3 items (5 - 2 held out), 2 (too short to hold out), 1 (3 - 2)
    assert (s.users, s.items, s.interactions, s.length_p50) == (3, 5, 6, 2.0)


def test_auto_reads_history_lengths_and_catalogue_size():
    long = choose("auto", sequences(20, 300, 50))
    assert long.options["max_len"] == 200 and long.options["loss"] == "ce" and long.options["dropout"] == 0.2
    assert choose("auto", sequences(20, 8, 50)).options["dropout"] == SPARSE_DROPOUT
    assert choose("auto", sequences(1100, 300, 50)).options["dropout"] == 0.1  # 327,800 training interactions
    short = choose("auto", sequences(20, 8, 50))
    assert short.options["max_len"] == 50 and "max_len" in short.reasons
    mid = choose("auto", sequences(20, 102, 50))  # p90 of training lengths 100 -> 100
    assert mid.options["max_len"] == 100
    huge = choose("auto", Dataset.from_sequences([list(range(1, CE_MAX_ITEMS + 2))]))
    assert huge.options["loss"] == "sampled-softmax" and huge.options["n_negatives"] >= 1000


def test_named_recipes():
    ds = sequences(10, 300, 40)
    paper = choose("paper", ds).options
    assert (paper["loss"], paper["n_negatives"], paper["hidden"], paper["max_len"], paper["norm"]) == (
        "bce",
        1,
        50,
        200,
        "paper",
    )
    plus = choose("sasrec+", ds).options
    assert (plus["loss"], plus["hidden"], plus["dropout"], plus["schedule"], plus["betas"]) == (
        "ce",
        64,
        0.1,
        "constant",
        (0.9, 0.999),
    )
    with pytest.raises(SeqrecError, match="recipe must be one of"):
        choose("best", ds)
    with pytest.raises(SeqrecError, match="recipe must be one of"):
        SASRec(recipe="best")


def test_explicit_options_win_over_the_recipe():
    ds = sequences(10, 300, 40)
    model, train, recipe = SASRec(recipe="paper", max_len=17, lr=0.01).resolve(ds)
    assert model["max_len"] == 17 and train.lr == 0.01 and train.loss == "bce" and model["hidden"] == 50
    assert "given; the recipe says 200" in recipe.describe({"max_len": 17})
    # another loss drops the recipe's negatives (they belong to the recipe's loss)
    _, train, _ = SASRec(recipe="paper", loss="ce").resolve(ds)
    assert train.loss == "ce" and train.n_negatives is None


def test_the_recipe_is_printed_and_saved(tmp_path, capsys):
    torch.set_num_threads(1)
    ds = sequences(40, 12, 30)
    est = SASRec(hidden=8, blocks=1, epochs=1, batch_size=64).fit(ds, out_dir=tmp_path / "run")
    out = capsys.readouterr().out
    assert "recipe auto:" in out and "max_len = 50" in out and "hidden = 8 (given" in out
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["recipe"]["name"] == "auto" and doc["recipe"]["options"]["max_len"] == 50
    assert doc["model"]["max_len"] == 50 and doc["model"]["hidden"] == 8
    again = SASRec.load(tmp_path / "run")
    assert again.recipe == "auto" and again.recipe_.options["max_len"] == 50
    assert est.get_params()["max_len"] == 50 and est.get_params()["recipe"] == "auto"


def test_auto_anticipates_overfitting_on_sparse_data():
    # Beauty-like: 22,000 users with short histories (median training history 4 items)
    sparse = choose("auto", sequences(22_000, 6, 12_000))
    o = sparse.options
    assert o["dropout"] == SPARSE_DROPOUT >= 0.5 and "sparse data" in sparse.reasons["dropout"]
    assert o["batch_size"] == SPARSE_MIN_BATCH and o["lr"] == 1e-3 and "lr" in sparse.reasons
    steps = 22_000 // SPARSE_MIN_BATCH
    assert o["epochs"] == round(SPARSE_STEPS / steps) and o["schedule"] == "cosine"  # from the data, not the FLOPs
    assert "optimizer steps" in sparse.reasons["epochs"]
    # twice the users, twice the steps per epoch: the cosine spans half the epochs
    twice = choose("auto", sequences(44_000, 6, 12_000)).options
    assert twice["batch_size"] == 64 and twice["epochs"] == round(SPARSE_STEPS / (44_000 // 64))
    # dense data keeps light dropout, small batches and the FLOP budget
    dense = choose("auto", sequences(1100, 300, 50))
    assert dense.options["dropout"] == 0.1 and dense.options["batch_size"] == 16 and "TFLOP" in dense.reasons["epochs"]


def test_auto_bounds_the_cost_of_validation():
    cheap = choose("auto", sequences(5_000, 6, 2_000))
    assert cheap.options["eval_share"] == EVAL_SHARE and "eval_max_users" not in cheap.options
    assert "eval_share" in cheap.reasons
    # many items scored per user against training over sampled negatives: validating everyone would cost
    # several epochs, so a seeded sample of users is validated
    big = choose("auto", sequences(60_000, 6, CE_MAX_ITEMS + 20_000, seed=1))
    assert big.options["loss"] == "sampled-softmax"
    assert MIN_EVAL_USERS <= big.options["eval_max_users"] < 60_000 and "sample" in big.reasons["eval_max_users"]
    s = DataStats.of(sequences(60_000, 6, CE_MAX_ITEMS + 20_000, seed=1))
    assert s.eval_flops(64, 2, 50) > s.flops_per_epoch(64, 2, 50, 2048)


def test_auto_recipe_options_are_valid_training_options():
    from seqrec.config import TrainConfig

    for ds in (sequences(3_000, 6, 500), sequences(200, 300, 80)):
        opts = choose("auto", ds).options
        train = {k: v for k, v in opts.items() if k in TrainConfig.__dataclass_fields__}
        assert TrainConfig(**train).eval_share == EVAL_SHARE
