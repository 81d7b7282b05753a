"""Recipes: the model and training options used where no flag or keyword says otherwise.

``auto`` (the default) reads the data set's statistics (history lengths of the training part,
catalogue size, interactions) and picks the settings this project measured best for data like it
(see ``docs/results.md``); ``paper`` is the 2018 paper's setup (BCE with one negative per
position, the authors' block, no schedule); ``sasrec+`` is the SASRec+ paper's (Klenitskiy &
Vasilev, RecSys 2023: full cross-entropy, constant learning rate, Adam's default betas).

A recipe only fills options the user did not give: every explicit flag or keyword wins. The
chosen values, with the reason for each, are printed when training starts and saved in the model
folder's ``config.json`` (key ``recipe``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError

RECIPES = ("auto", "paper", "sasrec+")
LONG_HISTORIES = 50  # median training history at least this long: MovieLens-like (max_len 200 in the papers)
LARGE = 300_000  # training interactions from which dense data needs little dropout
CE_MAX_ITEMS = 40_000  # full cross-entropy up to this catalogue size; sampled softmax above it
SAMPLED_NEGATIVES = 2048
STEPS_PER_EPOCH = 400  # users per epoch / batch size aimed at (batches of 16 to 128 sequences)
COMPUTE_BUDGET = 80e12  # floating-point operations of training the auto recipe aims at (epochs follow)
SPARSE_DROPOUT = 0.5  # short histories: the strongest published full cross-entropy runs used 0.5 to 0.7
SPARSE_MIN_BATCH = 64  # short histories under heavy dropout: less gradient noise per step than batches of 16-32
SPARSE_STEPS = 10_500  # optimizer steps the cosine spans on sparse data (Beauty: validation peaked after about
# 10,000 steps at a constant rate with dropout 0.3, then overfitted; the cosine anneals by then)
EVAL_SHARE = 0.1  # validation's share of the wall time at most
EVAL_RANK_FLOPS = 64  # ranking one score (exclusions, comparison, top K) costs about this many flops' time
MIN_EVAL_USERS = 10_000  # a validation sample is never smaller (NDCG@10's noise grows as users shrink)


@dataclass(frozen=True)
class DataStats:
    """What a recipe reads from a data set (training part: every user's held-out items removed)."""

    users: int
    items: int
    interactions: int
    length_p50: float
    length_p90: float
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False)

    @classmethod
    def of(cls, ds: Dataset) -> DataStats:
        lengths = ds.lengths - np.where(ds.lengths >= 3, 2, 0)  # the leave-one-out training part
        p50, p90 = np.percentile(lengths, [50, 90]) if len(lengths) else (0.0, 0.0)
        return cls(ds.n_users, ds.n_items, int(lengths.sum()), float(p50), float(p90), lengths)

    def eval_flops(self, hidden: int, blocks: int, max_len: int) -> float:
        """Rough cost of one full-ranking validation, in flops' time: the forward pass over every evaluated
        user's (cropped) history, the score product over every item and its ranking."""
        users = int((self.lengths >= 1).sum())
        read = float(np.minimum(self.lengths, max_len).mean()) if len(self.lengths) else 0.0
        width = min(max_len, read + 16)  # histories are cropped in steps of 32 columns
        forward = users * width * 2 * hidden * (12 * hidden * blocks + 2 * max_len * blocks)
        return float(forward + users * (self.items + 1) * (2 * hidden + EVAL_RANK_FLOPS))

    def flops_per_epoch(self, hidden: int, blocks: int, max_len: int, scored: int) -> float:
        """Rough training cost of one epoch: forward and backward (x3) of the loss over ``scored``
        items and of the blocks' matrix products and attention, at every trained position."""
        positions = int(np.minimum(np.maximum(self.lengths - 1, 0), max_len).sum())  # one example per user
        per_position = 2 * 3 * hidden * (scored + 12 * hidden * blocks + 2 * max_len * blocks)
        return float(positions) * per_position


