"""One evaluator for every model that implements ``Scorer``.

Protocols
---------
* ``full`` (default): every catalogue item is a candidate. Items in the user's *whole* input
  history are removed (``exclude_seen=True``). What happens when the target itself is one of
  them (users who repeat items) is ``seen_target``:

  - ``"miss"`` (default; RecTools, the SASRec+ paper): the target is removed like every other
    seen item, so the user counts as a miss (rank infinite: HR@K = NDCG@K = MRR = 0) and stays
    in the denominator.
  - ``"drop"`` (eSASRec): users whose target occurs in their input history, or whose target is
    cold (never in the training part of any user, ``loo.train()``), are left out of the evaluation
    altogether (metrics, denominator and coverage). ``users`` counts those evaluated and
    ``dropped_users`` those left out. With ``max_users`` the sample is drawn first, then dropped
    from, so every mode sees the same users.
  - ``"keep"`` (seqrec's earlier behaviour): the target is always scored, so a seen target
    competes only with unseen items. Optimistic on data with repeats; kept for comparison.

  With ``exclude_seen=False`` every item is a candidate: ``"miss"`` and ``"keep"`` are the same
  (the target is scored among all items) and ``"drop"`` still drops seen- and cold-target users.
* ``sampled`` (Kang & McAuley 2018): the target competes with ``n_negatives`` items the user never
  interacted with (not anywhere in the user's sequence, held-out targets included), drawn without
  replacement per user, uniformly or in proportion to training counts, from ``numpy``'s
  ``Generator(seed)``. Draws are reproducible for a given seed, user subset and batch size.
  ``seen_target`` has no effect here: the target is always scored and nobody is dropped.

Ranks are 0-based and **pessimistic**: a candidate whose score ties the target's counts against
the target. A model that gives every item the same score therefore ranks each target last among
its candidates and gets no free hits. NaN scores count as ``-inf``.

Metrics (one target per user, averaged over users)
--------------------------------------------------
* ``HR@K`` = 1 if rank < K; ``NDCG@K`` = 1 / log2(rank + 2) if rank < K else 0;
  ``MRR`` = 1 / (rank + 1) over the full rank (no cut-off).
* With a single relevant item ``Recall@K`` equals ``HR@K`` and ``Precision@K`` is ``HR@K / K``.
* ``Coverage@K``: the fraction of the catalogue's N items that appear in at least one user's
  top-K list. Under ``full`` the list is drawn from all candidates (seen items excluded); under
  ``sampled`` it is the top K of the user's 1 + n_negatives candidates, so it mostly measures how
  varied the sampled candidates are and is not comparable with the full-protocol value.
* ``users``: how many users were evaluated (the denominator); ``dropped_users``: how many were
  left out by ``seen_target="drop"`` (0 otherwise).
* ``targets`` (both protocols): ``"cold"`` keeps only users whose target never occurs in the training
  part (``loo.train()``: items nobody had interacted with when the model was trained), ``"warm"`` only
  the others; ``excluded_users`` (present only then) counts those left out. It applies after
  ``max_users``' sample and before ``seen_target="drop"`` (which leaves out cold targets itself).

Under ``sampled`` the negatives are never items of the user's sequence, so ``exclude_seen`` has
no effect there. ``ks`` is stored sorted and without repeats.

Memory
------
Users are taken ``batch_size`` at a time (the sampled protocol's negatives are drawn per such batch)
and scored and ranked in blocks of at most ``block_users`` of them, a number that follows from
``memory_budget``: the scorer's fixed part (``scorer_memory``: a baseline's matrices, a model's weights)
and the evaluator's own (per-user arrays, coverage flags) come first, then each user of a block costs
the scorer's bytes per history plus the evaluator's ranking buffers over the ``n_items + 1`` columns.
A budget that cannot hold the fixed part and one user is refused before any scoring, with the figures.
The baselines score a history the same whichever rows it is scored with, so their metrics do not
depend on the block size; a model scored by matrix products (SASRec) may differ in a float's last bits.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from seqrec.config import SEEN_TARGET, EvalConfig, parse_bytes  # noqa: F401  (re-exported)
from seqrec.data.split import Segments, Split
from seqrec.errors import SeqrecError
from seqrec.evaluation.beyond import ListStats, feature_rows, takers_of
from seqrec.evaluation.ranking import _MISS, NEG_INF, _bounded, _rank_block, _ranks, _update_coverage, rank_of_targets  # noqa: F401  (rank_of_targets and NEG_INF re-exported)
from seqrec.evaluation.sampling import sample_negatives

_CHUNK = 32  # rows ranked at a time on the CPU, in reused buffers (no fresh page-faulting allocations) small
# enough that a chunk's scores stay in the core's cache between the passes over them (score, rank, top K)
_CROP = 32  # leading all-PAD columns are cropped in steps of this many: the attention's blocks then see their
# terms in the same vector lanes, so the scores are the same to the last bit as with the whole max_len
_RANK_BYTES = 6  # per candidate column of a row being ranked: float32 work copy, bool flags, bool exclusions
_USER_BYTES = 64  # per evaluated user: inputs, selection, targets, ranks


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores every item for a batch of histories (baselines, SASRec)."""

    max_len: int
    n_items: int

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """[B, L] left-padded internal item ids (0 = PAD) -> [B, n_items + 1] scores (column 0 ignored)."""
        ...


