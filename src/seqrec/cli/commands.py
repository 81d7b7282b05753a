"""The `seqrec` command: parsing, progress and printing around the library's functions."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from seqrec.cli.evaluate import cmd_compare, cmd_evaluate
from seqrec.cli.models import add_model_commands
from seqrec.cli.options import (
    _add_data_args,
    _add_eval_args,
    _add_train_args,
    _checked,
    _load,
    _split_config,
    given_options,
)
from seqrec.errors import SeqrecError

MODEL_HELP = "a baseline name (popularity, genre, markov, ar2, hybrid), 'all', or a model folder"


# ---------------------------------------------------------------------------- commands
def cmd_download(args: argparse.Namespace) -> None:
    from seqrec.data.download import download

    path = download(args.name, args.dir, quiet=args.quiet, force=args.force)
    print(path)


def cmd_prepare(args: argparse.Namespace) -> None:
    from seqrec.publish import check_output_folder

    t = time.perf_counter()
    check_output_folder(args.out, "data", force=args.force)  # before reading the data: refuse early
    ds = _load(args.data, args)
    ds.save(args.out, force=args.force)
    print(
        f"wrote {args.out}: {ds.n_users:,} users, {ds.n_items:,} items, {ds.n_interactions:,} interactions "
        f"(fingerprint {ds.fingerprint()}) in {time.perf_counter() - t:.1f} s"
    )


def cmd_stats(args: argparse.Namespace) -> None:
    ds = _load(args.data, args)
    before, after = ds.meta.get("before", {}), ds.counts()
    if args.json:
        print(json.dumps({"before": before, "after": after, "cleaning": ds.meta.get("cleaning", {})}, default=str))
        return
    from seqrec.evaluation.report import markdown_table

    keys = ["users", "items", "interactions", "density", "length_mean", "length_min", "length_max"]
    rows = [{"": k, "before cleaning": before.get(k), "after cleaning": after.get(k)} for k in keys]
    for p in ("p5", "p25", "p50", "p75", "p95"):
        rows.append(
            {
                "": f"length {p}",
                "before cleaning": before.get("length_percentiles", {}).get(p),
                "after cleaning": after["length_percentiles"][p],
            }
        )
    print(f"{ds.meta.get('name')} ({ds.meta.get('source') or 'generated'})")
    print(markdown_table(rows))


def cmd_train(args: argparse.Namespace) -> None:
    from seqrec.api import SASRec

    options = given_options(args)
    if args.quiet:
        options["quiet"] = True
    ds = _load(args.data, args)
    if args.from_store:
        from seqrec.serving.policy import load_policy
        from seqrec.serving.stores import read_marked, store_identity
        from seqrec.training.warm import with_events

        events, rowid = read_marked(args.from_store, load_policy(args.event_policy))
        ds = with_events(
            ds, events, source=args.from_store, mark={"store": store_identity(args.from_store), "rowid": rowid}
        )
        if not args.quiet:
            print(f"{ds.meta['events_added']:,} events from {args.from_store} added to {args.data}", flush=True)
    model = SASRec(recipe=args.recipe, **options).fit(
        ds, out_dir=args.out, resume=args.resume, init_from=args.init_from, **dataclasses.asdict(_split_config(args))
    )
    from seqrec.evaluation.report import markdown_table
    from seqrec.training.distributed import is_main

    if not is_main():  # under torchrun rank 0 reports
        return
    res = model.result_
    assert res is not None
    print(markdown_table([{"split": "valid (best)", **_pick(res.best_valid)}, {"split": "test", **_pick(res.test)}]))
    if "Recall@10 (horizon)" in res.test:
        print(
            f"test over the horizon: Recall@10 {res.test['Recall@10 (horizon)']:.4f}, "
            f"NDCG@10 {res.test['NDCG@10 (horizon)']:.4f} ({res.test['horizon_users']:,} users)"
        )
    print(f"model folder: {args.out}")


def _pick(m: dict) -> dict:
    return {k: m.get(k) for k in ("HR@10", "NDCG@10", "MRR")}


def cmd_plot(args: argparse.Namespace) -> None:
    from seqrec.evaluation.report import plot_run

    print(plot_run(args.run_dir))


def cmd_synthetic(args: argparse.Namespace) -> None:
    from seqrec.data.synthetic.files import write_synthetic

    r = write_synthetic(
        args.out, args.users, args.items, args.interactions, seed=args.seed, catalog=args.catalog, force=args.force
    )
    print(f"wrote {r['out']}: {r['interactions']:,} interactions, {r['items']:,} items in {r['seconds']:.1f} s")


def cmd_demo(args: argparse.Namespace) -> None:
    from seqrec.cli.demo import demo

    demo(args.data, host=args.host, port=args.port, quiet=args.quiet, retrain=args.retrain, serve=not args.no_serve)


def cmd_replay(args: argparse.Namespace) -> None:
    from seqrec.cli.replay import replay, table
    from seqrec.evaluation.report import markdown_table

    ds = _load(args.data, args)
    options = {"threads": args.threads} if args.threads else {}
    rows = replay(
        ds,
        args.out,
        period=args.period,
        periods=args.periods,
        k=args.k,
        epochs=args.epochs,
        warm_epochs=args.warm_epochs,
        seed=args.seed,
        options=options,
        quiet=args.quiet,
    )
    if args.json:
        print(json.dumps(table(rows, args.k)))
        return
    print(markdown_table(table(rows, args.k)))
    print(f"chart: {Path(args.out) / 'replay.png'}")


# ---------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr, like every other error, and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"seqrec: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="seqrec", description="SASRec sequential recommendation: data, training, evaluation, serving")
    p.add_argument("--version", action="version", version=f"seqrec {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=_checked(func))
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        return sp

    sp = add("download", cmd_download, "download a MovieLens data set from GroupLens")
    sp.add_argument("name", help="ml-100k, ml-1m, ml-latest-small, ml-20m, ml-25m or ml-32m")
    sp.add_argument("--dir", default=None, help="where to put it (default $SEQREC_DATA or ~/.cache/seqrec)")
    sp.add_argument("--force", action="store_true", help="download again even if present")

    sp = add("prepare", cmd_prepare, "clean a data set and write a compact prepared folder")
    _add_data_args(sp)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--force", action="store_true", help="replace an existing output folder")

    sp = add("synthetic", cmd_synthetic, "write a synthetic log (CSV or Parquet, by extension) with planted structure")
    for flag in ("users", "items", "interactions"):
        sp.add_argument(f"--{flag}", type=int, default=None, help="size (all three, or none: the embedded data set)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, help="FILE.csv or FILE.parquet")
    sp.add_argument("--catalog", default=None, help="also write the catalogue (raw_id,title,genres,year) here")
    sp.add_argument("--force", action="store_true", help="replace an existing file seqrec did not write")

    sp = add("stats", cmd_stats, "counts and history lengths before and after cleaning")
    _add_data_args(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("evaluate", cmd_evaluate, "evaluate one model (or all baselines): leave-one-out, or on a cut in time")
    _add_data_args(sp)
    sp.add_argument("--model", default="popularity", help=MODEL_HELP)
    sp.add_argument(
        "--protocol", choices=["full", "sampled"], default="full", help="full ranking (default) or 1+100 sampled"
    )
    _add_eval_args(sp)
    sp.add_argument("--json", action="store_true", help="print one JSON object (keys like 'NDCG@10')")

    sp = add("compare", cmd_compare, "evaluate several models on several data sets: a table and a bar chart")
    _add_data_args(sp, many=True)
    sp.add_argument("--model", action="append", help=f"repeatable; {MODEL_HELP} (default all baselines)")
    sp.add_argument("--protocol", default="full,sampled", help="full, sampled or full,sampled (default)")
    sp.add_argument("--chart", default=None, help="write a bar chart of NDCG@10 to this PNG")
    _add_eval_args(sp)
    sp.add_argument("--json", action="store_true")

    sp = add("train", cmd_train, "train SASRec; writes a model folder with metrics.jsonl and a resumable checkpoint")
    _add_data_args(sp)
    sp.add_argument("--out", required=True, help="run / model folder")
    sp.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out (refused when --out "
        "never held a run: train without --resume to start one)",
    )
    sp.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from this SASRec model folder (a warm start): its items keep their ids and weights, "
        "DATA's new items are added, the optimiser starts afresh",
    )
    sp.add_argument(
        "--from-store",
        default=None,
        metavar="EVENTS_DB_OR_URL",
        help="append the events of this event store (seqrec serve --store) to DATA's histories; "
        "DATA may be a model folder (its training data)",
    )
    sp.add_argument(
        "--event-policy",
        default=None,
        metavar="FILE",
        help="with --from-store: the event types whose events enter the histories (JSON, as for seqrec "
        "serve); default: all but dislike",
    )
    _add_train_args(sp)

    sp = add("plot", cmd_plot, "draw a run's learning curves as PNG")
    sp.add_argument("run_dir")

    add_model_commands(add)

    sp = add(
        "replay",
        cmd_replay,
        "replay the live loop over the last periods of a log: static, warm-started "
        "and retrained models against popularity and Markov, period by period",
    )
    _add_data_args(sp)
    sp.add_argument("--period", default="7d", help="length of a period (1d, 7d, 12h, ...)")
    sp.add_argument("--periods", type=int, default=8, help="how many periods at the end of the log to replay")
    sp.add_argument("-k", type=int, default=10)
    sp.add_argument("--epochs", type=int, default=20, help="epochs of the initial model and of each retraining")
    sp.add_argument("--warm-epochs", type=int, default=3, help="epochs of each warm start")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--threads", type=int, default=None)
    sp.add_argument("--out", required=True, help="a new folder for the models, the event store and the chart")
    sp.add_argument("--json", action="store_true")

    sp = add("demo", cmd_demo, "train (or reuse) a small SASRec and serve it with the web page")
    sp.add_argument("data", nargs="?", default="synthetic")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--retrain", action="store_true", help="ignore the cached model")
    sp.add_argument("--no-serve", action="store_true", help="train and print the table, do not start the service")
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seqrec")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # bad arguments, already reported on one line (--help and --version exit 0)
        if e.code in (0, None):
            raise
        return 2
    try:
        args.func(args)
    except SeqrecError as e:
        print(f"seqrec: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:  # not about a path the user gave: a bug or the machine's trouble
            raise
        print(f"seqrec: error: {e.filename}: {e.strerror or e}", file=sys.stderr)  # a path the system refuses
        return 2
    except KeyboardInterrupt:
        print("seqrec: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
