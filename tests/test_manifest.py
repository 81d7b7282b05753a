"""Model and prepared folders carry a manifest (size and sha256 of every file) that loading checks;
non-finite weights, absurd model sizes, damaged data files and stale ONNX exports are refused with a
SeqrecError naming the file, never a traceback."""

import hashlib
import json
import re

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import save_model

import seqrec.models.folder as F
from seqrec.config import TrainConfig
from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.errors import SeqrecError
from seqrec.files import MANIFEST, MARKER, write_manifest
from seqrec.models.folder import load_folder, register_onnx, save_folder
from seqrec.models.sasrec import MAX_PARAM_BYTES, SASRecConfig, SASRecModel

CONTENT = [
    "config.json",
    "metrics.json",
    "model.safetensors",
    "data/sequences.npz",
    "data/users.parquet",
    "data/catalog.parquet",
    "data/meta.json",
]


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"user": np.repeat(np.arange(30), 6), "item": rng.integers(0, 25, 180).astype(str)})
    catalog = pl.DataFrame(
        {
            "raw_id": [str(i) for i in range(25)],
            "title": [f"t{i}" for i in range(25)],
            "genres": [["a", "b"][: i % 3] for i in range(25)],
            "year": list(range(1990, 2015)),
        }
    )
    return Dataset.from_interactions(frame, catalog, config=CleanConfig(k_core=0), name="m")


def sasrec(ds: Dataset, seed: int = 0) -> SASRecModel:
    torch.manual_seed(seed)
    return SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=8, blocks=1, max_len=5)).eval()


@pytest.fixture
def folder(tmp_path, data):
    return save_folder(tmp_path / "m", sasrec(data), data, TrainConfig(epochs=2), {"best_epoch": 1})


def flip(file, at=None) -> None:
    b = bytearray(file.read_bytes())
    i = len(b) // 2 if at is None else at
    b[i] ^= 0x01
    file.write_bytes(bytes(b))


def edit_model(folder, **model) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"].update(model)
    (folder / "config.json").write_text(json.dumps(cfg))


# ----------------------------------------------------------------------------- the manifest
def test_the_manifest_lists_every_file_with_its_size_and_sha256(folder):
    doc = json.loads((folder / MANIFEST).read_text())
    assert doc["created_by"] == "seqrec" and sorted(doc["files"]) == sorted(CONTENT)
    for name, entry in doc["files"].items():
        raw = (folder / name).read_bytes()
        assert entry == {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    inner = json.loads((folder / "data" / MANIFEST).read_text())
    assert sorted(inner["files"]) == ["catalog.parquet", "meta.json", "sequences.npz", "users.parquet"]
    assert json.loads((folder / MARKER).read_text())["kind"] == "model"
    assert json.loads((folder / "data" / MARKER).read_text())["kind"] == "data"


@pytest.mark.parametrize("name", CONTENT)
def test_a_changed_byte_is_named(folder, name):
    file = folder / name
    flip(file, at=len(file.read_bytes()) - 2)  # near the end: weights data, the last JSON characters, footers
    with pytest.raises(SeqrecError) as e:
        load_folder(folder)
    assert name.split("/")[-1] in str(e.value)


def test_a_changed_size_is_named_with_both_sizes(folder):
    raw = (folder / "metrics.json").read_bytes()
    (folder / "metrics.json").write_bytes(raw + b" ")  # still the same JSON
    with pytest.raises(
        SeqrecError, match=rf"metrics\.json: {len(raw) + 1:,} bytes, but manifest\.json says {len(raw):,}"
    ):
        load_folder(folder)


def test_a_marked_folder_without_its_manifest_is_incomplete(folder, data):
    (folder / MANIFEST).unlink()
    with pytest.raises(SeqrecError, match="manifest.json is missing"):
        load_folder(folder)
    (folder / "data" / MANIFEST).unlink()
    with pytest.raises(SeqrecError, match="manifest.json is missing"):
        Dataset.load(folder / "data")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["files"].pop("metrics.json"), "does not list metrics.json"),
        (lambda d: d["files"].update({"../etc/passwd": d["files"]["config.json"]}), "not a file name inside"),
        (lambda d: d["files"]["config.json"].update(sha256="x"), "64 hex digits"),
        (lambda d: d.update(format=99), "format 99"),
        (lambda d: d["files"].update({"extra.bin": d["files"]["config.json"]}), "extra.bin is missing"),
    ],
)
def test_a_damaged_manifest_is_refused(folder, change, message):
    doc = json.loads((folder / MANIFEST).read_text())
    change(doc)
    (folder / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(SeqrecError, match=message):
        load_folder(folder)


# ----------------------------------------------------------------------------- weights and sizes
def test_non_finite_weights_are_refused_naming_the_tensor(folder, data):
    m = sasrec(data)
    with torch.no_grad():
        m.blocks[0].attn.qkv.weight[3, 2] = float("nan")
        m.final_norm.bias[0] = float("inf")
    save_model(m, str(folder / "model.safetensors"))
    write_manifest(folder, CONTENT)  # a manifest that matches: only the values are wrong
    with pytest.raises(SeqrecError, match=r"model\.safetensors: tensor blocks\.0\.attn\.qkv\.weight holds 1 NaN"):
        load_folder(folder)
    (folder / MANIFEST).unlink()
    (folder / MARKER).unlink()  # a folder from before manifests is checked too
    with pytest.raises(SeqrecError, match="NaN or infinite"):
        load_folder(folder)
    with pytest.raises(SeqrecError, match="NaN or infinite"):
        save_folder(folder.parent / "again", m, data, {}, {})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden": 40000}, "hidden must be <= 8192"),
        ({"blocks": 10**6}, "blocks must be <= 64"),
        ({"max_len": 10**7}, "max_len must be <= 8192"),
        ({"heads": 128, "hidden": 128}, "heads must be <= 64"),
        ({"n_items": 10**10}, "n_items must be <="),
        ({"n_items": 2_000_000_000, "hidden": 8192}, "GiB"),
        ({"n_items": 26}, "weights do not fit"),  # the data folder has 25 items
        ({"hidden": 16}, r"item_emb\.weight is F32\[26, 8\], the config needs F32\[26, 16\]"),
    ],
)
def test_absurd_model_configs_are_refused_before_anything_is_allocated(folder, monkeypatch, change, message):
    edit_model(folder, **change)
    monkeypatch.setattr(F, "_load_sasrec", lambda *a: pytest.fail("weights were allocated"))
    with pytest.raises(SeqrecError, match=message):
        load_folder(folder)


