"""Fuzzing saved folders: random byte changes, truncations and deletions of the files of a small model
folder and a small prepared folder. Loading gives a SeqrecError or a result equal to the original,
never another exception and never a hang (each load has a time limit)."""

import contextlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqrec.config import TrainConfig
from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.errors import SeqrecError
from seqrec.files import MANIFEST, MARKER
from seqrec.models.folder import load_folder, register_onnx, save_folder
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from timeouts import time_limit

LOAD_SECONDS = 20  # far above a load of these folders (milliseconds) on a busy machine


def fuzz(n: int):
    return settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def strip_manifests(root: Path) -> None:
    """Make a folder look like one from a seqrec before markers and manifests."""
    for p in list(root.rglob(MARKER)) + list(root.rglob(MANIFEST)):
        p.unlink()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "user": np.repeat(np.arange(20), 5),
            "item": rng.integers(0, 15, 100).astype(str),
            "timestamp": np.tile(np.arange(5), 20),
        }
    )
    catalog = pl.DataFrame(
        {
            "raw_id": [str(i) for i in range(15)],
            "title": [f"movie {i}" for i in range(15)],
            "genres": [["a", "b", "c"][: i % 4] for i in range(15)],
            "year": list(range(2000, 2015)),
        }
    )
    ds = Dataset.from_interactions(frame, catalog, config=CleanConfig(k_core=0), name="fuzz")
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=4, blocks=1, max_len=4)).eval()
    from seqrec.serving.onnx import export_onnx

    made = {}
    for name, legacy in (("prep", False), ("model", False), ("prep-legacy", True), ("model-legacy", True)):
        path = root / name
        if name.startswith("prep"):
            ds.save(path)
        else:
            save_folder(path, model, ds, TrainConfig(epochs=2), {"best_epoch": 2, "test": {"NDCG@10": 0.25}})
            export_onnx(model, path / "model.onnx")
            if not legacy:
                register_onnx(path)
        if legacy:
            strip_manifests(path)
        made[name] = path
    originals = {"prep": Dataset.load(made["prep"]), "model": load_folder(made["model"])}
    assert originals["model"].onnx == made["model"] / "model.onnx"
    return made, {name: snapshot(path) for name, path in made.items()}, originals


@st.composite
def damage(draw, files: dict[str, bytes], ops: tuple[str, ...]) -> dict[str, bytes | None]:
    """New contents (None: deleted) for one or two of ``files``."""
    names = draw(st.lists(st.sampled_from(sorted(files)), min_size=1, max_size=2, unique=True))
    out: dict[str, bytes | None] = {}
    for name in names:
        raw = files[name]
        op = draw(st.sampled_from(ops))
        if op == "delete":
            out[name] = None
        elif op == "truncate":
            out[name] = raw[: draw(st.integers(0, len(raw) - 1))]
        elif op == "append":
            out[name] = raw + draw(st.binary(min_size=1, max_size=16))
        elif op == "flip":
            b = bytearray(raw)
            for _ in range(draw(st.integers(1, 4))):
                b[draw(st.integers(0, len(b) - 1))] ^= draw(st.integers(1, 255))
            out[name] = bytes(b)
        else:  # "overwrite": a run of random bytes somewhere
            at = draw(st.integers(0, len(raw) - 1))
            chunk = draw(st.binary(min_size=1, max_size=32))
            out[name] = raw[:at] + chunk + raw[at + len(chunk) :]
    return out


def damaged(root: Path, changes: dict[str, bytes | None]):
    """Apply ``changes`` to the files under ``root`` (then put every file back)."""

    @contextlib.contextmanager
    def apply(originals: dict[str, bytes]):
        try:
            for name, content in changes.items():
                if content is None:
                    (root / name).unlink()
                else:
                    (root / name).write_bytes(content)
            yield
        finally:
            for name in changes:
                (root / name).write_bytes(originals[name])

    return apply