@dataclass(frozen=True)
class Recipe:
    name: str
    options: dict[str, Any]  # option name -> value (model and training options)
    reasons: dict[str, str] = field(default_factory=dict)  # option name -> why

    def describe(self, explicit: dict[str, Any] | None = None) -> str:
        """One line per option: the recipe's value and why, or the explicit value that replaced it."""
        explicit = explicit or {}
        lines = [f"recipe {self.name}:"]
        for k, v in self.options.items():
            if k in explicit:
                lines.append(f"  {k} = {explicit[k]!r} (given; the recipe says {v!r})")
            else:
                why = f"  ({self.reasons[k]})" if k in self.reasons else ""
                lines.append(f"  {k} = {v!r}{why}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
            "reasons": dict(self.reasons),
        }


def _max_len(s: DataStats) -> tuple[int, str]:
    ml = int(min(200, max(50, 50 * np.ceil(s.length_p90 / 50))))
    return ml, f"90% of training histories have at most {s.length_p90:.0f} items"


def paper(s: DataStats) -> Recipe:
    """Kang & McAuley 2018: d=50, 2 blocks, 1 head, BCE with one negative, Adam (0.9, 0.98) at 1e-3,
    batch 128; max length 200 and dropout 0.2 for MovieLens-like data, 50 and 0.5 for sparse data."""
    long = s.length_p50 >= LONG_HISTORIES
    why = f"median training history {s.length_p50:.0f} items: " + (
        "long (paper's ML-1M setting)" if long else "short (paper's sparse-data setting)"
    )
    opts = dict(
        hidden=50,
        blocks=2,
        heads=1,
        max_len=200 if long else 50,
        dropout=0.2 if long else 0.5,
        activation="relu",
        norm="paper",
        loss="bce",
        n_negatives=1,
        lr=1e-3,
        betas=(0.9, 0.98),
        batch_size=128,
        schedule="constant",
        warmup_steps=0,
        grad_clip=None,
        epochs=200,
        patience=20,
        bucket=False,
    )
    return Recipe("paper", opts, {"max_len": why, "dropout": why})


def sasrec_plus(s: DataStats) -> Recipe:
    """Klenitskiy & Vasilev 2023 (SASRec+): full cross-entropy, d=64, 2 blocks, 1 head, dropout 0.1,
    Adam's default betas at a constant 1e-3, batch 128, up to 100 epochs with patience 10; max length
    200 for MovieLens-like data, 50 otherwise."""
    long = s.length_p50 >= LONG_HISTORIES
    opts = dict(
        hidden=64,
        blocks=2,
        heads=1,
        max_len=200 if long else 50,
        dropout=0.1,
        activation="relu",
        norm="paper",
        loss="ce",
        lr=1e-3,
        betas=(0.9, 0.999),
        batch_size=128,
        schedule="constant",
        warmup_steps=0,
        grad_clip=None,
        epochs=100,
        patience=10,
        bucket=False,
    )
    return Recipe("sasrec+", opts, {"max_len": f"median training history {s.length_p50:.0f} items"})