def test_n_items_must_match_the_data_folder(folder, data, tmp_path):
    other = SASRecModel(SASRecConfig(n_items=data.n_items + 1, hidden=8, blocks=1, max_len=5))
    save_model(other, str(folder / "model.safetensors"))
    edit_model(folder, n_items=data.n_items + 1)
    write_manifest(folder, CONTENT)
    with pytest.raises(SeqrecError, match=r"model n_items 26 but data/ has 25 items"):
        load_folder(folder)


def test_config_bounds_and_parameter_count():
    for kw in (
        {"n_items": 30, "hidden": 8, "blocks": 1, "max_len": 6},
        {"n_items": 1000, "hidden": 64, "blocks": 3, "heads": 4, "max_len": 50, "norm": "paper"},
    ):
        cfg = SASRecConfig(**kw)
        assert cfg.parameter_count() == sum(p.numel() for p in SASRecModel(cfg).parameters())
    assert SASRecConfig(n_items=10, hidden=8192, heads=64, max_len=8192, blocks=2).hidden == 8192  # the bounds
    assert SASRecConfig(n_items=10, hidden=64, blocks=64).blocks == 64
    big = SASRecConfig(n_items=1, hidden=1024, blocks=64, max_len=8192)
    assert 4 * big.parameter_count() < MAX_PARAM_BYTES
    for kw, field in (
        ({"hidden": 8193}, "hidden"),
        ({"blocks": 65}, "blocks"),
        ({"max_len": 8193}, "max_len"),
        ({"heads": 65, "hidden": 65}, "heads"),
        ({"hidden": 0}, "hidden"),
    ):
        with pytest.raises(SeqrecError, match=field):
            SASRecConfig(n_items=10, **kw)
    with pytest.raises(SeqrecError, match="more than the 16 GiB"):
        SASRecConfig(n_items=600_000_000, hidden=8)  # 4.8e9 parameters


# ----------------------------------------------------------------------------- prepared folders
def legacy(path):
    """A prepared folder as seqrecs before manifests wrote it."""
    (path / MANIFEST).unlink()
    (path / MARKER).unlink()
    return path


