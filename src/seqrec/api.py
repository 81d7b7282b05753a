"""``SASRec``: a scikit-learn-style estimator over the model, trainer, evaluator and model folders.

The constructor takes a recipe name (``seqrec.training.recipe``: ``auto``, ``paper``, ``sasrec+``) and the
fields of ``SASRecConfig`` (except ``n_items``, which comes from the data) and of ``TrainConfig``,
the same names as the ``seqrec train`` flags; ``config_fields()`` lists them with type, default and
help for front ends. At ``fit`` the recipe, read from the data, fills every option not given.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.config import SplitConfig, TrainConfig, TrainResult
from seqrec.data.dataset import PAD, Dataset
from seqrec.errors import SeqrecError
from seqrec.models.sasrec import SASRecModel
from seqrec.training.fit import (
    ConfigField,
    Fitted,
    check_options,
    config_fields,
    fit_model,
    load,
    metrics_of,
    resolve,
    save,
)
from seqrec.training.recipe import Recipe

__all__ = ["ConfigField", "SASRec", "config_fields"]


class SASRec:
    """Fit SASRec on a data set, evaluate it, score histories, save and load model folders.

    ``fit`` sets ``model_`` (the trained ``SASRecModel``), ``dataset_`` and ``result_`` (a
    ``TrainResult``). Options are checked when the estimator is built.
    """

    def __init__(self, recipe: str = "auto", **options: Any) -> None:
        self.model_options, self.train_config = check_options(recipe, options)
        self.recipe = recipe
        self.options = dict(options)  # what the caller gave; the recipe fills the rest at fit time
        self.model_: SASRecModel | None = None
        self.dataset_: Dataset | None = None
        self.result_: TrainResult | None = None
        self.recipe_: Recipe | None = None
        self._fitted_config: TrainConfig | None = None

    def resolve(self, ds: Dataset) -> tuple[dict[str, Any], TrainConfig, Recipe]:
        """(model options, training config, recipe) for ``ds``: the recipe's values, then the caller's."""
        return resolve(self.recipe, self.options, ds)

    def __repr__(self) -> str:
        opts = {"recipe": self.recipe, **self.options}
        return "SASRec(" + ", ".join(f"{k}={v!r}" for k, v in opts.items()) + ")"

    def get_params(self) -> dict[str, Any]:
        """The recipe and the options given (after ``fit``, every option as trained)."""
        if self._fitted_config is not None:
            return {"recipe": self.recipe, **self.model_options, **self._fitted_config.to_dict()}
        return {"recipe": self.recipe, **self.options}

    # ------------------------------------------------------------------ training
    def fit(
        self,
        data: Any,
        out_dir: str | os.PathLike | None = None,
        resume: bool = False,
        valid: bool = True,
        init_from: str | os.PathLike | None = None,
        **scheme: Any,
    ) -> SASRec:
        """Train on ``data`` (a Dataset, or anything ``seqrec.data.readers.load_dataset`` reads).

        ``valid=False`` skips validation and early stopping and keeps the last weights. With
        ``out_dir`` the run (metrics.jsonl, checkpoint) goes there and the folder ends up a model
        folder that ``SASRec.load`` reads; ``resume=True`` continues an interrupted run (a folder that never held
        a run is refused: fit without ``resume`` to start one).
        ``init_from`` (a SASRec model folder) starts from that model (``seqrec.training.warm``): its items keep
        their ids and weights, new items are added, its shape is kept (model options may not differ),
        the optimiser starts afresh; the training options come from the recipe and the caller.
        With ``nproc > 1`` that many worker processes train (``seqrec.training.distributed``) into ``out_dir`` (or a
        temporary folder) and the fitted model is read back from it.
        ``scheme="temporal"`` with ``cutoff`` (a date or a quantile of event times) and ``horizon`` (``"7d"``)
        validates and tests on a cut in time instead of leave-one-out (``SplitConfig``).
        """
        split = SplitConfig(**scheme)
        self._take(fit_model(self.recipe, self.options, self._dataset(data), out_dir, resume, valid, init_from, split))
        return self

    def _take(self, fitted: Fitted) -> None:
        self.model_, self.dataset_, self.result_, self.recipe_ = (
            fitted.model,
            fitted.dataset,
            fitted.result,
            fitted.recipe,
        )
        self.model_options, self.train_config = fitted.model_options, fitted.train_config
        self._fitted_config = fitted.fitted_config

    @staticmethod
    def _dataset(data: Any) -> Dataset:
        if isinstance(data, Dataset):
            return data
        from seqrec.data.readers import load_dataset

        return load_dataset(data)

    def _check_fitted(self) -> SASRecModel:
        if self.model_ is None or self.dataset_ is None:
            raise SeqrecError("this SASRec is not fitted yet; call fit(data) or SASRec.load(folder) first")
        return self.model_

    # ------------------------------------------------------------------ use
    def evaluate(
        self,
        data: Any = None,
        protocol: str = "full",
        split: str = "test",
        scheme: str = "loo",
        cutoff: str | None = None,
        horizon: str | None = None,
        **eval_options: Any,
    ) -> dict[str, float]:
        """Metrics on the training data set (or ``data`` with the same item ids): leave-one-out, or with
        ``scheme="temporal"`` on a cut in time (``cutoff``; ``horizon`` adds recall and NDCG over the items
        each user takes within that time after the cut)."""
        from seqrec.data.split import TemporalSplit, make_split
        from seqrec.evaluation.evaluator import EvalConfig, evaluate
        from seqrec.evaluation.horizon import evaluate_horizon

        model = self._check_fitted()
        trained = self.dataset_
        assert trained is not None
        ds = trained if data is None else self._dataset(data)
        if ds is not trained and not np.array_equal(ds.item_ids.raw.astype(str), trained.item_ids.raw.astype(str)):
            raise SeqrecError("evaluate: the data set's items differ from those the model was trained on")
        known = {f.name for f in dataclasses.fields(EvalConfig)} - {"split", "protocol"}
        unknown = sorted(set(eval_options) - known)
        if unknown:
            raise SeqrecError(f"evaluate: unknown options {unknown}; allowed: {sorted(known)}")
        config = EvalConfig(split=split, protocol=protocol, **eval_options)  # type: ignore[arg-type]  # checked there
        parts = make_split(ds, SplitConfig(scheme, cutoff, horizon))  # type: ignore[arg-type]  # checked there
        out = evaluate(model, parts, config)
        if isinstance(parts, TemporalSplit) and parts.horizon is not None and split == "test":
            out.update(evaluate_horizon(model, parts, config.ks, exclude_seen=config.exclude_seen))
        return out

    def score(self, histories: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
        """Scores [B, N+1] (column 0 = PAD) for histories of internal item ids.

        ``histories`` is a left-padded LongTensor / array [B, L] or a list of id lists (any lengths).
        """
        model = self._check_fitted()
        if isinstance(histories, torch.Tensor):
            h = histories.long()
        elif isinstance(histories, np.ndarray) and histories.ndim == 2:
            h = torch.from_numpy(histories.astype(np.int64))
        else:
            seqs = [list(s)[-model.max_len :] for s in histories]
            width = max([len(s) for s in seqs] + [1])
            h = torch.tensor([[PAD] * (width - len(s)) + s for s in seqs], dtype=torch.long).reshape(len(seqs), width)
        if h.dim() != 2:
            raise SeqrecError(f"score: histories must be [B, L], got shape {tuple(h.shape)}")
        if len(h) and (int(h.min()) < 0 or int(h.max()) > model.n_items):
            raise SeqrecError(f"score: item ids must be in 0..{model.n_items} (internal ids, 0 = padding)")
        return model.score(h)

    # ------------------------------------------------------------------ persistence
    def metrics(self) -> dict[str, Any]:
        return metrics_of(self.result_)

    def save(self, path: str | os.PathLike, force: bool = False, keep_files: tuple[str, ...] = ()) -> Path:
        """Write a model folder (see ``seqrec.models.folder``)."""
        model = self._check_fitted()
        assert self.dataset_ is not None and self.result_ is not None
        fitted = Fitted(
            model,
            self.dataset_,
            self.result_,
            self.model_options,
            self.train_config,
            self._fitted_config or self.train_config,
            self.recipe_,
        )
        return save(fitted, path, force=force, keep_files=keep_files)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SASRec:
        """Read a SASRec model folder written by ``save`` or ``fit(out_dir=...)``."""
        recipe, options, fitted = load(path)
        est = cls(recipe=recipe, **options)
        est._take(fitted)
        return est
