import dataclasses
import json

import numpy as np
import polars as pl
import pytest
import torch

import seqrec
from seqrec.api import SASRec, config_fields
from seqrec.config import TrainConfig
from seqrec.data.dataset import Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.models.baselines import make_baseline
from seqrec.models.folder import save_folder
from seqrec.models.sasrec import SASRecConfig

TINY = dict(hidden=16, blocks=1, max_len=8, epochs=2, batch_size=32, quiet=True, lr=3e-3)


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset.from_sequences([rng.integers(1, 31, rng.integers(3, 12)).tolist() for _ in range(80)])


@pytest.fixture(scope="module")
def fitted(data) -> SASRec:
    torch.set_num_threads(1)
    return SASRec(**TINY).fit(data)


def test_options_are_checked_up_front():
    with pytest.raises(SeqrecError, match="did you mean 'epochs'"):
        SASRec(epoch=3)
    with pytest.raises(SeqrecError, match="heads"):
        SASRec(hidden=10, heads=3)
    with pytest.raises(SeqrecError, match="loss"):
        SASRec(loss="hinge")
    est = SASRec(loss="bce", n_negatives=2, hidden=8)
    assert est.get_params()["n_negatives"] == 2 and est.get_params()["hidden"] == 8 and "SASRec(" in repr(est)


def test_a_seed_numpy_cannot_take_is_refused_before_training(data):
    with pytest.raises(SeqrecError, match=r"seed must be an integer in \[0, 4294967295\]"):
        SASRec(seed=-1, epochs=1, quiet=True).fit(data)


def test_config_fields_match_the_dataclasses_and_the_constructor():
    fields = config_fields()
    names = [f.name for f in fields]
    want = [f.name for f in dataclasses.fields(SASRecConfig) if f.name != "n_items"]
    want += [f.name for f in dataclasses.fields(TrainConfig)]
    assert names == want and len(set(names)) == len(names)
    by = {f.name: f for f in fields}
    assert by["hidden"].type is int and by["dropout"].type is float and by["lr"].type is float
    assert by["betas"].type is tuple and by["compile"].type is bool and by["warmup_steps"].type is float
    assert by["n_negatives"].type is int and by["n_negatives"].default is None and by["loss"].default == "ce"
    assert all(f.help for f in fields)
    name, typ, default, help_text = fields[0]  # plain 4-tuples
    SASRec(**{f.name: f.default for f in fields})  # the defaults build an estimator


def test_fit_evaluate_score(fitted, data):
    assert fitted.model_ is not None and fitted.dataset_ is data and fitted.result_.best_epoch in (1, 2)
    full = fitted.evaluate()
    assert full["NDCG@10"] == pytest.approx(fitted.result_.test["NDCG@10"])
    sampled = fitted.evaluate(protocol="sampled", n_negatives=10, ks=(5, 10))
    assert set(sampled) >= {"NDCG@10", "HR@5", "MRR"} and sampled["HR@10"] >= full["HR@10"]
    assert fitted.evaluate(split="valid")["users"] == len(LeaveOneOut(data).eval_users)
    with pytest.raises(SeqrecError, match="unknown options"):
        fitted.evaluate(negatives_count=3)
    h = LeaveOneOut(data).inputs("test")[1].left_padded(8)
    scores = fitted.score(h)
    assert scores.shape == (len(h), data.n_items + 1)
    lists = [row[row > 0].tolist() for row in h]
    assert torch.allclose(fitted.score(lists), scores, atol=1e-6)
    assert torch.allclose(fitted.score(h.numpy()), scores)
    with pytest.raises(SeqrecError, match="item ids"):
        fitted.score([[1, 999]])
    with pytest.raises(SeqrecError, match="not fitted"):
        SASRec().score([[1]])


def test_save_load_round_trip(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "model")
    loaded = SASRec.load(path)
    h = LeaveOneOut(data).inputs("test")[1].left_padded(8)
    assert torch.equal(loaded.score(h), fitted.score(h))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.result_.test == fitted.result_.test and loaded.result_.best_epoch == fitted.result_.best_epoch
    assert loaded.evaluate()["NDCG@10"] == pytest.approx(fitted.evaluate()["NDCG@10"])
    with pytest.raises(SeqrecError, match="already exists"):
        fitted.save(path)
    base = save_folder(tmp_path / "pop", make_baseline("popularity", LeaveOneOut(data)), data, {}, {})
    with pytest.raises(SeqrecError, match="popularity"):
        SASRec.load(base)


def test_fit_into_a_run_folder_then_resume_and_load(data, tmp_path):
    frame = pl.DataFrame({"user": np.repeat(np.arange(len(data.lengths)), data.lengths), "item": data.items})
    est = SASRec(**TINY).fit(frame, out_dir=tmp_path / "run")  # anything load_dataset reads
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "metrics.json",
        "data",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "result.json",
    } <= names
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"] == est.result_.test and metrics["best_epoch"] == est.result_.best_epoch
    again = SASRec(**TINY).fit(frame, out_dir=tmp_path / "run", resume=True)  # finished: nothing to redo
    assert again.result_.history == est.result_.history and again.result_.test == est.result_.test
    loaded = SASRec.load(tmp_path / "run")
    assert loaded.result_.test == est.result_.test


def test_fit_without_validation_keeps_the_last_epoch(data):
    est = SASRec(**{**TINY, "epochs": 3}).fit(data, valid=False)
    assert est.result_.best_epoch == 3 and est.result_.best_valid == {}
    assert all("valid" not in h for h in est.result_.history)
    assert est.train_config.eval_every == 1  # the estimator's own options are unchanged


def test_top_level_exports():
    assert seqrec.SASRec is SASRec and seqrec.Dataset is Dataset and issubclass(seqrec.SeqrecError, Exception)
    assert callable(seqrec.load_dataset) and isinstance(seqrec.__version__, str)
    assert {"SASRec", "Dataset", "load_dataset", "SeqrecError"} <= set(dir(seqrec))
    with pytest.raises(AttributeError):
        _ = seqrec.nothing_here
