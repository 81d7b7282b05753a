"""Training at large catalogues: what a step allocates does not grow with the number of items, the peak
memory of a run is its item table, the optimizer's two moments and a constant, and the lazy optimizer of
``sparse_embeddings`` is Adam / AdamW on the rows a step touches."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from seqrec.config import TrainConfig
from seqrec.data.dataset import Dataset, IdMap
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.training.loop import Run
from seqrec.training.optim import LazyAdam, LazyAdamW, _optimizer, clip_grad_norm

N_ITEMS, HIDDEN = 200_000, 64
TABLE = (N_ITEMS + 1) * HIDDEN * 4  # bytes of the item embedding (float32)


def catalogue(n_items: int, n_users: int = 300, length: int = 30, seed: int = 0) -> Dataset:
    """Every user ``length`` events, Zipf popularity over all ``n_items`` items (most never occur)."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, n_items + 1))
    items = np.searchsorted(cdf / cdf[-1], rng.random(n_users * length)).astype(np.int32) + 1
    raw = pl.Series("raw_id", np.arange(n_items).astype(str))
    cat = pl.DataFrame({"item": np.arange(1, n_items + 1, dtype=np.int32), "raw_id": raw}).with_columns(
        pl.lit(None, dtype=pl.String).alias("title"),
        pl.lit([], dtype=pl.List(pl.String)).alias("genres"),
        pl.lit(None, dtype=pl.Int32).alias("year"),
    )
    return Dataset(
        offsets=np.arange(0, n_users * length + 1, length, dtype=np.int64),
        items=items,
        user_ids=IdMap(np.arange(n_users), 0),
        item_ids=IdMap(raw, 1),
        catalog=cat,
    )


def run_for(n_items: int, **options) -> Run:
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=n_items, hidden=HIDDEN, blocks=1, max_len=30))
    cfg = TrainConfig(
        **{
            "loss": "sampled-softmax",
            "epochs": 1,
            "batch_size": 16,
            "quiet": True,
            "device": "cpu",
            "threads": 1,
            "eval_every": 0,
            **options,
        }
    )
    return Run(model, LeaveOneOut(catalogue(n_items)), cfg, None)


class FreshTensors(TorchDispatchMode):
    """The largest tensor any op makes (a sparse one by its indices and values; views and in-place
    results, which share an input's storage, are not new)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest, self.op = 0, ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for a in (*args, *(kwargs or {}).values())
            for t in (a if isinstance(a, (list, tuple)) else [a])
            if isinstance(t, torch.Tensor) and t.layout == torch.strided
        }
        for o in out if isinstance(out, (list, tuple)) else [out]:
            if not isinstance(o, torch.Tensor):
                continue
            if o.is_sparse:
                size = o._values().nbytes + o._indices().nbytes
            elif o.layout == torch.strided and o.untyped_storage().data_ptr() not in inputs:
                size = o.untyped_storage().nbytes()
            else:
                continue
            if size > self.largest:
                self.largest, self.op = size, str(func)
        return out


@pytest.mark.parametrize(
    "options",
    [
        {"n_negatives": 256},  # shared uniform negatives
        {
            "n_negatives": 128,
            "negative_sampling": "popularity",
            "in_batch_negatives": 64,
            "optimizer": "adamw",
            "weight_decay": 0.01,
        },
        {"loss": "gbce", "n_negatives": 16},  # per-position negatives
    ],
)
def test_no_step_allocates_anything_catalogue_sized(options):
    run = run_for(N_ITEMS, sparse_embeddings=True, **options)
    plan = run.data.plan(1)
    run._step(1, 0, *plan[0], 0.0)  # the first step makes the optimizer's moments
    for i in range(1, 4):
        with FreshTensors() as seen:
            run._step(1, i, *plan[i], 0.0)
        assert seen.largest < TABLE / 8, (seen.op, seen.largest)
    # the dense embedding gradient is the one catalogue-sized tensor of the default path
    run = run_for(N_ITEMS, **options)
    run._step(1, 0, *plan[0], 0.0)
    with FreshTensors() as seen:
        run._step(1, 1, *plan[1], 0.0)
    assert seen.largest == TABLE and "embedding_dense_backward" in seen.op


def _child(n_items: int, sparse: bool) -> None:
    run = run_for(n_items, sparse_embeddings=sparse, n_negatives=256, in_batch_negatives=64)
    plan = run.data.plan(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for i in range(6):
        run._step(1, i, *plan[i], 0.0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"grew": after - before}))


def peak_growth(n_items: int, *sparse: bool) -> list[int]:
    """``_child``'s growth for each of ``sparse``, in fresh processes run side by side."""
    code = "import sys; sys.path.insert(0, {!r}); import test_scale_train as t; t._child({}, {})"
    here = str(__file__.rsplit("/", 1)[0])
    procs = [
        subprocess.Popen([sys.executable, "-c", code.format(here, n_items, s)], stdout=subprocess.PIPE, text=True)
        for s in sparse
    ]
    outs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    return [json.loads(out.strip().splitlines()[-1])["grew"] for out in outs]