# --------------------------------------------------------------------------- pure helpers


def metrics_from_ranks(ranks: torch.Tensor | np.ndarray, ks: tuple[int, ...] | list[int]) -> dict[str, float]:
    """HR@K, NDCG@K, Precision@K, Recall@K for each K and MRR from 0-based ranks (one target per user).

    A rank of ``math.inf`` (a target that was not a candidate) is a miss at every K with MRR 0.
    """
    r = ranks if isinstance(ranks, torch.Tensor) else torch.as_tensor(np.asarray(ranks))
    r = r.detach().cpu().double()
    if r.numel() == 0:
        raise SeqrecError("no ranks to compute metrics from (no users evaluated)")
    out: dict[str, float] = {}
    for k in ks:
        hit = (r < k).double()
        hr = float(hit.mean())
        out[f"HR@{k}"] = hr
        out[f"NDCG@{k}"] = float((hit / torch.log2(r + 2)).mean())
        out[f"Precision@{k}"] = hr / k
        out[f"Recall@{k}"] = hr
    out["MRR"] = float((1.0 / (r + 1)).mean())
    return out


# --------------------------------------------------------------------------- memory
def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def scorer_memory(scorer: Scorer) -> tuple[int, int]:
    """(bytes the scorer holds, bytes it needs per history scored).

    A scorer that has ``memory_bytes()`` says so itself (the baselines do). A torch module (SASRec), or a
    view with one as ``.model``, is estimated: its parameters and buffers twice (the output embeddings
    may be made afresh), and per history its float32 score row plus its activations (``max_len`` x
    ``hidden`` x 16 floats and ``heads`` x ``max_len``² x 3 attention values). Any other scorer: two
    float32 score rows per history.
    """
    own = getattr(scorer, "memory_bytes", None)
    if callable(own):
        fixed, per_row = own()
        return int(fixed), int(per_row)
    width = int(scorer.n_items) + 1
    model = scorer if isinstance(scorer, torch.nn.Module) else getattr(scorer, "model", None)
    if not isinstance(model, torch.nn.Module):
        return 0, 8 * width
    held = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
    config = getattr(model, "config", None)
    length, hidden = int(scorer.max_len), int(getattr(config, "hidden", 64))
    heads = int(getattr(config, "heads", 1))
    return 2 * held, 4 * width + 4 * length * hidden * 16 + 4 * heads * length * length * 3


def block_users(scorer: Scorer, n_items: int, config: EvalConfig, n_users: int = 0) -> int:
    """How many users are scored and ranked at a time under ``config.memory_budget`` (at most
    ``config.batch_size``); a ``SeqrecError`` with the figures when not even one fits."""
    fixed, per_row = scorer_memory(scorer)
    width = n_items + 1
    own = _USER_BYTES * n_users + width * (len(config.ks) + 8)  # per-user arrays, coverage flags, counts
    if config.protocol == "sampled":
        per_row += 8 * config.n_negatives * 4 + 8 * int(scorer.max_len) * 3
    else:
        per_row += _RANK_BYTES * width + 8 * int(scorer.max_len) * 3
    budget = config.budget_bytes
    rows = (budget - fixed - own) // per_row
    if rows < 1:
        name = getattr(scorer, "name", type(scorer).__name__)
        raise SeqrecError(
            f"memory_budget {config.memory_budget!r} ({_size(budget)}) is too small: the {name} scorer holds "
            f"{_size(fixed)}, the evaluation of {n_users:,} users over {n_items:,} items needs {_size(own)} and "
            f"each user scored {_size(per_row)}; give at least {_size(fixed + own + per_row)} (more users at a "
            f"time need more)"
        )
    return int(min(rows, config.batch_size))


def check_budget(n_items: int, config: EvalConfig) -> None:
    """Refuse, before any model is fitted, a ``memory_budget`` that cannot hold one user's float32 scores
    over ``n_items + 1`` columns and the buffers that rank them."""
    need = (4 + _RANK_BYTES) * (n_items + 1)
    if config.budget_bytes < need:
        raise SeqrecError(
            f"memory_budget {config.memory_budget!r} ({_size(config.budget_bytes)}) is too small: "
            f"one user's scores over {n_items:,} items and their ranking need {_size(need)}"
        )


