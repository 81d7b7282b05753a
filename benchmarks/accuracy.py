"""Accuracy of SASRec's losses at equal training time, beside the best baseline.

Each loss trains for the same wall-clock budget (``--budget`` seconds, validation excluded), then
the best-on-validation weights are evaluated once on the test split, full ranking and the paper's
1+100 sampled protocol. Prints a Markdown table with the ratios that matter:
the best loss vs ``bce`` with one negative, and SASRec vs the best baseline.

    python benchmarks/accuracy.py ../shared/data/ml-100k --budget 120
    python benchmarks/accuracy.py ../shared/data/amazon-games/games.txt --budget 600 --losses ce,bce --dropout 0.5

Every SASRec option of ``seqrec train`` is accepted with the same name (``--max-len 200``,
``--windows true``); one not given takes the library's default, except ``--epochs`` (1000 here) and
``--patience`` (0 here: no early stopping), so that the budget is what ends training. ``--losses``
picks the losses (with the presets below) and ``--budget`` is the time limit.

The cosine schedule (the default) decays each loss's learning rate over its training time
(``time_limit``), so every loss ends its schedule when its time is up; ``--cosine-over epochs`` decays
over ``--epochs`` instead, and ``--schedule constant`` keeps the rate.

``--track-sampled N`` also evaluates the test split's sampled protocol every N epochs during
training and reports when it first reached both ``--target`` and ``--target-hr`` (time to
quality; this peeks at the test split on purpose, it is a measurement, not model selection).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import sys
import time

import torch

from seqrec.cli.options import add_option_args, given_options
from seqrec.config import TrainConfig
from seqrec.data.readers import load_dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, evaluate
from seqrec.evaluation.report import markdown_table
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.training.loop import train

LOSS_PRESETS = {
    "bce": dict(loss="bce", n_negatives=1),
    "ce": dict(loss="ce"),
    "gbce": dict(loss="gbce", n_negatives=256, gbce_t=0.75),
    "sampled-softmax": dict(loss="sampled-softmax", n_negatives=1024),
}


PROTOCOL = {"epochs": 1000, "patience": 0}  # defaults of this benchmark: the budget ends training
NOT_OPTIONS = ("quiet", "loss", "time_limit")  # set by the benchmark: quiet runs, --losses, --budget
MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(SASRecConfig))


def options(args: argparse.Namespace) -> dict:
    """The SASRec options of this run: the benchmark's defaults, then those given on the command line."""
    return {**PROTOCOL, **given_options(args)}


def model_config(n_items: int, args: argparse.Namespace) -> SASRecConfig:
    return SASRecConfig(n_items=n_items, **{k: v for k, v in options(args).items() if k in MODEL_FIELDS})


def make_model(loo: LeaveOneOut, args: argparse.Namespace) -> SASRecModel:
    return SASRecModel(model_config(loo.data.n_items, args))


def make_config(name: str, args: argparse.Namespace) -> TrainConfig:
    """Training options of loss ``name``: its preset, then the options given (negatives never for ce).

    The budget is the time limit (the cosine spans it) unless the cosine spans epochs; the callback
    stops training at the budget either way."""
    train = {k: v for k, v in options(args).items() if k not in MODEL_FIELDS}
    if name == "ce":
        train.pop("n_negatives", None)
        train.pop("shared_negatives", None)
    by_time = train.get("schedule", TrainConfig.schedule) != "cosine" or args.cosine_over == "budget"
    return TrainConfig(**{**LOSS_PRESETS[name], **train}, quiet=True, time_limit=args.budget if by_time else None)