def rewrite_parquet(file, change):
    change(pl.read_parquet(file)).write_parquet(file)


def rewrite_npz(file, **arrays):
    with np.load(file) as z:
        out = {"offsets": z["offsets"], "items": z["items"], **arrays}
    with open(file, "wb") as f:
        np.savez(f, **{k: v for k, v in out.items() if v is not None})


@pytest.mark.parametrize(
    "damage, file, message",
    [
        (lambda p: (p / "meta.json").write_text((p / "meta.json").read_text()[:40]), "meta.json", "not valid JSON"),
        (lambda p: (p / "meta.json").write_bytes(b"\xff\xfe{}"), "meta.json", "not valid JSON"),
        (lambda p: (p / "meta.json").write_text("[1, 2]"), "meta.json", "expected a JSON object"),
        (
            lambda p: (p / "meta.json").write_text(
                json.dumps({**json.loads((p / "meta.json").read_text()), "users": "x"})
            ),
            "meta.json",
            "'users' must be a count",
        ),
        (
            lambda p: (p / "meta.json").write_text(
                json.dumps({**json.loads((p / "meta.json").read_text()), "name": 5})
            ),
            "meta.json",
            "'name' must be text",
        ),
        (
            lambda p: (p / "meta.json").write_text(
                json.dumps({**json.loads((p / "meta.json").read_text()), "items": 24})
            ),
            "meta.json",
            "says 24 items",
        ),
        (
            lambda p: (p / "catalog.parquet").write_bytes((p / "catalog.parquet").read_bytes()[:300]),
            "catalog.parquet",
            "not a readable Parquet file",
        ),
        (
            lambda p: rewrite_parquet(p / "catalog.parquet", lambda c: c.with_columns(pl.col("item").alias("title"))),
            "catalog.parquet",
            "column 'title' must hold text",
        ),
        (
            lambda p: rewrite_parquet(p / "catalog.parquet", lambda c: c.with_columns(pl.lit("x").alias("year"))),
            "catalog.parquet",
            "column 'year' must hold integers",
        ),
        (
            lambda p: rewrite_parquet(p / "catalog.parquet", lambda c: c.drop("genres")),
            "catalog.parquet",
            "missing columns",
        ),
        (lambda p: rewrite_parquet(p / "catalog.parquet", lambda c: c.reverse()), "catalog.parquet", "1..25 in order"),
        (
            lambda p: rewrite_parquet(p / "catalog.parquet", lambda c: c.head(20)),
            "sequences.npz|catalog.parquet",
            "must be in 1..20",
        ),
        (lambda p: rewrite_parquet(p / "users.parquet", lambda u: u.head(3)), "users.parquet", "3 users"),
        (
            lambda p: rewrite_parquet(p / "users.parquet", lambda u: u.rename({"raw_id": "id"})),
            "users.parquet",
            "raw_id",
        ),
        (
            lambda p: (p / "sequences.npz").write_bytes((p / "sequences.npz").read_bytes()[:-30]),
            "sequences.npz",
            "not a readable sequences file",
        ),
        (
            lambda p: rewrite_npz(p / "sequences.npz", items=np.zeros(180, dtype=np.float32)),
            "sequences.npz",
            "1-D integer array",
        ),
        (
            lambda p: rewrite_npz(p / "sequences.npz", items=np.array([{"a": 1}] * 180, dtype=object)),
            "sequences.npz",
            "not a readable sequences file",
        ),  # a pickled array is never unpickled
        (
            lambda p: rewrite_npz(p / "sequences.npz", offsets=np.arange(31)[::-1].copy()),
            "sequences.npz",
            "'offsets' must rise",
        ),
        (lambda p: rewrite_npz(p / "sequences.npz", extra=np.zeros(1)), "sequences.npz", "expected the arrays"),
        (lambda p: (p / "users.parquet").unlink(), "users.parquet", "is missing"),
    ],
)
@pytest.mark.parametrize("with_manifest", [False, True])
def test_damaged_prepared_files_are_named(tmp_path, data, damage, file, message, with_manifest):
    path = data.save(tmp_path / "prep")
    if not with_manifest:
        legacy(path)
    damage(path)
    with pytest.raises(SeqrecError) as e:
        Dataset.load(path)
    text = str(e.value)
    assert re.search(file, text), text
    if not with_manifest:  # with one, the manifest may name the changed file first
        assert message in text, text