def test_peak_memory_is_the_table_its_two_moments_and_a_constant():
    """Peak RSS over six steps at 200k items with ``sparse_embeddings``, in a fresh process, from the set-up
    run (table included): the two moments (2 tables) and a constant (about 25 MB here). The default path's
    dense gradient is one table more (``test_no_step_allocates_anything_catalogue_sized``)."""
    (grew,) = peak_growth(N_ITEMS, True)
    assert grew <= 2 * TABLE + 40 * 2**20, grew / 2**20


def test_lazy_adam_is_adam_on_the_rows_a_step_touches():
    torch.manual_seed(0)
    for lazy_cls, plain_cls in ((LazyAdam, torch.optim.Adam), (LazyAdamW, torch.optim.AdamW)):
        w0 = torch.randn(6, 3)
        lazy_w, plain_w = w0.clone().requires_grad_(), w0.clone().requires_grad_()
        lazy = lazy_cls([lazy_w], lr=0.1, weight_decay=0.3)
        plain = plain_cls([plain_w], lr=0.1, weight_decay=0.3)
        for _ in range(3):  # every row has a gradient each step: the same as the dense optimizer
            g = torch.randn(6, 3)
            lazy_w.grad = g.to_sparse()
            plain_w.grad = g.clone()
            lazy.step()
            plain.step()
        torch.testing.assert_close(lazy_w, plain_w)
        torch.testing.assert_close(lazy.state[lazy_w]["exp_avg_sq"], plain.state[plain_w]["exp_avg_sq"])
        before = lazy_w.detach().clone()
        lazy_w.grad = torch.sparse_coo_tensor(
            torch.tensor([[1, 4, 1]]), torch.ones(3, 3), (6, 3), check_invariants=True
        )  # row 1 twice
        lazy.step()
        changed = (lazy_w.detach() != before).any(1)
        assert changed.tolist() == [False, True, False, False, True, False]


def test_clipping_counts_sparse_gradients_as_their_dense_form():
    torch.manual_seed(0)
    a, b = torch.randn(5, 2, requires_grad=True), torch.randn(3, requires_grad=True)
    g_a = torch.sparse_coo_tensor(torch.tensor([[0, 3, 0]]), torch.randn(3, 2), (5, 2), check_invariants=True)
    g_b = torch.randn(3)
    a.grad, b.grad = g_a.clone(), g_b.clone()
    total = clip_grad_norm([a, b], 0.5)
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    a2.grad, b2.grad = g_a.to_dense(), g_b.clone()
    want = torch.nn.utils.clip_grad_norm_([a2, b2], 0.5)
    torch.testing.assert_close(total, want)
    torch.testing.assert_close(a.grad.to_dense(), a2.grad)
    torch.testing.assert_close(b.grad, b2.grad)


def test_sparse_embeddings_is_optional_and_refused_with_item_features():
    model = SASRecModel(SASRecConfig(n_items=10, hidden=8))
    _optimizer(model, TrainConfig(sparse_embeddings=True), torch.device("cpu"))
    assert model.item_emb.sparse
    _optimizer(model, TrainConfig(), torch.device("cpu"))  # the dense default (e.g. under DDP) resets it
    assert not model.item_emb.sparse
    model.features = object()  # stands for a model with feature layers
    with pytest.raises(SeqrecError, match="sparse_embeddings"):
        _optimizer(model, TrainConfig(sparse_embeddings=True), torch.device("cpu"))
