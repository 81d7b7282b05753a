import dataclasses
import json
import math
import os
import time

import numpy as np
import pytest
import torch

import seqrec.training.loop as T
import seqrec.training.optim as O
from seqrec.config import TrainConfig
from seqrec.data.dataset import PAD, Dataset
from seqrec.data.split import LeaveOneOut, left_pad
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, evaluate
from seqrec.evaluation.report import plot_run
from seqrec.models.baselines import make_baseline
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.training.batches import Batches
from seqrec.training.loop import TrainingDiverged, train
from seqrec.training.objective import Objective
from seqrec.training.optim import lr_factor


def planted(n_users=400, n_items=50, shuffle=False, seed=0) -> Dataset:
    """Each user draws a random set of items and consumes it in one hidden global order.

    Item co-occurrence is uniform, so only the order carries signal: the next item is one ranked
    just above the last. Shuffling each sequence removes it (the same items, the same counts)."""
    rng = np.random.default_rng(seed)
    rank = rng.permutation(n_items) + 1
    seqs = []
    for _ in range(n_users):
        s = rank[np.sort(rng.choice(n_items, rng.integers(6, 13), replace=False))]
        if shuffle:
            rng.shuffle(s)
        seqs.append(s.tolist())
    return Dataset.from_sequences(seqs)


def small(n_users=60, n_items=25, seed=1) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset.from_sequences([rng.integers(1, n_items + 1, rng.integers(1, 14)).tolist() for _ in range(n_users)])


def model_for(ds, seed=0, **kw) -> SASRecModel:
    torch.manual_seed(seed)
    return SASRecModel(SASRecConfig(**{"n_items": ds.n_items, "hidden": 16, "blocks": 1, "max_len": 8, **kw}))


def quick(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "quiet": True, "lr": 3e-3, **kw})


# ----------------------------------------------------------------- config
@pytest.mark.parametrize(
    "field, value",
    [
        ("loss", "hinge"),
        ("n_negatives", 0),
        ("negative_sampling", "zipf"),
        ("pop_alpha", -1),
        ("mix", 1.5),
        ("gbce_t", 2),
        ("optimizer", "sgd"),
        ("lr", 0),
        ("lr", "fast"),
        ("betas", (0.9,)),
        ("betas", (0.9, 1.0)),
        ("weight_decay", -0.1),
        ("warmup_steps", -1),
        ("warmup_steps", 2.5),
        ("schedule", "step"),
        ("grad_clip", -1),
        ("grad_accum", 0),
        ("precision", "int8"),
        ("device", "tpu"),
        ("threads", 0),
        ("compile", "yes"),
        ("epochs", 0),
        ("batch_size", 1.5),
        ("eval_every", -1),
        ("eval_max_users", 0),
        ("patience", -2),
        ("seed", "x"),
        ("seed", -1),
        ("seed", 2**32),
        ("checkpoint_every_steps", 0),
        ("quiet", 1),
        ("bucket", None),
        ("time_limit", 0),
        ("time_limit", "1m"),
        ("in_batch_negatives", -1),
        ("in_batch_negatives", 2.0),
        ("logq_positive", 1),
        ("sparse_embeddings", "yes"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    kw = {"loss": "bce"} if field == "n_negatives" else {}
    with pytest.raises(SeqrecError, match=field):
        TrainConfig(**{**kw, field: value})


def test_seeds_are_bounded_as_numpy_takes_them():
    assert TrainConfig(seed=2**32 - 1).seed == EvalConfig(seed=2**32 - 1).seed == 2**32 - 1
    for seed in (-1, 2**32):
        with pytest.raises(SeqrecError, match=r"seed must be an integer in \[0, 4294967295\]"):
            TrainConfig(seed=seed)
        with pytest.raises(SeqrecError, match=r"seed must be an integer in \[0, 4294967295\]"):
            EvalConfig(seed=seed)


def test_config_json_round_trip_and_unknown_keys():
    cfg = TrainConfig(loss="gbce", n_negatives=64, betas=[0.8, 0.9], warmup_steps=0.1, grad_clip=None, patience=None)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(d) == cfg and cfg.betas == (0.8, 0.9)
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)}
    with pytest.raises(SeqrecError, match="lrr"):
        TrainConfig.from_dict({**d, "lrr": 1})
    with pytest.raises(SeqrecError, match="n_negatives"):
        TrainConfig(loss="ce", n_negatives=5)
    assert TrainConfig(loss="bce").negatives == 1 and TrainConfig(loss="gbce").negatives == 256
    assert TrainConfig(warmup_steps=100.0).warmup_steps == 100
    assert TrainConfig(grad_clip=0, patience=0).grad_clip is None and TrainConfig(patience=0).patience is None
    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))


