"""The `seqrec` command's shared options and their checks: data and cleaning flags, evaluation flags,
the training flags made from the configurations' fields (``seqrec.api.config_fields``), the service
limit flags made from ``seqrec.limits.Limits``, and the checks of -k, --seed and --out that run before
a command starts its work."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from seqrec.errors import MAX_SEED, SeqrecError


# ---------------------------------------------------------------------------- data and evaluation
def _add_data_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        p.add_argument("data", nargs="+", metavar="DATA", help="data sets: paths (file or folder) or names (synthetic, ml-100k, …)")
    else:
        p.add_argument("data", metavar="DATA", help="a path (file or folder, format recognised) or a name (synthetic, ml-100k, …)")
    g = p.add_argument_group("cleaning")
    g.add_argument("--min-rating", type=float, default=None, help="keep interactions rated at least this (implicit feedback)")
    g.add_argument("--dedupe", action="store_true", help="keep only the first of repeated (user, item) pairs")
    g.add_argument("--k-core", type=int, default=None, help="min interactions per user and item (default 5; 0 for the paper's already-filtered files)")
    g.add_argument("--user-col", default=None, help="user column name (CSV/Parquet)")
    g.add_argument("--item-col", default=None, help="item column name")
    g.add_argument("--time-col", default=None, help="timestamp column name")
    g.add_argument("--rating-col", default=None, help="rating column name")
    g.add_argument("--sep", default=None, help="field separator (sniffed when absent)")


def _load(spec: str, args: argparse.Namespace):
    from seqrec.data import CleanConfig
    from seqrec.readers import load_dataset

    config = CleanConfig(min_rating=args.min_rating, dedupe=args.dedupe, k_core=args.k_core)
    return load_dataset(
        spec, config, user_col=args.user_col, item_col=args.item_col, time_col=args.time_col,
        rating_col=args.rating_col, sep=args.sep,
    )


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    from seqrec.evaluate import SEEN_TARGET, EvalConfig

    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--k", default="1,5,10,20", help="cut-offs, comma-separated (default 1,5,10,20)")
    p.add_argument("--no-exclude-seen", action="store_true", help="rank items the user already saw too (repeat consumption)")
    p.add_argument("--seen-target", choices=list(SEEN_TARGET), default=EvalConfig.seen_target,
                   help="full protocol, a target already in the user's history: miss (removed like every seen item, "
                   "counts as a miss), drop (leave out users with a seen or cold target) or keep (always scored) "
                   f"(default: {EvalConfig.seen_target})")
    p.add_argument("--negatives", choices=["uniform", "popularity"], default="uniform", help="sampled protocol: how negatives are drawn")
    p.add_argument("--n-negatives", type=int, default=100, help="sampled protocol: negatives per user (paper: 100)")
    p.add_argument("--seed", type=int, default=0)


def _eval_config(args: argparse.Namespace, protocol: str):
    from seqrec.evaluate import EvalConfig

    try:
        ks = tuple(int(k) for k in args.k.split(","))
    except ValueError:
        raise SeqrecError(f"--k: expected comma-separated integers like 1,5,10, got {args.k!r}") from None
    return EvalConfig(
        split=args.split, protocol=protocol, ks=ks, n_negatives=args.n_negatives, negatives=args.negatives,
        exclude_seen=not args.no_exclude_seen, seed=args.seed, seen_target=args.seen_target,
    )


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
def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def flag_type(kind: type) -> Any:
    if kind is bool:
        return _parse_bool
    if kind is tuple:
        return lambda text: tuple(float(x) for x in text.split(","))
    return kind


def add_option_args(g: argparse.ArgumentParser | argparse._ArgumentGroup, skip: tuple[str, ...] = ("quiet",)) -> None:
    """One ``--name`` flag per SASRec option (``seqrec.api.config_fields``), default None (not given)."""
    from seqrec.api import config_fields

    for f in config_fields():
        if f.name not in skip:
            g.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=flag_type(f.type), default=None,
                           help=f"{f.help} (without the recipe: {f.default})")


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The SASRec options a command line gave (flags added by ``add_option_args``)."""
    from seqrec.api import config_fields

    return {f.name: getattr(args, f.name) for f in config_fields() if getattr(args, f.name, None) is not None}


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from seqrec.recipe import RECIPES

    g = p.add_argument_group("model and training options (the Python API's names; the recipe fills those not given)")
    g.add_argument("--recipe", choices=RECIPES, default="auto",
                   help="auto: chosen from the data's statistics (default); paper: Kang & McAuley 2018 (BCE); "
                        "sasrec+: full cross-entropy as in the SASRec+ paper. Explicit flags win.")
    add_option_args(g)




# ---------------------------------------------------------------------------- service limit flags from Limits
def _add_limit_args(p: argparse.ArgumentParser) -> None:
    """``--limit-NAME`` for each field of ``Limits``, with its help and default from the dataclass."""
    from seqrec.limits import ENV_LIMITS, Limits

    g = p.add_argument_group(f"service limits (a flag wins over {ENV_LIMITS}, which wins over the default)")
    for f in fields(Limits):
        g.add_argument(f"--limit-{f.name.replace('_', '-')}", dest=f"limit_{f.name}", type=int, default=None,
                       metavar="N", help=f"{f.metadata['help']} (default {f.default:,})")


def _limits(args: argparse.Namespace):
    """The ``Limits`` that ``--limit-*`` flags ask for (over ``SEQREC_LIMITS``), or None when none is given."""
    from seqrec.limits import Limits

    changes = {}
    for f in fields(Limits):
        value = getattr(args, f"limit_{f.name}", None)
        if value is not None and value < f.metadata["least"]:
            raise SeqrecError(f"--limit-{f.name.replace('_', '-')}: expected an integer >= {f.metadata['least']}, "
                              f"got {value}")
        if value is not None:
            changes[f.name] = value
    return replace(Limits.from_env(), **changes) if changes else None