# --------------------------------------------------------------------------- evaluation
def _select_users(n_users: int, config: EvalConfig) -> np.ndarray:
    if config.max_users is None or config.max_users >= n_users:
        return np.arange(n_users)
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(n_users, size=config.max_users, replace=False))


def _checked(scores: torch.Tensor, batch: int, n_items: int) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or tuple(scores.shape) != (batch, n_items + 1):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise SeqrecError(f"scorer returned {shape}, expected [{batch}, {n_items + 1}] scores")
    return scores.detach()


def _product_scorer(scorer: Scorer) -> Any:
    """The model itself when its scores are ``last_hidden(histories) @ item_embeddings().T`` on the CPU (SASRec):
    the evaluator then takes that product a chunk of rows at a time straight into its ranking buffer, and crops
    the histories' leading all-PAD columns. None for any other scorer (its ``score`` is called)."""
    if not isinstance(scorer, torch.nn.Module) or not all(
        callable(getattr(scorer, name, None)) for name in ("last_hidden", "item_embeddings")
    ):
        return None
    weights = scorer.item_embeddings()  # type: ignore[operator]  # checked callable above
    return scorer if weights.device.type == "cpu" and weights.dtype == torch.float32 else None


def _target_seen(segs: Segments, targets: np.ndarray) -> np.ndarray:
    """Whether ``targets[u]`` occurs in ``segs.sequence(u)``, for every row: bool [len(segs)]."""
    out = np.zeros(len(segs), dtype=bool)
    for block in segs.blocks():
        rows = np.arange(block.start, block.stop)
        r, i = segs.subset(rows).flat()
        out[block.start + r[i == targets[rows][r]]] = True
    return out


