"""Crash-safe publishing: a process killed at any step of writing or replacing a folder leaves the old
complete folder or the new one readable, and the next run recovers (no temp or old folders left)."""

import json
import os

import numpy as np
import polars as pl
import pytest
import torch

from seqrec import files as F
from seqrec import publish as P
from seqrec.config import TrainConfig
from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.models.folder import load_folder, save_folder
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.publish import publish_dir
from seqrec.training.loop import train


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (every later step raises too)."""


def dataset(seed: int, name: str) -> Dataset:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"user": np.repeat(np.arange(30), 5), "item": rng.integers(0, 20, 150)})
    return Dataset.from_interactions(frame, name=name, config=CleanConfig(k_core=0))


def model(ds: Dataset, seed: int) -> SASRecModel:
    torch.manual_seed(seed)
    return SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=8, blocks=1, max_len=5)).eval()


def same_data(a: Dataset, b: Dataset) -> bool:
    return a.fingerprint() == b.fingerprint() and a.meta == b.meta and a.catalog.equals(b.catalog)


def kill_at(monkeypatch, k: int, before_each=None) -> list[str]:
    """Make the k-th step (0-based) of folder writing raise Killed, and every step after it."""
    steps: list[str] = []

    def op(step, fn, *args, **kwargs):
        if before_each is not None and len(steps) <= k:
            before_each(step)
        steps.append(step)
        if len(steps) > k:
            raise Killed(step)
        return fn(*args, **kwargs)

    monkeypatch.setattr(F, "_op", op)
    return steps


def count_steps(monkeypatch, write) -> list[str]:
    steps = kill_at(monkeypatch, 10**6)
    write()
    monkeypatch.undo()
    return steps


def beside(path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.fixture(params=["exchange", "rename"])
def mode(request, monkeypatch):
    """With the atomic exchange (Linux, macOS) and without it (the .NAME.old fallback)."""
    if request.param == "exchange" and P._exchange_function() is None:
        pytest.skip("this system has no atomic rename-exchange")
    return request.param


def use_mode(monkeypatch, mode: str) -> None:
    monkeypatch.setattr(P, "STALE_SECONDS", -1.0)  # leftovers of the "killed" writers count as stale at once
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # the steps still run through _op; only the disk waits go
    if mode == "rename":
        monkeypatch.setattr(P, "_exchange", lambda a, b: False)


def test_the_exchange_replaces_without_a_gap(tmp_path):
    if P._exchange_function() is None:
        pytest.skip("this system has no atomic rename-exchange")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("new")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("old")
    assert P._exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "x").read_text() == "new" and (tmp_path / "a" / "x").read_text() == "old"


def test_a_prepared_folder_survives_a_kill_at_every_step(tmp_path, monkeypatch, mode):
    old, new = dataset(0, "old"), dataset(1, "new")
    path = tmp_path / "prep"
    use_mode(monkeypatch, mode)
    old.save(path)
    steps = count_steps(monkeypatch, lambda: new.save(path, force=True))
    use_mode(monkeypatch, mode)
    assert len(steps) >= 10 and any(s in steps for s in ("exchange", "move old folder aside"))
    outcomes = []
    for k in range(len(steps)):
        old.save(path, force=True)
        kill_at(monkeypatch, k)
        with pytest.raises(Killed):
            new.save(path, force=True)
        monkeypatch.setattr(F, "_op", lambda step, fn, *a, **kw: fn(*a, **kw))
        got = Dataset.load(path)  # the old complete folder or the new one, never neither
        assert same_data(got, old) or same_data(got, new), steps[k]
        outcomes.append("new" if same_data(got, new) else "old")
        new.save(path, force=True)  # the next run recovers and replaces it
        assert same_data(Dataset.load(path), new) and beside(path) == ["prep"], steps[k]
    assert outcomes[0] == "old" and outcomes[-1] == "new"  # killed before the swap / after it


def test_a_model_folder_survives_a_kill_at_every_step(tmp_path, monkeypatch, mode):
    ds = dataset(0, "d")
    m_old, m_new = model(ds, 0), model(ds, 1)
    path = tmp_path / "m"
    use_mode(monkeypatch, mode)
    save_folder(path, m_old, ds, TrainConfig(epochs=2), {"which": "old"})

    def write_new():
        save_folder(
            path, m_new, ds, TrainConfig(epochs=2), {"which": "new"}, force=True, keep_files=("checkpoint.safetensors",)
        )

    (path / "checkpoint.safetensors").write_bytes(b"run state")
    steps = count_steps(monkeypatch, write_new)
    use_mode(monkeypatch, mode)
    for k in range(len(steps)):
        save_folder(path, m_old, ds, TrainConfig(epochs=2), {"which": "old"}, force=True)
        (path / "checkpoint.safetensors").write_bytes(b"run state")
        kill_at(monkeypatch, k)
        with pytest.raises(Killed):
            write_new()
        monkeypatch.setattr(F, "_op", lambda step, fn, *a, **kw: fn(*a, **kw))
        b = load_folder(path)
        which = b.metrics["which"]
        ref = m_new if which == "new" else m_old
        assert all(torch.equal(v, ref.state_dict()[n]) for n, v in b.scorer.state_dict().items()), steps[k]
        assert (path / "checkpoint.safetensors").read_bytes() == b"run state"  # kept either way
        write_new()
        assert load_folder(path).metrics == {"which": "new"} and beside(path) == ["m"], steps[k]


def test_with_the_exchange_a_reader_sees_a_whole_folder_at_every_step(tmp_path, monkeypatch):
    if P._exchange_function() is None:
        pytest.skip("this system has no atomic rename-exchange")
    old, new = dataset(0, "old"), dataset(1, "new")
    path = tmp_path / "prep"
    old.save(path)
    seen = []

    def read(step):
        got = Dataset.load(path)
        assert same_data(got, old) or same_data(got, new), step
        seen.append(got.meta["name"])

    kill_at(monkeypatch, 10**6, before_each=read)
    new.save(path, force=True)
    assert seen[0] == "old" and seen[-1] == "new" and beside(path) == ["prep"]


def test_a_leftover_old_folder_from_an_interrupted_replace_is_recovered(tmp_path):
    """What the former two-rename replace left when killed between its renames: no folder, only
    .NAME.old (and the new temp folder). Loading and the next write bring the old one back."""
    ds = dataset(0, "d")
    path = tmp_path / "m"
    save_folder(path, model(ds, 0), ds, {}, {"which": "old"})
    os.replace(path, tmp_path / ".m.old")
    assert load_folder(path).metrics == {"which": "old"}  # brought back
    assert beside(path) == ["m"]
    os.replace(path, tmp_path / ".m.old")
    save_folder(path, model(ds, 1), ds, {}, {"which": "new"}, force=True)
    assert load_folder(path).metrics == {"which": "new"} and beside(path) == ["m"]


def test_resume_after_a_kill_between_the_renames_continues_from_the_checkpoint(tmp_path):
    ds = dataset(0, "d")
    cfg = TrainConfig(epochs=2, batch_size=16, quiet=True, device="cpu", patience=None, eval_max_users=10)
    run = tmp_path / "run"
    first = train(model(ds, 0), LeaveOneOut(ds), cfg, out_dir=run)
    assert [h["epoch"] for h in first.history] == [1, 2]
    os.replace(run, tmp_path / ".run.old")  # killed between the former replace's two renames
    longer = TrainConfig(**{**cfg.to_dict(), "epochs": 3})
    resumed = train(model(ds, 5), LeaveOneOut(ds), longer, out_dir=run, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]  # epochs 1-2 from the checkpoint, not redone
    assert resumed.history[:2] == first.history
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert beside(run) == ["run"]


def test_publish_refuses_a_foreign_old_name_in_the_way(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "_exchange", lambda a, b: False)
    ds = dataset(0, "d")
    ds.save(tmp_path / "p")
    (tmp_path / ".p.old").mkdir()
    (tmp_path / ".p.old" / "mine.txt").write_text("keep")
    with pytest.raises(SeqrecError, match=r"\.p\.old"):
        ds.save(tmp_path / "p", force=True)
    assert (tmp_path / ".p.old" / "mine.txt").read_text() == "keep" and same_data(Dataset.load(tmp_path / "p"), ds)


def test_publish_into_a_new_place_and_over_an_empty_folder(tmp_path):
    for target in (tmp_path / "new", tmp_path / "empty"):
        if target.name == "empty":
            target.mkdir()
        tmp = tmp_path / ".tmp"
        tmp.mkdir()
        (tmp / "f").write_text("x")
        publish_dir(tmp, target)
        assert (target / "f").read_text() == "x" and not tmp.exists()
