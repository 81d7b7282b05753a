"""Every user's recommendations as one table: ``seqrec recommend MODEL --all-users --out recs.parquet -k 100``.

Rows ``(user_id, rank, item_id, score)``, ``k`` per user, users in the data set's order, items they have seen
left out. Users are scored in blocks of ``BLOCK`` histories on a fixed grid (block ``b`` holds users
``b*BLOCK ..``) with the model's exact, ONNX or faiss backend, and a block's rows never depend on which other
blocks are scored with it: so the table is the same whatever the memory budget (how many blocks go at once) or
the shard count (``--shard i/n`` takes a contiguous run of blocks, and the n tables concatenated in shard
order are the one table). The file is written atomically: a kill leaves the old file or none, never a part.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from seqrec.config import parse_bytes
from seqrec.data.dataset import PAD
from seqrec.data.synthetic.files import check_output_file, write_frames
from seqrec.errors import SeqrecError
from seqrec.serving.ann import query_vectors
from seqrec.serving.recommender import Recommender

BLOCK = 256  # histories per scorer call: the grid every shard and chunk size shares
CREATED_BY = b"seqrec recommend"


@dataclass(frozen=True)
class TableResult:
    path: Path
    users: int
    rows: int
    seconds: float


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) as (i, n); None is the whole table (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        i, n = -1, 0
    if not (n >= 1 and 0 <= i < n):
        raise SeqrecError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return i, n


def _users(rec: Recommender, users: Sequence[Any] | None) -> np.ndarray:
    if users is None:
        return np.arange(rec.dataset.n_users)
    found = [rec.dataset.user_ids.get(u) for u in users]
    missing = [u for u, i in zip(users, found) if i is None]
    if missing:
        raise SeqrecError(f"--users: {len(missing)} unknown user id(s), e.g. {missing[:5]}")
    return np.asarray(found, dtype=np.int64)


def _block_scores(
    rec: Recommender, seqs: list[np.ndarray], k: int, exclude_seen: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, internal ids) [B, k] of one block, seen items and PAD left out."""
    if rec.index is not None:
        fetch = k + (max(len(s) for s in seqs) if exclude_seen else 0) + rec.index_params.margin
        sizes = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        queries = query_vectors(rec.scorer, rec._batch(seqs, np.arange(len(seqs)), sizes))
        vals, ids = (torch.from_numpy(a) for a in rec.index.search(queries, fetch))
        vals = vals.clone()
        vals[ids == PAD] = -math.inf
        if exclude_seen:
            for r, s in enumerate(seqs):  # at most fetch ids per row: a small set test
                vals[r, torch.from_numpy(np.isin(ids[r].numpy(), s))] = -math.inf
        top, pos = torch.topk(vals, min(k, vals.shape[1]), dim=1)
        return top, ids.gather(1, pos)
    scores, _ = rec._scores_for(seqs)
    scores[:, PAD] = -math.inf
    if exclude_seen:
        lengths = [len(s) for s in seqs]
        if sum(lengths):
            rows = torch.from_numpy(np.repeat(np.arange(len(seqs)), lengths))
            scores[rows, torch.from_numpy(np.concatenate(seqs).astype(np.int64))] = -math.inf
    return torch.topk(scores, min(k, rec.n_items), dim=1)


def _frames(
    rec: Recommender, users: np.ndarray, k: int, exclude_seen: bool, blocks_at_once: int, progress: bool
) -> Iterator[pl.DataFrame]:
    from tqdm.auto import tqdm

    ds = rec.dataset
    raw_users, raw_items = ds.user_ids.raw, ds.item_ids.raw
    bar = tqdm(total=len(users), unit="user", desc="recommendations", disable=not progress)
    if len(users) == 0:  # a shard with no users: an empty table with the columns
        yield pl.DataFrame(
            {
                "user_id": raw_users[:1],
                "rank": np.ones(1, np.int32),
                "item_id": raw_items[:1],
                "score": np.ones(1, np.float32),
            }
        ).head(0)
    try:
        for lo in range(0, len(users), BLOCK * blocks_at_once):
            parts = []
            for b in range(lo, min(lo + BLOCK * blocks_at_once, len(users)), BLOCK):
                block = users[b : b + BLOCK]
                seqs = [ds.sequence(int(u)).astype(np.int64) for u in block]
                with torch.inference_mode():
                    vals, ids = _block_scores(rec, seqs, k, exclude_seen)
                vals_np, ids_np = vals.numpy(), ids.numpy()
                keep = np.isfinite(vals_np) & (ids_np != PAD)  # fewer unseen items than k: a shorter list
                rank = np.broadcast_to(np.arange(1, ids_np.shape[1] + 1, dtype=np.int32), ids_np.shape)
                who = np.repeat(block, ids_np.shape[1]).reshape(ids_np.shape)
                parts.append(
                    pl.DataFrame(
                        {
                            "user_id": raw_users[who[keep]],
                            "rank": rank[keep],
                            "item_id": raw_items[ids_np[keep] - 1],
                            "score": vals_np[keep].astype(np.float32),
                        }
                    )
                )
                bar.update(len(block))
            yield pl.concat(parts)
    finally:
        bar.close()


def recommend_table(
    rec: Recommender,
    out: str | os.PathLike,
    k: int = 100,
    users: Sequence[Any] | None = None,
    shard: str | None = None,
    exclude_seen: bool = True,
    memory_budget: str | int = "2GB",
    force: bool = False,
    progress: bool = True,
) -> TableResult:
    """Write the table (see the module's docstring) to ``out`` (``.parquet`` or ``.csv``): ``users`` (raw ids;
    None: every user of the data set), ``shard`` ``"i/n"``; as many blocks at once as ``memory_budget`` holds
    (each needs its scores, float32 over the catalogue, about three times over)."""
    path = Path(out)
    check_output_file(path, force)
    if k < 1:
        raise SeqrecError(f"-k must be at least 1, got {k}")
    i, n = parse_shard(shard)
    chosen = _users(rec, users)
    n_blocks = -(-len(chosen) // BLOCK)
    first, last = i * n_blocks // n, (i + 1) * n_blocks // n
    chosen = chosen[first * BLOCK : last * BLOCK]
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # what a killed run of this table left
        stale.unlink(missing_ok=True)
    per_block = BLOCK * (rec.n_items + 1) * 4 * 3
    at_once = max(1, parse_bytes(memory_budget) // per_block)
    t = time.perf_counter()
    rows = write_frames(path, _frames(rec, chosen, k, exclude_seen, at_once, progress), created_by=CREATED_BY)
    return TableResult(path, len(chosen), rows, time.perf_counter() - t)
