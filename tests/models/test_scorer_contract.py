"""The ``Scorer`` contract, one suite run by every scorer: each baseline, SASRec after a tiny training
run, and SASRec's ONNX export as the recommender's ``"onnx"`` backend runs it.

A scorer maps left-padded internal ids [B, L] to scores [B, n_items + 1] (column 0, PAD, ignored). It
must be finite on the items, blind to extra PAD columns on the left and to anything left of its last
``max_len`` columns, deterministic, and score a row the same alone as in a batch; and the evaluator,
excluding seen items, must give a seen item no rank whatever it scores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.config import TrainConfig
from seqrec.data.dataset import PAD, CleanConfig, Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.data.synthetic.story import generate
from seqrec.evaluation.evaluator import EvalConfig, evaluate
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.serving.recommender import Recommender
from seqrec.training.loop import train

SCORERS = [*BASELINES, "sasrec", "sasrec-onnx"]
B = 8  # histories per batch in the checks


class OnnxScorer:
    """SASRec's ONNX graph behind the ``Scorer`` interface, as the recommender feeds it: the last
    ``max_len`` items, left-padded to exactly ``max_len`` columns (the graph's fixed width)."""

    def __init__(self, model: SASRecModel, dataset: Dataset) -> None:
        self.rec = Recommender(model, dataset, backend="onnx")  # a private export
        self.max_len, self.n_items = model.max_len, model.n_items

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = histories[:, -self.max_len :]
        batch = torch.full((len(h), self.max_len), PAD, dtype=torch.long)
        batch[:, self.max_len - h.shape[1] :] = h
        return self.rec._score(batch)


@pytest.fixture(scope="module")
def loo() -> LeaveOneOut:
    inter, cat = generate(seed=5, n_users=60, n_items=300, n_genres=3, n_series=10, n_hubs=4, max_length=50)
    return LeaveOneOut(Dataset.from_interactions(inter, cat, config=CleanConfig(k_core=0), name="contract"))


@pytest.fixture(scope="module")
def sasrec(loo: LeaveOneOut) -> SASRecModel:
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=loo.data.n_items, hidden=16, blocks=1, heads=1, max_len=8))
    train(model, loo, TrainConfig(epochs=1, batch_size=16, quiet=True, device="cpu", threads=1, eval_every=0))
    return model.eval()


@pytest.fixture(scope="module")
def built() -> dict:
    return {}


@pytest.fixture(params=SCORERS)
def scorer(request, loo: LeaveOneOut, built: dict):
    name = request.param
    if name not in built:
        if name == "sasrec":
            built[name] = request.getfixturevalue("sasrec")
        elif name == "sasrec-onnx":
            pytest.importorskip("onnxruntime")
            built[name] = OnnxScorer(request.getfixturevalue("sasrec"), loo.data)
        else:
            built[name] = make_baseline(name, loo)
    return built[name]


def tol(scorer) -> dict:
    """Matrix products (Genre, SASRec) may round differently with the batch shape; onnxruntime more so."""
    close = 1e-4 if isinstance(scorer, OnnxScorer) else 1e-5
    return {"rtol": close, "atol": close}


def histories(loo: LeaveOneOut, scorer, users: int = B) -> torch.Tensor:
    """The first users' test histories as the evaluator builds them: [users, max_len], left-padded."""
    _, segs, _ = loo.inputs("test")
    return segs.left_padded(int(scorer.max_len), np.arange(users))


def scores(scorer, h: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return scorer.score(h).float()


def test_shape_and_finite_item_scores(scorer, loo: LeaveOneOut) -> None:
    out = scores(scorer, histories(loo, scorer))
    assert out.shape == (B, loo.data.n_items + 1) and scorer.n_items == loo.data.n_items
    assert torch.isfinite(out[:, 1:]).all()  # column 0 is PAD: no consumer reads it


def test_more_padding_on_the_left_changes_nothing(scorer, loo: LeaveOneOut) -> None:
    h = histories(loo, scorer).clone()
    h[0, :-1] = PAD  # one history of a single item, whatever max_len
    padded = torch.cat([torch.full((len(h), 3), PAD, dtype=h.dtype), h], dim=1)
    torch.testing.assert_close(scores(scorer, padded), scores(scorer, h), **tol(scorer))


def test_only_the_last_max_len_columns_matter(scorer, loo: LeaveOneOut) -> None:
    h = histories(loo, scorer)
    g = torch.Generator().manual_seed(0)
    older = torch.randint(1, loo.data.n_items + 1, (len(h), 4), generator=g)
    torch.testing.assert_close(scores(scorer, torch.cat([older, h], dim=1)), scores(scorer, h), **tol(scorer))


def test_two_calls_are_equal(scorer, loo: LeaveOneOut) -> None:
    h = histories(loo, scorer)
    assert torch.equal(scores(scorer, h), scores(scorer, h))


def test_a_batch_equals_its_rows_one_by_one(scorer, loo: LeaveOneOut) -> None:
    h = histories(loo, scorer)
    batch = scores(scorer, h)
    singles = torch.cat([scores(scorer, h[i : i + 1]) for i in range(len(h))])
    torch.testing.assert_close(batch, singles, **tol(scorer))


class SeenFirst:
    """``scorer`` with every item of the history it is given scored above all others."""

    def __init__(self, scorer) -> None:
        self.scorer, self.max_len, self.n_items = scorer, scorer.max_len, scorer.n_items

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        out = self.scorer.score(histories).float().clone()
        pad = out[:, PAD].clone()
        out.scatter_(1, histories.long(), 1e6)
        out[:, PAD] = pad
        return out


def test_a_seen_item_gets_no_rank(scorer, loo: LeaveOneOut) -> None:
    cfg = EvalConfig(ks=(1, 10), max_users=40)
    plain, boosted = evaluate(scorer, loo, cfg), evaluate(SeenFirst(scorer), loo, cfg)
    assert boosted == plain  # excluded: where a seen item scores makes no difference
    kept = EvalConfig(ks=(1, 10), max_users=40, exclude_seen=False)
    assert evaluate(SeenFirst(scorer), loo, kept) != evaluate(scorer, loo, kept)  # not excluded, it would
