"""The `seqrec` commands that take a model folder: recommend, similar, export-items, export-onnx, serve,
and export-events (the service's event store); their functions and their parsers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

from seqrec.cli.options import _add_limit_args, _check_k, _limits
from seqrec.errors import SeqrecError


def _print_items(items: list, as_json: bool, extra: dict | None = None) -> None:
    rows = [
        dataclasses.asdict(i) if dataclasses.is_dataclass(i) and not isinstance(i, type) else dict(i) for i in items
    ]
    if as_json:
        print(json.dumps({"items": rows, **(extra or {})}, default=str))
        return
    from seqrec.evaluation.report import markdown_table

    for r in rows:
        if isinstance(r.get("genres"), list):
            r["genres"] = ", ".join(r["genres"])
    print(markdown_table(rows))
    for k, v in (extra or {}).items():
        if v:
            print(f"{k}: {v}")


def cmd_recommend(args: argparse.Namespace) -> None:
    from seqrec.serving.recommender import Recommender

    _check_k(args.k)
    table = args.all_users or args.users is not None
    if sum([args.history is not None, args.user is not None, table]) != 1:
        raise SeqrecError("give exactly one of --history 1,2,3, --user ID, --all-users or --users FILE")
    if table and args.out is None:
        raise SeqrecError("--all-users / --users: give --out recs.parquet (or .csv)")
    if not table and (args.out is not None or args.shard is not None):
        raise SeqrecError("--out and --shard go with --all-users or --users FILE")
    if table:
        _recommend_table(args)
        return
    rules = _filter_arg(args.filter)
    rec = Recommender.from_folder(args.model, backend="torch", index=args.index)
    if args.user is not None:
        result = rec.recommend_users([args.user], k=args.k, filter=rules, explain=args.explain)[0]
    else:
        history = [h.strip() for h in args.history.split(",") if h.strip()]
        result = rec.recommend(history, k=args.k, filter=rules, explain=args.explain)
    items: list = result.items
    if result.because is not None:
        items = [
            {
                **dataclasses.asdict(i),
                "because": b if args.json else ", ".join(str(x["title"] or x["item_id"]) for x in b),
            }
            for i, b in zip(result.items, result.because)
        ]
    _print_items(
        items,
        args.json,
        {"unknown_items": result.unknown_items, "fallback": result.fallback, "fewer_than_k": result.fewer_than_k},
    )


def _filter_arg(text: str | None) -> dict | None:
    """``--filter JSON`` as a filter (``seqrec.serving.filters``); a ``SeqrecError`` when it is not a JSON object."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise SeqrecError(f'--filter: not JSON ({e}); e.g. \'{{"genres": {{"any": ["Comedy"]}}}}\'') from None
    if not isinstance(value, dict):
        raise SeqrecError(f"--filter: expected a JSON object of field conditions, got {type(value).__name__}")
    return value


