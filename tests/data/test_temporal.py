"""The global time split: what each part holds, that nothing after the cut reaches training or the
histories that are scored, the cut's two spellings, and the errors."""

import json

import numpy as np
import polars as pl
import pytest

from seqrec.api import SASRec
from seqrec.config import CleanConfig, SplitConfig
from seqrec.data.dataset import Dataset
from seqrec.data.split import LeaveOneOut, TemporalSplit, make_split
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import evaluate
from seqrec.models.baselines import make_baseline

DAY = 86_400


def log(rows: list[tuple[str, int, int]]) -> Dataset:
    """(user, item, day) rows; times at noon of that day since 1970-01-01."""
    frame = pl.DataFrame(rows, schema=["user", "item", "day"], orient="row")
    frame = frame.with_columns((pl.col("day") * DAY + DAY // 2).alias("timestamp")).drop("day")
    return Dataset.from_interactions(frame, config=CleanConfig(k_core=0))


def ring(users: int = 40, days: int = 30, seed: int = 0, size: int = 20) -> list[tuple[str, int, int]]:
    """Users walk a ring of ``size`` items, one step a day from a random start and day."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        start, first = int(rng.integers(20)), int(rng.integers(0, 10))
        for d in range(first, days):
            rows.append((f"u{u}", (start + d) % size + 1, d))
    return rows


def items_of(segs) -> list[list[int]]:
    return [segs.sequence(i).tolist() for i in range(len(segs))]


def test_parts_hold_what_the_cut_says() -> None:
    ds = log([("a", 1, 0), ("a", 2, 1), ("a", 3, 5), ("a", 4, 8), ("b", 5, 2), ("b", 6, 9), ("c", 7, 8)])
    split = TemporalSplit(ds, cut=6 * DAY, valid_cut=3 * DAY)
    raw = lambda segs: [ds.item_ids.to_raw(s) for s in items_of(segs)]
    assert raw(split.train()) == [[1, 2], [5], []]
    users, hist, targets = split.inputs("valid")
    assert ds.user_ids.to_raw(users) == ["a"] and raw(hist) == [[1, 2]] and ds.item_ids.to_raw(targets) == [3]
    users, hist, targets = split.inputs("test")
    assert ds.user_ids.to_raw(users) == ["a", "b"]  # c has nothing before the cut: a cold user
    assert raw(hist) == [[1, 2, 3], [5]] and ds.item_ids.to_raw(targets) == [4, 6]
    assert raw(split.horizon_targets(users)) == [[4], [6]]
    facts = split.describe()
    assert (facts["test_users"], facts["cold_users"], facts["events_after"], facts["cold_targets"]) == (2, 1, 3, 2)
    # the cut's arithmetic: a date at midnight UTC; validation as far before it as the data runs after it
    made = TemporalSplit.of(ds, "1970-01-07")
    assert made.cut == 6 * DAY and made.valid_cut == 6 * DAY - (9 * DAY + DAY // 2 + 1 - 6 * DAY)
    assert TemporalSplit.of(ds, "1970-01-07", horizon=DAY).valid_cut == 5 * DAY


def test_a_planted_future_event_changes_nothing_that_is_scored() -> None:
    rows = ring()
    base = log(rows)
    cut = TemporalSplit.of(base, "0.8").cut
    late = max(r[2] for r in rows)
    planted = log([*rows, ("u3", 7, late)])  # a day after u3's first event past the cut; item 7 is known
    a = TemporalSplit(base, cut, TemporalSplit.of(base, "0.8").valid_cut)
    b = TemporalSplit(planted, cut, a.valid_cut)
    assert base.n_items == planted.n_items
    assert items_of(a.train()) == items_of(b.train())
    for part in ("valid", "test"):
        ua, ha, ta = a.inputs(part)
        ub, hb, tb = b.inputs(part)
        assert ua.tolist() == ub.tolist() and items_of(ha) == items_of(hb) and ta.tolist() == tb.tolist()
    for name in ("popularity", "markov", "ar2"):
        assert evaluate(make_baseline(name, a), a) == evaluate(make_baseline(name, b), b)
    # SASRec, seeded, trained on each: the same test figures (training and histories never saw the event)
    opts = dict(hidden=16, blocks=1, max_len=10, epochs=2, batch_size=16, quiet=True, threads=1, seed=0)
    fa = SASRec(**opts).fit(base, scheme="temporal", cutoff="0.8")
    fb = SASRec(**opts).fit(planted, scheme="temporal", cutoff=str(fa.result_.test["cut"]))
    assert fa.result_.test["NDCG@10"] == fb.result_.test["NDCG@10"]
    assert fa.result_.test["users"] == fb.result_.test["users"]


def test_leave_one_out_lets_that_event_in() -> None:
    """The contrast that motivates the scheme: under leave-one-out the same planted event becomes a test
    target and moves the user's other events into training."""
    rows = ring()
    base, planted = log(rows), log([*rows, ("u3", 7, max(r[2] for r in rows))])
    assert items_of(LeaveOneOut(base).train()) != items_of(LeaveOneOut(planted).train())


def test_cutoff_spellings_and_errors() -> None:
    ds = log(ring())
    by_date = TemporalSplit.of(ds, "1970-01-21")
    assert by_date.cut == 20 * DAY
    times = ds.times
    q = TemporalSplit.of(ds, 0.75)
    assert (times < q.cut).mean() == pytest.approx(0.75, abs=0.05)
    assert TemporalSplit.of(ds).cut == TemporalSplit.of(ds, "0.9").cut
    with pytest.raises(SeqrecError, match="quantile in \\(0, 1\\) or a date"):
        TemporalSplit.of(ds, "tomorrow")
    with pytest.raises(SeqrecError, match="leaves no events on one side"):
        TemporalSplit.of(ds, "2030-01-01")
    with pytest.raises(SeqrecError, match="validation cut .* falls before the first event"):
        TemporalSplit.of(ds, "1970-01-03")
    with pytest.raises(SeqrecError, match="needs a time for every interaction"):
        TemporalSplit.of(Dataset.from_sequences([[1, 2, 3], [2, 3, 4]]))
    with pytest.raises(SeqrecError, match="scheme must be 'loo' or 'temporal'"):
        SplitConfig("random")
    with pytest.raises(SeqrecError, match="belong to the temporal scheme"):
        SplitConfig(cutoff="0.9")
    with pytest.raises(SeqrecError, match="horizon must be a positive duration"):
        SplitConfig("temporal", horizon="soon")
    assert isinstance(make_split(ds), LeaveOneOut) and isinstance(
        make_split(ds, SplitConfig("temporal")), TemporalSplit
    )


def test_times_survive_a_prepared_folder(tmp_path) -> None:
    ds = log(ring(users=5))
    ds.save(tmp_path / "prepared")
    again = Dataset.load(tmp_path / "prepared")
    assert again.times is not None and np.array_equal(again.times, ds.times)
    assert Dataset.load(ds.save(tmp_path / "p2")).times.dtype == np.int64


def test_the_command_line_evaluates_on_a_cut(cli, tmp_path) -> None:
    rows = ring(size=40)  # longer than a history: no item comes back
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{d * DAY}\n" for u, i, d in rows))
    code, out, err = cli(
        "evaluate",
        path,
        "--model",
        "markov",
        "--scheme",
        "temporal",
        "--cutoff",
        "0.8",
        "--horizon",
        "5d",
        "--json",
        "-q",
    )
    assert code == 0, err
    row = json.loads(out)
    assert row["horizon_users"] > 0 and "cold_targets" in row and row["cut"].startswith("1970-01-")
    code, out, err = cli(
        "evaluate",
        path,
        "--model",
        "popularity",
        "--scheme",
        "temporal",
        "--cutoff",
        "0.8",
        "--horizon",
        "5d",
        "--json",
        "-q",
    )
    pop = json.loads(out)
    assert pop["users"] == row["users"]  # the same users, asked the same question
    # the ring: AR-1 knows the next item from the last one (unless that step only happens after the cut)
    assert (
        row["HR@10"] >= 0.7
        and row["NDCG@10"] > 1.5 * pop["NDCG@10"]
        and row["Recall@10 (horizon)"] > pop["Recall@10 (horizon)"]
    )
    code, _, err = cli("evaluate", path, "--model", "markov", "--cutoff", "0.8")
    assert code == 2 and "temporal" in err


def test_train_validates_and_tests_on_the_cut(cli, tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{d * DAY}\n" for u, i, d in ring(size=40)))
    code, out, err = cli(
        "train",
        path,
        "--scheme",
        "temporal",
        "--cutoff",
        "0.8",
        "--horizon",
        "5d",
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--blocks",
        "1",
        "--max-len",
        "10",
        "--out",
        tmp_path / "model",
        "-q",
    )
    assert code == 0, err
    assert "test over the horizon: Recall@10" in out
    result = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert result["test"]["users"] == 40 and result["test"]["cut"].startswith("1970-01-")
