"""The model's shape (``SASRecConfig``), with bounds checked before any allocation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from seqrec.config.base import _is_num, _opt
from seqrec.errors import SeqrecError, check_config_keys

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
    item_features: str | None = _opt(
        None,
        "item side features from the catalogue: comma-separated fields (genres, "
        "year, attributes, any list, text or numeric column) or all; None: ids only",
    )
    feature_fusion: str = _opt(
        "sum",
        "how an item's feature embedding joins its id embedding: sum | gated (a "
        "learned gate on the features) | concat (both, projected back to hidden)",
    )
    feature_output: bool = _opt(
        False,
        "the item representation that scores items includes their features too "
        "(needed to rank items nobody has interacted with)",
    )
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
        for name, hi in (
            ("n_items", MAX_ITEMS),
            ("hidden", MAX_HIDDEN),
            ("blocks", MAX_BLOCKS),
            ("heads", MAX_HEADS),
            ("max_len", MAX_LEN),
        ):
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
                f"hidden={self.hidden}, blocks={self.blocks}, max_len={self.max_len})"
            )
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
                raise SeqrecError(
                    f"model config: item_features must be 'all' or distinct comma-separated catalogue "
                    f"fields (e.g. 'genres,year'), or None, got {spec!r}"
                )
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
        return (
            (self.n_items + 1) * d
            + self.max_len * d
            + self.blocks * (6 * d * d + 10 * d)
            + 2 * d
            + (fusion if self.item_features is not None else 0)
        )

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
