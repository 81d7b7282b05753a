"""The ranking kernels of the full protocol: a target's rank among every unseen item (ties count against it),
computed a chunk of rows at a time in reused buffers, with the top-k lists taken from the best column groups
for the beyond-accuracy statistics (``seqrec.evaluation.beyond``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from seqrec.evaluation.beyond import ListStats

NEG_INF = float("-inf")
_MISS = -1  # rank recorded for a target removed as seen (seen_target="miss"); reported as math.inf
_EXACT_COUNT = 2**24  # float32 holds every whole number below this: counts of columns summed as floats are exact
_GROUP = (
    64  # top-K lists: columns taken in groups of this many; only the K groups with the highest maxima can hold them
)


def rank_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pessimistic 0-based rank of ``scores[b, targets[b]]`` within row b: LongTensor [B].

    Every other column whose score is >= the target's counts against it (ties lose); NaN is -inf.
    """
    scores = torch.nan_to_num(scores.float(), nan=NEG_INF, posinf=math.inf, neginf=NEG_INF)
    return _ranks(scores, targets.to(scores.device, torch.int64))


def _ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    t = scores.gather(1, targets[:, None])
    return (scores >= t).sum(1) - 1


def _full_chunk(
    work,
    targets,
    seen_rows,
    seen_items,
    flags,
    miss: bool = False,
    finite: bool = False,
    cover: ListStats | None = None,
) -> torch.Tensor:
    """Ranks for one chunk of rows whose scores were copied into ``work`` (modified in place).

    Seen items and PAD are set to -inf, the target's own score is restored, then every other
    column with a score >= the target's counts against it. With ``miss`` a target that is one of
    the row's seen items stays removed (also from ``work``, so not in the top-K lists) and its
    rank is ``_MISS``. ``finite``: the scores are known to hold no NaN (the pass that maps NaN to
    -inf is skipped). ``cover``: the coverage flags are updated from the candidates' top K first
    (``work`` then holds the comparisons with the target, not the scores).
    """
    ar = torch.arange(len(targets), device=work.device)
    if not finite:
        work.nan_to_num_(nan=NEG_INF, posinf=math.inf, neginf=NEG_INF)
    t = work[ar, targets]
    if len(seen_rows):
        work[seen_rows, seen_items] = NEG_INF
    work[:, 0] = NEG_INF
    gone = None
    if miss and len(seen_rows):
        gone = torch.zeros(len(targets), dtype=torch.bool, device=work.device)
        gone[seen_rows[seen_items == targets[seen_rows]]] = True
        work[ar, targets] = torch.where(gone, NEG_INF, t)
    else:
        work[ar, targets] = t
    if cover is not None:
        _update_coverage(cover, work, None)
    if work.shape[1] < _EXACT_COUNT:  # compared in place (1.0 / 0.0) and summed as floats: whole numbers, exact
        ranks = torch.ge(work, t[:, None], out=work).sum(1).long() - 1
    else:  # counted as bytes: summing a bool tensor directly takes a much slower path on the CPU
        ranks = torch.ge(work, t[:, None], out=flags).view(torch.uint8).sum(1, dtype=torch.int32).long() - 1
    lost = torch.isneginf(t)
    if lost.any():  # a -inf target ties every remaining candidate: its rank is their number
        excl = torch.zeros_like(flags)
        excl[seen_rows, seen_items] = True
        excl[:, 0] = True
        excl[ar, targets] = True
        ranks = torch.where(lost, (~excl).sum(1), ranks)
    if gone is not None:
        ranks = ranks.masked_fill(gone, _MISS)
    return ranks


def _bounded(h: torch.Tensor, items: torch.Tensor) -> bool:
    """Whether every product ``h @ items.T`` is finite (no NaN, no overflow): so its ranking may skip NaN."""
    top = float(h.abs().amax()) if h.numel() else 0.0
    return math.isfinite(top) and top * float(items.abs().amax()) * h.shape[1] < 1e37


def _top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(scores, k, dim=1)`` (values, column indices) for wide rows: the top K of a row lie in the K
    groups of ``_GROUP`` columns whose maxima are highest (ties aside, where either choice is a top K), so only
    those groups and the last, partial one are searched: one pass over the row (the group maxima) instead of a
    selection over all of it."""
    rows, width = scores.shape
    groups = width // _GROUP
    if groups < 8 * k or not scores.is_contiguous():
        return torch.topk(scores, k, dim=1)
    whole = scores[:, : groups * _GROUP].view(rows, groups, _GROUP)
    best = whole.amax(2).topk(k, dim=1).indices  # [rows, k] groups
    cols = (best[:, :, None] * _GROUP + torch.arange(_GROUP, device=scores.device)).reshape(rows, -1)
    tail = torch.arange(groups * _GROUP, width, device=scores.device).expand(rows, -1)
    cols = torch.cat([cols, tail], dim=1)
    vals, at = scores.gather(1, cols).topk(k, dim=1)
    return vals, cols.gather(1, at)


def _update_coverage(cover: ListStats, scores: torch.Tensor, item_ids: torch.Tensor | None) -> None:
    kmax = min(max(cover.ks), scores.shape[1])
    vals, idx = _top(scores, kmax)
    if item_ids is not None:
        idx = item_ids.gather(1, idx)
    cover.update(idx, ~torch.isneginf(vals))


def _rank_block(
    fill, rows, tgt, segs, exclude_seen, miss, work, flags, cover, out: np.ndarray, finite: bool = False
) -> None:
    """Full-protocol ranks of one block's rows, ``len(work)`` rows at a time, written to ``out[:len(rows)]``;
    ``fill(lo, hi, w)`` writes the scores of rows ``lo:hi`` into ``w``."""
    dev, chunk = work.device, len(work)
    r, i = segs.subset(rows).flat() if exclude_seen else (np.empty(0, np.int64),) * 2
    bounds = np.searchsorted(r, np.arange(0, len(rows) + chunk, chunk))
    for c, lo in enumerate(range(0, len(rows), chunk)):
        hi = min(lo + chunk, len(rows))
        w = work[: hi - lo]
        fill(lo, hi, w)
        seen = slice(bounds[c], bounds[c + 1])
        r_t = torch.from_numpy(r[seen].astype(np.int64) - lo).to(dev)
        i_t = torch.from_numpy(i[seen].astype(np.int64)).to(dev)
        out[lo:hi] = _full_chunk(w, tgt[lo:hi], r_t, i_t, flags[: hi - lo], miss, finite, cover).cpu().numpy()
