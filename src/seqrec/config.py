"""Every option a user can set, in one place: the configuration dataclasses of each stage, with their
defaults and help in field metadata (the command line's flags, the API's keywords and the benchmarks'
flags are all made from these fields) and checked at construction (errors name the field):

* ``CleanConfig``: how raw interactions are filtered (``seqrec.data.dataset``);
* ``SASRecConfig``: the model's shape (``seqrec.models.sasrec``), with bounds checked before any allocation;
* ``TrainConfig``: a training run (``seqrec.training.loop``); ``CHOICES`` holds its string options' choices
  (the one home of the loss and sampler names), ``DEFAULT_NEGATIVES`` each loss's negatives;
* ``EvalConfig``: what to evaluate and how (``seqrec.evaluation.evaluator``).

The service's ``Limits`` live in ``seqrec.serving.limits`` in the same form. Imports only ``errors``, so the
model folders and the serving side can read a run's settings without importing the trainer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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


# ----------------------------------------------------------------------------- cleaning
@dataclass(frozen=True)
class CleanConfig:
    """How raw interactions are filtered before ids are mapped."""

    min_rating: float | None = _opt(None, "keep interactions rated at least this (implicit feedback)")
    dedupe: bool = _opt(False, "keep only the first of repeated (user, item) pairs")
    k_core: int | None = _opt(None, "min interactions per user and item (None: 5 for raw logs, 0 for the papers' "
                                    "already-filtered files)")

    def __post_init__(self) -> None:
        if self.k_core is not None and self.k_core < 0:
            raise SeqrecError(f"k_core must be >= 0, got {self.k_core}")


# ----------------------------------------------------------------------------- model
ACTIVATIONS = ("gelu", "relu")
NORMS = ("pre", "post", "paper")
FUSIONS = ("sum", "gated", "concat")  # SASRecConfig.feature_fusion's choices
FEATURE_FIELDS = ("item_features", "feature_fusion", "feature_output", "feature_dropout")
# Upper bounds, far above any SASRec in the literature (hidden <= 1024, a few blocks, max_len <= 200),
# so that a damaged or hostile config.json is refused before anything is allocated.
MAX_HIDDEN, MAX_BLOCKS, MAX_HEADS, MAX_LEN = 8192, 64, 64, 8192
MAX_ITEMS = 2**31 - 2  # item ids are int32, 0 is padding
MAX_PARAM_BYTES = 16 * 2**30  # float32 parameters: 16 GiB


@dataclass
class SASRecConfig:
    n_items: int = field(metadata={"help": "catalogue size N (from the data); the embedding has N+1 rows, row 0 = PAD"})
    hidden: int = _opt(50, "embedding / hidden size d")
    blocks: int = _opt(2, "self-attention blocks")
    heads: int = _opt(1, "attention heads (hidden must be divisible by heads)")
    max_len: int = _opt(50, "how many recent items the model reads")
    dropout: float = _opt(0.2, "dropout rate (paper: 0.2 for MovieLens, 0.5 for sparse data)")
    activation: str = _opt("gelu", "feed-forward activation: gelu | relu")
    norm: str = _opt("pre", "LayerNorm placement: pre | post (the paper's text) | paper (the authors' code)")
    item_features: str | None = _opt(None, "item side features from the catalogue: comma-separated fields (genres, "
                                           "year, attributes, any list, text or numeric column) or all; None: ids only")
    feature_fusion: str = _opt("sum", "how an item's feature embedding joins its id embedding: sum | gated (a "
                                      "learned gate on the features) | concat (both, projected back to hidden)")
    feature_output: bool = _opt(False, "the item representation that scores items includes their features too "
                                       "(needed to rank items nobody has interacted with)")
    feature_dropout: float = _opt(0.0, "training: drop each item's whole feature contribution with this probability")

    def __post_init__(self) -> None:
        self._check_features()
        for name in ("n_items", "hidden", "blocks", "heads", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SeqrecError(f"model config: {name} must be an integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise SeqrecError(f"model config: dropout must be a number, got {self.dropout!r}")
        self.dropout = float(self.dropout)
        for name, hi in (("n_items", MAX_ITEMS), ("hidden", MAX_HIDDEN), ("blocks", MAX_BLOCKS), ("heads", MAX_HEADS),
                         ("max_len", MAX_LEN)):
            value = getattr(self, name)
            if value < 1:
                raise SeqrecError(f"model config: {name} must be >= 1, got {value}")
            if value > hi:
                raise SeqrecError(f"model config: {name} must be <= {hi}, got {value}")
        if self.hidden % self.heads != 0:
            raise SeqrecError(f"model config: hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        size = 4 * self.parameter_count()
        if size > MAX_PARAM_BYTES:
            raise SeqrecError(
                f"model config: {self.parameter_count():,} parameters ({size / 2**30:.1f} GiB as float32) is more "
                f"than the {MAX_PARAM_BYTES / 2**30:.0f} GiB seqrec allows (n_items={self.n_items}, "
                f"hidden={self.hidden}, blocks={self.blocks}, max_len={self.max_len})")
        if not 0.0 <= self.dropout < 1.0:
            raise SeqrecError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise SeqrecError(f"model config: activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.norm not in NORMS:
            raise SeqrecError(f"model config: norm must be one of {NORMS}, got {self.norm!r}")

    def _check_features(self) -> None:
        spec = self.item_features
        if spec is not None:
            names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else []
            if not names or not all(names) or len(set(names)) < len(names) or ("all" in names and len(names) > 1):
                raise SeqrecError(f"model config: item_features must be 'all' or distinct comma-separated catalogue "
                                  f"fields (e.g. 'genres,year'), or None, got {spec!r}")
            self.item_features = ",".join(names)
        if self.feature_fusion not in FUSIONS:
            raise SeqrecError(f"model config: feature_fusion must be one of {FUSIONS}, got {self.feature_fusion!r}")
        if not isinstance(self.feature_output, bool):
            raise SeqrecError(f"model config: feature_output must be true or false, got {self.feature_output!r}")
        p = self.feature_dropout
        if not _is_num(p) or not 0.0 <= p < 1.0:
            raise SeqrecError(f"model config: feature_dropout must be a number in [0, 1), got {p!r}")
        self.feature_dropout = float(p)

    def parameter_count(self) -> int:
        """Parameters of the model this config describes (item and position embeddings, blocks of
        attention, feed-forward and two LayerNorms, the final LayerNorm; with item features, the fusion
        layer but not the feature embeddings, whose size comes from the data)."""
        d = self.hidden
        fusion = {"sum": 0, "gated": 2 * d * d + d, "concat": 2 * d * d}[self.feature_fusion]
        return ((self.n_items + 1) * d + self.max_len * d + self.blocks * (6 * d * d + 10 * d) + 2 * d
                + (fusion if self.item_features is not None else 0))

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON; without item features the feature fields are left out, so an id-only
        model's config reads exactly as before they existed."""
        d = asdict(self)
        if self.item_features is None:
            for name in FEATURE_FIELDS:
                d.pop(name)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SASRecConfig:
        check_config_keys(cls, d, "model config")
        if "n_items" not in d:
            raise SeqrecError("model config: n_items is missing")
        return cls(**d)