def _recommend_table(args: argparse.Namespace) -> None:
    from seqrec.serving.recommender import Recommender
    from seqrec.serving.table import parse_shard, recommend_table

    parse_shard(args.shard)  # before the model loads
    users = None
    if args.users is not None:
        try:
            users = [line.strip() for line in Path(args.users).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise SeqrecError(f"--users: cannot read {args.users} ({e})") from None
    rec = Recommender.from_folder(args.model, backend=args.backend, index=args.index)
    done = recommend_table(
        rec,
        args.out,
        k=args.k,
        users=users,
        shard=args.shard,
        memory_budget=args.memory_budget,
        force=args.force,
        progress=not args.quiet,
    )
    print(f"{done.rows:,} recommendations for {done.users:,} users in {done.seconds:.1f} s: {done.path}")


def cmd_similar(args: argparse.Namespace) -> None:
    from seqrec.serving.recommender import Recommender

    _check_k(args.k)
    _print_items(Recommender.from_folder(args.model, backend="torch").similar_items(args.item, k=args.k), args.json)


def cmd_export_items(args: argparse.Namespace) -> None:
    from seqrec.models.folder import load_folder
    from seqrec.serving.recommender import export_items

    print(export_items(load_folder(args.model).dataset, args.out))


def cmd_export_onnx(args: argparse.Namespace) -> None:
    from seqrec.models.folder import ONNX, load_folder, register_onnx
    from seqrec.serving.onnx import export_onnx

    default = Path(args.model) / ONNX
    out = export_onnx(load_folder(args.model).scorer, args.out or default)
    if out.resolve() == default.resolve():  # the folder's own export: recorded with the weights it holds
        register_onnx(args.model)
    print(out)


def cmd_serve(args: argparse.Namespace) -> None:
    from seqrec.serving.server import run

    run(
        args.model,
        host=args.host,
        port=args.port,
        workers=args.workers,
        backend=args.backend,
        limits=_limits(args),
        index=args.index,
        store=args.store,
        api_key=args.api_key,
        protect_reads=args.protect_reads,
        cors_origins=args.cors_origin or [],
        models_dir=args.models_dir,
        event_policy=args.event_policy,
    )


def cmd_export_events(args: argparse.Namespace) -> None:
    from seqrec.serving.policy import load_policy
    from seqrec.serving.stores import export_events

    policy = None if args.all_types else load_policy(args.event_policy)
    out, n = export_events(args.store, args.out, policy)
    print(f"wrote {out}: {n:,} events")


def _add_policy_arg(sp: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    sp.add_argument(
        "--event-policy",
        default=None,
        metavar="FILE",
        help='JSON of event types: {"view": {"history": true, "exclude": "seen"}, ...}: whether a type '
        "enters the history, and whether it removes the item from the user's recommendations "
        '("always" or "seen": with exclude_seen). Default: view, purchase (always excluded), '
        "dislike (not in the history, always excluded)",
    )


def _add_index_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--index",
        choices=["exact", "hnsw", "ivf"],
        default="exact",
        help="exact: score every item; hnsw / ivf (SASRec only): a faiss inner-product index built "
        "from the item embeddings as the model loads, for huge catalogues (seqrec.serving.ann)",
    )


def add_model_commands(add: Callable[[str, Callable, str], argparse.ArgumentParser]) -> None:
    """Register these commands with ``add(name, function, help)`` (``cli.build_parser``'s)."""
    sp = add("recommend", cmd_recommend, "recommend items for a history or a known user")
    sp.add_argument("model", help="model folder")
    sp.add_argument("--history", default=None, help="raw item ids, comma-separated, oldest first")
    sp.add_argument("--user", default=None, help="a user id from the training data")
    sp.add_argument("-k", type=int, default=10)
    sp.add_argument("--json", action="store_true")
    sp.add_argument(
        "--all-users",
        action="store_true",
        help="every user of the training data, written as a table to --out (user_id, rank, item_id, score)",
    )
    sp.add_argument("--users", default=None, help="a file of user ids, one a line: their table to --out")
    sp.add_argument("--out", default=None, help="the table: FILE.parquet or FILE.csv (written atomically)")
    sp.add_argument(
        "--shard",
        default=None,
        help="i/n: this machine's share of the users (n shards concatenated in order = the whole table)",
    )
    sp.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="torch",
        help="scoring backend of the table (default torch)",
    )
    sp.add_argument("--memory-budget", default="2GB", help="memory for scores of the users ranked at once")
    sp.add_argument("--force", action="store_true", help="replace an --out file seqrec did not write")
    sp.add_argument(
        "--filter",
        default=None,
        metavar="JSON",
        help='conditions on item facts, e.g. \'{"genres": {"any": ["Comedy"]}, "year": {"gte": 1990}}\' '
        "(operators any, all, none, gte, lte; item_id: any, none)",
    )
    sp.add_argument(
        "--explain", action="store_true", help="show per item the history items that raised its score most (because)"
    )
    _add_index_arg(sp)

    sp = add("similar", cmd_similar, "items most similar to an item (cosine of item embeddings)")
    sp.add_argument("model")
    sp.add_argument("item")
    sp.add_argument("-k", type=int, default=10)
    sp.add_argument("--json", action="store_true")

    sp = add("export-items", cmd_export_items, "write the item table (internal id, raw id, title, genres) as CSV")
    sp.add_argument("model")
    sp.add_argument("--out", required=True)

    sp = add("export-onnx", cmd_export_onnx, "export the model's scorer to ONNX")
    sp.add_argument("model")
    sp.add_argument("--out", default=None, help="default: MODEL/model.onnx")

    sp = add("serve", cmd_serve, "serve a model folder over HTTP (FastAPI), with a web page at /")
    sp.add_argument("model")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="auto: ONNX Runtime for SASRec (faster), torch for baselines",
    )
    _add_index_arg(sp)
    g = sp.add_argument_group("live service")
    g.add_argument(
        "--store",
        default=os.environ.get("SEQREC_STORE") or None,
        metavar="FILE_OR_URL",
        help="event store: an SQLite file (created when absent) or postgresql://user@host:port/db "
        "(seqrec[postgres]; default: $SEQREC_STORE): POST /events, users' histories, model reloads",
    )
    g.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="the key of POST /events and /admin/reload (default $SEQREC_API_KEY, which keeps it out of "
        "the process list); without one those routes are refused",
    )
    g.add_argument(
        "--models-dir",
        default=None,
        metavar="DIR",
        help="POST /admin/reload loads only model folders inside DIR (links resolved); without it a "
        "key holder can load any model folder the server can read",
    )
    g.add_argument(
        "--protect-reads",
        action="store_true",
        help="the read routes need the key too (/health, /ready, the page and the docs stay open)",
    )
    g.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="a browser origin allowed to call the service, e.g. https://shop.example (repeatable; none by default)",
    )
    _add_policy_arg(g)
    _add_limit_args(sp)

    sp = add("export-events", cmd_export_events, "write an event store's events to Parquet or CSV (by extension)")
    sp.add_argument("store", help="the event store (the file or postgresql:// URL given to seqrec serve --store)")
    sp.add_argument("--out", required=True, help="events.parquet or events.csv: user_id, item_id, timestamp, type")
    _add_policy_arg(sp)
    sp.add_argument(
        "--all-types",
        action="store_true",
        help="write every event; by default only those whose type enters the history (the policy)",
    )
