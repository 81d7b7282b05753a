"""The live loop replayed: on a log whose users change habit in the last periods, the warm-started and the
retrained models learn the new habit that the static one never saw; the command line prints and draws it."""

import json

import numpy as np
import polars as pl

from seqrec.cli.replay import replay
from seqrec.config import CleanConfig
from seqrec.data.dataset import Dataset

DAY = 86_400


def habit_log(users: int = 200, seed: int = 0) -> pl.DataFrame:
    """40 items on a ring. Days 0-19: each user steps +1 a day; days 20-25: every user steps +7 a day."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        item = int(rng.integers(40))
        for day in range(26):
            rows.append((f"u{u}", item % 40 + 1, day * DAY + int(rng.integers(3600))))
            item += 1 if day < 19 else 7
    return pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row")


def test_warm_starts_learn_the_habit_of_the_last_periods(tmp_path) -> None:
    ds = Dataset.from_interactions(habit_log(), config=CleanConfig(k_core=0))
    opts = dict(hidden=32, blocks=1, max_len=10, batch_size=32, lr=3e-3, dropout=0.1, threads=1)
    rows = replay(ds, tmp_path / "run", period="3d", periods=2, epochs=15, warm_epochs=8, options=opts, quiet=True)
    assert all(500 < r.events < 700 for r in rows)
    first, last = rows
    # period 1 (days 20-22) is new to every model: the +7 step was never seen (a top 10 of 40 by chance: 0.25)
    assert first.hits["static"] < 0.35 and first.hits["markov"] < 0.35
    # period 2 (days 23-25): the refreshed models trained on period 1's events
    for arm in ("warm", "scratch"):
        assert last.hits[arm] > max(3 * last.hits["static"], last.hits["static"] + 0.2), last.hits
    assert last.hits["markov"] > last.hits["static"]
    assert last.train_seconds["warm"] < last.train_seconds["scratch"]
    assert (tmp_path / "run" / "replay.png").stat().st_size > 0 and (tmp_path / "run" / "events.db").is_file()


def test_the_command_line(cli, tmp_path) -> None:
    path = tmp_path / "log.csv"
    habit_log(users=40).write_csv(path)
    code, out, err = cli(
        "replay",
        path,
        "--k-core",
        "0",
        "--period",
        "3d",
        "--periods",
        "1",
        "--epochs",
        "1",
        "--warm-epochs",
        "1",
        "--out",
        tmp_path / "run",
        "--json",
        "-q",
    )
    assert code == 0, err
    [row] = json.loads(out)
    assert 100 < row["events"] < 140 and set(row) >= {"HR@10 static", "HR@10 warm", "HR@10 markov", "s warm"}
    code, _, err = cli("replay", path, "--period", "3d", "--periods", "1", "--out", tmp_path / "run")
    assert code == 2 and "not an empty folder" in err
    code, _, err = cli("replay", path, "--period", "300d", "--periods", "2", "--out", tmp_path / "new")
    assert code == 2 and "before the first event" in err