# ----------------------------------------------------------------------------- training


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
    nproc: int = _opt(1, "training processes on this machine (torch.distributed: gloo on CPUs, NCCL on GPUs), each "
                         "with its share of every batch and the free cores / nproc threads; under torchrun leave it")
    epochs: int = _opt(200, "maximum epochs")
    time_limit: float | None = _opt(None, "wall seconds the whole run may take, validation and the final test "
                                          "included (training stops early enough for the last validation and the test); "
                                          "a cosine schedule then decays over this time instead of the epochs")
    batch_size: int = _opt(128, "sequences per micro-batch (with nproc > 1: over all processes together)")
    eval_every: int = _opt(1, "validate every E epochs (0: never; then the last weights are kept)")
    eval_max_users: int | None = _opt(None, "validate on a seeded sample of this many users")
    eval_share: float | None = _opt(None, "validate less often when validating every eval_every epochs would take more "
                                          "than this share of the wall time: the epochs between validations follow from "
                                          "the measured seconds of both (None: every eval_every epochs)")
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
    in_batch_negatives: int = _opt(0, "sampled-softmax: also this many of the batch's targets (drawn at random among "
                                      "its positions) as negatives shared by every position, a position's own target "
                                      "and items equal to it masked; logQ-corrected by their training popularity "
                                      "(0: off)")
    logq_positive: bool = _opt(True, "sampled-softmax logQ correction: subtract the positive's log sampling "
                                     "probability too, as every negative's (off: the negatives' only)")
    sparse_embeddings: bool = _opt(False, "sparse item-embedding gradients and a lazy Adam(W) update of the rows a step "
                                          "touches: a step's cost no longer grows with the catalogue (weight decay then "
                                          "reaches touched rows only; not with item_features)")
    fill_cold_items: bool = _opt(True, "after training, items with features but no training interactions get the mean "
                                       "id row of the trained items whose features overlap theirs most")

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
        check("eval_share", self.eval_share is None or (_is_num(self.eval_share) and 0 < self.eval_share < 1),
              "a number in (0, 1) or None")
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
        self.betas = (float(betas[0]), float(betas[1]))
        w = self.warmup_steps
        check("warmup_steps", _is_num(w) and w >= 0 and (w < 1 or float(w).is_integer()),
              "a whole number of steps >= 0 or a fraction in (0, 1)")
        self.warmup_steps = int(w) if float(w).is_integer() else float(w)
        for name in ("compile", "quiet", "bucket", "windows", "logq_positive", "sparse_embeddings") + (
                () if self.shared_negatives is None else ("shared_negatives",)):
            check(name, isinstance(getattr(self, name), bool), "true or false")
        d = self.device
        check("device", isinstance(d, str) and (d in ("auto", "cpu", "cuda", "mps") or (d[:5] == "cuda:" and d[5:].isdigit())),
              "auto, cpu, cuda, cuda:N or mps")
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


