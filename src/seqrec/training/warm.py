"""Warm starts: train on new data from an existing model instead of from scratch.

``extend_items`` renumbers a data set so that the items of the model's data keep their internal ids
(1..M, in the model's order, also those absent from the new data, so their embeddings stay where they
are) and the new data's other items follow (M+1.., in the new data's order). ``warm_model`` builds a
model for the grown catalogue: every weight of the old model is carried over (item rows, positions,
blocks); each new item's row is the mean of the old item rows plus a little noise, so a new item
starts as an average item and fine-tuning moves it from there. The optimiser starts afresh (the
trainer makes a new one).

A model with ``item_features`` keeps its feature vocabulary and the embeddings of its feature values:
the grown catalogue's facts are encoded under it (an old item whose facts the new data lacks keeps its
old feature ids); a categorical value it has not seen (a new genre) is added to its field, its embedding
starting at the mean of that field's values. Items without training interactions take their feature
neighbours' id rows after training, as in any run with features.

``with_events`` appends stored events (``seqrec.serving.store``'s frame: user_id, item_id, timestamp) to a
data set's histories, in time order, for a retrain on yesterday's data plus today's events.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl
import torch

from seqrec.config import CleanConfig
from seqrec.data.dataset import Dataset, IdMap, id_key
from seqrec.errors import SeqrecError
from seqrec.models.features import CATEGORICAL, MAX_VOCAB, FeatureVocab
from seqrec.models.sasrec import SASRecModel

NEW_ITEM_NOISE = 0.1  # a new item's row: the old rows' mean plus this times their per-dimension std, in N(0, 1)


def _keys(raw: np.ndarray) -> list[str]:
    return [id_key(r) for r in raw.tolist()]


def extend_items(ds: Dataset, old: Dataset) -> tuple[Dataset, int]:
    """``ds`` with ``old``'s items first, at their internal ids, then ``ds``'s new items; and how many
    items are new. Users, histories (as raw ids) and catalogue rows of ``ds`` are unchanged."""
    found = (old.item_ids.get(r) for r in ds.item_ids.raw.tolist())  # the old map's own lookup (id_key spellings)
    pos = np.array([-1 if i is None else i - 1 for i in found], dtype=np.int64)
    fresh = np.flatnonzero(pos < 0)
    m = len(old.item_ids)
    to_final = np.zeros(ds.n_items + 1, dtype=np.int64)  # ds's internal id -> the extended one (PAD stays 0)
    known = pos >= 0
    to_final[1:][known] = pos[known] + 1
    to_final[1:][fresh] = m + 1 + np.arange(len(fresh))
    old_raw, new_raw = old.item_ids.raw, ds.item_ids.raw[fresh]
    if old_raw.dtype != new_raw.dtype and len(new_raw):  # e.g. integer ids before, text ids now: text for all
        old_raw, new_raw = np.array(_keys(old_raw)), np.array(_keys(new_raw))
    raw = (
        np.concatenate([old_raw, new_raw]) if len(new_raw) else old_raw.copy()
    )  # no new items: the old ids as they were
    # catalogue: ds's row for every item it has, the old row for old items the new data lacks
    new_rows = ds.catalog.with_columns(pl.Series("item", to_final[1:].astype(np.int32)))
    missing = np.setdiff1d(np.arange(1, m + 1), to_final[1:][known])
    old_rows = old.catalog.filter(pl.col("item").is_in(missing.tolist()))
    catalog = (
        pl.concat(
            [new_rows, old_rows.select([c for c in old_rows.columns if c in new_rows.columns])], how="diagonal_relaxed"
        )
        .sort("item")
        .with_columns(pl.Series("raw_id", raw))
    )
    out = Dataset(
        offsets=ds.offsets,
        items=to_final[ds.items].astype(np.int32),
        user_ids=ds.user_ids,
        item_ids=IdMap(raw, offset=1),
        catalog=catalog,
        meta=dict(ds.meta),
        times=ds.times,
    )
    out.meta.update(out.counts())
    out.meta["warm_start"] = {"old_items": m, "new_items": int(len(fresh)), "old_items_absent": int(len(missing))}
    return out, int(len(fresh))


def warm_model(old: SASRecModel, n_items: int, seed: int = 0, dataset: Dataset | None = None) -> SASRecModel:
    """A model for ``n_items`` items (at least the old model's) with every weight of ``old``; new item rows
    are the old rows' mean plus ``NEW_ITEM_NOISE`` of their spread, drawn from ``seed``. A model with
    item features needs ``dataset`` (``extend_items``' result): its catalogue gives the feature table, under
    the old vocabulary grown by the values it did not know (``dataset.meta["warm_start"]`` counts them)."""
    if n_items < old.n_items:
        raise SeqrecError(
            f"warm start: the new catalogue has {n_items} items, fewer than the model's "
            f"{old.n_items}; a warm start only adds items"
        )
    state = old.state_dict()
    emb = state["item_emb.weight"]
    rows = emb[1:].float()
    gen = torch.Generator().manual_seed(seed)
    extra = n_items - old.n_items
    noise = torch.randn(extra, emb.shape[1], generator=gen) * rows.std(0, keepdim=True) * NEW_ITEM_NOISE
    state = {**state, "item_emb.weight": torch.cat([emb, (rows.mean(0, keepdim=True) + noise).to(emb.dtype)])}
    vocab = None
    if old.features is not None:
        if dataset is None or dataset.n_items != n_items:
            raise SeqrecError(
                "warm start: a SASRec with item features needs the grown data set to encode the new items' facts"
            )
        vocab, features = _warm_features(old, dataset, gen)
        state.update({f"features.{k}": v for k, v in features.items()})
    model = SASRecModel(replace(old.config, n_items=n_items), vocab)
    model.load_state_dict(state)
    return model


def _warm_features(old: SASRecModel, ds: Dataset, gen: torch.Generator) -> tuple[FeatureVocab, dict[str, Any]]:
    """The old model's feature vocabulary grown by the categorical values ``ds``'s catalogue adds, and the
    state of its feature layers for ``ds``: value embeddings carried over (new values at their field's mean,
    plus noise), the table of ``ds``'s items under the grown vocabulary, which items are trained."""
    from seqrec.data.split import LeaveOneOut

    layers = old.features
    assert layers is not None
    vocab = layers.vocab
    catalog = ds.catalog.sort("item")
    _, unknown = vocab.encode(catalog)
    grown = FeatureVocab(
        tuple(
            replace(f, values=f.values + tuple(unknown.get(f.name, []))) if f.kind == CATEGORICAL else f
            for f in vocab.fields
        )
    )
    if grown.size > MAX_VOCAB:
        raise SeqrecError(f"warm start: {grown.size:,} feature values, more than the {MAX_VOCAB:,} seqrec allows")
    weight = layers.emb.weight.detach()
    rows = [weight[:1]]
    for f, g, off in zip(vocab.fields, grown.fields, vocab.offsets()):
        own = weight[off + 1 : off + 1 + f.size]
        rows.append(own)
        if g.size > f.size:
            spread = own.float().std(0, keepdim=True) if f.size > 1 else torch.zeros(1, weight.shape[1])
            fresh = (
                own.float().mean(0, keepdim=True)
                + torch.randn(g.size - f.size, weight.shape[1], generator=gen) * spread * NEW_ITEM_NOISE
            )
            rows.append(fresh.to(weight.dtype))
    encoded, _ = grown.encode(catalog)
    table = np.zeros((ds.n_items + 1, grown.columns), dtype=np.int64)
    table[catalog["item"].to_numpy().astype(np.int64)] = encoded
    # an old item whose facts the new catalogue lacks keeps its old ids (remapped to the grown offsets)
    before = layers.table.detach().cpu().numpy()
    shift = np.zeros(vocab.size + 1, dtype=np.int64)
    for f, old_off, new_off in zip(vocab.fields, vocab.offsets(), grown.offsets()):
        shift[old_off + 1 : old_off + 1 + f.size] = new_off - old_off
    lacking = np.flatnonzero(~table[: len(before)].any(1) & before.any(1))
    table[lacking] = np.where(before[lacking] > 0, before[lacking] + shift[before[lacking]], 0)
    grown.check_table(table, "warm start: item features")
    trained = LeaveOneOut(ds).train().counts(ds.n_items) > 0
    state = {k: v.detach().clone() for k, v in layers.state_dict().items()}
    state.update(
        {
            "emb.weight": torch.cat(rows),
            "table": torch.from_numpy(table),
            "id_weight": torch.as_tensor(trained, dtype=torch.float32).reshape(-1, 1),
        }
    )
    info = ds.meta.get("warm_start")
    if isinstance(info, dict):
        info["new_feature_values"] = {k: len(v) for k, v in unknown.items()}
    return grown, state


def with_events(
    ds: Dataset, events: pl.DataFrame, source: str = "the event store", mark: dict[str, Any] | None = None
) -> Dataset:
    """``ds``'s histories with ``events`` (columns user_id, item_id, timestamp) appended in time order;
    users and items seen first in the events are added. No cleaning is applied (the data set was
    cleaned when it was made; events are kept as they came). ``mark`` (``{"store": path, "rowid": n}``,
    see ``seqrec.serving.stores.read_marked``) is kept in the data's meta as ``store_mark``."""
    missing = {"user_id", "item_id"} - set(events.columns)
    if missing:
        raise SeqrecError(f"{source}: events need columns user_id and item_id, missing {sorted(missing)}")
    users = np.repeat(np.arange(ds.n_users), ds.lengths)
    user_raw = np.array(_keys(ds.user_ids.raw), dtype=object)
    item_raw = np.array(_keys(ds.item_ids.raw), dtype=object)
    base = pl.DataFrame(
        {"user": user_raw[users].tolist(), "item": item_raw[ds.items.astype(np.int64) - 1].tolist()},
        schema={"user": pl.String, "item": pl.String},
    )
    new = events.sort("timestamp", maintain_order=True) if "timestamp" in events.columns else events
    new = new.select(
        pl.col("user_id").map_elements(id_key, return_dtype=pl.String).alias("user"),
        pl.col("item_id").map_elements(id_key, return_dtype=pl.String).alias("item"),
    )
    frame = pl.concat([base, new])  # no timestamps: each user's rows keep this order, old history first
    catalog = ds.catalog.with_columns(pl.Series("raw_id", item_raw.tolist(), dtype=pl.String))
    out = Dataset.from_interactions(
        frame, catalog=catalog, config=CleanConfig(k_core=0), name=str(ds.meta.get("name", "data")), source=source
    )
    out.meta["events_added"] = new.height
    if mark is not None:
        out.meta["store_mark"] = mark
    return out


def describe(info: dict[str, Any]) -> str:
    values = info.get("new_feature_values") or {}
    added = "; new feature values: " + ", ".join(f"{n} {k}" for k, n in values.items()) if values else ""
    return (
        f"warm start: {info['old_items']:,} items kept at their ids, {info['new_items']:,} new items "
        f"(rows initialised at the mean item), {info['old_items_absent']:,} old items absent from the new data"
        f"{added}"
    )
