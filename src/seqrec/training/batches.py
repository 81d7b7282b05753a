"""The training hot path's data: cropped, length-bucketed batches (the loss they feed is ``seqrec.training.objective``).

Each user's training segment ``s`` gives one example: input ``s[:-1]``, target ``s[1:]``, both cut
to the last ``max_len`` positions (a single-item segment gives nothing); with ``windows`` a longer
segment gives one example per ``max_len`` window instead, so every target is trained on. Examples
are sorted by length (seeded noise on the key randomises order within a length), cut into groups of
``batch_size * grad_accum``, and the group order is shuffled every epoch (``np.random`` seeded with
``(seed, epoch)``, so an epoch's batches never depend on earlier epochs). A batch is cropped to its
longest real history and built with index arithmetic, no per-user Python loop; the loss reads
only real positions (``hidden[flat] -> [M, d]``).

``cfg`` is a ``TrainConfig`` (read for seed, bucket, batch_size, grad_accum and windows).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from seqrec.config import TrainConfig
from seqrec.data.dataset import PAD
from seqrec.data.split import Split
from seqrec.errors import SeqrecError


class Batches:
    """Index arrays for every training example, and each epoch's cropped batches (CPU tensors)."""

    def __init__(self, loo: Split, max_len: int, cfg: TrainConfig) -> None:
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
