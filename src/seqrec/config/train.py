"""A training run (``TrainConfig``) and what it leaves (``TrainResult``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from seqrec.config.base import CHOICES, DEFAULT_NEGATIVES, _is_int, _is_num, _opt
from seqrec.errors import MAX_SEED, SeqrecError, check_config_keys


@dataclass
class TrainConfig:
    """How SASRec is trained; checked at construction (errors name the field)."""

    loss: str = _opt("ce", "bce | ce (full softmax) | sampled-softmax | gbce")
    n_negatives: int | None = _opt(None, "negatives per position (default: 1 for bce, 256 for sampled-softmax/gbce)")
    negative_sampling: str = _opt("uniform", "uniform | popularity | mixed")
    pop_alpha: float = _opt(1.0, "popularity sampling: probability ~ count ** pop_alpha")
    mix: float = _opt(0.5, "mixed sampling: share of popularity draws")
    gbce_t: float = _opt(0.75, "gBCE calibration t in [0, 1]")
    optimizer: str = _opt("adam", "adam | adamw")
    lr: float = _opt(1e-3, "peak learning rate")
    betas: tuple[float, float] = _opt((0.9, 0.98), "Adam betas, two floats")
    weight_decay: float = _opt(0.0, "weight decay on weight matrices and embeddings (L2 for adam)")
    warmup_steps: float | int = _opt(0, "linear warm-up: optimizer steps, or a fraction (< 1) of all steps")
    schedule: str = _opt("cosine", "after warm-up: cosine decay to 0 over all epochs, or constant")
    grad_clip: float | None = _opt(1.0, "clip the gradient norm to this (None or 0: off)")
    grad_accum: int = _opt(1, "micro-batches per optimizer step")
    precision: str = _opt("fp32", "fp32 | bf16 | fp16 (autocast; fp16 needs a GPU)")
    device: str = _opt("auto", "auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps")
    threads: int | None = _opt(
        None,
        "torch CPU threads while training (None: torch's default, fewer when the "
        "load average says other work holds the cores)",
    )
    compile: bool = _opt(False, "torch.compile the model for training")
    nproc: int = _opt(
        1,
        "training processes on this machine (torch.distributed: gloo on CPUs, NCCL on GPUs), each "
        "with its share of every batch and the free cores / nproc threads; under torchrun leave it",
    )
    epochs: int = _opt(200, "maximum epochs")
    time_limit: float | None = _opt(
        None,
        "wall seconds the whole run may take, validation and the final test "
        "included (training stops early enough for the last validation and the test); "
        "a cosine schedule then decays over this time instead of the epochs",
    )
    batch_size: int = _opt(128, "sequences per micro-batch (with nproc > 1: over all processes together)")
    eval_every: int = _opt(1, "validate every E epochs (0: never; then the last weights are kept)")
    eval_max_users: int | None = _opt(None, "validate on a seeded sample of this many users")
    eval_share: float | None = _opt(
        None,
        "validate less often when validating every eval_every epochs would take more "
        "than this share of the wall time: the epochs between validations follow from "
        "the measured seconds of both (None or 0: every eval_every epochs)",
    )
    patience: int | None = _opt(5, "stop after this many validations without a better NDCG@10 (None or 0: off)")
    seed: int = _opt(0, "seed for batch order, dropout and negatives")
    checkpoint_every_steps: int | None = _opt(None, "also checkpoint every N optimizer steps")
    quiet: bool = _opt(False, "no progress bars")
    windows: bool = _opt(
        False,
        "histories longer than max_len give one example per max_len window (every "
        "interaction is a target) instead of their last max_len items only",
    )
    bucket: bool = _opt(True, "length-bucketed batches (off: uniformly shuffled)")
    shared_negatives: bool | None = _opt(
        None,
        "one set of negatives per batch shared by all positions (a matrix "
        "product instead of a gather); None: on for sampled-softmax from 64 "
        "negatives, off for bce and gbce",
    )
    in_batch_negatives: int = _opt(
        0,
        "sampled-softmax: also this many of the batch's targets (drawn at random among "
        "its positions) as negatives shared by every position, a position's own target "
        "and items equal to it masked; logQ-corrected by their training popularity "
        "(0: off)",
    )
    logq_positive: bool = _opt(
        True,
        "sampled-softmax logQ correction: subtract the positive's log sampling "
        "probability too, as every negative's (off: the negatives' only)",
    )
    sparse_embeddings: bool = _opt(
        False,
        "sparse item-embedding gradients and a lazy Adam(W) update of the rows a step "
        "touches: a step's cost no longer grows with the catalogue (weight decay then "
        "reaches touched rows only; not with item_features)",
    )
    fill_cold_items: bool = _opt(
        True,
        "after training, items with features but no training interactions get the mean "
        "id row of the trained items whose features overlap theirs most",
    )

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise SeqrecError(f"train config: {name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("grad_clip", "patience"):  # 0 is "off" too, which a command-line flag can say
            if getattr(self, name) == 0 and not isinstance(getattr(self, name), bool):
                setattr(self, name, None)
        for name, options in CHOICES.items():
            check(name, getattr(self, name) in options, "one of " + ", ".join(options))
        for name, lo in (("epochs", 1), ("batch_size", 1), ("grad_accum", 1), ("eval_every", 0), ("nproc", 1)):
            v = getattr(self, name)
            check(name, _is_int(v) and v >= lo, f"an integer >= {lo}")
        check("seed", _is_int(self.seed) and 0 <= self.seed <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")
        for name in ("n_negatives", "threads", "eval_max_users", "patience", "checkpoint_every_steps"):
            v = getattr(self, name)
            check(name, v is None or (_is_int(v) and v >= 1), "an integer >= 1 or None")
        if _is_num(self.eval_share) and self.eval_share == 0:  # 0: off, as None (the flag's spelling of it)
            self.eval_share = None
        check(
            "eval_share",
            self.eval_share is None or (_is_num(self.eval_share) and 0 < self.eval_share < 1),
            "a number in (0, 1) or None",
        )
        for name, lo, hi in (
            ("lr", 0, math.inf),
            ("weight_decay", 0, math.inf),
            ("pop_alpha", 0, math.inf),
            ("mix", 0, 1),
            ("gbce_t", 0, 1),
            ("grad_clip", 0, math.inf),
            ("time_limit", 0, math.inf),
        ):
            v = getattr(self, name)
            if name in ("grad_clip", "time_limit") and v is None:
                continue
            positive = name in ("lr", "grad_clip", "time_limit")
            check(
                name,
                _is_num(v) and lo <= v <= hi and (v > 0 or not positive),
                f"a number in [{lo}, {hi}]" + (" and > 0" if positive else ""),
            )
            setattr(self, name, float(v))
        betas = tuple(self.betas) if isinstance(self.betas, (tuple, list)) else ()
        check("betas", len(betas) == 2 and all(_is_num(b) and 0 <= b < 1 for b in betas), "two numbers in [0, 1)")
        self.betas = (float(betas[0]), float(betas[1]))
        w = self.warmup_steps
        check(
            "warmup_steps",
            _is_num(w) and w >= 0 and (w < 1 or float(w).is_integer()),
            "a whole number of steps >= 0 or a fraction in (0, 1)",
        )
        self.warmup_steps = int(w) if float(w).is_integer() else float(w)
        for name in ("compile", "quiet", "bucket", "windows", "logq_positive", "sparse_embeddings") + (
            () if self.shared_negatives is None else ("shared_negatives",)
        ):
            check(name, isinstance(getattr(self, name), bool), "true or false")
        d = self.device
        check(
            "device",
            isinstance(d, str) and (d in ("auto", "cpu", "cuda", "mps") or (d[:5] == "cuda:" and d[5:].isdigit())),
            "auto, cpu, cuda, cuda:N or mps",
        )
        check("n_negatives", self.loss != "ce" or self.n_negatives is None, "None with loss='ce' (it uses every item)")
        v = self.in_batch_negatives
        check("in_batch_negatives", _is_int(v) and v >= 0, "an integer >= 0")
        check("in_batch_negatives", v == 0 or self.loss == "sampled-softmax", "0 unless loss='sampled-softmax'")

    @property
    def negatives(self) -> int:
        """Negatives per position actually used (the loss's default when n_negatives is None)."""
        return DEFAULT_NEGATIVES[self.loss] if self.n_negatives is None else self.n_negatives

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        check_config_keys(cls, d, "train config")
        return cls(**d)


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    seconds: float
