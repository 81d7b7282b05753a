"""Every option a user can set, in one place: the configuration dataclasses of each stage, with their
defaults and help in field metadata (the command line's flags, the API's keywords and the benchmarks'
flags are all made from these fields) and checked at construction (errors name the field):

* ``CleanConfig``: how raw interactions are filtered (``seqrec.data.clean``), ``SplitConfig``: how they are
  split (``seqrec.data.split``);
* ``SASRecConfig``: the model's shape (``seqrec.models.sasrec``), with bounds checked before any allocation;
* ``TrainConfig``: a training run (``seqrec.training.loop``); ``CHOICES`` holds its string options' choices
  (the one home of the loss and sampler names), ``DEFAULT_NEGATIVES`` each loss's negatives;
* ``EvalConfig``: what to evaluate and how (``seqrec.evaluation.evaluator``).

The service's ``Limits`` live in ``seqrec.serving.limits`` in the same form. Imports only ``errors``, so the
model folders and the serving side can read a run's settings without importing the trainer.
"""

from seqrec.config.base import CHOICES, DEFAULT_NEGATIVES, LOSSES, _is_int, _is_num, _opt, parse_bytes, parse_duration
from seqrec.config.data import CleanConfig, SplitConfig
from seqrec.config.evaluation import SEEN_TARGET, TARGETS, EvalConfig
from seqrec.config.model import (
    ACTIVATIONS,
    FEATURE_FIELDS,
    FUSIONS,
    MAX_BLOCKS,
    MAX_HEADS,
    MAX_HIDDEN,
    MAX_ITEMS,
    MAX_LEN,
    MAX_PARAM_BYTES,
    NORMS,
    SASRecConfig,
)
from seqrec.config.train import TrainConfig, TrainResult

__all__ = [
    "ACTIVATIONS",
    "CHOICES",
    "DEFAULT_NEGATIVES",
    "FEATURE_FIELDS",
    "FUSIONS",
    "LOSSES",
    "MAX_BLOCKS",
    "MAX_HEADS",
    "MAX_HIDDEN",
    "MAX_ITEMS",
    "MAX_LEN",
    "MAX_PARAM_BYTES",
    "NORMS",
    "SEEN_TARGET",
    "TARGETS",
    "CleanConfig",
    "EvalConfig",
    "SASRecConfig",
    "SplitConfig",
    "TrainConfig",
    "TrainResult",
    "_is_int",
    "_is_num",
    "_opt",
    "parse_bytes",
    "parse_duration",
]
