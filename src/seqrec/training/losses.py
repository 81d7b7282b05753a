"""Training losses for next-item prediction, and negative samplers.

Every loss is a small pure function of

* ``hidden [M, d]``: hidden states at REAL positions only (the caller gathers them),
* ``pos [M]``: the target (next) item id of each position, in ``1..N``,
* ``emb [N+1, d]``: the item embedding matrix (row 0 = PAD), the model's output layer,

and returns a scalar: the mean over the ``M`` positions (0 for ``M == 0``, never NaN).

* ``bce_loss``: the SASRec paper's binary cross-entropy with sampled negatives (k = 1 in the
  paper). Per position: ``-log sigma(s+) - sum_j log(1 - sigma(s-_j))``, as in the paper's
  objective (pmixer/SASRec.pytorch adds the mean positive and the mean negative BCE, the same
  thing for k = 1).
* ``ce_loss``: full softmax over the catalogue (SASRec+, Klenitskiy & Vasilev 2023).
* ``sampled_softmax_loss``: softmax over the positive and k negatives (and, optionally, negatives
  taken from the batch's own targets), with logQ correction and accidental hits masked.
* ``gbce_loss``: gSASRec's generalised BCE (Petrov & Macdonald, RecSys 2023). The positive
  probability is raised to the power beta, i.e. the positive term becomes ``-beta log sigma(s+)``;
  reduced like ``bce_loss`` so that ``t = 0`` (beta = 1) gives exactly ``bce_loss``. (The
  authors' code further divides by ``1 + k``, a constant factor.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from seqrec.config import CHOICES
from seqrec.errors import SeqrecError

LOSSES = CHOICES["loss"]
SAMPLER_MODES = CHOICES["negative_sampling"]
CE_CHUNK_ELEMENTS = 50_000_000  # logits above this many elements are computed chunk by chunk


def _mean(per_row: torch.Tensor) -> torch.Tensor:
    """Mean over rows that is 0 (with a graph) for an empty batch instead of NaN."""
    return per_row.sum() / max(per_row.shape[0], 1)


def _pos_logits(hidden: torch.Tensor, pos: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return (hidden * emb[pos]).sum(-1)  # [M]


GATHER_LOGITS_UP_TO = 2**25  # per-row negatives: score every row of emb when [M, R] is this small


def _neg_logits(hidden: torch.Tensor, neg: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """Negative logits [M, k]; ``neg`` is [M, k] per-row negatives or [k] negatives shared by all rows.

    Per-row negatives are picked from ``hidden @ emb.T`` when emb has at most 8 rows per negative
    and the product is small: a matrix product is many times faster per number than gathering
    [M, k, d] embeddings (ml-100k, 256 negatives), but not when emb is much larger than k (Games,
    23,715 items: the gather stays faster)."""
    if neg.dim() == 1:
        return hidden @ emb[neg].T  # [M, k]
    k, rows = neg.shape[1], emb.shape[0]
    if k >= 8 and rows <= 8 * k and hidden.shape[0] * rows <= GATHER_LOGITS_UP_TO:
        return (hidden @ emb.T).gather(1, neg)  # [M, R] -> [M, k]
    return torch.einsum("md,mkd->mk", hidden, emb[neg])  # [M, k]


def _hits(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """[M, k] True where a negative is the row's own positive (``neg`` [k] shared or [M, k])."""
    return neg == pos[:, None]


