"""What a training run is told: ``TrainConfig`` (checked at construction, errors name the field), the
choices of its string options (``CHOICES``, the one home of the loss and sampler names), the
negatives each loss uses by default, and ``TrainResult``.

Imports only ``errors``, so the model folders and the serving side can read a run's settings
without importing the trainer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from seqrec.errors import MAX_SEED, SeqrecError, check_config_keys

LOSSES = ("bce", "ce", "sampled-softmax", "gbce")
DEFAULT_NEGATIVES = {"bce": 1, "ce": 0, "sampled-softmax": 256, "gbce": 256}
CHOICES = {
    "loss": LOSSES,
    "negative_sampling": ("uniform", "popularity", "mixed"),
    "optimizer": ("adam", "adamw"),
    "schedule": ("cosine", "constant"),
    "precision": ("fp32", "bf16", "fp16"),
}


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


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
    threads: int | None = _opt(None, "torch CPU threads while training (None: torch's default, fewer when the "
                                     "load average says other work holds the cores)")
    compile: bool = _opt(False, "torch.compile the model for training")
    epochs: int = _opt(200, "maximum epochs")
    time_limit: float | None = _opt(None, "stop after this many seconds of training (validation excluded); a "
                                          "cosine schedule then decays over this time instead of the epochs")
    batch_size: int = _opt(128, "sequences per micro-batch")
    eval_every: int = _opt(1, "validate every E epochs (0: never; then the last weights are kept)")
    eval_max_users: int | None = _opt(None, "validate on a seeded sample of this many users")
    patience: int | None = _opt(5, "stop after this many validations without a better NDCG@10 (None or 0: off)")
    seed: int = _opt(0, "seed for batch order, dropout and negatives")
    checkpoint_every_steps: int | None = _opt(None, "also checkpoint every N optimizer steps")
    quiet: bool = _opt(False, "no progress bars")
    windows: bool = _opt(False, "histories longer than max_len give one example per max_len window (every "
                                "interaction is a target) instead of their last max_len items only")
    bucket: bool = _opt(True, "length-bucketed batches (off: uniformly shuffled)")
    shared_negatives: bool | None = _opt(None, "one set of negatives per batch shared by all positions (a matrix "
                                         "product instead of a gather); None: on for sampled-softmax from 64 "
                                         "negatives, off for bce and gbce")

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise SeqrecError(f"train config: {name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("grad_clip", "patience"):  # 0 is "off" too, which a command-line flag can say
            if getattr(self, name) == 0 and not isinstance(getattr(self, name), bool):
                setattr(self, name, None)
        for name, options in CHOICES.items():
            check(name, getattr(self, name) in options, "one of " + ", ".join(options))
        for name, lo in (("epochs", 1), ("batch_size", 1), ("grad_accum", 1), ("eval_every", 0)):
            v = getattr(self, name)
            check(name, _is_int(v) and v >= lo, f"an integer >= {lo}")
        check("seed", _is_int(self.seed) and 0 <= self.seed <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")
        for name in ("n_negatives", "threads", "eval_max_users", "patience", "checkpoint_every_steps"):
            v = getattr(self, name)
            check(name, v is None or (_is_int(v) and v >= 1), "an integer >= 1 or None")
        for name, lo, hi in (("lr", 0, math.inf), ("weight_decay", 0, math.inf), ("pop_alpha", 0, math.inf),
                             ("mix", 0, 1), ("gbce_t", 0, 1), ("grad_clip", 0, math.inf), ("time_limit", 0, math.inf)):
            v = getattr(self, name)
            if name in ("grad_clip", "time_limit") and v is None:
                continue
            positive = name in ("lr", "grad_clip", "time_limit")
            check(name, _is_num(v) and lo <= v <= hi and (v > 0 or not positive),
                  f"a number in [{lo}, {hi}]" + (" and > 0" if positive else ""))
            setattr(self, name, float(v))
        betas = tuple(self.betas) if isinstance(self.betas, (tuple, list)) else ()
        check("betas", len(betas) == 2 and all(_is_num(b) and 0 <= b < 1 for b in betas), "two numbers in [0, 1)")
        self.betas = tuple(float(b) for b in betas)
        w = self.warmup_steps
        check("warmup_steps", _is_num(w) and w >= 0 and (w < 1 or float(w).is_integer()),
              "a whole number of steps >= 0 or a fraction in (0, 1)")
        self.warmup_steps = int(w) if float(w).is_integer() else float(w)
        for name in ("compile", "quiet", "bucket", "windows") + (() if self.shared_negatives is None else ("shared_negatives",)):
            check(name, isinstance(getattr(self, name), bool), "true or false")
        d = self.device
        check("device", isinstance(d, str) and (d in ("auto", "cpu", "cuda", "mps") or (d[:5] == "cuda:" and d[5:].isdigit())),
              "auto, cpu, cuda, cuda:N or mps")
        check("n_negatives", self.loss != "ce" or self.n_negatives is None, "None with loss='ce' (it uses every item)")

    @property
    def negatives(self) -> int:
        """Negatives per position actually used (the loss's default when n_negatives is None)."""
        return DEFAULT_NEGATIVES[self.loss] if self.n_negatives is None else self.n_negatives

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        check_config_keys(cls, d, "train config")
        return cls(**d)


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    seconds: float
