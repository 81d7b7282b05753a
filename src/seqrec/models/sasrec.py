"""SASRec (Kang & McAuley, ICDM 2018): a causal self-attention encoder over item histories.

Reads top to bottom: the config, one attention layer, the point-wise feed-forward layer, a block
of the two, and the model.

Inputs are LEFT-padded LongTensors ``[B, L]`` of internal item ids (``PAD = 0``), ``L <= max_len``.
Positions are counted from the right: column ``j`` of an ``L``-wide input gets position index
``max_len - L + j``, so the most recent item always has position ``max_len - 1`` and cropping
all-padding columns on the left changes nothing.

Padding never leaks into real positions: embeddings and every block's output are multiplied by
the non-pad mask, and attention uses a mask that is causal AND hides padded keys. A padded query
may still attend to itself (its own key), so no attention row is fully masked and nothing turns
into NaN, in the forward or the backward pass, even for an all-padding row.

The output layer is the item embedding itself (shared weights): the score of item ``i`` after a
history is ``hidden[:, -1] @ item_embeddings()[i]``.

With ``item_features`` (``seqrec.models.feature_layers``) an item's input representation is its id row fused
with its feature embedding, and with ``feature_output`` its output representation too; the feature table
comes from the data (``SASRecModel.for_data``) or, for a saved model, from its vocabulary and weights.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.config import (  # noqa: F401  (re-exported)
    ACTIVATIONS,
    MAX_BLOCKS,
    MAX_HEADS,
    MAX_HIDDEN,
    MAX_ITEMS,
    MAX_LEN,
    MAX_PARAM_BYTES,
    NORMS,
    SASRecConfig,
)
from seqrec.data.dataset import PAD, Dataset
from seqrec.errors import SeqrecError
from seqrec.models.feature_layers import FeatureLayers
from seqrec.models.features import FeatureVocab, item_features


class Dropout(nn.Module):
    """``nn.Dropout``, but on CPU the mask comes from ``rand_like`` (about twice as fast as the
    bernoulli kernel there); elsewhere it is ``F.dropout``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p))
        return x * keep


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; ``mask`` [B, 1, L, L] says which keys each query may see.

    Queries come from ``x``; keys and values from ``kv`` when given (else from ``x`` too)."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        B, L, d = x.shape
        if kv is None:
            q, k, v = self.qkv(x).split(d, dim=2)  # 3 x [B, L, d]
        else:
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x, w[:d], b[:d])  # [B, L, d]
            k, v = F.linear(kv, w[d:], b[d:]).split(d, dim=2)  # 2 x [B, L, d]
        q = q.view(B, L, self.heads, d // self.heads).transpose(1, 2)  # [B, h, L, d/h]
        k = k.view(B, L, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(B, L, self.heads, d // self.heads).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, h, L, d/h]
        y = y.transpose(1, 2).reshape(B, L, d)  # [B, L, d]
        return self.proj(y)


class FeedForward(nn.Module):
    """Point-wise FFN of width d (as in the paper): Linear, activation, dropout, Linear."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden, cfg.hidden)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.drop = Dropout(cfg.dropout)
        self.fc2 = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))  # [B, L, d]


class Block(nn.Module):
    """Attention then FFN, each with dropout, a residual connection and LayerNorm.

    ``pre``: x + f(LN(x)). ``post``: LN(x + f(x)). ``paper`` follows the authors' released code:
    queries are normalised but keys and values are not, and each residual adds the normalised
    input: q = LN(x); x = q + attn(q, x); x = LN(x) + ffn(LN(x)).
    """

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.norm = cfg.norm
        self.ln1 = nn.LayerNorm(cfg.hidden)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.hidden)
        self.ffn = FeedForward(cfg)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm == "pre":
            x = x + self.drop(self.attn(self.ln1(x), mask))
            x = x + self.drop(self.ffn(self.ln2(x)))
        elif self.norm == "paper":
            q = self.ln1(x)
            x = q + self.drop(self.attn(q, mask, kv=x))
            x = self.ln2(x)
            x = x + self.drop(self.ffn(x))
        else:
            x = self.ln1(x + self.drop(self.attn(x, mask)))
            x = self.ln2(x + self.drop(self.ffn(x)))
        return x  # [B, L, d]


class SASRecModel(nn.Module):
    """SASRec encoder; implements the ``Scorer`` protocol (``max_len``, ``n_items``, ``score``).

    ``vocab`` is the feature vocabulary of a model with ``item_features`` (its table is then filled by
    ``for_data`` or by loading weights)."""

    def __init__(self, config: SASRecConfig, vocab: FeatureVocab | None = None) -> None:
        super().__init__()
        self.config = config
        self.n_items = config.n_items
        self.max_len = config.max_len
        d = config.hidden
        self.scale = math.sqrt(d)
        self.item_emb = nn.Embedding(config.n_items + 1, d, padding_idx=PAD)  # also the output layer
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_drop = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.blocks))
        self.final_norm = nn.LayerNorm(d)
        self.apply(self._init_weights)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        self.features: FeatureLayers | None = None
        if (config.item_features is None) != (vocab is None):
            raise SeqrecError(
                "a SASRec with item_features needs their vocabulary (build it with "
                "SASRecModel.for_data(config, dataset)); one without takes none"
                if vocab is None
                else "a SASRec without item_features takes no feature vocabulary"
            )
        if vocab is not None:
            self.features = FeatureLayers(config, vocab)

    @classmethod
    def for_data(cls, config: SASRecConfig, dataset: Dataset) -> SASRecModel:
        """A new model for ``dataset``: with ``config.item_features``, its vocabulary and feature table are
        built from the data set's catalogue (``seqrec.models.features.item_features``)."""
        if config.item_features is None:
            return cls(config)
        vocab, table, trained = item_features(dataset, config.item_features)
        model = cls(config, vocab)
        assert model.features is not None
        model.features.set_items(table, trained)
        return model

    def with_items(self, rows: torch.Tensor | Any) -> SASRecModel:
        """A copy with ``len(rows)`` more items (ids ``n_items + 1 ..``) that have feature ids ``rows``
        [k, columns]. Each new id row is the mean id row of the trained items whose features overlap its
        own most (``FeatureLayers.neighbour_rows``); one sharing no feature with any is represented by its
        features alone."""
        if self.features is None:
            raise SeqrecError("this SASRec has no item features, so items without interactions cannot be added")
        extra = len(rows)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("features.")}
        emb = state["item_emb.weight"]
        new_rows, found = self.features.neighbour_rows(rows, emb)
        state["item_emb.weight"] = torch.cat([emb, new_rows.to(emb)])
        state.update({f"features.{k}": v for k, v in self.features.grown(rows, found).items()})
        model = type(self)(replace(self.config, n_items=self.n_items + extra), self.features.vocab)
        model.load_state_dict(state)
        assert model.features is not None
        model.features.vocab.check_table(model.features.table.cpu().numpy(), "added items")
        return model.to(emb.device).train(self.training)

    def fill_untrained_items(self) -> int:
        """Give each item that has features but no training interactions the mean id row of the trained
        items whose features overlap its own most, as ``with_items`` does for new items (call it after
        training); returns how many items got one."""
        return 0 if self.features is None else self.features.fill_untrained(self.item_emb.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def item_embeddings(self) -> torch.Tensor:
        """The output weights, shared with the input embedding: [N+1, d] (row 0 = PAD, zero); with
        ``feature_output`` the fused id and feature representation."""
        if self.features is None or not self.config.feature_output:
            return self.item_emb.weight
        same = self.features.recall(self.item_emb.weight)  # the input's, when forward just made it
        return self.features.items(self.item_emb.weight) if same is None else same

    @staticmethod
    def attention_mask(keep: torch.Tensor) -> torch.Tensor:
        """[B, L] non-pad mask -> [B, 1, L, L] bool: query i sees key j iff j <= i and (j is real or j == i)."""
        idx = torch.arange(keep.shape[1], device=keep.device)
        causal = idx[:, None] >= idx[None, :]  # [L, L] (plain comparisons export cleanly to ONNX)
        eye = idx[:, None] == idx[None, :]  # [L, L]
        return (causal & (keep[:, None, :] | eye)).unsqueeze(1)  # [B, 1, L, L]

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        """Left-padded ids [B, L] (L <= max_len) -> hidden states [B, L, d], zero at padded positions."""
        if histories.dim() != 2:
            raise ValueError(f"histories must be [B, L], got shape {tuple(histories.shape)}")
        B, L = histories.shape
        if L > self.max_len:
            raise ValueError(f"histories have {L} columns, more than max_len={self.max_len}")
        keep = histories != PAD  # [B, L]
        keep_f = keep.unsqueeze(-1).to(self.item_emb.weight.dtype)  # [B, L, 1]
        pos = self.pos_emb.weight[self.max_len - L :]  # [L, d], counted from the right
        emb = (
            self.item_emb(histories)
            if self.features is None
            else F.embedding(histories, self.features.items(self.item_emb.weight, remember=self.config.feature_output))
        )
        x = emb * self.scale + pos  # [B, L, d]
        x = self.emb_drop(x) * keep_f
        mask = self.attention_mask(keep)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, mask) * keep_f  # [B, L, d]
        return self.final_norm(x) * keep_f  # [B, L, d]

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """Left-padded ids [B, L] (any L) -> scores [B, N+1] for the next item (column 0 is PAD).

        Only the last ``max_len`` columns are read. Scoring always runs in inference mode (no
        dropout, no gradients); the module's train/eval mode is restored afterwards. The scores
        come back on the device of ``histories``.
        """
        if histories.dim() != 2:
            raise ValueError(f"histories must be [B, L], got shape {tuple(histories.shape)}")
        device = histories.device
        weight = self.item_emb.weight
        h = histories[:, -self.max_len :].to(weight.device, torch.long)  # [B, L']
        if h.shape[1] == 0:
            h = torch.full((h.shape[0], 1), PAD, dtype=torch.long, device=weight.device)
        last = self.last_hidden(h)  # [B, d]
        with torch.no_grad():
            scores = last @ self.item_embeddings().T  # [B, N+1]
        return scores.to(device)

    def last_hidden(self, histories: torch.Tensor) -> torch.Tensor:
        """Left-padded ids [B, L] (L <= max_len) -> the hidden state after the last column [B, d], in inference
        mode (``score`` is it times ``item_embeddings().T``; the evaluator takes the product a few rows at a
        time). Leading columns that are PAD in every row change nothing: positions count from the right."""
        was_training = self.training
        if was_training:  # switching modes walks every submodule: only do it when needed
            self.eval()
        try:
            with torch.no_grad():
                return self.forward(histories)[:, -1, :]  # [B, d]
        finally:
            if was_training:
                self.train()