def evaluate(scorer: Scorer, loo: Split, config: EvalConfig = EvalConfig(), progress: bool = False) -> dict[str, float]:
    """Evaluate ``scorer`` on the validation or test targets of ``loo``; see the module notes.

    Returns ``HR@K, NDCG@K, Precision@K, Recall@K, Coverage@K`` for each K in ``config.ks``, ``MRR``,
    ``users`` (evaluated) and ``dropped_users``. Ranks are pessimistic: ties with the target count
    against it, so a constant scorer ranks every target last among its candidates (no free hits).
    Under ``full`` a target the user already had is a miss by default (``config.seen_target``).
    """
    n_items = loo.data.n_items
    if int(scorer.n_items) != n_items:
        raise SeqrecError(f"scorer knows {scorer.n_items} items but the data set has {n_items}")
    users, segs, targets = loo.inputs(config.split)
    if len(users) == 0:
        raise SeqrecError(f"no users to evaluate: nobody has at least 3 interactions ({loo.data.n_users} users)")
    sel = _select_users(len(users), config)
    block = block_users(scorer, n_items, config, len(users))  # before any work: a budget too small is refused
    sampled = config.protocol == "sampled"
    dropped = excluded = 0
    if config.targets != "all":
        cold = loo.train().counts(n_items)[targets[sel]] == 0
        other = ~cold if config.targets == "cold" else cold
        excluded, sel = int(other.sum()), sel[~other]
        if len(sel) == 0:
            raise SeqrecError(
                f"no users to evaluate: targets={config.targets!r} left out all {excluded} users (no "
                f"{config.targets} target in the {config.split} split)"
            )
    if not sampled and config.seen_target == "drop":
        cold = loo.train().counts(n_items)[targets[sel]] == 0
        left_out = cold | _target_seen(segs.subset(sel), targets[sel])
        dropped, sel = int(left_out.sum()), sel[~left_out]
        if len(sel) == 0:
            raise SeqrecError(
                f"no users to evaluate: seen_target='drop' left out all {dropped} users (every target was "
                "already in the user's history or never in training); use seen_target='miss' or 'keep'"
            )
    miss = not sampled and config.exclude_seen and config.seen_target == "miss"
    rng = np.random.default_rng(config.seed)
    weights = None
    if sampled:
        if config.negatives == "popularity":
            weights = loo.train().counts(n_items).astype(np.float64)
        o = loo.data.offsets
        whole = Segments(loo.data.items, o[users], o[users + 1])
    cover: ListStats | None = None
    ranks = np.empty(len(sel), dtype=np.int64)  # filled in place: no list of small tensors kept between blocks
    done = 0
    max_len = int(scorer.max_len)
    product = None if sampled else _product_scorer(scorer)
    if product is not None:
        # users of like history lengths scored together, each block cropped to its longest history; their ranks
        # are written back in the users' order, so the metrics are summed in the same order as before
        order = np.argsort(np.minimum(segs.lengths[sel], max_len), kind="stable")
        batches = [order[i : i + config.batch_size] for i in range(0, len(sel), config.batch_size)]
        items_t = product.item_embeddings().detach()
    else:
        batches = [sel[i : i + config.batch_size] for i in range(0, len(sel), config.batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"evaluate {config.split} ({config.protocol})", unit="batch")
    work = flags = None
    with torch.inference_mode():
        for batch in batches:
            if product is not None:
                for lo in range(0, len(batch), block):
                    at = batch[lo : lo + block]  # positions in sel
                    rows = sel[at]
                    longest = int(min(max_len, segs.lengths[rows].max(initial=0)))
                    width = max_len - _CROP * ((max_len - longest) // _CROP)
                    h = product.last_hidden(segs.left_padded(width, rows)).float()
                    if work is None:
                        cover = _list_stats(loo, config, "cpu")
                        work = torch.empty((_CHUNK, n_items + 1), dtype=torch.float32)
                        flags = torch.empty((_CHUNK, n_items + 1), dtype=torch.bool)
                    tgt = torch.from_numpy(targets[rows])
                    got = np.empty(len(rows), dtype=np.int64)
                    finite = _bounded(h, items_t)
                    fill = lambda a, b, w, h=h: torch.mm(h[a:b], items_t.T, out=w)
                    _rank_block(fill, rows, tgt, segs, config.exclude_seen, miss, work, flags, cover, got, finite)
                    ranks[at] = got
                continue
            if sampled:
                negatives = sample_negatives(whole.subset(batch), n_items, config.n_negatives, rng, weights)
            for lo in range(0, len(batch), block):
                rows = batch[lo : lo + block]
                histories = segs.left_padded(max_len, rows)
                scores = _checked(scorer.score(histories), len(rows), n_items)
                del histories
                dev = scores.device
                if cover is None:
                    cover = _list_stats(loo, config, dev)
                tgt = torch.from_numpy(targets[rows]).to(dev)
                if sampled:
                    negs = torch.from_numpy(negatives[lo : lo + len(rows)]).to(dev)
                    cand = torch.cat([tgt[:, None], negs], dim=1)
                    cand_scores = scores.gather(1, cand).float()
                    cand_scores.nan_to_num_(nan=NEG_INF, posinf=math.inf, neginf=NEG_INF)
                    ranks[done : done + len(rows)] = _ranks(cand_scores, torch.zeros_like(tgt)).cpu().numpy()
                    done += len(rows)
                    _update_coverage(cover, cand_scores, cand)
                    del scores, cand_scores  # freed before the next block is scored
                    continue
                if work is None or work.device != dev:
                    chunk = min(_CHUNK, block) if dev.type == "cpu" else block  # accelerators: the whole block
                    work = torch.empty((chunk, n_items + 1), dtype=torch.float32, device=dev)
                    flags = torch.empty((chunk, n_items + 1), dtype=torch.bool, device=dev)
                fill = lambda a, b, w, scores=scores: w.copy_(scores[a:b])
                _rank_block(fill, rows, tgt, segs, config.exclude_seen, miss, work, flags, cover, ranks[done:])
                done += len(rows)
                del scores  # freed before the next block is scored
    as_float = torch.from_numpy(ranks).double()
    out: dict[str, Any] = metrics_from_ranks(as_float.masked_fill(as_float == _MISS, math.inf), config.ks)
    beyond = cover.metrics() if cover is not None else {}
    out.update(beyond)
    out["users"], out["dropped_users"] = len(sel), dropped
    keys = _key_order(config.ks)
    keys[keys.index("MRR") : keys.index("MRR")] = [key for key in beyond if not key.startswith("Coverage")]
    keys += ["excluded_users"] if config.targets != "all" else []
    out["excluded_users"] = excluded
    return {key: out[key] for key in keys}


def _list_stats(loo: Split, config: EvalConfig, device: Any) -> ListStats:
    """The accumulator of the top-k lists: novelty and popularity from the training part, diversity from the
    catalogue's features (``seqrec.evaluation.beyond``)."""
    n_items = loo.data.n_items
    takers, users = takers_of(loo.train(), n_items)
    return ListStats(config.ks, n_items, device, takers, users, feature_rows(loo.data.catalog, n_items))


def _key_order(ks: tuple[int, ...]) -> list[str]:
    keys = [f"{m}@{k}" for m in ("HR", "NDCG", "Precision", "Recall", "Coverage") for k in ks]
    return keys + ["MRR", "users", "dropped_users"]