def test_lr_schedule_values():
    assert [lr_factor(s, 4, 100, "constant") for s in (0, 1, 3, 4, 99)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert lr_factor(0, 0, 100, "cosine") == 1.0
    assert lr_factor(50, 0, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 0, 100, "cosine") == pytest.approx(0.0)
    assert lr_factor(10, 0, 100, "cosine", progress=0.5) == pytest.approx(0.5)  # a time limit's share wins
    assert lr_factor(10, 0, 100, "cosine", progress=1.7) == pytest.approx(0.0)


def test_time_limit_stops_training_and_spans_the_cosine(tmp_path):
    ds = small(n_users=300)
    r = train(
        model_for(ds),
        LeaveOneOut(ds),
        quick(epochs=10_000, time_limit=1.5, eval_every=1000, patience=None),
        out_dir=tmp_path,
    )
    spent = sum(h["seconds"] + h.get("eval_seconds", 0.0) for h in r.history)
    # the limit is wall time, validation and the test included: training stops early enough for both
    assert spent < 1.5 <= spent + 2 * r.history[-1]["eval_seconds"] + 0.5 and len(r.history) < 10_000
    assert r.history[-1]["wall_seconds"] <= 1.5 + 0.2 and r.seconds < 1.5 + 0.5
    assert "valid" in r.history[-1] and r.best_epoch == len(r.history)  # validated once, when time ran out
    assert r.history[-1]["lr"] < 0.05 * 3e-3 < r.history[0]["lr"]  # decayed over the time, not the epochs
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(r.history) and all(row["loss"] > 0 for row in rows)


# ----------------------------------------------------------------- batches
def test_batches_match_left_pad_and_cover_every_example_once():
    ds = small()
    loo = LeaveOneOut(ds)
    b = Batches(loo, 5, TrainConfig(batch_size=7, grad_accum=2))
    seg = loo.train()
    users = np.flatnonzero(seg.lengths >= 2)
    plan = b.plan(3)
    rows = np.concatenate([r for r, _ in plan])
    assert sorted(rows.tolist()) == list(range(len(users)))
    assert sum(last for _, last in plan) == math.ceil(len(users) / 14)
    # one normaliser for every step: the mean real positions per optimizer step
    assert b.positions_per_step == pytest.approx(sum(len(b.build(r)[1]) for r, _ in plan) / math.ceil(len(users) / 14))
    for r, _ in plan:
        x, flat, pos = b.build(r)
        u = users[r]
        want_x = left_pad(ds.items, seg.starts[u], seg.ends[u] - 1, 5)
        want_y = left_pad(ds.items, seg.starts[u] + 1, seg.ends[u], 5)
        width = x.shape[1]
        assert width == int((want_x != PAD).sum(1).max())
        assert torch.equal(x, want_x[:, 5 - width :])
        assert torch.equal(pos, want_y[:, 5 - width :].reshape(-1)[flat])
        assert (pos != PAD).all() and len(flat) == int((want_y != PAD).sum())
    assert [r.tolist() for r, _ in b.plan(3)] == [r.tolist() for r, _ in plan]
    assert [r.tolist() for r, _ in b.plan(4)] != [r.tolist() for r, _ in plan]


def test_windows_train_on_every_interaction_exactly_once():
    ds = small()
    loo = LeaveOneOut(ds)
    seg = loo.train()
    b = Batches(loo, 5, TrainConfig(batch_size=4, windows=True))
    pairs = []  # (previous item, target) for every trained position
    for r, _ in b.plan(1):
        x, flat, pos = b.build(r)
        assert x.shape[1] <= 5
        prev = x.reshape(-1)[flat]
        assert (prev != PAD).all()
        pairs += list(zip(prev.tolist(), pos.tolist()))
    want = []
    for u in range(len(seg)):
        s = seg.sequence(u).tolist()
        want += list(zip(s[:-1], s[1:]))
    assert sorted(pairs) == sorted(want)
    last_only = Batches(loo, 5, TrainConfig(batch_size=4))
    assert len(pairs) > sum(len(last_only.build(r)[1]) for r, _ in last_only.plan(1))


@pytest.mark.parametrize(
    "loss, k, shared",
    [
        ("sampled-softmax", 64, True),
        ("sampled-softmax", 8, False),
        ("bce", 64, False),
        ("gbce", 256, False),
    ],
)
def test_only_sampled_softmax_shares_negatives_by_default(loss, k, shared):
    counts = np.ones(301)
    targets = torch.tensor([1, 2, 3])
    pos, neg, rows = Objective(TrainConfig(loss=loss, n_negatives=k), 300, counts).prepare(targets, 1, 0)
    assert neg.shape == ((k,) if shared else (3, k))
    assert torch.equal(rows[pos], targets) and (rows[neg] >= 1).all()


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "bce"},
        {"loss": "sampled-softmax", "n_negatives": 64},
        {"loss": "gbce", "n_negatives": 8, "negative_sampling": "popularity"},
    ],
)
def test_a_batchs_negatives_depend_only_on_seed_epoch_and_batch(options):
    """Negatives are drawn lazily, batch by batch: batch 5's are the same whether or not batches 0..4 were
    drawn before it (a resume mid-epoch draws what the uninterrupted run drew), and differ between batches."""
    counts = np.arange(301, dtype=float)
    targets = torch.tensor([7, 8, 9, 10])
    fresh = Objective(TrainConfig(**options), 300, counts)
    after = Objective(TrainConfig(**options), 300, counts)
    for i in range(5):
        after.prepare(torch.tensor([1, 2]), 3, i)
    a, b = fresh.prepare(targets, 3, 5), after.prepare(targets, 3, 5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    other = fresh.prepare(targets, 3, 6)
    assert not torch.equal(a[2][a[1]], other[2][other[1]])
    again = Objective(TrainConfig(**{**options, "seed": 1}), 300, counts).prepare(targets, 3, 5)
    assert not torch.equal(a[2][a[1]], again[2][again[1]])


def test_bucketed_steps_hold_about_the_same_number_of_positions():
    ds = small(n_users=300)
    loo = LeaveOneOut(ds)
    b = Batches(loo, 8, TrainConfig(batch_size=16, grad_accum=2))
    steps, current = [], 0
    for rows, last in b.plan(1):
        current += int(b.n[rows].sum())
        if last:
            steps.append(current)
            current = 0
    assert len(steps) == b.steps_per_epoch and sum(steps) == int(b.n.sum())
    # each cut overshoots its share by less than one example (at most max_len positions)
    assert max(abs(s - b.positions_per_step) for s in steps) <= 8
    shuffled = Batches(loo, 8, TrainConfig(batch_size=16, grad_accum=2, bucket=False))
    sizes = [int(shuffled.n[r].sum()) for r, _ in shuffled.plan(1)]
    assert max(sizes) - min(sizes) > 8  # uniformly shuffled steps vary more


def test_bucketing_keeps_batches_short():
    ds = small(n_users=300)
    loo = LeaveOneOut(ds)
    cells = {}
    for bucket in (True, False):
        b = Batches(loo, 8, TrainConfig(batch_size=16, bucket=bucket))
        cells[bucket] = sum(b.build(r)[0].numel() for r, _ in b.plan(1))
    assert cells[True] < 0.8 * cells[False]


# ----------------------------------------------------------------- learning
def ndcg(ds, loss):
    loo = LeaveOneOut(ds)
    m = model_for(ds, hidden=32, max_len=20, dropout=0.1)
    lr = {"ce": 5e-3, "bce": 2e-3}[loss]
    cfg = TrainConfig(loss=loss, epochs=40, lr=lr, batch_size=64, quiet=True, patience=5)
    return train(m, loo, cfg).test["NDCG@10"], evaluate(make_baseline("popularity", loo), loo, EvalConfig())["NDCG@10"]


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_learns_the_planted_order_and_not_from_shuffled_sequences(loss):
    ordered, pop = ndcg(planted(), loss)
    shuffled, pop_shuffled = ndcg(planted(shuffle=True), loss)
    assert ordered >= max(3 * pop, 0.15), (ordered, pop)
    assert ordered >= (3 if loss == "ce" else 1.5) * pop_shuffled, (ordered, pop_shuffled)  # more than counts give
    assert shuffled < 3 * pop_shuffled and shuffled < ordered / 1.5, (shuffled, pop_shuffled, ordered)


@pytest.mark.parametrize(
    "kw",
    [
        dict(loss="bce", n_negatives=3, negative_sampling="popularity"),
        dict(loss="gbce", n_negatives=8),
        dict(loss="sampled-softmax", n_negatives=8),
        dict(loss="sampled-softmax", negative_sampling="mixed", mix=0.3),
        dict(loss="sampled-softmax", n_negatives=8, shared_negatives=True, negative_sampling="popularity"),
        dict(loss="gbce", n_negatives=8, shared_negatives=True),
        dict(optimizer="adamw", weight_decay=0.1, warmup_steps=0.2, schedule="constant", grad_clip=None),
        dict(bucket=False, precision="bf16", quiet=False),
        dict(loss="sampled-softmax", n_negatives=8, in_batch_negatives=16, negative_sampling="popularity"),
        dict(loss="sampled-softmax", n_negatives=8, logq_positive=False, sparse_embeddings=True),
        dict(loss="gbce", n_negatives=8, sparse_embeddings=True, optimizer="adamw", weight_decay=0.1, grad_clip=0.01),
        dict(loss="ce", sparse_embeddings=True, optimizer="adam", weight_decay=0.1, grad_accum=2),
    ],
)
def test_every_loss_and_option_trains(kw):
    ds = small()
    r = train(model_for(ds), LeaveOneOut(ds), quick(**kw))
    assert len(r.history) == 2 and all(math.isfinite(h["loss"]) for h in r.history)
    assert set(r.test) >= {"NDCG@10", "HR@10", "MRR"}


def losses_of(ds, **kw):
    return [h["loss"] for h in train(model_for(ds), LeaveOneOut(ds), quick(eval_every=0, **kw)).history]


def test_options_change_the_run():
    ds = small()
    base = losses_of(ds)
    assert losses_of(ds) == base  # deterministic
    for kw in (
        dict(seed=1),
        dict(loss="bce"),
        dict(loss="bce", n_negatives=4),
        dict(lr=1e-2),
        dict(batch_size=8),
        dict(bucket=False),
        dict(betas=(0.5, 0.9)),
        dict(grad_clip=1e-4),
        dict(warmup_steps=3),
        dict(precision="bf16"),
    ):
        assert losses_of(ds, **kw) != base, kw
    bce = losses_of(ds, loss="bce", negative_sampling="uniform")
    for kw in (dict(negative_sampling="popularity"), dict(negative_sampling="mixed"), dict(loss="gbce", n_negatives=1)):
        assert losses_of(ds, loss=kw.pop("loss", "bce"), **kw) != bce, kw
    assert losses_of(ds, loss="gbce", n_negatives=4, gbce_t=0.2) != losses_of(ds, loss="gbce", n_negatives=4)
    assert losses_of(ds, loss="bce", negative_sampling="mixed", mix=0.9) != losses_of(
        ds, loss="bce", negative_sampling="mixed"
    )
    assert losses_of(ds, loss="bce", negative_sampling="popularity", pop_alpha=0.1) != losses_of(
        ds, loss="bce", negative_sampling="popularity"
    )


def test_schedule_in_history_and_weight_decay():
    ds = small()
    rows = train(model_for(ds), LeaveOneOut(ds), quick(epochs=3, eval_every=0)).history
    assert rows[0]["lr"] > rows[1]["lr"] > rows[2]["lr"] == pytest.approx(0.0)
    rows = train(model_for(ds), LeaveOneOut(ds), quick(epochs=3, eval_every=0, schedule="constant")).history
    assert [r["lr"] for r in rows] == [3e-3] * 3
    norms = {}
    for opt in ("adam", "adamw"):
        for wd in (0.0, 0.5):
            m = model_for(ds)
            train(m, LeaveOneOut(ds), quick(optimizer=opt, weight_decay=wd, eval_every=0, lr=1e-2))
            norms[opt, wd] = float(m.blocks[0].ffn.fc1.weight.detach().norm())
    assert norms["adamw", 0.5] < norms["adamw", 0.0] and norms["adam", 0.5] < norms["adam", 0.0]
    assert norms["adam", 0.0] == norms["adamw", 0.0] and norms["adam", 0.5] != norms["adamw", 0.5]


def test_grad_accum_equals_the_big_batch():
    ds = small(n_users=90)
    weights = []
    for bs, acc in ((32, 1), (16, 2), (8, 4)):
        m = model_for(ds, dropout=0.0)
        train(m, LeaveOneOut(ds), quick(batch_size=bs, grad_accum=acc, eval_every=0))
        weights.append(torch.cat([p.detach().ravel() for p in m.parameters()]))
    assert torch.allclose(weights[0], weights[1], atol=1e-5) and torch.allclose(weights[0], weights[2], atol=1e-5)


# ----------------------------------------------------------------- validation, files, resume
def test_early_stopping_keeps_the_best_weights(monkeypatch):
    ds = small()
    scores = iter([0.3, 0.5, 0.4, 0.2, 0.1, 0.9])
    monkeypatch.setattr(T, "evaluate", lambda s, loo, c: {"NDCG@10": next(scores) if c.split == "valid" else 0.0})
    snaps = {}
    m = model_for(ds)
    r = train(
        m,
        LeaveOneOut(ds),
        quick(epochs=6, patience=2),
        callback=lambda row: snaps.__setitem__(row["epoch"], {k: v.clone() for k, v in m.state_dict().items()}),
    )
    assert r.best_epoch == 2 and r.best_valid == {"NDCG@10": 0.5} and len(r.history) == 4
    assert all(torch.equal(v, snaps[2][k]) for k, v in m.state_dict().items())
    assert not m.training


def test_each_metrics_row_is_on_disk_before_the_next_epoch(tmp_path, monkeypatch):
    synced, seen, real = set(), [], os.fsync

    def fsync(fd):
        synced.add(os.fstat(fd).st_ino)
        real(fd)

    def after_epoch(row):
        rows = tmp_path / "metrics.jsonl"
        seen.append((len(rows.read_text().splitlines()), rows.stat().st_ino in synced))
        synced.clear()

    monkeypatch.setattr(os, "fsync", fsync)
    ds = small()
    train(model_for(ds), LeaveOneOut(ds), quick(epochs=3, eval_every=0), out_dir=tmp_path, callback=after_epoch)
    assert seen == [(1, True), (2, True), (3, True)]  # appended (a log), each row synced


def test_eval_every_and_eval_max_users_and_stop_by_callback(tmp_path):
    ds = small(n_users=80)
    r = train(
        model_for(ds),
        LeaveOneOut(ds),
        quick(epochs=5, eval_every=2, eval_max_users=10, patience=None),
        out_dir=tmp_path,
        callback=lambda row: row["epoch"] < 4,
    )
    assert [("valid" in h) for h in r.history] == [False, True, False, True]
    assert r.history[1]["valid"]["users"] == 10 and r.test["users"] == len(LeaveOneOut(ds).eval_users)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert {"epoch", "loss", "lr", "seconds", "seq_per_s"} <= set(rows[0]) and "valid" in rows[1]
    assert json.loads((tmp_path / "result.json").read_text())["best_epoch"] == r.best_epoch
    png = plot_run(tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SeqrecError, match="metrics.jsonl"):
        plot_run(tmp_path / "nowhere")


class Stop(Exception):
    pass


def test_resume_after_an_interrupted_epoch_gives_the_same_run(tmp_path):
    ds = small()
    cfg = quick(epochs=4, loss="bce", n_negatives=2, patience=None)
    full = train(model_for(ds), LeaveOneOut(ds), cfg, out_dir=tmp_path / "a")

    def stop_after_2(row):
        if row["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train(model_for(ds), LeaveOneOut(ds), cfg, out_dir=tmp_path / "b", callback=stop_after_2)
    resumed = train(model_for(ds, seed=5), LeaveOneOut(ds), cfg, out_dir=tmp_path / "b", resume=True)
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k and k != "seq_per_s"} for r in rows]
    assert strip(resumed.history) == strip(full.history)
    assert resumed.test == full.test and resumed.best_valid == full.best_valid
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "ce"},
        {"loss": "bce"},
        {
            "loss": "sampled-softmax",
            "n_negatives": 8,
            "in_batch_negatives": 8,
            "sparse_embeddings": True,
            "optimizer": "adamw",
            "weight_decay": 0.1,
        },
    ],
)
def test_resume_mid_epoch_from_step_checkpoints(tmp_path, monkeypatch, options):
    ds = small(n_users=90)
    cfg = quick(epochs=2, checkpoint_every_steps=2, eval_every=0, **options)
    full = train(model_for(ds), LeaveOneOut(ds), cfg, out_dir=tmp_path / "a")
    saves, save = [], T.Run.save

    def crash_inside_epoch_2(self):
        save(self)
        saves.append(self.st.step_in_epoch)
        if self.st.epoch == 1 and self.st.step_in_epoch > 0:
            raise Stop

    monkeypatch.setattr(T.Run, "save", crash_inside_epoch_2)
    with pytest.raises(Stop):
        train(model_for(ds), LeaveOneOut(ds), cfg, out_dir=tmp_path / "b")
    monkeypatch.setattr(T.Run, "save", save)
    assert saves[-1] > 0 and 0 in saves  # stopped inside epoch 2
    resumed = train(model_for(ds), LeaveOneOut(ds), cfg, out_dir=tmp_path / "b", resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test == full.test


def test_resume_refuses_changed_options_and_other_folders(tmp_path):
    ds = small()
    train(model_for(ds), LeaveOneOut(ds), quick(epochs=1), out_dir=tmp_path / "run")
    with pytest.raises(SeqrecError, match="lr"):
        train(model_for(ds), LeaveOneOut(ds), quick(epochs=2, lr=0.5), out_dir=tmp_path / "run", resume=True)
    r = train(model_for(ds), LeaveOneOut(ds), quick(epochs=2), out_dir=tmp_path / "run", resume=True)
    assert [h["epoch"] for h in r.history] == [1, 2]  # epochs may grow
    with pytest.raises(SeqrecError, match="out_dir"):
        train(model_for(ds), LeaveOneOut(ds), quick(), resume=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    with pytest.raises(SeqrecError, match="not a seqrec run"):
        train(model_for(ds), LeaveOneOut(ds), quick(), out_dir=tmp_path / "mine")
    with pytest.raises(SeqrecError, match="fp16"):
        train(model_for(ds), LeaveOneOut(ds), quick(precision="fp16", device="cpu"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    ds = small()
    call = Objective.__call__
    state = {"epoch2": False}

    def poisoned(self, *a, **k):
        loss = call(self, *a, **k)
        return loss * float("nan") if state["epoch2"] else loss

    monkeypatch.setattr(Objective, "__call__", poisoned)

    def arm(row):
        state["epoch2"] = True

    with pytest.raises(TrainingDiverged, match="diverged") as err:
        train(model_for(ds), LeaveOneOut(ds), quick(epochs=3), out_dir=tmp_path, callback=arm)
    assert isinstance(err.value, SeqrecError) and "checkpoint" in str(err.value)
    good = (tmp_path / "checkpoint.safetensors").read_bytes()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "checkpoint.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["seqrec_checkpoint"])
        assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys() if k.startswith("model."))
    assert meta["epoch"] == 1 and (tmp_path / "checkpoint.safetensors").read_bytes() == good
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_threads_and_devices(monkeypatch):
    ds = small()
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    r = train(model_for(ds), LeaveOneOut(ds), quick(epochs=1, threads=3, eval_every=0))
    assert calls == [3, 1]  # set for training, then restored
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(O.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(O.os, "getloadavg", lambda: (1.8, 1.0, 1.0))
    assert O.free_cores() == 1  # a busy machine: one thread
    monkeypatch.setattr(O.os, "getloadavg", lambda: (0.2, 1.0, 1.0))
    assert O.free_cores() is None  # idle: torch's default
    assert r.history[0]["threads"] == 1
    assert O.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert O.resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(SeqrecError, match="CUDA"):
            O.resolve_device("cuda")


def test_sasrec_beats_popularity_and_ar1_on_synthetic_order_that_shuffling_removes():
    """The embedded generator's series order: SASRec learns it (well above popularity and AR-1);
    trained on the same histories shuffled within each user, it gets nowhere near that margin."""
    import polars as pl

    from seqrec.data.dataset import CleanConfig
    from seqrec.data.synthetic.story import generate

    frame, catalog = generate(seed=3, n_users=600, n_items=400, n_series=50, n_hubs=10, mean_length=25, max_length=60)

    def run(frame):
        ds = Dataset.from_interactions(frame, catalog, CleanConfig(k_core=0))
        loo = LeaveOneOut(ds)
        torch.manual_seed(0)
        m = SASRecModel(SASRecConfig(n_items=ds.n_items, hidden=48, blocks=2, max_len=30, dropout=0.1))
        cfg = TrainConfig(loss="ce", epochs=40, batch_size=32, lr=5e-3, eval_every=0, quiet=True)
        base = {n: evaluate(make_baseline(n, loo), loo, EvalConfig())["NDCG@10"] for n in ("popularity", "markov")}
        return train(m, loo, cfg).test["NDCG@10"], base

    ordered, base = run(frame)
    shuffled, base_shuffled = run(frame.with_columns(pl.col("timestamp").shuffle(seed=1).over("user")))
    assert ordered >= 5 * base["popularity"], (ordered, base)
    assert ordered >= 1.3 * base["markov"], (ordered, base)
    assert shuffled < 2.5 * base_shuffled["popularity"], (shuffled, base_shuffled)
    assert ordered >= 2 * shuffled, (ordered, shuffled)


def test_eval_share_spaces_validations_by_their_measured_cost(tmp_path, monkeypatch):
    import seqrec.training.loop as train_module

    ds = small(n_users=80)
    real = train_module.evaluate

    def slow(*args, **kwargs):  # a validation that costs far more than an epoch
        t = time.perf_counter()
        out = real(*args, **kwargs)
        while time.perf_counter() - t < 0.3:
            pass
        return out

    monkeypatch.setattr(train_module, "evaluate", slow)
    r = train(model_for(ds), LeaveOneOut(ds), quick(epochs=12, eval_share=0.5, patience=None))
    validated = [h["epoch"] for h in r.history if "valid" in h]
    assert validated[0] == 1 and validated[-1] == 12 and 2 <= len(validated) < 12  # the first, then spaced out
    gaps = np.diff(validated[:-1])
    assert (gaps >= 2).all()
    with pytest.raises(SeqrecError, match="eval_share"):
        TrainConfig(eval_share=1.5)
