"""The training loss: ``Objective`` (the configured loss, its negatives drawn for a whole epoch at once)
and the fused full-softmax cross-entropy that ``loss="ce"`` trains with.

``fused_ce_loss`` computes the same value and gradients as ``losses.ce_loss`` (the plain reference the
tests compare it with) without ever holding the whole [M, N] logit matrix. ``cfg`` is a
``TrainConfig`` (read for seed, loss, negatives, negative_sampling, shared_negatives, pop_alpha, mix,
gbce_t, in_batch_negatives, logq_positive).

Per step nothing here is the catalogue's size: negatives are drawn from the sampler's fixed tables, and a
batch gathers only the embedding rows its targets and negatives index (at most M + M k, fewer when
shared), whose gradient is sparse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqrec.config import TrainConfig
from seqrec.training import losses


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


# The loss each ``TrainConfig.loss`` names: ``(objective, h [M, d], emb, pos [M], neg, log_q) -> scalar``.
# ``emb`` is the whole embedding matrix for "ce" (no negatives) and the [R, d] rows that ``pos`` and
# ``neg`` index for the sampled losses; ``log_q`` is () unless sampled softmax corrects for the sampler, then
# (log_q_pos, log_q_neg), followed by (in_batch, log_q_in_batch) with in-batch negatives.
LOSS_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "ce": lambda o, h, emb, pos, neg, log_q: fused_ce_loss(h, pos, emb),
    "bce": lambda o, h, e, pos, neg, log_q: losses.bce_loss(h, pos, neg, e),
    "gbce": lambda o, h, e, pos, neg, log_q: losses.gbce_loss(h, pos, neg, e, o.n_items, t=o.cfg.gbce_t),
    "sampled-softmax": lambda o, h, e, pos, neg, log_q: losses.sampled_softmax_loss(h, pos, neg, e, *log_q),
}


class Objective:
    """The configured loss. Negatives are drawn on the CPU one batch at a time, just before it is
    trained on, from a generator seeded by ``(seed, epoch, batch index)``: a batch's negatives do not
    depend on the batches before it, so a run resumed mid-epoch draws exactly what it would have drawn,
    and memory holds one batch's negatives, not an epoch's. Each batch gathers the embedding rows its
    targets and negatives need once."""

    def __init__(self, cfg: TrainConfig, n_items: int, counts: np.ndarray) -> None:
        self.cfg, self.n_items = cfg, n_items
        self.loss = LOSS_FUNCTIONS[cfg.loss]
        self.gen = torch.Generator()
        self.sampler = (
            None
            if cfg.loss == "ce"
            else losses.NegativeSampler(
                n_items, counts, mode=cfg.negative_sampling, alpha=cfg.pop_alpha, mix=cfg.mix, generator=self.gen
            )
        )
        self.in_batch = cfg.in_batch_negatives if cfg.loss == "sampled-softmax" else 0
        # Uniform negatives with the positive corrected too shift every logit by the same log N: nothing to do.
        self.log_q = cfg.loss == "sampled-softmax" and (
            cfg.negative_sampling != "uniform" or self.in_batch > 0 or not cfg.logq_positive
        )
        if self.in_batch:  # the share of training interactions per item id: how in-batch negatives are drawn
            c = np.asarray(counts, dtype=np.float64)[-n_items:]
            self.popularity = torch.from_numpy(np.concatenate([[0.0], c / max(c.sum(), 1.0)]))
        shared = cfg.shared_negatives
        self.shared = cfg.loss == "sampled-softmax" and cfg.negatives >= SHARED_FROM if shared is None else shared

    def prepare(self, pos: torch.Tensor, epoch: int, index: int) -> tuple[torch.Tensor, ...]:
        """CPU tensors for ``__call__`` for the targets ``pos`` of batch ``index`` of ``epoch``:
        (pos,) for "ce", else (pos, neg, rows[, log_q_pos, log_q_neg[, in_batch, log_q_in_batch]]) with pos,
        neg and in_batch indexing rows.

        In-batch negatives are ``in_batch_negatives`` of the batch's targets drawn without replacement; with
        them every candidate's correction is the log of how often it is expected among a row's candidates,
        ``k q(i) + B' p(i)`` (k sampled from q, B' in-batch ones from the popularity p), the positive's too."""
        if self.sampler is None:
            return (pos,)
        seed = np.random.SeedSequence([self.cfg.seed, epoch, index]).generate_state(1, np.uint64)[0]
        self.gen.manual_seed(int(seed))
        k = self.cfg.negatives
        if self.shared:  # [k] for the batch; a negative that is a row's own positive is masked by the loss
            neg = self.sampler.sample(torch.zeros(1, dtype=torch.long), k)[0]  # PAD is never drawn: no collision
        else:
            neg = self.sampler.sample(pos, k)
        rows, inv = torch.unique(torch.cat([pos, neg.reshape(-1)]), return_inverse=True)
        if not self.log_q:
            return (inv[: len(pos)], inv[len(pos) :].view(neg.shape), rows)
        take = min(self.in_batch, len(pos))
        pick = torch.randperm(len(pos), generator=self.gen)[:take] if take else None
        lq_pos = self._log_q(pos, k, take) if self.cfg.logq_positive else torch.zeros(len(pos))
        extra = (lq_pos, self._log_q(neg, k, take)) + ((inv[pick], self._log_q(pos[pick], k, take)) if take else ())
        return (inv[: len(pos)], inv[len(pos) :].view(neg.shape), rows, *extra)

    def keep(self, prepared: tuple[torch.Tensor, ...], positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``prepare``'s tensors cut to the batch's ``positions`` (one process's share under several, which
        then trains on the negatives one process draws): the per-position ones are cut; the embedding rows,
        a shared set of negatives and the in-batch negatives stay the whole batch's."""
        cut = lambda t: t.index_select(0, positions)
        if self.sampler is None:
            return (cut(prepared[0]),)
        pos, neg, rows, *extra = prepared
        out = [cut(pos), neg if self.shared else cut(neg), rows]
        if extra:
            lq_pos, lq_neg, *in_batch = extra
            out += [cut(lq_pos), lq_neg if self.shared else cut(lq_neg), *in_batch]
        return tuple(out)

    def _log_q(self, items: torch.Tensor, k: int, take: int) -> torch.Tensor:
        """Log sampling probability of ``items`` (float32); with ``take`` in-batch negatives, the log of their
        expected count among a row's candidates, ``k q(i) + take p(i)``."""
        assert self.sampler is not None  # only losses with negatives ask
        if not take:
            return self.sampler.log_prob(items)
        return (self.sampler.probs[items - 1] * k + self.popularity[items] * take).log().float()

    def __call__(
        self,
        h: torch.Tensor,
        emb: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
        *log_q: torch.Tensor,
    ) -> torch.Tensor:
        if rows is not None:
            # [R, d]: pos and neg index these rows. A sparse gradient adds into the embedding's dense
            # one (from the model's input lookup) row by row instead of via a second [N+1, d] buffer.
            emb = F.embedding(rows, emb, sparse=emb.device.type in ("cpu", "cuda"))
        return self.loss(self, h, emb, pos, neg, log_q)