def test_a_legacy_prepared_folder_loads_equal(tmp_path, data):
    got = Dataset.load(legacy(data.save(tmp_path / "prep")))
    assert got.fingerprint() == data.fingerprint() and got.meta == data.meta and got.catalog.equals(data.catalog)


# ----------------------------------------------------------------------------- ONNX exports
def test_onnx_exports_are_checked_against_the_weights(folder, data):
    from seqrec.serving.onnx import export_onnx

    onnx = folder / "model.onnx"
    export_onnx(sasrec(data), onnx)
    assert load_folder(folder).onnx == onnx  # unrecorded, but it holds these item embeddings
    export_onnx(sasrec(data, seed=1), onnx)  # from other weights
    with pytest.raises(SeqrecError, match="exported from other weights"):
        load_folder(folder)
    onnx.write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(SeqrecError, match="not a readable ONNX model"):
        load_folder(folder)
    export_onnx(sasrec(data), onnx)
    register_onnx(folder)
    entry = json.loads((folder / MANIFEST).read_text())["files"]["model.onnx"]
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert entry["weights_sha256"] == weights and entry["sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert load_folder(folder).onnx == onnx
    onnx.unlink()  # an export may be deleted
    assert load_folder(folder).onnx is None
    export_onnx(sasrec(data), onnx)
    flip(onnx)
    with pytest.raises(SeqrecError, match=r"model\.onnx: its content differs"):
        load_folder(folder)
    export_onnx(sasrec(data), onnx)
    register_onnx(folder)
    doc = json.loads((folder / MANIFEST).read_text())
    doc["files"]["model.onnx"]["weights_sha256"] = "0" * 64
    (folder / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(SeqrecError, match="exported from other weights"):
        load_folder(folder)
    save_folder(folder, sasrec(data, seed=2), data, {}, {}, force=True)  # new weights: the old export goes
    assert not onnx.exists() and load_folder(folder).onnx is None


def test_export_onnx_records_the_folders_export_and_the_recommender_uses_only_a_checked_one(
    folder, data, capsys, monkeypatch
):
    import dataclasses

    import seqrec.serving.recommender as R
    from seqrec.cli.commands import main
    from seqrec.serving.onnx import export_onnx

    onnx = folder / "model.onnx"
    assert main(["export-onnx", str(folder)]) == 0 and capsys.readouterr().out.strip() == str(onnx)
    listed = json.loads((folder / MANIFEST).read_text())["files"]
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert listed["model.onnx"]["weights_sha256"] == weights and load_folder(folder).onnx == onnx
    assert main(["export-onnx", str(folder), "--out", str(folder.parent / "copy.onnx")]) == 0
    assert json.loads((folder / MANIFEST).read_text())["files"] == listed  # an export elsewhere is not recorded
    export_onnx(sasrec(data), onnx, opset=18)  # other bytes, the same weights (as from another torch)
    with pytest.raises(SeqrecError, match=r"model\.onnx: "):
        load_folder(folder)
    register_onnx(folder)  # replaces the recorded export
    assert load_folder(folder).onnx == onnx
    opened = []
    monkeypatch.setattr(R, "onnx_session", lambda scorer, path, threads, owner: opened.append(path))
    R.Recommender.from_folder(folder, backend="onnx")
    real = F.load_folder
    monkeypatch.setattr(F, "load_folder", lambda path: dataclasses.replace(real(path), onnx=None))
    R.Recommender.from_folder(folder, backend="onnx")
    assert opened == [onnx, None]  # the folder's export once checked; otherwise a private one
    monkeypatch.undo()
    export_onnx(sasrec(data, seed=1), onnx)
    with pytest.raises(SeqrecError, match="exported from other weights"):
        register_onnx(folder)


def test_keep_files_carry_only_a_runs_files(folder, data):
    (folder / "checkpoint.safetensors").write_bytes(b"state")
    save_folder(
        folder,
        sasrec(data),
        data,
        {},
        {},
        force=True,
        keep_files=("config.json", "model.onnx", "checkpoint.safetensors", "absent"),
    )
    assert json.loads((folder / "config.json").read_text())["train"] == {}  # the new one, not the kept one
    assert (folder / "checkpoint.safetensors").read_bytes() == b"state" and not (folder / "absent").exists()
