"""The `seqrec` command's shared options and their checks: data and cleaning flags, evaluation flags,
the training flags made from the configurations' fields (``seqrec.api.config_fields``), the service
limit flags made from ``seqrec.serving.limits.Limits``, and the checks of -k, --seed and --out that run before
a command starts its work."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from seqrec.errors import MAX_SEED, SeqrecError


# ---------------------------------------------------------------------------- flags from config fields
def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_tuple(kind: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s like "
                f"{'1,5,10' if kind is int else '0.9,0.98'}, got {text!r}"
            ) from None

    return parse


def flag_type(kind: Any) -> Any:
    """The argparse ``type`` for a field's annotation (or a base type: bool, tuple, int, float, str)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is tuple:
        return _parse_tuple(int if args and args[0] is int else float)
    if kind is tuple:
        return _parse_tuple(float)
    if typing.get_origin(kind) is typing.Literal:
        return str
    if args:  # X | None, int | float
        return float if float in args else flag_type(args[0])
    return _parse_bool if kind is bool else kind


def add_config_args(
    g: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str = "",
    skip: tuple[str, ...] = (),
    note: str = "default",
    aliases: dict[str, str] | None = None,
    metavar: str | None = None,
) -> None:
    """One ``--[prefix-]name`` flag per field of the dataclass ``cls``: dest ``[prefix_]name``, default None
    (not given: the dataclass's default applies), help from the field's metadata with its default,
    choices from a ``Literal`` annotation. A bool field takes ``--name``, ``--name true|false`` and
    ``--no-name``; a tuple field comma-separated values. ``aliases`` adds older spellings of a flag."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        hint, dest = hints[f.name], f"{prefix}_{f.name}" if prefix else f.name
        flag = f"--{prefix + '-' if prefix else ''}{f.name.replace('_', '-')}"
        names = [flag] + ([aliases[f.name]] if aliases and f.name in aliases else [])
        default = f.default if f.default is not dataclasses.MISSING else "required"
        shown = (
            ",".join(map(str, default))
            if isinstance(default, tuple)
            else f"{default:,}"
            if isinstance(default, int) and not isinstance(default, bool)
            else default
        )
        text = f"{f.metadata.get('help', '')} ({note}: {shown})"
        choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
        if hint is bool:
            g.add_argument(
                *names,
                dest=dest,
                type=_parse_bool,
                nargs="?",
                const=True,
                default=None,
                metavar="true|false",
                help=text,
            )
            g.add_argument(f"--no-{flag[2:]}", dest=dest, action="store_const", const=False, help=argparse.SUPPRESS)
        else:
            g.add_argument(
                *names, dest=dest, type=flag_type(hint), default=None, choices=choices, metavar=metavar, help=text
            )


def config_options(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` a command line gave (flags from ``add_config_args``)."""
    out = {}
    for f in fields(cls):
        value = getattr(args, f"{prefix}_{f.name}" if prefix else f.name, None)
        if value is not None:
            out[f.name] = value
    return out


# ---------------------------------------------------------------------------- data and evaluation
def _add_data_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        p.add_argument(
            "data", nargs="+", metavar="DATA", help="data sets: paths (file or folder) or names (synthetic, ml-100k, …)"
        )
    else:
        p.add_argument(
            "data", metavar="DATA", help="a path (file or folder, format recognised) or a name (synthetic, ml-100k, …)"
        )
    from seqrec.config import CleanConfig

    g = p.add_argument_group("cleaning")
    add_config_args(g, CleanConfig)
    g.add_argument("--user-col", default=None, help="user column name (CSV/Parquet)")
    g.add_argument("--item-col", default=None, help="item column name")
    g.add_argument("--time-col", default=None, help="timestamp column name")
    g.add_argument("--rating-col", default=None, help="rating column name")
    g.add_argument("--sep", default=None, help="field separator (sniffed when absent)")
    g.add_argument(
        "--item-features-file",
        default=None,
        metavar="FILE",
        help="CSV / TSV / Parquet / JSON of item facts merged into the catalogue by item id (an id column "
        "and feature columns: lists or text with | between values), for --item-features",
    )


def _load(spec: str, args: argparse.Namespace):
    from seqrec.data.dataset import CleanConfig
    from seqrec.data.readers import load_dataset

    config = CleanConfig(**config_options(args, CleanConfig))
    ds = load_dataset(
        spec,
        config,
        user_col=args.user_col,
        item_col=args.item_col,
        time_col=args.time_col,
        rating_col=args.rating_col,
        sep=args.sep,
    )
    if getattr(args, "item_features_file", None):
        from seqrec.models.feature_files import add_item_features

        ds = add_item_features(ds, args.item_features_file)
    return ds


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    """``EvalConfig``'s fields but the protocol (each command takes that its own way); ``--k`` is ``--ks``."""
    from seqrec.config import EvalConfig

    add_config_args(p.add_argument_group("evaluation"), EvalConfig, skip=("protocol",), aliases={"ks": "--k"})
    _add_split_args(p)


