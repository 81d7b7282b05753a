"""The training hot path's data: cropped, length-bucketed batches and the loss objective.

Each user's training segment ``s`` gives one example: input ``s[:-1]``, target ``s[1:]``, both cut
to the last ``max_len`` positions (a single-item segment gives nothing); with ``windows`` a longer
segment gives one example per ``max_len`` window instead, so every target is trained on. Examples
are sorted by length (seeded noise on the key randomises order within a length), cut into groups of
``batch_size * grad_accum``, and the group order is shuffled every epoch (``np.random`` seeded with
``(seed, epoch)``, so an epoch's batches never depend on earlier epochs). A batch is cropped to its
longest real history and built with index arithmetic, no per-user Python loop; the loss reads
only real positions (``hidden[flat] -> [M, d]``).

``cfg`` is a ``seqrec.train.TrainConfig`` (read for seed, bucket, batch_size, grad_accum, loss,
negatives, negative_sampling, pop_alpha, mix, gbce_t).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqrec.data import PAD
from seqrec.errors import SeqrecError
from seqrec.split import LeaveOneOut


class Batches:
    """Index arrays for every training example, and each epoch's cropped batches (CPU tensors)."""

    def __init__(self, loo: LeaveOneOut, max_len: int, cfg: Any) -> None:
        seg = loo.train()
        m = np.maximum(seg.lengths - 1, 0).astype(np.int64)  # (input, target) pairs per user
        ends = (seg.ends - 1).astype(np.int64)  # input ends (exclusive); targets = inputs + 1
        if cfg.windows:  # one example per max_len window, newest first
            w = -(-m // max_len)
            ends, m = np.repeat(ends, w), np.repeat(m, w)
            j = np.arange(len(m)) - np.repeat(np.cumsum(w) - w, w)  # window index within its user
            ends, m = ends - j * max_len, m - j * max_len
        n = np.minimum(m, max_len)
        keep = n > 0
        self.items = loo.data.items.astype(np.int64)
        self.ends = ends[keep]
        self.n = n[keep]  # real positions per example
        self.cfg = cfg
        if len(self.n) == 0:
            raise SeqrecError("no training examples: every user has fewer than 2 training interactions")
        # Real positions per optimizer step on average: the loss's normaliser. One constant for every
        # step gives every position the same weight although bucketed batches differ in length
        # (dividing by each step's own count would weigh a short history's positions up to
        # ``max_len`` times more and trains markedly worse).
        self.steps_per_epoch = math.ceil(len(self.n) / (cfg.batch_size * cfg.grad_accum))  # optimizer steps
        self.positions_per_step = float(self.n.sum()) / self.steps_per_epoch

    def plan(self, epoch: int) -> list[tuple[np.ndarray, bool]]:
        """[(rows, last micro-batch of its optimizer step?)] in step order.

        Bucketed: examples sorted by length (seeded noise within a length) are cut into
        ``steps_per_epoch`` groups of about the same number of real positions (many short histories
        or a few long ones), so every optimizer step carries as much signal as a uniformly shuffled
        batch would; each group is split into ``grad_accum`` micro-batches. Unbucketed: uniformly
        shuffled groups of ``batch_size * grad_accum`` examples."""
        rng = np.random.default_rng([self.cfg.seed, epoch])
        steps, accum = self.steps_per_epoch, self.cfg.grad_accum
        if self.cfg.bucket:
            order = np.argsort(self.n + rng.random(len(self.n)) * 3.0, kind="stable")
            cum = np.cumsum(self.n[order])
            cuts = np.searchsorted(cum, cum[-1] * np.arange(1, steps) / steps, side="right")
            groups = [g for g in np.split(order, cuts) if len(g)]
        else:
            order = rng.permutation(len(self.n))
            size = self.cfg.batch_size * accum
            groups = [order[g * size : (g + 1) * size] for g in range(steps)]
        out = []
        for g in rng.permutation(len(groups)):
            parts = [p for p in np.array_split(groups[g], accum) if len(p)]
            out += [(p, i == len(parts) - 1) for i, p in enumerate(parts)]
        return out

    def build(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs [B, L] left-padded, L = longest real length; flat indices of real positions [M]; targets [M])."""
        n = self.n[rows]
        width = int(n.max())
        ar = np.arange(width)
        idx = self.ends[rows, None] - width + ar  # [B, L] positions in the item array
        real = ar >= (width - n)[:, None]
        x = np.where(real, self.items[np.maximum(idx, 0)], PAD)
        flat = np.flatnonzero(real)
        return torch.from_numpy(x), torch.from_numpy(flat), torch.from_numpy(self.items[idx.ravel()[flat] + 1])


class FusedSoftmaxCE(torch.autograd.Function):
    """Summed full-catalogue cross-entropy (PAD column excluded) whose gradients are computed in
    the forward pass, ``rows`` rows at a time, while each chunk's logits are still in cache; the
    backward pass only scales them. The same value and gradients as ``losses.ce_loss`` (times M),
    without ever holding, or re-reading from memory, the whole [M, N] logit matrix."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, emb: torch.Tensor, pos: torch.Tensor, rows: int) -> torch.Tensor:
        dev = h.device.type
        low = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None  # bf16/fp16 matmuls
        w = emb[1:]
        w_mm = w.to(low) if low else w
        g_h, g_emb = torch.empty_like(h), torch.zeros_like(emb)
        total = h.new_zeros(())
        with torch.autocast(dev, enabled=False):
            for a in range(0, h.shape[0], rows):
                hc, p = h[a : a + rows], pos[a : a + rows, None] - 1
                z = torch.log_softmax((hc.to(w_mm.dtype) @ w_mm.T).float(), 1)  # [c, N]
                total -= z.gather(1, p).sum()
                z = z.exp_().scatter_add_(1, p, torch.full(p.shape, -1.0, dtype=z.dtype, device=z.device))
                g_h[a : a + rows] = z.to(w_mm.dtype) @ w_mm  # z = softmax - one-hot = d loss / d logits
                g_emb[1:].addmm_(z.T, hc)
        ctx.save_for_backward(g_h, g_emb)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        g_h, g_emb = ctx.saved_tensors
        return g_h * grad, g_emb * grad, None, None


def fused_ce_loss(h: torch.Tensor, pos: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """Mean full-softmax cross-entropy, as ``losses.ce_loss``; chunks of about 1M logits on the
    CPU (cache-sized), 64M on accelerators."""
    budget = 2**20 if h.device.type == "cpu" else 2**26
    rows = max(1, budget // max(1, emb.shape[0] - 1))
    return FusedSoftmaxCE.apply(h.float(), emb.float(), pos, rows) / max(1, h.shape[0])


# From this many negatives per position, sampled softmax shares one set per batch by default. The
# sigmoid losses (bce, gbce) never do by default: a shared set pushes the same few items down from
# every position of a batch, and on Games bce with 64 shared negatives fell to sampled HR@10 0.30
# after 5 epochs (0.63 with per-position negatives).
SHARED_FROM = 64


class Objective:
    """The configured loss. Negatives are drawn on the CPU for a whole epoch at once (seeded by
    ``(seed, epoch)``); each batch gathers the embedding rows its targets and negatives need once."""

    def __init__(self, cfg: Any, n_items: int, counts: np.ndarray) -> None:
        from seqrec import losses

        self.losses, self.cfg, self.n_items = losses, cfg, n_items
        self.gen = torch.Generator()
        self.sampler = None if cfg.loss == "ce" else losses.NegativeSampler(
            n_items, counts, mode=cfg.negative_sampling, alpha=cfg.pop_alpha, mix=cfg.mix, generator=self.gen)
        self.log_q = cfg.loss == "sampled-softmax" and cfg.negative_sampling != "uniform"

    def prepare(self, targets: list[torch.Tensor], epoch: int) -> list[tuple[torch.Tensor, ...]]:
        """Per batch, CPU tensors for ``__call__``: (pos,) or (pos, neg, rows[, log_q_pos, log_q_neg])."""
        if self.sampler is None:
            return [(t,) for t in targets]
        self.gen.manual_seed(self.cfg.seed * 1_000_003 + epoch)
        k = self.cfg.negatives
        shared = self.cfg.shared_negatives
        if shared is None:
            shared = self.cfg.loss == "sampled-softmax" and k >= SHARED_FROM
        if shared:  # [k] per batch; a negative that is a row's own positive is masked by the loss
            pad = torch.zeros(len(targets), dtype=torch.long)  # PAD is never drawn: no collision to avoid
            negs = list(self.sampler.sample(pad, k))
        else:
            negs = self.sampler.sample(torch.cat(targets), k).split([len(t) for t in targets])
        out = []
        for pos, neg in zip(targets, negs):
            rows, inv = torch.unique(torch.cat([pos, neg.reshape(-1)]), return_inverse=True)
            extra = (self.sampler.log_prob(pos), self.sampler.log_prob(neg)) if self.log_q else ()
            out.append((inv[: len(pos)], inv[len(pos) :].view(neg.shape), rows, *extra))
        return out

    def __call__(self, h: torch.Tensor, emb: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor | None = None,
                 rows: torch.Tensor | None = None, *log_q: torch.Tensor) -> torch.Tensor:
        L = self.losses
        if self.sampler is None:
            return fused_ce_loss(h, pos, emb)
        # [R, d]: pos and neg index these rows. A sparse gradient adds into the embedding's dense
        # one (from the model's input lookup) row by row instead of via a second [N+1, d] buffer.
        e = F.embedding(rows, emb, sparse=emb.device.type in ("cpu", "cuda"))
        if self.cfg.loss == "bce":
            return L.bce_loss(h, pos, neg, e)
        if self.cfg.loss == "gbce":
            return L.gbce_loss(h, pos, neg, e, self.n_items, t=self.cfg.gbce_t)
        return L.sampled_softmax_loss(h, pos, neg, e, *log_q)
