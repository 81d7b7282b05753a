"""Why an item was recommended: the history items that raised its score most.

``explain_items(rec, history, items)`` leaves each distinct item of the history's window (the last
``max_len`` known items) out in turn and scores only the recommended items after every variant, in one
batched forward pass (the whole history is the first row of the batch, so the drops are measured in the
same pass). An item's ``drop`` for a history item is its score after the whole history less its score
without that item; the history items with the largest positive drops explain it (at most ``MAX_BECAUSE``),
each with its ``share`` of the positive drops of all history items. A variant left empty (a history of one
item) is given score 0.

For a SASRec only the recommended items' rows are multiplied with the states (``[V + 1, k]`` scores, not
``[V + 1, N + 1]``), and the last block is computed for the last position only (``last_states``); another
scorer scores every item and the recommended ones are picked out. At a history of 50, k = 10, one thread,
the explanation took p50 8 to 10 ms on a shared core (``benchmarks/explain_latency.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqrec.data.dataset import PAD
from seqrec.serving.catalogue import Item

MAX_BECAUSE = 3


def last_states(model: Any, batch: torch.Tensor) -> torch.Tensor:
    """``SASRecModel.forward(batch)[:, -1]`` [B, d] in eval mode, with the last block computed for the last position
    only (its keys and values still come from every position): about a third less work for a batch of
    leave-one-out variants."""
    h = batch[:, -model.max_len :]
    B, L = h.shape
    keep = h != PAD
    keep_f = keep.unsqueeze(-1).to(model.item_emb.weight.dtype)
    pos = model.pos_emb.weight[model.max_len - L :]
    emb = (
        model.item_emb(h)
        if model.features is None
        else F.embedding(h, model.features.items(model.item_emb.weight, remember=model.config.feature_output))
    )
    x = (emb * model.scale + pos) * keep_f
    mask = model.attention_mask(keep)  # [B, 1, L, L]
    *first, block = model.blocks
    for b in first:
        x = b(x, mask) * keep_f
    mask = mask[:, :, -1:, :]  # the last query's row
    last = x[:, -1:, :]
    if block.norm == "pre":
        kv = block.ln1(x)
        y = last + _attend(block.attn, kv[:, -1:, :], kv, mask)
        y = y + block.ffn(block.ln2(y))
    elif block.norm == "paper":
        q = block.ln1(last)
        y = block.ln2(q + _attend(block.attn, q, x, mask))
        y = y + block.ffn(y)
    else:
        y = block.ln1(last + _attend(block.attn, last, x, mask))
        y = block.ln2(y + block.ffn(y))
    return (model.final_norm(y * keep_f[:, -1:]) * keep_f[:, -1:])[:, 0]


def _attend(attn: Any, q_in: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``CausalSelfAttention`` for queries ``q_in`` [B, Q, d] over keys and values from ``kv`` [B, L, d]."""
    B, Q, d = q_in.shape
    L, heads = kv.shape[1], attn.heads
    w, b = attn.qkv.weight, attn.qkv.bias
    q = F.linear(q_in, w[:d], b[:d]).view(B, Q, heads, d // heads).transpose(1, 2)
    k, v = F.linear(kv, w[d:], b[d:]).split(d, dim=2)
    k = k.view(B, L, heads, d // heads).transpose(1, 2)
    v = v.view(B, L, heads, d // heads).transpose(1, 2)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.proj(y.transpose(1, 2).reshape(B, Q, d))


def _target_scores(rec: Any, batch: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """float [B, len(targets)]: the scores of internal ids ``targets`` after each history of ``batch``."""
    from seqrec.models.sasrec import SASRecModel

    scorer = rec.scorer
    cols = torch.from_numpy(targets)
    if isinstance(scorer, SASRecModel):
        was_training = scorer.training
        if was_training:  # switching modes walks every submodule: only when needed
            scorer.eval()
        try:
            return (last_states(scorer, batch) @ scorer.item_embeddings()[cols].T).float().numpy()
        finally:
            if was_training:
                scorer.train()
    return rec._score(batch)[:, cols].numpy()


def explain_items(
    rec: Any, history: np.ndarray, items: list[Item], top: int = MAX_BECAUSE
) -> list[list[dict[str, Any]]]:
    """Per item of ``items`` (ranked after the internal-id ``history``): up to ``top`` history items that raised
    its score most, as ``{"item_id", "title", "drop", "share"}``, largest drop first."""
    history = np.asarray(history, dtype=np.int64)
    if not items or not len(history):
        return [[] for _ in items]
    window = history[-rec.max_len :]
    distinct = np.array(list(dict.fromkeys(window.tolist())), dtype=np.int64)
    seqs = [window] + [history[history != x][-rec.max_len :] for x in distinct]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    full = np.flatnonzero(lengths > 0)
    targets = rec.dataset.item_ids.lookup([i.item_id for i in items])[0]
    scores = np.zeros((len(seqs), len(targets)), dtype=np.float64)
    with torch.inference_mode():
        scores[full] = _target_scores(rec, rec._batch(seqs, full, lengths), targets)
    drops = scores[0] - scores[1:]  # [V, k]: how much each left-out item raised each target's score
    cat = rec.catalogue
    out = []
    for c in range(len(targets)):
        d = drops[:, c]
        positive = d[d > 0].sum()
        order = [int(v) for v in np.argsort(-d, kind="stable")[:top] if d[v] > 0]
        out.append(
            [
                {
                    "item_id": cat.raw[int(distinct[v])],
                    "title": cat.titles[int(distinct[v])],
                    "drop": round(float(d[v]), 6),
                    "share": round(float(d[v] / positive), 4),
                }
                for v in order
            ]
        )
    return out