def run_loss(name: str, loo: LeaveOneOut, args: argparse.Namespace) -> dict:
    model = make_model(loo, args)
    config = make_config(name, args)
    spent, reached = 0.0, None
    sampled = EvalConfig(split="test", protocol="sampled")

    def callback(row: dict) -> bool:
        nonlocal spent, reached
        spent += row["seconds"]
        if args.track_sampled and reached is None and row["epoch"] % args.track_sampled == 0:
            m = evaluate(model, loo, sampled)
            print(
                f"  {name} epoch {row['epoch']}: {spent:.0f} s, sampled HR@10 {m['HR@10']:.4f} "
                f"NDCG@10 {m['NDCG@10']:.4f}",
                file=sys.stderr,
                flush=True,
            )
            if m["NDCG@10"] >= args.target and m["HR@10"] >= args.target_hr:
                reached = (row["epoch"], spent)
                if args.stop_at_target:
                    return False
        return spent < args.budget

    t = time.perf_counter()
    result = train(model, loo, config, callback=callback)
    full = result.test
    samp = evaluate(model, loo, sampled)
    row = {
        "model": f"SASRec {name}",
        "epochs": len(result.history),
        "train s": round(spent, 1),
        "HR@10": full["HR@10"],
        "NDCG@10": full["NDCG@10"],
        "MRR": full["MRR"],
        "HR@10 s100": samp["HR@10"],
        "NDCG@10 s100": samp["NDCG@10"],
    }
    if args.track_sampled:
        row["reached target"] = f"epoch {reached[0]}, {reached[1]:.0f} s" if reached else "no"
    print(f"  {name}: {time.perf_counter() - t:.0f} s in all", file=sys.stderr)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--losses", default="bce,ce,gbce,sampled-softmax")
    p.add_argument("--budget", type=float, default=120, help="training seconds per loss (validation excluded)")
    p.add_argument(
        "--cosine-over",
        choices=["budget", "epochs"],
        default="budget",
        help="the cosine decays over each loss's training time, or over --epochs",
    )
    p.add_argument("--track-sampled", type=int, default=0, metavar="N")
    p.add_argument("--target", type=float, default=0.536, help="sampled NDCG@10 to reach (paper, Games: 0.536)")
    p.add_argument("--target-hr", type=float, default=0.741, help="and sampled HR@10 (paper, Games: 0.741)")
    p.add_argument(
        "--stop-at-target", action="store_true", help="with --track-sampled: stop once the target is reached"
    )
    p.add_argument("--no-baselines", action="store_true")
    g = p.add_argument_group(
        "SASRec options (seqrec train's names; not given: the library's defaults, "
        f"except {', '.join(f'--{k} {v}' for k, v in PROTOCOL.items())})"
    )
    add_option_args(g, skip=NOT_OPTIONS)
    g.add_argument("--max-epochs", dest="epochs", type=int, help=argparse.SUPPRESS)  # the older name of --epochs
    args = p.parse_args()

    ds = load_dataset(args.data)
    loo = LeaveOneOut(ds)
    rows = []
    if not args.no_baselines:
        for b in BASELINES:
            try:
                scorer = make_baseline(b, loo)
            except SeqrecError:
                continue
            full = evaluate(scorer, loo, EvalConfig(split="test"))
            samp = evaluate(scorer, loo, EvalConfig(split="test", protocol="sampled"))
            rows.append(
                {
                    "model": b,
                    "HR@10": full["HR@10"],
                    "NDCG@10": full["NDCG@10"],
                    "MRR": full["MRR"],
                    "HR@10 s100": samp["HR@10"],
                    "NDCG@10 s100": samp["NDCG@10"],
                }
            )
    best_baseline = max(rows, key=lambda r: r["NDCG@10"]) if rows else None
    losses = [s.strip() for s in args.losses.split(",")]
    for name in losses:
        if name not in LOSS_PRESETS:
            raise SystemExit(f"unknown loss {name!r}; expected {', '.join(LOSS_PRESETS)}")
        rows.append(run_loss(name, loo, args))
    sas = [r for r in rows if r["model"].startswith("SASRec")]
    bce = next((r for r in sas if r["model"] == "SASRec bce"), None)
    for r in rows:
        if bce:
            r["× bce"] = round(r["NDCG@10"] / max(bce["NDCG@10"], 1e-12), 2)
        if best_baseline:
            r["× best baseline"] = round(r["NDCG@10"] / max(best_baseline["NDCG@10"], 1e-12), 2)
    m, t = model_config(ds.n_items, args), make_config(losses[0], args)
    negatives = options(args).get("n_negatives")
    schedule = f"{t.schedule} schedule"
    if t.schedule == "cosine":
        schedule += f" over {t.epochs} epochs" if args.cosine_over == "epochs" else " over the budget"
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available() and t.device != "cpu"
        else platform.processor() or "cpu"
    )
    print(
        f"\n{ds.meta.get('name')}: {ds.n_users:,} users, {ds.n_items:,} items; test split, full ranking "
        f"(HR@10, NDCG@10, MRR) and sampled 1+100 (s100). {args.budget:.0f} s of training per loss on {device}, "
        f"{t.threads or 'default'} thread(s); hidden {m.hidden}, {m.blocks} blocks, max_len {m.max_len}, "
        f"dropout {m.dropout}, {m.norm}-norm, {m.activation}, batch {t.batch_size}, lr {t.lr}, {t.optimizer} (weight decay {t.weight_decay}), {schedule}"
        f"{', windows' if t.windows else ''}{f', {negatives} negatives' if negatives else ''}. {datetime.date.today()}, torch {torch.__version__}.\n"
    )
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
