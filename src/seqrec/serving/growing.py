"""Items nobody has interacted with yet, added to a served model by their features (``Recommender.with_items``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from seqrec.data.dataset import Dataset
from seqrec.errors import SeqrecError
from seqrec.serving.catalogue import AddedItems, add_to_catalogue


def grown(
    scorer: Any, dataset: Dataset, config: dict[str, Any], items: Sequence[Mapping[str, Any]]
) -> tuple[Any, Dataset, dict[str, Any], AddedItems]:
    """(the model with ``items`` appended, the data set with them in its catalogue, the folder's config with the
    new item count, what was added) for a SASRec with ``item_features``; a ``SeqrecError`` for any other model."""
    features = getattr(scorer, "features", None)
    if features is None:
        raise SeqrecError(
            "adding items needs a SASRec trained with item_features (it places new items by "
            "their features); this model knows items by their ids only"
        )
    data, rows, added = add_to_catalogue(dataset, items, features.vocab)
    model = scorer.with_items(rows).eval()
    config = dict(config)
    if isinstance(config.get("model"), dict):
        config["model"] = {**config["model"], "n_items": model.n_items}
    return model, data, config, added