# ----------------------------------------------------------------------------- evaluation
SEEN_TARGET = ("miss", "drop", "keep")  # EvalConfig.seen_target's choices
TARGETS = ("all", "cold", "warm")  # EvalConfig.targets' choices
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: Any, name: str = "memory_budget") -> int:
    """A size in bytes from an integer or a text like ``"2GB"``, ``"512 MiB"``, ``"1.5gb"`` (KB, MB, GB, TB are
    powers of 1000; KiB, MiB, GiB, TiB of 1024); a ``SeqrecError`` naming ``name`` otherwise."""
    expected = "a positive size like 2GB, 512MB, 1.5GiB or a number of bytes"
    if _is_int(value) and value > 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "").replace("_", "")
        number = text.rstrip("kmgtib")
        unit = text[len(number):]
        try:
            size = float(number) * _UNITS[unit] if number else math.nan
        except (KeyError, ValueError):
            size = math.nan
        if math.isfinite(size) and size >= 1:
            return int(size)
    raise SeqrecError(f"{name} must be {expected}, got {value!r}")


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str, field_name: str = "horizon") -> int:
    """Seconds of ``7d``, ``12h``, ``30m``, ``3600s`` or ``2w``."""
    s = str(text).strip().lower()
    unit = s[-1:] if s[-1:] in _DURATION else ""
    number = s[: -1] if unit else s
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise SeqrecError(f"{field_name} must be a positive duration such as 7d, 12h, 30m or 3600s, got {text!r}")
    return int(round(value * _DURATION[unit or "s"]))