def _add_split_args(p: argparse.ArgumentParser) -> None:
    """``SplitConfig``'s fields: leave-one-out (default) or one cut in time."""
    from seqrec.config import SplitConfig

    add_config_args(p.add_argument_group("split"), SplitConfig)


def _split_config(args: argparse.Namespace):
    from seqrec.config import SplitConfig

    return SplitConfig(**config_options(args, SplitConfig))


def _eval_config(args: argparse.Namespace, protocol: str):
    from seqrec.config import EvalConfig

    return EvalConfig(**{**config_options(args, EvalConfig), "protocol": protocol})


# ---------------------------------------------------------------------------- argument checks
def _check_k(k: int) -> None:
    if k < 1:
        raise SeqrecError(f"-k: expected how many items to list, an integer >= 1, got {k}")


def _check_args(args: argparse.Namespace) -> None:
    """Checks of -k, --seed and --out that need no data, run before a command starts its work."""
    if isinstance(getattr(args, "k", None), int):
        _check_k(args.k)
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise SeqrecError(f"--seed: expected an integer in [0, {MAX_SEED}], got {seed}")
    out = getattr(args, "out", None)
    if out is None:
        return
    from seqrec.publish import check_output_folder

    if args.command == "train":  # a run folder: always written into, then replaced by the model folder
        check_output_folder(out, "model", force=True)
    elif args.command == "prepare":
        check_output_folder(out, "data", force=args.force)
    elif args.command == "replay":
        if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
            raise SeqrecError(f"--out: {out} exists and is not an empty folder; give a new folder")
    elif Path(out).is_dir():  # export-items, export-onnx: a file
        raise SeqrecError(f"--out: {out} is a folder; give the name of the file to write")


def _checked(func):
    """``func(args)`` after ``_check_args``, so that bad arguments fail before any work."""
    import functools

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> None:
        _check_args(args)
        func(args)

    return run


# ---------------------------------------------------------------------------- train flags from the configs
def add_option_args(g: argparse.ArgumentParser | argparse._ArgumentGroup, skip: tuple[str, ...] = ("quiet",)) -> None:
    """One ``--name`` flag per SASRec option (``SASRecConfig`` but n_items, then ``TrainConfig``)."""
    from seqrec.config import SASRecConfig, TrainConfig

    add_config_args(g, SASRecConfig, skip=("n_items", *skip), note="without the recipe")
    add_config_args(g, TrainConfig, skip=skip, note="without the recipe")


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The SASRec options a command line gave (flags added by ``add_option_args``)."""
    from seqrec.config import SASRecConfig, TrainConfig

    model = config_options(args, SASRecConfig)
    model.pop("n_items", None)
    return {**model, **config_options(args, TrainConfig)}


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from seqrec.training.recipe import RECIPES

    g = p.add_argument_group("model and training options (the Python API's names; the recipe fills those not given)")
    g.add_argument(
        "--recipe",
        choices=RECIPES,
        default="auto",
        help="auto: chosen from the data's statistics (default); paper: Kang & McAuley 2018 (BCE); "
        "sasrec+: full cross-entropy as in the SASRec+ paper. Explicit flags win.",
    )
    add_option_args(g)
    _add_split_args(p)


# ---------------------------------------------------------------------------- service limit flags from Limits
def _add_limit_args(p: argparse.ArgumentParser) -> None:
    """``--limit-NAME`` for each field of ``Limits``, with its help and default from the dataclass."""
    from seqrec.serving.limits import ENV_LIMITS, Limits

    g = p.add_argument_group(f"service limits (a flag wins over {ENV_LIMITS}, which wins over the default)")
    add_config_args(g, Limits, prefix="limit", metavar="N")


def _limits(args: argparse.Namespace):
    """The ``Limits`` that ``--limit-*`` flags ask for (over ``SEQREC_LIMITS``), or None when none is given."""
    from seqrec.serving.limits import Limits

    changes = {}
    for f in fields(Limits):
        value = getattr(args, f"limit_{f.name}", None)
        if value is not None and value < f.metadata["least"]:
            raise SeqrecError(
                f"--limit-{f.name.replace('_', '-')}: expected an integer >= {f.metadata['least']}, got {value}"
            )
        if value is not None:
            changes[f.name] = value
    return replace(Limits.from_env(), **changes) if changes else None
