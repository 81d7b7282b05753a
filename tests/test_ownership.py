"""seqrec replaces or deletes only folders it wrote; output folders are checked before any work; the
CLI refuses bad -k, --seed and --out with one line and exit 2; --resume never silently restarts."""

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import seqrec.training.loop as T
from seqrec.config import TrainConfig
from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.files import MARKER
from seqrec.models.folder import load_folder, save_folder
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.publish import check_output_folder, ownership_problem
from seqrec.training.loop import train


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a training run starts."""

    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(T.Run, "fit", refuse)


def small() -> Dataset:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"user": np.repeat(np.arange(30), 5), "item": rng.integers(0, 20, 150)})
    return Dataset.from_interactions(frame, config=CleanConfig(k_core=0), name="small")


def sasrec(ds: Dataset) -> SASRecModel:
    torch.manual_seed(0)
    return SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=8, blocks=1, max_len=5)).eval()


def quick(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "quiet": True, "device": "cpu", "eval_max_users": 10, **kw})


TRAIN = ["--k-core", "0", "--hidden", "8", "--blocks", "1", "--max-len", "5", "--epochs", "1", "--threads", "1", "-q"]


# ----------------------------------------------------------------------------- train --out
def test_train_keeps_a_folder_with_a_users_files(log_csv, tmp_path, cli, no_training):
    p = tmp_path / "p"
    p.mkdir()
    (p / "config.json").write_text("{}")
    (p / "thesis.txt").write_text("t")
    code, _, err = cli("train", log_csv, "--out", p, *TRAIN)
    assert code == 2 and err.startswith("seqrec: error:") and "Traceback" not in err
    assert str(p) in err and "thesis.txt" in err and "not a seqrec run" in err
    assert (p / "thesis.txt").read_text() == "t" and (p / "config.json").read_text() == "{}"
    assert sorted(x.name for x in p.iterdir()) == ["config.json", "thesis.txt"]


def test_train_refuses_a_config_json_seqrec_did_not_write(log_csv, tmp_path, cli, no_training):
    p = tmp_path / "p"
    p.mkdir()
    (p / "config.json").write_text('{"camera": "x"}')
    code, _, err = cli("train", log_csv, "--out", p, *TRAIN)
    assert code == 2 and "config.json" in err and (p / "config.json").read_text() == '{"camera": "x"}'


def test_train_out_dot_a_file_or_an_unwritable_place_fails_before_training(
    log_csv, tmp_path, cli, monkeypatch, no_training
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.json").write_text(json.dumps({"format_version": 1, "kind": "sasrec", "seqrec_version": "0"}))
    monkeypatch.chdir(work)
    code, _, err = cli("train", log_csv, "--out", ".", *TRAIN)
    assert code == 2 and "current folder" in err and "Traceback" not in err
    code, _, err = cli("train", log_csv, "--out", "..", *TRAIN)
    assert code == 2 and "above the current one" in err
    f = tmp_path / "result.txt"
    f.write_text("mine")
    code, _, err = cli("train", log_csv, "--out", f, *TRAIN)
    assert code == 2 and "is a file" in err and f.read_text() == "mine"
    code, _, err = cli("train", log_csv, "--out", f / "run", *TRAIN)
    assert code == 2 and "is a file, not a folder" in err
    assert sorted(x.name for x in work.iterdir()) == ["config.json"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs permissions that bind (not root)")
def test_an_unwritable_parent_fails_before_training(log_csv, tmp_path, cli, no_training):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = cli("train", log_csv, "--out", locked / "run", *TRAIN)
    finally:
        locked.chmod(0o700)
    assert code == 2 and "permission" in err


def test_a_parent_without_write_permission_fails_before_training(log_csv, tmp_path, cli, monkeypatch, no_training):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    code, _, err = cli("train", log_csv, "--out", locked / "deeper" / "run", *TRAIN)
    assert code == 2 and f"no permission to write in {locked}" in err
    assert list(locked.iterdir()) == []


def test_the_api_refuses_the_same_folders_before_training(tmp_path, monkeypatch, no_training):
    ds = small()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SeqrecError, match="is a file"):
        train(sasrec(ds), LeaveOneOut(ds), quick(), out_dir=f)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SeqrecError, match="current folder"):
        train(sasrec(ds), LeaveOneOut(ds), quick(), out_dir=".")
    assert f.read_text() == "x"


def test_a_run_folder_is_marked_and_can_be_trained_into_again(tmp_path):
    ds = small()
    run_dir = tmp_path / "run"
    train(sasrec(ds), LeaveOneOut(ds), quick(), out_dir=run_dir)
    assert json.loads((run_dir / MARKER).read_text())["kind"] == "model"
    assert ownership_problem(run_dir, "model") is None
    r = train(sasrec(ds), LeaveOneOut(ds), quick(epochs=2), out_dir=run_dir)
    assert [h["epoch"] for h in r.history] == [1, 2]


# ----------------------------------------------------------------------------- save_folder
@pytest.fixture
def model_folder(tmp_path):
    ds = small()
    return save_folder(tmp_path / "m", sasrec(ds), ds, {}, {"v": 1}), ds


def test_save_folder_refuses_to_replace_a_folder_with_foreign_files_even_with_force(model_folder):
    path, ds = model_folder
    (path / "notes.md").write_text("mine")
    (path / "plan.txt").write_text("mine too")
    with pytest.raises(SeqrecError) as e:
        save_folder(path, sasrec(ds), ds, {}, {"v": 2}, force=True)
    assert str(path) in str(e.value) and "notes.md, plan.txt" in str(e.value)
    assert (path / "notes.md").read_text() == "mine" and load_folder(path).metrics == {"v": 1}


def test_save_folder_refuses_a_foreign_file_in_data(model_folder):
    path, ds = model_folder
    (path / "data" / "raw.csv").write_text("user,item\n")
    with pytest.raises(SeqrecError, match=r"data/ folder: it holds raw\.csv"):
        save_folder(path, sasrec(ds), ds, {}, {"v": 2}, force=True)
    assert (path / "data" / "raw.csv").exists()


def test_folders_from_before_markers_with_only_seqrecs_files_are_replaceable(model_folder):
    path, ds = model_folder
    for f in (path / MARKER, path / "manifest.json", path / "data" / MARKER, path / "data" / "manifest.json"):
        f.unlink()
    (path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')  # a run's file: fine
    assert load_folder(path).metrics == {"v": 1}  # loads unverified
    assert ownership_problem(path, "model") is None
    save_folder(path, sasrec(ds), ds, {}, {"v": 2}, force=True)
    assert load_folder(path).metrics == {"v": 2}
    assert (path / MARKER).is_file() and (path / "manifest.json").is_file()
    (path / "checkpoint.safetensors").write_bytes(b"x")  # not a seqrec checkpoint, but the marker says whose
    assert ownership_problem(path, "model") is None
    (path / MARKER).unlink()
    assert "checkpoint.safetensors does not read as one seqrec wrote" in ownership_problem(path, "model")


def test_a_folder_with_only_known_names_but_no_seqrec_content_is_refused(tmp_path):
    p = tmp_path / "p"
    p.mkdir()
    (p / "metrics.json").write_text("{}")  # a name seqrec uses, but nothing says seqrec wrote it
    assert "reads as seqrec's" in ownership_problem(p, "model")
    with pytest.raises(SeqrecError, match="not a seqrec run or model folder"):
        check_output_folder(p, "model")


def test_kinds_do_not_mix(model_folder, tmp_path):
    path, ds = model_folder
    ds.save(tmp_path / "prep")
    with pytest.raises(SeqrecError, match="seqrec prepared data folder"):
        save_folder(tmp_path / "prep", sasrec(ds), ds, {}, {}, force=True)
    with pytest.raises(SeqrecError, match="seqrec run or model folder"):
        ds.save(path, force=True)
    assert Dataset.load(tmp_path / "prep").fingerprint() == ds.fingerprint() and load_folder(path).metrics == {"v": 1}


def test_a_symlink_is_refused(model_folder, tmp_path):
    path, ds = model_folder
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(SeqrecError, match="symbolic link"):
        save_folder(tmp_path / "link", sasrec(ds), ds, {}, {}, force=True)


# ----------------------------------------------------------------------------- prepare --out
def test_prepare_force_replaces_only_its_own_folders(log_csv, tmp_path, cli, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "photos.zip").write_text("precious")
    monkeypatch.setenv("HOME", str(home))
    code, _, err = cli("prepare", log_csv, "--out", home, "--force", "--k-core", "0")
    assert code == 2 and "home folder" in err and (home / "photos.zip").read_text() == "precious"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "meta.json").write_text('{"name": "my own"}')
    (mine / "draft.docx").write_text("d")
    code, _, err = cli("prepare", log_csv, "--out", mine, "--force", "--k-core", "0")
    assert code == 2 and "draft.docx" in err and str(mine) in err
    assert sorted(x.name for x in mine.iterdir()) == ["draft.docx", "meta.json"]
    ok = tmp_path / "ok"
    assert cli("prepare", log_csv, "--out", ok, "--k-core", "0")[0] == 0
    assert cli("prepare", log_csv, "--out", ok, "--force", "--k-core", "2")[0] == 0
    assert Dataset.load(ok).meta["cleaning"]["k_core"] == 2


def test_prepare_checks_out_before_reading_the_data(tmp_path, cli):
    f = tmp_path / "f"
    f.write_text("x")
    code, _, err = cli("prepare", tmp_path / "no-such-data.csv", "--out", f)
    assert code == 2 and "is a file" in err  # not "no such file": the data was never read


# ----------------------------------------------------------------------------- -k, --seed, --out of files
def test_k_must_be_at_least_one(model_folder, cli):
    path, _ = model_folder
    for argv in (
        ["recommend", path, "--history", "1,2", "-k", "-5"],
        ["recommend", path, "--user", "0", "-k", "0"],
        ["similar", path, "3", "-k", "-1"],
    ):
        code, out, err = cli(*argv)
        assert code == 2 and out == "" and "-k" in err and ">= 1" in err
    code, out, _ = cli("recommend", path, "--history", "1,2", "-k", "2", "--json")
    assert code == 0 and len(json.loads(out)["items"]) == 2


def test_negative_or_huge_seeds_are_refused_before_any_work(tmp_path, cli):
    for argv in (
        ["train", tmp_path / "absent.csv", "--out", tmp_path / "r", "--seed", "-1"],
        ["evaluate", tmp_path / "absent.csv", "--seed", "-3"],
        ["train", tmp_path / "absent.csv", "--out", tmp_path / "r", "--seed", str(2**32)],
    ):
        code, _, err = cli(*argv)
        assert code == 2 and "--seed" in err and "[0, 4294967295]" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_file_outputs_refuse_a_folder(model_folder, tmp_path, cli):
    path, _ = model_folder
    (tmp_path / "dir").mkdir()
    code, _, err = cli("export-items", path, "--out", tmp_path / "dir")
    assert code == 2 and "is a folder" in err


# ----------------------------------------------------------------------------- --resume
def test_resume_never_silently_restarts(tmp_path):
    ds = small()
    for never in (tmp_path / "new", tmp_path / "empty"):  # no run was ever set up there: refused, nothing made
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(
            SeqrecError,
            match=r"cannot resume: the folder (does not exist|never held a run).*"
            r"train without --resume",
        ):
            train(sasrec(ds), LeaveOneOut(ds), quick(), out_dir=never, resume=True)
    assert not (tmp_path / "new").exists() and not list((tmp_path / "empty").iterdir())
    run_dir = tmp_path / "run"
    train(sasrec(ds), LeaveOneOut(ds), quick(), out_dir=run_dir)
    (run_dir / "checkpoint.safetensors").unlink()
    with pytest.raises(SeqrecError, match=r"cannot resume: there is no checkpoint\.safetensors .*metrics\.jsonl"):
        train(sasrec(ds), LeaveOneOut(ds), quick(epochs=2), out_dir=run_dir, resume=True)
    (run_dir / "checkpoint.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(SeqrecError, match="not a readable seqrec training checkpoint"):
        train(sasrec(ds), LeaveOneOut(ds), quick(epochs=2), out_dir=run_dir, resume=True)
    model_dir = tmp_path / "model"
    save_folder(model_dir, sasrec(ds), ds, {}, {})
    with pytest.raises(SeqrecError, match="cannot resume.*config.json"):
        train(sasrec(ds), LeaveOneOut(ds), quick(), out_dir=model_dir, resume=True)


def test_train_resume_into_a_folder_that_never_held_a_run_is_refused(tmp_path, log_csv, cli):
    code, out, err = cli("train", log_csv, "--out", tmp_path / "fresh", "--resume", *TRAIN)
    assert code == 2 and "cannot resume" in err and "without --resume" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fresh").exists()
    code, _, err = cli("train", log_csv, "--out", tmp_path / "fresh", *TRAIN)  # the fresh run the message names
    assert code == 0, err
