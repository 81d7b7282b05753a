"""``SASRec``: a scikit-learn-style estimator over the model, trainer, evaluator and model folders.

The constructor takes a recipe name (``seqrec.recipe``: ``auto``, ``paper``, ``sasrec+``) and the
fields of ``SASRecConfig`` (except ``n_items``, which comes from the data) and of ``TrainConfig``,
the same names as the ``seqrec train`` flags; ``config_fields()`` lists them with type, default and
help for front ends. At ``fit`` the recipe, read from the data, fills every option not given.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from seqrec.config import TrainConfig, TrainResult
from seqrec.data import PAD, Dataset
from seqrec.errors import SeqrecError
from seqrec.model import SASRecConfig, SASRecModel
from seqrec.recipe import RECIPES, Recipe, choose
from seqrec.files import RUN_FILES
from seqrec.train import train



class ConfigField(NamedTuple):
    name: str
    type: type
    default: Any
    help: str


def _base_type(hint: Any) -> type:
    """int / float / str / bool / tuple for a field annotation (``X | None`` gives X, ``int | float`` float)."""
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if float in args:
        return float
    return args[0] if isinstance(args[0], type) else str


def config_fields() -> list[ConfigField]:
    """(name, type, default, help) of every option ``SASRec(...)`` takes: model fields, then training."""
    out = []
    for cls in (SASRecConfig, TrainConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "n_items":
                continue
            help_text = f.metadata["help"]
            out.append(ConfigField(f.name, _base_type(hints[f.name]), f.default, help_text))
    return out


def _model_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SASRecConfig) if f.name != "n_items"]


def _model_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(SASRecConfig) if f.name != "n_items"}


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model options, training options) of one flat dict of option names."""
    names = set(_model_names())
    return ({k: v for k, v in options.items() if k in names}, {k: v for k, v in options.items() if k not in names})


