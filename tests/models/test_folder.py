import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.config import TrainConfig
from seqrec.data.dataset import Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.models.baselines import make_baseline
from seqrec.models.folder import FORMAT_VERSION, ModelBundle, load_folder, save_folder
from seqrec.models.sasrec import SASRecConfig, SASRecModel


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"user": np.repeat(np.arange(40), 6), "item": rng.integers(100, 130, 240).astype(str)})
    catalog = pl.DataFrame(
        {
            "raw_id": [str(i) for i in range(100, 130)],
            "title": [f"t{i}" for i in range(30)],
            "genres": [["a", "b"][: i % 3] for i in range(30)],
        }
    )
    return Dataset.from_interactions(frame, catalog, name="tiny")


def sasrec(ds: Dataset) -> SASRecModel:
    torch.manual_seed(0)
    m = SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=8, blocks=1, max_len=6))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the fresh-init values a reload could produce by chance
    return m.eval()


def histories(ds: Dataset) -> torch.Tensor:
    return LeaveOneOut(ds).inputs("test")[1].left_padded(6)


@pytest.fixture
def folder(tmp_path, data):
    return save_folder(tmp_path / "m", sasrec(data), data, TrainConfig(epochs=3), {"test": {"NDCG@10": 0.5}})


def test_round_trip_gives_the_same_scores(folder, data):
    b = load_folder(folder)
    assert isinstance(b, ModelBundle) and b.path == folder
    assert torch.equal(b.scorer.score(histories(data)), sasrec(data).score(histories(data)))
    assert not b.scorer.training and b.scorer.item_emb.weight.device.type == "cpu"
    assert b.metrics == {"test": {"NDCG@10": 0.5}}
    assert b.dataset.fingerprint() == data.fingerprint()
    assert b.dataset.catalog.equals(data.catalog) and b.dataset.item_ids.to_raw([1, 30]) == ["100", "129"]
    text = (folder / "config.json").read_text()
    cfg = json.loads(text)
    assert list(cfg) == sorted(cfg) == ["data", "format_version", "kind", "model", "seqrec_version", "train"]
    assert cfg["kind"] == "sasrec" and cfg["format_version"] == FORMAT_VERSION
    assert cfg["model"] == b.scorer.config.to_dict() and TrainConfig.from_dict(cfg["train"]).epochs == 3
    assert cfg["data"]["name"] == "tiny" and cfg["data"]["counts"]["users"] == 40
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "metrics.json",
        "model.safetensors",
        "data",
        ".seqrec",
        "manifest.json",
    }


def test_save_refuses_an_existing_folder_and_leaves_it_intact(folder, data):
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    other = SASRecModel(SASRecConfig(n_items=data.n_items, hidden=8, blocks=1, max_len=6))
    with pytest.raises(SeqrecError, match="already exists"):
        save_folder(folder, other, data, {}, {})
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    (folder / "checkpoint.safetensors").write_bytes(b"ckpt")
    save_folder(folder, other, data, {}, {"new": 1}, force=True, keep_files=("checkpoint.safetensors", "absent"))
    assert load_folder(folder).metrics == {"new": 1}
    assert (folder / "checkpoint.safetensors").read_bytes() == b"ckpt"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["m"]  # no temp or old folders left


def test_baselines_go_through_folders(tmp_path, data):
    loo = LeaveOneOut(data)
    for name in ("popularity", "markov", "genre"):
        base = make_baseline(name, loo)
        path = save_folder(tmp_path / name, base, data, {}, {"k": 1})
        assert not (path / "model.safetensors").exists()
        b = load_folder(path)
        assert b.config["kind"] == name and b.config["model"] == {}
        h = LeaveOneOut(data).inputs("test")[1].left_padded(base.max_len)
        assert torch.allclose(b.scorer.score(h), base.score(h))


def edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            del cfg[k]
        else:
            cfg[k] = v
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "config.json").unlink(), "not a seqrec model folder"),
        (lambda f: (f / "metrics.json").unlink(), "metrics"),
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
        (lambda f: shutil.rmtree(f / "data"), "data"),
        (lambda f: (f / "config.json").write_text("{oops"), "not valid JSON"),
        (lambda f: edit_config(f, extra=1), "unknown keys \\['extra'\\]"),
        (lambda f: edit_config(f, train=None), "missing keys \\['train'\\]"),
        (lambda f: edit_config(f, format_version=FORMAT_VERSION + 1), "newer seqrec"),
        (lambda f: edit_config(f, kind="bert4rec"), "bert4rec"),
        (lambda f: edit_config(f, model={"n_items": 30, "hidden": 8, "wings": 2}), "wings"),
        (lambda f: edit_config(f, train={"lr": 0.1, "speed": 2}), "speed"),
        (
            lambda f: edit_config(f, model={"n_items": 30, "hidden": 16, "blocks": 1, "max_len": 6}),
            "weights do not fit",
        ),
        (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 40), "model.safetensors"),
        (lambda f: (f / "data" / "sequences.npz").write_bytes((f / "data" / "sequences.npz").read_bytes()), None),
    ],
)
def test_load_is_strict(folder, damage, message):
    damage(folder)
    if message is None:
        load_folder(folder)  # an identical rewrite is fine
        return
    with pytest.raises(SeqrecError, match=message):
        load_folder(folder)


def test_load_rejects_altered_data_and_foreign_folders(folder, tmp_path, data):
    other = Dataset.from_sequences([[1, 2, 3], [2, 3, 1]])
    other.save(folder / "data", force=True)
    with pytest.raises(SeqrecError, match="fingerprint"):
        load_folder(folder)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "config.json").write_text(json.dumps({"camera": "x"}))
    with pytest.raises(SeqrecError, match="not a seqrec model folder"):
        load_folder(tmp_path / "photos")
    with pytest.raises(SeqrecError, match="no such"):
        load_folder(tmp_path / "absent")
    with pytest.raises(SeqrecError, match="cannot store"):
        save_folder(tmp_path / "x", object(), data, {}, {})
    with pytest.raises(SeqrecError, match="items"):
        save_folder(tmp_path / "x", sasrec(other), data, {}, {})
    assert not (tmp_path / "x").exists()


def test_nothing_pickled(folder):
    names = [p.name for p in folder.rglob("*") if p.is_file()]
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".pickle", ".bin")) for n in names)
    with np.load(folder / "data" / "sequences.npz", allow_pickle=False) as z:
        assert set(z.files) == {"offsets", "items"}


def test_model_folders_and_serving_import_nothing_of_the_trainer():
    import subprocess
    import sys

    code = (
        "import sys, seqrec.models.folder, seqrec.serving.recommender; "
        "print(sorted(m for m in sys.modules if m in ('seqrec.training.loop', 'seqrec.training.batches', 'seqrec.training.objective')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
