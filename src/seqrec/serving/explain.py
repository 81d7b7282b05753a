"""Why an item was recommended: the history items that raised its score most.

``explain_items(rec, history, items)`` leaves each distinct item of the history's window (the last
``max_len`` known items) out in turn and scores only the recommended items after every variant, in one
batched forward pass (the whole history is the first row of the batch, so the drops are measured in the
same pass). An item's ``drop`` for a history item is its score after the whole history less its score
without that item; the history items with the largest positive drops explain it (at most ``MAX_BECAUSE``),
each with its ``share`` of the positive drops of all history items. A variant left empty (a history of one
item) is given score 0.

For a SASRec only the recommended items' rows are multiplied with the states (``[V + 1, k]`` scores, not
``[V + 1, N + 1]``); another scorer scores every item and the recommended ones are picked out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqrec.serving.catalogue import Item

if TYPE_CHECKING:
    from seqrec.serving.recommender import Recommender

MAX_BECAUSE = 3


def _target_scores(rec: Recommender, batch: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """float [B, len(targets)]: the scores of internal ids ``targets`` after each history of ``batch``."""
    from seqrec.models.sasrec import SASRecModel

    scorer = rec.scorer
    cols = torch.from_numpy(targets)
    if isinstance(scorer, SASRecModel):
        was_training = scorer.training
        scorer.eval()
        try:
            states = scorer.forward(batch)[:, -1, :]
            return (states @ scorer.item_embeddings()[cols].T).float().numpy()
        finally:
            scorer.train(was_training)
    return rec._score(batch)[:, cols].numpy()


def explain_items(rec: Recommender, history: np.ndarray, items: list[Item],
                  top: int = MAX_BECAUSE) -> list[list[dict[str, Any]]]:
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
        out.append([{"item_id": cat.raw[int(distinct[v])], "title": cat.titles[int(distinct[v])],
                     "drop": round(float(d[v]), 6), "share": round(float(d[v] / positive), 4)} for v in order])
    return out
