"""Items nobody has interacted with yet, added to a served model by their features (``Recommender.with_items``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from seqrec.errors import SeqrecError
from seqrec.serving.catalogue import AddedItems, add_to_catalogue

if TYPE_CHECKING:
    from seqrec.serving.recommender import Recommender


def with_items(rec: Recommender, items: Sequence[Mapping[str, Any]]) -> tuple[Recommender, AddedItems]:
    """A new recommender like ``rec`` whose model and catalogue also hold ``items`` (see ``Recommender.with_items``)."""
    from seqrec.serving.recommender import Recommender

    scorer = rec.scorer
    features = getattr(scorer, "features", None)
    if features is None:
        raise SeqrecError(
            "adding items needs a SASRec trained with item_features (it places new items by "
            "their features); this model knows items by their ids only"
        )
    dataset, rows, added = add_to_catalogue(rec.dataset, items, features.vocab)
    grown = scorer.with_items(rows).eval()
    config = dict(rec.config)
    if isinstance(config.get("model"), dict):
        config["model"] = {**config["model"], "n_items": grown.n_items}
    new = Recommender(
        grown,
        dataset,
        name=rec.name,
        backend=rec.backend,
        config=config,
        metrics=rec.metrics,
        onnx_threads=rec._onnx_threads,
        index=rec.index_kind,
        index_params=rec.index_params,
    )
    new.available[: len(rec.available)] = rec.available  # the old items keep their availability; new ones are available
    return new, added
