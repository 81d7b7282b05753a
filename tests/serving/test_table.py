"""Every user's recommendations as one table: equal to recommending user by user, the same for any memory
budget and any shard count, written atomically, and refused where it would replace a stranger's file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from seqrec.api import SASRec
from seqrec.errors import SeqrecError
from seqrec.serving.recommender import Recommender
from seqrec.serving.table import BLOCK, recommend_table


@pytest.fixture(scope="module")
def folder(tmp_path_factory, log_frame) -> Path:
    out = tmp_path_factory.mktemp("table") / "model"
    SASRec(hidden=16, blocks=1, max_len=8, epochs=2, batch_size=32, quiet=True, threads=1).fit(log_frame, out_dir=out)
    return out


@pytest.fixture(scope="module")
def log_frame() -> pl.DataFrame:
    """600 users (more than two blocks) on a ring of 40 items."""
    rng = np.random.default_rng(1)
    rows = [
        (f"u{u:03d}", (s + t) % 40 + 1, t)
        for u in range(600)
        for s in [int(rng.integers(40))]
        for t in range(int(rng.integers(5, 11)))
    ]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def test_the_table_equals_recommending_user_by_user(folder: Path, tmp_path: Path) -> None:
    rec = Recommender.from_folder(folder, backend="torch")
    done = recommend_table(rec, tmp_path / "recs.parquet", k=5, progress=False)
    table = pl.read_parquet(done.path)
    assert done.users == rec.dataset.n_users == 600 and table.height == done.rows == 600 * 5
    assert table.columns == ["user_id", "rank", "item_id", "score"]
    for user in ("u000", "u123", "u599"):
        want = [i.item_id for i in rec.recommend_users([user], k=5)[0].items]
        got = table.filter(pl.col("user_id") == user).sort("rank")["item_id"].to_list()
        assert got == want
        seen = set(rec.dataset.item_ids.to_raw(rec.dataset.sequence(rec.dataset.user_ids.get(user))))
        assert not seen & set(got)


def test_chunk_size_and_shards_change_nothing(folder: Path, tmp_path: Path) -> None:
    rec = Recommender.from_folder(folder, backend="torch")
    whole = recommend_table(rec, tmp_path / "a.parquet", k=7, progress=False)
    small = recommend_table(rec, tmp_path / "b.parquet", k=7, memory_budget=BLOCK * 41 * 4 * 3, progress=False)
    assert pl.read_parquet(whole.path).equals(pl.read_parquet(small.path))
    shards = [recommend_table(rec, tmp_path / f"s{i}.parquet", k=7, shard=f"{i}/4", progress=False) for i in range(4)]
    assert sum(s.users for s in shards) == 600
    joined = pl.concat([pl.read_parquet(s.path) for s in shards])
    assert joined.equals(pl.read_parquet(whole.path))


def test_chosen_users_csv_and_the_command_line(folder: Path, tmp_path: Path, cli) -> None:
    users = tmp_path / "users.txt"
    users.write_text("u010\nu002\n")
    code, out, err = cli("recommend", folder, "--users", users, "--out", tmp_path / "two.csv", "-k", "3", "-q")
    assert code == 0, err
    table = pl.read_csv(tmp_path / "two.csv")
    assert table["user_id"].to_list() == ["u010"] * 3 + ["u002"] * 3
    code, out, err = cli("recommend", folder, "--all-users", "--out", tmp_path / "all.parquet", "--shard", "1/2", "-q")
    assert code == 0, err and "recommendations for 344 users" in out
    users.write_text("nobody\n")
    code, _, err = cli("recommend", folder, "--users", users, "--out", tmp_path / "x.csv")
    assert code == 2 and "unknown user id" in err
    code, _, err = cli("recommend", folder, "--all-users", "--out", tmp_path / "x.csv", "--shard", "4/4")
    assert code == 2 and "--shard must be i/n" in err
    code, _, err = cli("recommend", folder, "--all-users")
    assert code == 2 and "--out" in err


def test_a_strangers_file_is_kept_and_a_kill_leaves_no_part(folder: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(theirs)
    rec = Recommender.from_folder(folder, backend="torch")
    with pytest.raises(SeqrecError, match="not written by seqrec"):
        recommend_table(rec, theirs, progress=False)
    assert pl.read_parquet(theirs)["x"].to_list() == [1]
    out = tmp_path / "killed.parquet"
    code = (
        "import sys, time; from seqrec.serving import table as t; from seqrec.serving.recommender import Recommender\n"
        "slow = t._block_scores\n"
        "def sleepy(*a, **k):\n    time.sleep(3); return slow(*a, **k)\n"
        f"t._block_scores = sleepy\nt.recommend_table(Recommender.from_folder({str(folder)!r}, backend='torch'), "
        f"{str(out)!r}, progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".killed.parquet.*.tmp")) and time.monotonic() < deadline:  # writing has begun
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # the old file or none: never a part
    done = recommend_table(rec, out, k=2, progress=False)  # the next run clears what the killed one left
    assert pl.read_parquet(done.path).height == 1200
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".killed")] == []


@pytest.mark.parametrize("backend,index", [("onnx", "exact"), ("torch", "hnsw")])
def test_other_backends_give_the_same_table(folder: Path, tmp_path: Path, backend: str, index: str) -> None:
    exact = recommend_table(
        Recommender.from_folder(folder, backend="torch"), tmp_path / "t.parquet", k=5, progress=False
    )
    other = recommend_table(
        Recommender.from_folder(folder, backend=backend, index=index), tmp_path / "o.parquet", k=5, progress=False
    )
    a, b = pl.read_parquet(exact.path), pl.read_parquet(other.path)
    assert a.select("user_id", "rank").equals(b.select("user_id", "rank"))
    same = (a["item_id"] == b["item_id"]).mean()
    assert same >= 0.99, same  # ties and float rounding may swap a few neighbours