def auto(s: DataStats) -> Recipe:
    """This project's recipe, from the data's statistics (measurements in docs/results.md)."""
    max_len, why_len = _max_len(s)
    reasons = {"max_len": why_len}
    opts: dict[str, Any] = dict(max_len=max_len, hidden=64, blocks=2, heads=1)
    sparse = s.length_p50 < LONG_HISTORIES
    if not sparse:
        opts["dropout"] = 0.1 if s.interactions >= LARGE else 0.2
        reasons["dropout"] = (
            f"dense data (median training history {s.length_p50:.0f} items), {s.interactions:,} training interactions"
        )
    else:
        opts["dropout"] = SPARSE_DROPOUT
        reasons["dropout"] = (
            f"sparse data (median training history {s.length_p50:.0f} items): heavy dropout keeps "
            f"the model from memorising, as the best published full cross-entropy runs on 5-core "
            f"Amazon data (0.5-0.7)"
        )
    if s.items <= CE_MAX_ITEMS:
        opts["loss"] = "ce"
        reasons["loss"] = f"{s.items:,} items: full cross-entropy is affordable (at most {CE_MAX_ITEMS:,})"
    else:
        opts.update(loss="sampled-softmax", n_negatives=SAMPLED_NEGATIVES)
        reasons["loss"] = f"{s.items:,} items: sampled softmax with {SAMPLED_NEGATIVES} shared negatives"
    # the authors' block with ReLU, Adam's default betas and no clipping learned faster per epoch on
    # ML-1M than pre-LN / GELU / betas (0.9, 0.98) / clipping at 1 (docs/results.md, recipe ablations)
    # few users give few optimizer steps per epoch: on ML-1M (6,040 users) batches of 16 instead of
    # 128 reached validation NDCG@10 0.150 after 4 epochs instead of 0.112, at the same s/epoch
    batch = int(np.clip(2 ** np.floor(np.log2(max(s.users, 1) / STEPS_PER_EPOCH)), 16, 128))
    reasons["batch_size"] = f"{s.users:,} users: about {max(1, s.users // batch)} optimizer steps per epoch"
    if sparse and batch < SPARSE_MIN_BATCH:
        batch = SPARSE_MIN_BATCH
        reasons["batch_size"] = (
            f"{s.users:,} users: {max(1, s.users // batch)} optimizer steps per epoch; at least "
            f"{SPARSE_MIN_BATCH} sequences a step under heavy dropout"
        )
    reasons["lr"] = f"peak rate for batches of {batch} with Adam's default betas, decayed by the cosine"
    steps = max(1, s.users // batch)
    scored = s.items if opts["loss"] == "ce" else SAMPLED_NEGATIVES
    flops = s.flops_per_epoch(opts["hidden"], opts["blocks"], max_len, scored)
    if sparse:
        # on short histories the validation peak comes after a number of optimizer steps, not of FLOPs: the
        # cosine is planned to end there, so the rate is low when the model would start to memorise
        epochs = int(np.clip(round(SPARSE_STEPS / steps), 10, 200))
        reasons["epochs"] = (
            f"sparse data: the cosine spans about {SPARSE_STEPS:,} optimizer steps ({steps} a epoch), "
            "annealing before the model overfits (within 10..200 epochs)"
        )
    else:
        epochs = int(np.clip(round(COMPUTE_BUDGET / max(flops, 1.0)), 20, 200))
        reasons["epochs"] = (
            f"about {flops / 1e12:.2f} TFLOP per epoch; {COMPUTE_BUDGET / 1e12:.0f} TFLOP in all "
            "(within 20..200 epochs), the cosine decaying over them"
        )
    opts.update(
        activation="relu",
        norm="paper",
        lr=1e-3,
        betas=(0.9, 0.999),
        grad_clip=None,
        batch_size=batch,
        schedule="cosine",
        warmup_steps=0,
        epochs=epochs,
        patience=10,
        bucket=True,
    )
    # validation: at most EVAL_SHARE of the wall time; spaced out by its measured cost, on a sample of users when
    # it would cost more than a few epochs' share
    ratio = s.eval_flops(opts["hidden"], opts["blocks"], max_len) / max(flops, 1.0)
    opts["eval_share"] = EVAL_SHARE
    reasons["eval_share"] = (
        f"one validation costs about {ratio:.2f} epochs: validated every epoch when that takes at "
        f"most {EVAL_SHARE:.0%} of the wall time, else every few epochs (from the measured "
        "seconds)"
    )
    users = int((s.lengths >= 3).sum())
    allowed = 3 * EVAL_SHARE / (1 - EVAL_SHARE)  # validations at most 3 epochs apart
    if ratio > allowed and users > MIN_EVAL_USERS:
        sample = max(MIN_EVAL_USERS, int(round(users * allowed / ratio, -3)))
        if sample < users:
            opts["eval_max_users"] = sample
            reasons["eval_max_users"] = (
                f"validating all {users:,} users costs about {ratio:.1f} epochs: a seeded "
                f"sample of {sample:,} keeps validations at most 3 epochs apart"
            )
    return Recipe("auto", opts, reasons)


_BUILDERS = {"auto": auto, "paper": paper, "sasrec+": sasrec_plus}


def choose(name: str, dataset: Dataset) -> Recipe:
    """The recipe ``name`` (one of ``RECIPES``) for ``dataset``."""
    if name not in _BUILDERS:
        raise SeqrecError(f"recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    return _BUILDERS[name](DataStats.of(dataset))