def _neg_terms(s_neg: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Summed ``softplus(s-)`` per row [M], leaving out a negative that is the row's own positive:
    on a small catalogue hundreds of shared negatives hold many of a batch's targets, and pushing
    those down as negatives would outweigh their positive term."""
    return F.softplus(s_neg).masked_fill(_hits(pos, neg), 0.0).sum(-1)


def bce_loss(hidden: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, positive vs k negatives [M, k] (or [k] shared); mean over positions."""
    s_pos = _pos_logits(hidden, pos, emb)  # [M]
    s_neg = _neg_logits(hidden, neg, emb)  # [M, k]
    return _mean(F.softplus(-s_pos) + _neg_terms(s_neg, pos, neg))


def gbce_beta(k: int, n_items: int, t: float) -> float:
    """gSASRec's beta = alpha (t (1 - 1/alpha) + 1/alpha) with alpha = k / (n_items - 1)."""
    if not 0.0 <= t <= 1.0:
        raise SeqrecError(f"gbce t must be in [0, 1], got {t}")
    if n_items < 2:
        raise SeqrecError(f"gbce needs at least 2 items, got n_items={n_items}")
    alpha = k / (n_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_loss(
    hidden: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    emb: torch.Tensor,
    n_items: int,
    t: float = 0.75,
) -> torch.Tensor:
    """Generalised BCE: the positive term is ``-log sigma(s+)^beta = beta * softplus(-s+)``.

    Equivalent to BCE on the transformed positive logit ``log(1 / (sigma(s+)^-beta - 1))``,
    written without the transform, which is stable for any logit.
    """
    beta = gbce_beta(neg.shape[-1], n_items, t)
    s_pos = _pos_logits(hidden, pos, emb)  # [M]
    s_neg = _neg_logits(hidden, neg, emb)  # [M, k]
    return _mean(beta * F.softplus(-s_pos) + _neg_terms(s_neg, pos, neg))


def _ce_rows(hidden: torch.Tensor, pos: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    logits = hidden @ emb[1:].T  # [M, N]: the PAD column left out, same as masking it to -inf
    return F.cross_entropy(logits.float(), pos - 1, reduction="sum")


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed full-catalogue cross-entropy, ``rows`` rows at a time; the backward pass recomputes
    each chunk's logits instead of keeping all of them, so memory is O(rows * N) (float32)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, emb: torch.Tensor, pos: torch.Tensor, rows: int) -> torch.Tensor:
        ctx.save_for_backward(hidden, emb, pos)
        ctx.rows = rows
        w, total = emb[1:], hidden.new_zeros(())
        with torch.autocast(hidden.device.type, enabled=False):
            for a in range(0, hidden.shape[0], rows):
                logits = hidden[a : a + rows] @ w.T  # [rows, N]
                target = logits.gather(1, (pos[a : a + rows] - 1)[:, None]).squeeze(1)
                total = total + (torch.logsumexp(logits, 1) - target).sum()
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden, emb, pos = ctx.saved_tensors
        w = emb[1:]
        g_hidden = torch.empty_like(hidden)
        g_emb = torch.zeros_like(emb)
        for a in range(0, hidden.shape[0], ctx.rows):
            h, p = hidden[a : a + ctx.rows], pos[a : a + ctx.rows] - 1
            g = torch.softmax(h @ w.T, dim=1)  # [rows, N]: d loss / d logits = softmax - one-hot
            g[torch.arange(len(p), device=g.device), p] -= 1.0
            g *= grad
            g_hidden[a : a + ctx.rows] = g @ w
            g_emb[1:] += g.T @ h
        return g_hidden, g_emb, None, None


def ce_loss(
    hidden: torch.Tensor, pos: torch.Tensor, emb: torch.Tensor, chunk_elements: int = CE_CHUNK_ELEMENTS
) -> torch.Tensor:
    """Cross-entropy over the full catalogue (PAD excluded); mean over positions.

    When ``M * N`` exceeds ``chunk_elements`` the loss is computed in float32 a chunk of rows at
    a time and the backward pass recomputes each chunk's logits, so memory stays bounded.
    """
    m, n = hidden.shape[0], emb.shape[0] - 1
    if m * n <= chunk_elements:
        return _ce_rows(hidden, pos, emb) / max(m, 1)
    rows = max(1, chunk_elements // max(n, 1))
    return _ChunkedCrossEntropy.apply(hidden.float(), emb.float(), pos, rows) / max(m, 1)


def sampled_softmax_loss(
    hidden: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    emb: torch.Tensor,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    in_batch: torch.Tensor | None = None,
    log_q_in_batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy over [positive, k negatives(, in-batch negatives)] for each position; mean
    over positions.

    ``neg`` is [M, k] (or [k] shared by all rows). With ``log_q_pos`` [M] and ``log_q_neg``
    (shaped like ``neg``), the log sampling probability of each candidate is subtracted from its
    logit (logQ correction). ``in_batch`` [B'] are further negatives shared by every row (the batch's
    own targets), with ``log_q_in_batch`` [B'] their correction. Negatives equal to the row's
    positive (accidental hits, and a row's own target among the in-batch ones) get -inf.
    """
    s_pos = _pos_logits(hidden, pos, emb)  # [M]
    s_neg = _neg_logits(hidden, neg, emb)  # [M, k]
    if log_q_pos is not None:
        s_pos = s_pos - log_q_pos
    if log_q_neg is not None:
        s_neg = s_neg - log_q_neg
    parts = [s_pos[:, None], s_neg.masked_fill(_hits(pos, neg), float("-inf"))]
    if in_batch is not None:
        s_in = _neg_logits(hidden, in_batch, emb)  # [M, B']
        if log_q_in_batch is not None:
            s_in = s_in - log_q_in_batch
        parts.append(s_in.masked_fill(_hits(pos, in_batch), float("-inf")))
    logits = torch.cat(parts, dim=1)  # [M, 1+k(+B')], target column 0
    return _mean(torch.logsumexp(logits.float(), dim=1) - logits[:, 0].float())


class NegativeSampler:
    """Draws negative item ids in ``1..N`` that differ from the row's positive.

    ``mode``: ``"uniform"``; ``"popularity"`` (probability proportional to ``counts ** alpha``);
    ``"mixed"`` (a fraction ``mix`` of the draws by popularity, the rest uniform, i.e. the
    mixture ``q = mix * p_pop + (1 - mix) / N``). ``counts`` is indexed by item id, of length
    N+1 (entry 0, PAD, is ignored) or N (items 1..N).

    Draws come from the explicit ``generator`` (CPU), so a seed reproduces them. Collisions with
    the positive are redrawn a few times, vectorised; any left are shifted to the next id (which
    slightly perturbs q, ignored by ``log_prob``).
    """

    def __init__(
        self,
        n_items: int,
        counts: np.ndarray | None = None,
        mode: str = "uniform",
        alpha: float = 1.0,
        mix: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        if n_items < 2:
            raise SeqrecError(f"negative sampling needs at least 2 items, got n_items={n_items}")
        if mode not in SAMPLER_MODES:
            raise SeqrecError(f"sampler mode must be one of {SAMPLER_MODES}, got {mode!r}")
        if not 0.0 <= mix <= 1.0:
            raise SeqrecError(f"sampler mix must be in [0, 1], got {mix}")
        if alpha < 0:
            raise SeqrecError(f"sampler alpha must be >= 0, got {alpha}")
        self.n_items, self.mode, self.alpha, self.mix = n_items, mode, alpha, mix
        self.generator = generator
        probs = np.full(n_items, 1.0 / n_items)
        if mode != "uniform":
            pop = self._popularity(counts, n_items, alpha)
            probs = pop if mode == "popularity" else mix * pop + (1.0 - mix) * probs
        self.probs = torch.from_numpy(probs)  # [N] float64, item i at index i-1
        cdf = torch.cumsum(self.probs, 0)
        self._cdf = cdf / cdf[-1]
        self._log_q = torch.cat([torch.tensor([-math.inf], dtype=torch.float64), self.probs.log()]).float()
        self._log_q_on: dict[torch.device, torch.Tensor] = {}  # the [N+1] table, cached per device

    @staticmethod
    def _popularity(counts: np.ndarray | None, n_items: int, alpha: float) -> np.ndarray:
        if counts is None:
            raise SeqrecError("popularity sampling needs item counts")
        c = np.asarray(counts, dtype=np.float64)
        if c.ndim != 1 or len(c) not in (n_items, n_items + 1):
            raise SeqrecError(f"item counts must have length {n_items} or {n_items + 1}, got shape {c.shape}")
        c = c[1:] if len(c) == n_items + 1 else c
        if not np.all(np.isfinite(c)) or np.any(c < 0) or c.sum() <= 0:
            raise SeqrecError("item counts must be finite, >= 0 and not all zero")
        w = np.where(c > 0, c**alpha, 0.0)
        return w / w.sum()

    def _draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.mode == "uniform":
            return torch.randint(1, self.n_items + 1, shape, generator=self.generator)
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64)
        idx = torch.searchsorted(self._cdf, u, right=True)
        return idx.clamp_(max=self.n_items - 1) + 1

    def sample(self, pos: torch.Tensor, k: int) -> torch.Tensor:
        """Negatives [M, k] (int64, on ``pos``'s device), none equal to ``pos`` in its row."""
        if k < 1:
            raise SeqrecError(f"number of negatives must be >= 1, got {k}")
        pos_cpu = pos.detach().to("cpu", torch.long).reshape(-1)
        neg = self._draw((pos_cpu.shape[0], k))
        for _ in range(3):
            hit = neg == pos_cpu[:, None]
            n_hit = int(hit.sum())
            if n_hit == 0:
                break
            neg[hit] = self._draw((n_hit,))
        hit = neg == pos_cpu[:, None]
        neg[hit] = neg[hit] % self.n_items + 1
        return neg.to(pos.device)

    def log_prob(self, items: torch.Tensor) -> torch.Tensor:
        """Log sampling probability of each item id (float32, same shape and device as ``items``)."""
        table = self._log_q_on.get(items.device)
        if table is None:
            table = self._log_q_on[items.device] = self._log_q.to(items.device)
        return table[items.long()]