@dataclass(frozen=True)
class SplitConfig:
    """How interactions are split into training, validation and test parts; values are checked at construction."""

    scheme: Literal["loo", "temporal"] = _opt(
        "loo", "loo: each user's last item is the test target, the one before it the validation target (the "
               "literature's protocol); temporal: one global cut in time, training only before it")
    cutoff: str | None = _opt(
        None, "temporal: the test cut, a date (2018-01-01, 2018-01-01T12:00, UTC) or a quantile of the event "
              "times in (0, 1) (default 0.9); validation cuts as far before it as the test part reaches after it")
    horizon: str | None = _opt(
        None, "temporal: also score, per test user, every item taken within this time after the cut (7d, 12h, "
              "30m, 3600s): recall and NDCG at k over that set")

    def __post_init__(self) -> None:
        if self.scheme not in ("loo", "temporal"):
            raise SeqrecError(f"scheme must be 'loo' or 'temporal', got {self.scheme!r}")
        if self.scheme == "loo" and (self.cutoff is not None or self.horizon is not None):
            raise SeqrecError("cutoff and horizon belong to the temporal scheme: add scheme='temporal' "
                              "(--scheme temporal)")
        if self.horizon is not None:
            parse_duration(self.horizon)
        if self.cutoff is not None and not isinstance(self.cutoff, str):
            object.__setattr__(self, "cutoff", str(self.cutoff))


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; values are checked at construction."""

    split: Literal["valid", "test"] = _opt("test", "which held-out item to rank: the validation or the test one")
    protocol: Literal["full", "sampled"] = _opt("full", "full ranking over every item, or 1 target + sampled negatives")
    ks: tuple[int, ...] = _opt((1, 5, 10, 20), "cut-offs of HR@k and NDCG@k")
    n_negatives: int = _opt(100, "sampled protocol: negatives per user (paper: 100)")
    negatives: Literal["uniform", "popularity"] = _opt("uniform", "sampled protocol: how negatives are drawn")
    exclude_seen: bool = _opt(True, "remove the items a user already saw from the ranking (off: repeat consumption)")
    batch_size: int = _opt(1024, "users scored at a time, at most (fewer when memory_budget asks for it)")
    seed: int = _opt(0, "seed of the sampled protocol's negatives and of max_users' sample")
    max_users: int | None = _opt(None, "evaluate a seeded sample of this many users (None: all)")
    seen_target: Literal["miss", "drop", "keep"] = _opt(
        "miss", "full protocol, a target already in the user's history: miss (removed like every seen item, counts "
                "as a miss), drop (leave out users with a seen or cold target) or keep (always scored)")
    targets: Literal["all", "cold", "warm"] = _opt(
        "all", "which users to evaluate by their target: all, cold (a target that never occurs in the training part, "
               "e.g. a new item) or warm (the others)")
    memory_budget: str | int = _opt(
        "2GB", "memory evaluation may use: the scorer's own (a baseline's matrices, a model's weights) plus the "
               "scores of the users ranked at a time, whose number follows from it and the catalogue size "
               "(KB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024)")

    def __post_init__(self) -> None:
        parse_bytes(self.memory_budget)
        if self.split not in ("valid", "test"):
            raise SeqrecError(f"split must be 'valid' or 'test', got {self.split!r}")
        if self.protocol not in ("full", "sampled"):
            raise SeqrecError(f"protocol must be 'full' or 'sampled', got {self.protocol!r}")
        if self.negatives not in ("uniform", "popularity"):
            raise SeqrecError(f"negatives must be 'uniform' or 'popularity', got {self.negatives!r}")
        ks = (self.ks,) if isinstance(self.ks, int) else self.ks
        try:
            ks_ok = len(ks) > 0 and all(_is_int(k) and k >= 1 for k in ks)
        except TypeError:
            ks_ok = False
        if not ks_ok:
            raise SeqrecError(f"ks must be a non-empty list of positive integers, got {self.ks!r}")
        object.__setattr__(self, "ks", tuple(sorted({int(k) for k in ks})))
        for name in ("n_negatives", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise SeqrecError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise SeqrecError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        if self.max_users is not None and (not _is_int(self.max_users) or self.max_users < 1):
            raise SeqrecError(f"max_users must be a positive integer or None, got {self.max_users!r}")
        if not isinstance(self.exclude_seen, (bool, np.bool_)):
            raise SeqrecError(f"exclude_seen must be true or false, got {self.exclude_seen!r}")
        if not isinstance(self.seen_target, str) or self.seen_target not in SEEN_TARGET:
            raise SeqrecError(f"seen_target must be 'miss', 'drop' or 'keep', got {self.seen_target!r}")
        if not isinstance(self.targets, str) or self.targets not in TARGETS:
            raise SeqrecError(f"targets must be 'all', 'cold' or 'warm', got {self.targets!r}")

    @property
    def budget_bytes(self) -> int:
        """``memory_budget`` in bytes."""
        return parse_bytes(self.memory_budget)


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    seconds: float