class SASRec:
    """Fit SASRec on a data set, evaluate it, score histories, save and load model folders.

    ``fit`` sets ``model_`` (the trained ``SASRecModel``), ``dataset_`` and ``result_`` (a
    ``TrainResult``). Options are checked when the estimator is built.
    """

    def __init__(self, recipe: str = "auto", **options: Any) -> None:
        if recipe not in RECIPES:
            raise SeqrecError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        known = {f.name for f in config_fields()}
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SeqrecError(f"unknown SASRec option {name!r}{hint} (see seqrec.api.config_fields())")
        self.recipe = recipe
        self.options = dict(options)  # what the caller gave; the recipe fills the rest at fit time
        model_opts, train_opts = _split_options(options)
        SASRecConfig(n_items=1, **model_opts)  # validate now, not after loading the data
        self.train_config = TrainConfig(**train_opts)
        self.model_options = {**_model_defaults(), **model_opts}
        self.model_: SASRecModel | None = None
        self.dataset_: Dataset | None = None
        self.result_: TrainResult | None = None
        self.recipe_: Recipe | None = None
        self._fitted_config: TrainConfig | None = None

    def resolve(self, ds: Dataset) -> tuple[dict[str, Any], TrainConfig, Recipe]:
        """(model options, training config, recipe) for ``ds``: the recipe's values, then the caller's."""
        recipe = choose(self.recipe, ds)
        chosen = dict(recipe.options)
        if "loss" in self.options and "n_negatives" not in self.options:
            chosen.pop("n_negatives", None)  # the recipe's negatives belong to the recipe's loss
        model_opts, train_opts = _split_options({**chosen, **self.options})
        return {**_model_defaults(), **model_opts}, TrainConfig(**train_opts), recipe

    def __repr__(self) -> str:
        opts = {"recipe": self.recipe, **self.options}
        return "SASRec(" + ", ".join(f"{k}={v!r}" for k, v in opts.items()) + ")"

    def get_params(self) -> dict[str, Any]:
        """The recipe and the options given (after ``fit``, every option as trained)."""
        if self._fitted_config is not None:
            return {"recipe": self.recipe, **self.model_options, **self._fitted_config.to_dict()}
        return {"recipe": self.recipe, **self.options}

    # ------------------------------------------------------------------ training
    def fit(self, data: Any, out_dir: str | os.PathLike | None = None, resume: bool = False,
            valid: bool = True, init_from: str | os.PathLike | None = None) -> "SASRec":
        """Train on ``data`` (a Dataset, or anything ``seqrec.readers.load_dataset`` reads).

        ``valid=False`` skips validation and early stopping and keeps the last weights. With
        ``out_dir`` the run (metrics.jsonl, checkpoint) goes there and the folder ends up a model
        folder that ``SASRec.load`` reads; ``resume=True`` continues an interrupted run.
        ``init_from`` (a SASRec model folder) starts from that model (``seqrec.warm``): its items keep
        their ids and weights, new items are added, its shape is kept (model options may not differ),
        the optimiser starts afresh; the training options come from the recipe and the caller.
        With ``nproc > 1`` that many worker processes train (``seqrec.distributed``) into ``out_dir`` (or a
        temporary folder) and the fitted model is read back from it.
        """
        from seqrec.distributed import fit_in_workers, is_main, launched
        from seqrec.split import LeaveOneOut

        ds = self._dataset(data)
        if self.train_config.nproc > 1 and not launched():  # workers train and write the run; read it back
            return fit_in_workers(self, ds, out_dir, resume, valid, init_from)
        start = None
        if init_from is not None:
            ds, start = self._warm_start(ds, init_from)
        model_options, resolved, recipe = self.resolve(ds)
        if start is not None:
            model_options = {k: v for k, v in start.config.to_dict().items() if k != "n_items"}
        if not resolved.quiet and is_main():
            print(recipe.describe(self.options), flush=True)
            if start is not None:
                from seqrec.warm import describe

                print(describe(ds.meta["warm_start"]), flush=True)
        cfg = resolved if valid else dataclasses.replace(resolved, eval_every=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if start is None:
                model = SASRecModel.for_data(SASRecConfig(n_items=ds.n_items, **model_options), ds)
            else:
                from seqrec.warm import warm_model

                model = warm_model(start, ds.n_items, seed=cfg.seed)
        self.result_ = train(model, LeaveOneOut(ds), cfg, out_dir=out_dir, resume=resume)
        self.model_, self.dataset_, self._fitted_config = model.eval(), ds, cfg
        self.model_options, self.train_config, self.recipe_ = model_options, resolved, recipe
        if out_dir is not None and is_main():  # under several processes rank 0 writes
            self.save(out_dir, force=True, keep_files=RUN_FILES)
        return self

    def _warm_start(self, ds: Dataset, path: str | os.PathLike) -> tuple[Dataset, SASRecModel]:
        """``ds`` renumbered to extend the model folder's items, and that folder's model."""
        from seqrec.folder import load_folder
        from seqrec.warm import extend_items

        bundle = load_folder(path, check_onnx=False)
        if not isinstance(bundle.scorer, SASRecModel):
            raise SeqrecError(f"init_from: {path} holds a {type(bundle.scorer).__name__} model, not a SASRec")
        given, _ = _split_options(self.options)
        old = bundle.scorer.config.to_dict()
        differ = sorted(k for k, v in given.items() if old.get(k) != v)
        if differ:
            raise SeqrecError(f"init_from: the model in {path} has {', '.join(f'{k}={old[k]!r}' for k in differ)}; "
                              f"a warm start keeps the model's shape, so leave out {', '.join(differ)}")
        return extend_items(ds, bundle.dataset)[0], bundle.scorer

    @staticmethod
    def _dataset(data: Any) -> Dataset:
        if isinstance(data, Dataset):
            return data
        from seqrec.readers import load_dataset

        return load_dataset(data)

    def _check_fitted(self) -> SASRecModel:
        if self.model_ is None or self.dataset_ is None:
            raise SeqrecError("this SASRec is not fitted yet; call fit(data) or SASRec.load(folder) first")
        return self.model_

    # ------------------------------------------------------------------ use
    def evaluate(self, data: Any = None, protocol: str = "full", split: str = "test", **eval_options: Any) -> dict[str, float]:
        """Leave-one-out metrics on the training data set (or ``data`` with the same item ids)."""
        from seqrec.evaluate import EvalConfig, evaluate
        from seqrec.split import LeaveOneOut

        model = self._check_fitted()
        ds = self.dataset_ if data is None else self._dataset(data)
        if ds is not self.dataset_ and not np.array_equal(ds.item_ids.raw.astype(str), self.dataset_.item_ids.raw.astype(str)):
            raise SeqrecError("evaluate: the data set's items differ from those the model was trained on")
        known = {f.name for f in dataclasses.fields(EvalConfig)} - {"split", "protocol"}
        unknown = sorted(set(eval_options) - known)
        if unknown:
            raise SeqrecError(f"evaluate: unknown options {unknown}; allowed: {sorted(known)}")
        return evaluate(model, LeaveOneOut(ds), EvalConfig(split=split, protocol=protocol, **eval_options))

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
            seqs = [list(s)[-model.max_len:] for s in histories]
            width = max([len(s) for s in seqs] + [1])
            h = torch.tensor([[PAD] * (width - len(s)) + s for s in seqs], dtype=torch.long).reshape(len(seqs), width)
        if h.dim() != 2:
            raise SeqrecError(f"score: histories must be [B, L], got shape {tuple(h.shape)}")
        if len(h) and (int(h.min()) < 0 or int(h.max()) > model.n_items):
            raise SeqrecError(f"score: item ids must be in 0..{model.n_items} (internal ids, 0 = padding)")
        return model.score(h)

    # ------------------------------------------------------------------ persistence
    def metrics(self) -> dict[str, Any]:
        r = self.result_
        if r is None:
            return {}
        return {"best_epoch": r.best_epoch, "valid": r.best_valid, "test": r.test, "seconds": r.seconds}

    def save(self, path: str | os.PathLike, force: bool = False, keep_files: tuple[str, ...] = ()) -> Path:
        """Write a model folder (see ``seqrec.folder``)."""
        from seqrec.folder import save_folder

        model = self._check_fitted()
        cfg = self._fitted_config or self.train_config
        recipe = self.recipe_.to_dict() if self.recipe_ is not None else None
        return save_folder(path, model, self.dataset_, cfg.to_dict(), self.metrics(), force=force, keep_files=keep_files,
                           recipe=recipe)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SASRec":
        """Read a SASRec model folder written by ``save`` or ``fit(out_dir=...)``."""
        from seqrec.folder import load_folder

        bundle = load_folder(path)
        if bundle.config["kind"] != "sasrec":
            raise SeqrecError(f"{path}: holds the {bundle.config['kind']} baseline, not SASRec; use seqrec.folder.load_folder")
        model_cfg = {k: v for k, v in bundle.config["model"].items() if k != "n_items"}
        stored = bundle.config.get("recipe") or {}
        est = cls(recipe=stored.get("name", "auto"), **model_cfg, **bundle.config["train"])
        if stored:
            est.recipe_ = Recipe(stored["name"], stored.get("options", {}), stored.get("reasons", {}))
        est.model_, est.dataset_ = bundle.scorer, bundle.dataset
        est._fitted_config = est.train_config
        m = bundle.metrics
        est.result_ = TrainResult(int(m.get("best_epoch", 0)), dict(m.get("valid", {})), dict(m.get("test", {})),
                                  [], float(m.get("seconds", 0.0)))
        return est
