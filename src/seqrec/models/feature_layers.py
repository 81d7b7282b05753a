"""The model side of item features (``seqrec.models.features`` makes the vocabulary and the table).

``FeatureLayers`` holds, for a ``SASRecModel`` with ``item_features``:

* ``table`` (buffer, int64 [N+1, columns]): each item's feature ids, 0 = none (``seqrec.models.features``);
* ``id_weight`` (buffer, float32 [N+1, 1]): 1 for items that occur in the training data, 0 for those that
  do not (held out only), whose id rows never learned anything but to lose as negatives: their
  representation is their features alone, until ``fill_untrained`` gives them the mean id row of the
  trained items whose features overlap theirs most (as ``neighbour_rows`` does for items added later);
* ``emb`` ([size + 1, d], row 0 zero): one embedding per feature value. An item's feature vector is the
  sum over fields of the mean of its values' embeddings in that field;
* the fusion of an item's id row ``e`` (times ``id_weight``) with its feature vector ``f``: ``sum`` is
  ``e + f``; ``gated`` is ``e + sigmoid(W [e; f] + b) * f``; ``concat`` is ``W [e; f]`` (no bias), ``W``
  starting as ``[I I]`` so it starts as the sum.

Buffers live in the state dict, so the table travels with the weights (safetensors, ONNX). In training,
``feature_dropout`` zeroes an item's whole feature vector with that probability (the others scaled by
1 / (1 - p)). The feature vectors of all items are computed at once, as the product of a constant sparse
matrix (the table's weights, kept until the table changes) with the embeddings (``embedding_bag`` on
devices without sparse products); under ONNX export the same sums are written as a gather (ONNX Runtime
folds them into a constant when the session starts). A training step's input and output layers share one
computation of the fused items (``items(..., remember=True)``, then ``recall``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqrec.config import SASRecConfig
from seqrec.errors import SeqrecError
from seqrec.models.features import FeatureVocab


class FeatureLayers(nn.Module):
    """Feature embeddings, the item -> feature table and the fusion with the id embedding."""

    table: torch.Tensor  # buffers: [N+1, columns] feature ids, [N+1, 1] 1 for items with interactions
    id_weight: torch.Tensor
    gate: nn.Linear  # fusion "gated"
    proj: nn.Linear  # fusion "concat"

    def __init__(self, config: SASRecConfig, vocab: FeatureVocab) -> None:
        super().__init__()
        d = config.hidden
        self.vocab, self.fusion, self.dropout = vocab, config.feature_fusion, config.feature_dropout
        self.slices = vocab.column_slices()
        self._sparse: tuple | None = None  # (key, the incidence of the table, ...), rebuilt when the table changes
        self._kept: tuple | None = None  # (stamp, items) of the last items(remember=True)
        self.emb = nn.Embedding(vocab.size + 1, d, padding_idx=0)
        self.register_buffer("table", torch.zeros(config.n_items + 1, vocab.columns, dtype=torch.long))
        self.register_buffer("id_weight", torch.ones(config.n_items + 1, 1))
        if self.fusion == "gated":
            self.gate = nn.Linear(2 * d, d)
        elif self.fusion == "concat":
            self.proj = nn.Linear(2 * d, d, bias=False)
        if self.emb.weight.device.type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.emb.weight, mean=0.0, std=0.02)
            self.emb.weight[0].zero_()
            if self.fusion == "gated":
                nn.init.normal_(self.gate.weight, mean=0.0, std=0.02)
                nn.init.zeros_(self.gate.bias)
            elif self.fusion == "concat":
                d = self.proj.weight.shape[0]
                eye = torch.eye(d)
                self.proj.weight.copy_(torch.cat([eye, eye], 1) + 0.02 * torch.randn(d, 2 * d))

    def set_items(self, table: np.ndarray | torch.Tensor, trained: np.ndarray | torch.Tensor) -> None:
        """Fill the buffers: ``table`` int [N+1, columns] (checked against the vocabulary), ``trained`` bool [N+1]."""
        table = torch.as_tensor(np.asarray(table), dtype=torch.long)
        if tuple(table.shape) != tuple(self.table.shape) or len(trained) != len(self.id_weight):
            raise SeqrecError(
                f"feature table of shape {tuple(table.shape)} (and {len(trained)} items trained "
                f"or not) for a model of {tuple(self.table.shape)}"
            )
        self.vocab.check_table(table.numpy(), "item features")
        with torch.no_grad():
            self.table.copy_(table)
            self.id_weight.copy_(torch.as_tensor(np.asarray(trained), dtype=torch.float32).reshape(-1, 1))

    def _weights(self, keep: torch.Tensor) -> torch.Tensor:
        """[N+1, columns] float: 1 / (the item's values in that field) at its ids, 0 elsewhere."""
        keep = keep.to(self.emb.weight.dtype)
        parts = [keep[:, lo:hi] / keep[:, lo:hi].sum(1, keepdim=True).clamp_min(1.0) for lo, hi in self.slices]
        return torch.cat(parts, 1)

    def vectors(self) -> torch.Tensor:
        """Every item's feature vector [N+1, d] (row 0 and featureless items: zero)."""
        table, weight = self.table, self.emb.weight
        if torch.onnx.is_in_onnx_export():
            w = self._weights(table != 0)
            return (F.embedding(table, weight) * w.unsqueeze(-1)).sum(1)
        key = (table.device, table.data_ptr(), table._version, weight.dtype)
        if self._sparse is None or self._sparse[0] != key:
            self._sparse = (key, *self._incidence(table, weight.dtype))
        if table.device.type in ("cpu", "cuda"):
            with torch.autocast(table.device.type, enabled=False):  # the sparse product in the weights' dtype
                return _SparseRows.apply(weight, self._sparse[1], self._sparse[2])
        flat, w, offsets = self._sparse[3:]
        return F.embedding_bag(flat, weight, offsets, mode="sum", per_sample_weights=w)

    def _incidence(self, table: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The weights of ``vectors`` as a CSR matrix [N+1, size+1] and its transpose, and as flat ids,
        weights and offsets for ``embedding_bag``."""
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            keep = table != 0
            w = self._weights(keep).to(dtype)
            rows, cols = keep.nonzero(as_tuple=True)
            shape = (table.shape[0], self.vocab.size + 1)
            coo = torch.sparse_coo_tensor(
                torch.stack([rows, table[rows, cols]]), w[rows, cols], shape, check_invariants=False
            ).coalesce()
            counts = keep.sum(1)
            return (
                coo.to_sparse_csr(),
                coo.t().coalesce().to_sparse_csr(),
                table[keep],
                w[keep],
                torch.cumsum(counts, 0) - counts,
            )

    def _stamp(self, id_rows: torch.Tensor) -> tuple | None:
        try:
            return (
                id_rows.data_ptr(),
                id_rows._version,
                self.training,
                torch.is_grad_enabled(),
                *(p._version for p in self.parameters()),
            )
        except RuntimeError:  # inference tensors keep no version counter: nothing is remembered
            return None

    def items(self, id_rows: torch.Tensor, remember: bool = False) -> torch.Tensor:
        """The fused representation [N+1, d] of every item from its id row ([N+1, d]) and its features;
        ``remember`` keeps it for one ``recall`` (the output layer of the same step)."""
        e = id_rows * self.id_weight.to(id_rows.dtype)
        f = self.vectors().to(id_rows.dtype)
        if self.training and self.dropout > 0.0:
            keep = torch.rand(f.shape[0], 1, device=f.device) >= self.dropout
            f = f * (keep.to(f.dtype) / (1.0 - self.dropout))
        if self.fusion == "sum":
            out = e + f
        elif self.fusion == "gated":
            out = e + torch.sigmoid(self.gate(torch.cat([e, f], 1))) * f
        else:
            out = self.proj(torch.cat([e, f], 1))
        self._kept = (self._stamp(id_rows), out) if remember and not torch.onnx.is_in_onnx_export() else None
        return out

    def recall(self, id_rows: torch.Tensor) -> torch.Tensor | None:
        """What the last ``items(..., remember=True)`` returned, once, if nothing it depends on changed since."""
        kept, self._kept = self._kept, None
        if kept is None or kept[0] is None or kept[0] != self._stamp(id_rows):
            return None
        return kept[1]

    def neighbour_rows(
        self, rows: np.ndarray | torch.Tensor, id_rows: torch.Tensor, chunk: int = 256
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Id rows for items with feature ids ``rows`` [k, columns]: the mean id row of the trained items
        whose features overlap theirs most (Jaccard of feature ids), and whether each had such items."""
        from scipy import sparse

        def incidence(t: np.ndarray) -> Any:
            r, c = np.nonzero(t)
            return sparse.csr_matrix((np.ones(len(r), np.float32), (r, t[r, c])), shape=(len(t), self.vocab.size + 1))

        table = self.table.cpu().numpy()
        trained = np.flatnonzero(self.id_weight[:, 0].cpu().numpy() > 0)
        known = incidence(table[trained])
        sizes = np.asarray(known.sum(1)).ravel()
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, table.shape[1])
        out = torch.zeros(len(rows), id_rows.shape[1], dtype=id_rows.dtype)
        found = torch.zeros(len(rows), dtype=torch.bool)
        emb = id_rows.detach().cpu()
        for lo in range(0, len(rows), chunk):
            new = incidence(rows[lo : lo + chunk])
            shared = (known @ new.T).toarray()  # [trained, chunk]
            union = sizes[:, None] + np.asarray(new.sum(1)).ravel()[None, :] - shared
            jaccard = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
            for j in np.flatnonzero(jaccard.max(0, initial=0.0) > 0):
                best = trained[jaccard[:, j] == jaccard[:, j].max()]
                out[lo + j] = emb[torch.from_numpy(best)].mean(0)
                found[lo + j] = True
        return out, found

    def fill_untrained(self, id_rows: torch.Tensor) -> int:
        """Give the items without training interactions that share features with trained ones their
        neighbours' mean id row (``neighbour_rows``) and id weight 1, in place; how many got one."""
        cold = torch.nonzero((self.id_weight[:, 0] == 0) & (self.table != 0).any(1)).flatten().cpu()
        if len(cold) == 0:
            return 0
        rows, found = self.neighbour_rows(self.table[cold].cpu().numpy(), id_rows)
        with torch.no_grad():
            id_rows[cold[found]] = rows[found].to(id_rows)
            self.id_weight[cold[found]] = 1.0
        return int(found.sum())

    def grown(self, rows: np.ndarray | torch.Tensor, found: torch.Tensor) -> dict[str, torch.Tensor]:
        """This module's state for ``len(rows)`` more items with feature ids ``rows``; ``found``: which of
        them have an id row (the others are represented by their features alone)."""
        new = torch.as_tensor(np.asarray(rows, dtype=np.int64)).reshape(-1, self.table.shape[1])
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        state["table"] = torch.cat([self.table, new.to(self.table.device)])
        state["id_weight"] = torch.cat([self.id_weight, found.to(self.id_weight).reshape(-1, 1)])
        return state


class _SparseRows(torch.autograd.Function):
    """``matrix @ weight`` for a constant CSR ``matrix``, its gradient ``transpose @ grad`` (no sort)."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, matrix: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        return matrix @ weight

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transpose @ grad.contiguous(), None, None
