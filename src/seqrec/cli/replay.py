"""The live loop replayed: ``seqrec replay DATA --period 7d --periods 8``.

The last ``periods`` periods of a timestamped log are walked in order. Within a period every event is
predicted from the user's history so far (their events before it) by each arm's model of the previous period:
a hit when it is in the top k, items the user has seen left out. At the end of the period its events go into
an event store, as the service would have recorded them, and the models are refreshed:

* ``static``: the model trained before the first period, never refreshed;
* ``warm``: ``train DATA --from-store events.db --init-from PREVIOUS`` for ``warm_epochs`` epochs (the
  nightly retrain: the initial data plus every stored event, starting from yesterday's weights);
* ``scratch``: the same data trained from a fresh model for ``epochs`` epochs;
* ``popularity`` and ``markov`` refitted on the same data.

Every arm is scored through the product's ``Recommender`` and trained through its estimator and store, so the
replay measures the loop as it runs. Per period: HR@k and NDCG@k of each arm and the training seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqrec.config import CleanConfig, parse_duration
from seqrec.data.dataset import Dataset
from seqrec.data.split import LeaveOneOut, Segments
from seqrec.errors import SeqrecError
from seqrec.models.baselines import make_baseline
from seqrec.serving.recommender import Recommender
from seqrec.serving.store import EventStore
from seqrec.serving.stores import read_marked
from seqrec.training.warm import with_events

ARMS = ("static", "warm", "scratch", "popularity", "markov")


@dataclass
class Period:
    start: str
    events: int
    hits: dict[str, float] = field(default_factory=dict)  # arm -> HR@k
    ndcg: dict[str, float] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)


class _Everything(LeaveOneOut):
    """A split whose training part is every event (the baselines' ``fit`` reads ``train()`` and ``data``)."""

    def train(self) -> Segments:
        o = self.data.offsets
        return Segments(self.data.items, o[:-1], o[1:])


def _frame(ds: Dataset, mask: np.ndarray) -> pl.DataFrame:
    assert ds.times is not None
    users = np.repeat(np.arange(ds.n_users), ds.lengths)[mask]
    user, item = ds.user_ids.raw[users], ds.item_ids.raw[ds.items[mask] - 1]
    return pl.DataFrame(
        {
            "user": user.tolist() if user.dtype == object else user,  # text ids: not polars' Object
            "item": item.tolist() if item.dtype == object else item,
            "timestamp": ds.times[mask],
        }
    )


def _score(rec: Recommender, histories: list[list[Any]], targets: list[Any], k: int) -> tuple[float, float]:
    """HR@k and NDCG@k of ``targets`` after ``histories`` (raw ids), seen items excluded."""
    hits, gain = 0, 0.0
    for lo in range(0, len(histories), 4096):
        results = rec.recommend_many(histories[lo : lo + 4096], k=k)
        for result, target in zip(results, targets[lo : lo + 4096]):
            ranked = [str(i.item_id) for i in result.items]
            if str(target) in ranked:
                hits += 1
                gain += 1.0 / math.log2(ranked.index(str(target)) + 2)
    n = max(len(targets), 1)
    return hits / n, gain / n


def replay(
    ds: Dataset,
    out: str | Path,
    period: str = "7d",
    periods: int = 8,
    k: int = 10,
    epochs: int = 20,
    warm_epochs: int = 3,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    quiet: bool = False,
) -> list[Period]:
    """Replay the last ``periods`` periods of ``ds`` (see the module's docstring); models, the event store and
    the chart go into ``out`` (a new folder)."""
    from seqrec.api import SASRec

    if ds.times is None:
        raise SeqrecError("replay needs a time for every interaction; this data set has none")
    if periods < 1 or epochs < 1 or warm_epochs < 1:
        raise SeqrecError("--periods, --epochs and --warm-epochs must be at least 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SeqrecError(f"--out: {out} exists and is not an empty folder; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    span = parse_duration(period, "--period")
    end = int(ds.times.max()) + 1
    bounds = [end - (periods - p) * span for p in range(periods + 1)]
    if bounds[0] <= int(ds.times.min()):
        raise SeqrecError(f"{periods} periods of {period} reach back before the first event; ask for fewer")
    opts = {"quiet": True, "seed": seed, **(options or {})}
    base = Dataset.from_interactions(_frame(ds, ds.times < bounds[0]), config=CleanConfig(k_core=0), name="replay")
    log = (lambda *a, **kw: None) if quiet else print
    t = time.perf_counter()
    SASRec(**{**opts, "epochs": epochs}).fit(base, out_dir=out / "static", valid=False)
    first_seconds = time.perf_counter() - t
    log(f"initial model: {base.n_interactions:,} events before {_day(bounds[0])}, {first_seconds:.1f} s", flush=True)
    models: dict[str, Any] = dict.fromkeys(("static", "warm", "scratch"), out / "static")
    fitted: dict[str, Any] = {a: make_baseline(a, _Everything(base)) for a in ("popularity", "markov")}
    data = dict.fromkeys(("popularity", "markov"), base)
    store_path = out / "events.db"
    rows: list[Period] = []
    order = np.argsort(ds.times, kind="stable")
    user_of = np.repeat(np.arange(ds.n_users), ds.lengths)
    for p in range(periods):
        lo, hi = bounds[p], bounds[p + 1]
        events = order[(ds.times[order] >= lo) & (ds.times[order] < hi)]
        histories = [ds.item_ids.to_raw(ds.items[ds.offsets[user_of[j]] : j]) for j in events]
        targets = ds.item_ids.to_raw(ds.items[events])
        row = Period(_day(lo), len(events))
        for arm in ARMS:
            rec = (
                Recommender.from_folder(models[arm], backend="torch")
                if arm in models
                else Recommender(fitted[arm], data[arm], name=arm)
            )
            row.hits[arm], row.ndcg[arm] = _score(rec, histories, targets, k)
        with EventStore(store_path) as store:
            store.append(
                [
                    (str(ds.user_ids.raw[user_of[j]]), str(ds.item_ids.raw[ds.items[j] - 1]), float(ds.times[j]))
                    for j in events
                ]
            )
        stored, _ = read_marked(store_path)
        grown = with_events(base, stored, source=str(store_path))
        t = time.perf_counter()
        SASRec(**{**opts, "epochs": warm_epochs}).fit(
            grown, out_dir=out / f"warm-{p}", valid=False, init_from=models["warm"]
        )
        row.train_seconds["warm"] = time.perf_counter() - t
        t = time.perf_counter()
        SASRec(**{**opts, "epochs": epochs}).fit(grown, out_dir=out / f"scratch-{p}", valid=False)
        row.train_seconds["scratch"] = time.perf_counter() - t
        models["warm"], models["scratch"] = out / f"warm-{p}", out / f"scratch-{p}"
        for arm in ("popularity", "markov"):
            t = time.perf_counter()
            fitted[arm], data[arm] = make_baseline(arm, _Everything(grown)), grown
            row.train_seconds[arm] = time.perf_counter() - t
        rows.append(row)
        log(
            f"period {p + 1}/{periods} from {row.start}: {row.events:,} events; HR@{k} "
            + ", ".join(f"{a} {row.hits[a]:.3f}" for a in ARMS),
            flush=True,
        )
    _chart(rows, out / "replay.png", k)
    return rows


def _day(t: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(int(t), tz=UTC).strftime("%Y-%m-%d")


def table(rows: list[Period], k: int) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        line: dict[str, Any] = {"period from": r.start, "events": r.events}
        line.update({f"HR@{k} {a}": round(r.hits[a], 4) for a in ARMS})
        line.update({f"NDCG@{k} {a}": round(r.ndcg[a], 4) for a in ARMS})
        line.update({f"s {a}": round(r.train_seconds[a], 1) for a in ("warm", "scratch")})
        out.append(line)
    return out


def _chart(rows: list[Period], path: Path, k: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqrec.evaluation.report import save_png

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(1, len(rows) + 1)
    for arm in ARMS:
        a.plot(x, [r.hits[arm] for r in rows], marker="o", label=arm)
    a.set(xlabel="period", ylabel=f"HR@{k}", title="each period predicted by the previous period's model")
    a.legend()
    for arm in ("warm", "scratch"):
        b.bar(x + (0.2 if arm == "scratch" else -0.2), [r.train_seconds[arm] for r in rows], width=0.4, label=arm)
    b.set(xlabel="period", ylabel="training seconds", title="refresh cost")
    b.legend()
    fig.tight_layout()
    return save_png(fig, path)