def same_dataset(a: Dataset, b: Dataset) -> bool:
    return (
        np.array_equal(a.offsets, b.offsets)
        and np.array_equal(a.items, b.items)
        and a.meta == b.meta
        and np.array_equal(a.user_ids.raw, b.user_ids.raw)
        and np.array_equal(a.item_ids.raw, b.item_ids.raw)
        and a.catalog.equals(b.catalog)
    )


def check_prepared(path: Path, original: Dataset) -> None:
    try:
        with time_limit(LOAD_SECONDS, "loading"):
            got = Dataset.load(path)
    except SeqrecError:
        return
    assert same_dataset(got, original)


def check_model(path: Path, original) -> None:
    try:
        with time_limit(LOAD_SECONDS, "loading"):
            got = load_folder(path)
    except SeqrecError:
        return
    assert got.config == original.config and got.metrics == original.metrics
    assert same_dataset(got.dataset, original.dataset)
    theirs = original.scorer.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in got.scorer.state_dict().items())
    assert got.onnx in (None, path / "model.onnx")


EVERYTHING = ("flip", "overwrite", "truncate", "append", "delete")
CUT = ("truncate", "delete")  # what a folder without a manifest can be told to be damaged by, exactly


@fuzz(500)
@given(data=st.data())
def test_fuzz_prepared_folder(folders, data):
    made, files, originals = folders
    changes = data.draw(damage(files["prep"], EVERYTHING))
    with damaged(made["prep"], changes)(files["prep"]):
        check_prepared(made["prep"], originals["prep"])


@fuzz(440)
@given(data=st.data())
def test_fuzz_model_folder(folders, data):
    made, files, originals = folders
    changes = data.draw(damage(files["model"], EVERYTHING))
    with damaged(made["model"], changes)(files["model"]):
        check_model(made["model"], originals["model"])


@fuzz(60)
@given(data=st.data())
def test_fuzz_folders_from_before_manifests(folders, data):
    """Without a manifest a changed byte can go unseen, but a cut or missing file never loads wrongly
    and no damage raises anything but a SeqrecError."""
    made, files, originals = folders
    for name, check, original in (
        ("prep-legacy", check_prepared, originals["prep"]),
        ("model-legacy", check_model, originals["model"]),
    ):
        changes = data.draw(damage(files[name], CUT))
        with damaged(made[name], changes)(files[name]):
            check(made[name], original)
        changes = data.draw(damage(files[name], EVERYTHING))
        with damaged(made[name], changes)(files[name]):
            try:
                with time_limit(LOAD_SECONDS, "loading"):
                    (Dataset.load if name.startswith("prep") else load_folder)(made[name])
            except SeqrecError:
                pass


def test_the_fuzzed_folders_are_intact_afterwards(folders):
    made, files, _ = folders
    assert all(snapshot(made[name]) == files[name] for name in made)


@fuzz(60)
@given(
    parts=st.lists(
        st.one_of(
            st.integers(250, 700).map(lambda n: "p" * n),
            st.text(min_size=1, max_size=6),
            st.sampled_from(["..", ".", "\0"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_fuzz_folder_paths_with_long_components(tmp_path_factory, parts):
    """Paths the system refuses (a component over 255 characters, a NUL) or that name nothing: loading a
    model folder or a data set gives a SeqrecError naming the path, never an OSError."""
    from seqrec.data.readers import load_dataset

    path = str(tmp_path_factory.getbasetemp() / "/".join(parts).replace("/..", "/x"))
    for load in (load_folder, load_dataset):
        with pytest.raises(SeqrecError):
            load(path)


def test_cli_paths_with_long_components_exit_2(tmp_path, cli):
    long = tmp_path / ("x" * 300)
    for argv in (
        ("stats", long),
        ("recommend", long, "--history", "1"),
        ("similar", long, "1"),
        ("export-items", long, "--out", tmp_path / "o.csv"),
        ("export-events", long, "--out", tmp_path / "e.csv"),
        ("serve", long),
        ("train", tmp_path / "nowhere.csv", "--out", long / "m"),
    ):
        code, _, err = cli(*argv)
        assert code == 2 and err.startswith("seqrec: error: ") and len(err.strip().splitlines()) == 1, (argv, err)
