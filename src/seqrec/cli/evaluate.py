"""``seqrec evaluate`` and ``seqrec compare``: models (baseline names or model folders) scored on data sets under
a split (leave-one-out or a time cut), a table, JSON or a bar chart."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from seqrec.cli.options import (
    _eval_config,
    _load,
    _split_config,
)
from seqrec.errors import SeqrecError


def _scorer(spec: str, loo):
    """A fitted baseline by name, or the scorer stored in a model folder (checked against the data)."""
    from seqrec.models.baselines import BASELINES, make_baseline

    if spec in BASELINES:
        return make_baseline(spec, loo)
    path = Path(spec)
    if not path.exists():
        raise SeqrecError(f"unknown model {spec!r}: expected one of {', '.join(BASELINES)}, 'all', or a model folder")
    from seqrec.models.folder import load_folder

    bundle = load_folder(path)
    theirs, ours = bundle.dataset.fingerprint(), loo.data.fingerprint()
    if theirs != ours:
        raise SeqrecError(
            f"{path}: the model was trained on data set {bundle.dataset.meta.get('name')!r} (fingerprint {theirs}), "
            f"not on this one (fingerprint {ours}); evaluate it on the same data and cleaning options"
        )
    return bundle.scorer


def _model_specs(specs: Sequence[str], data) -> list[str]:
    from seqrec.models.baselines import BASELINES

    out: list[str] = []
    for s in specs:
        if s == "all":
            out += [b for b in BASELINES if b != "genre" or data.item_genres()]
        else:
            out.append(s)
    return out


def _label(spec: str) -> str:
    return Path(spec).name if Path(spec).exists() else spec


def _evaluate_rows(data_specs: Sequence[str], model_specs: Sequence[str], protocols: Sequence[str], args) -> list[dict]:
    from seqrec.data.split import TemporalSplit, make_split
    from seqrec.evaluation.evaluator import check_budget, evaluate
    from seqrec.evaluation.horizon import evaluate_horizon

    rows = []
    for dspec in data_specs:
        ds = _load(dspec, args)
        loo = make_split(ds, _split_config(args))
        cut = loo.describe() if isinstance(loo, TemporalSplit) else {}
        if cut and not args.quiet:
            print("temporal split: " + ", ".join(f"{k} {v}" for k, v in cut.items() if k != "scheme"), flush=True)
        for protocol in protocols:  # a memory budget that cannot hold one user's scores: refused before any fit
            check_budget(ds.n_items, _eval_config(args, protocol))
        for mspec in _model_specs(model_specs, ds):
            t = time.perf_counter()
            scorer = _scorer(mspec, loo)
            for protocol in protocols:
                config = _eval_config(args, protocol)
                metrics = evaluate(scorer, loo, config, progress=not args.quiet)
                if isinstance(loo, TemporalSplit) and loo.horizon is not None and config.split == "test":
                    metrics.update(evaluate_horizon(scorer, loo, config.ks, exclude_seen=config.exclude_seen))
                extra = {k: cut[k] for k in ("cut", "cold_users", "cold_targets")} if cut else {}
                rows.append(
                    {
                        "data": ds.meta.get("name", dspec),
                        "model": _label(mspec),
                        "protocol": protocol,
                        **metrics,
                        **extra,
                        "seconds": round(time.perf_counter() - t, 2),
                    }
                )
    return rows


def cmd_evaluate(args: argparse.Namespace) -> None:
    rows = _evaluate_rows([args.data], [args.model], [args.protocol], args)
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows))
        return
    from seqrec.evaluation.report import markdown_table

    cols = ["data", "model", "protocol", "HR@10", "NDCG@10", "MRR", "users"]
    cols += [c for c in ("Recall@10 (horizon)", "NDCG@10 (horizon)", "cold_targets") if c in rows[0]]
    print(markdown_table(rows, [*cols, "seconds"]))


def cmd_compare(args: argparse.Namespace) -> None:
    protocols = [p.strip() for p in args.protocol.split(",")]
    for p in protocols:
        if p not in ("full", "sampled"):
            raise SeqrecError(f"--protocol: expected full, sampled or full,sampled, got {p!r}")
    rows = _evaluate_rows(args.data, args.model or ["all"], protocols, args)
    if args.json:
        print(json.dumps(rows))
        return
    from seqrec.evaluation.report import bar_chart, markdown_table

    cols = ["HR@10", "NDCG@10", "MRR"] + [
        c
        for c in ("Recall@10 (horizon)", "NDCG@10 (horizon)", "Coverage@10", "Novelty@10", "Diversity@10")
        if c in rows[0]
    ]
    table = []
    for r in rows:
        row = {"data": r["data"], "model": r["model"]}
        if r["protocol"] == protocols[0]:
            table.append(row)
        else:
            row = next(t for t in table if t["data"] == r["data"] and t["model"] == r["model"])
        tag = "full" if r["protocol"] == "full" else "sampled-100"
        row.update({f"{c} {tag}": r[c] for c in cols if c in r})
    print(markdown_table(table))
    if args.chart:
        full = [r for r in rows if r["protocol"] == protocols[0]]
        print(f"chart: {bar_chart(full, 'NDCG@10', args.chart)}")
