"""The whole of a fit, shared by the ``SASRec`` estimator and the workers of a multi-process run.

``fit_model(recipe, options, dataset, ...)`` reads the recipe from the data, fills every option the
caller did not give, builds the model (or warm-starts it from a model folder), trains it, and writes the
model folder; with ``nproc > 1`` it starts that many workers, each of which runs ``fit_model`` itself
(``python -m seqrec.training.fit JOB``), and reads the folder they wrote back. The option names are the
fields of ``SASRecConfig`` (but ``n_items``) and of ``TrainConfig``: ``config_fields()`` lists them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from seqrec.config import SplitConfig, TrainConfig, TrainResult
from seqrec.data.dataset import Dataset
from seqrec.data.split import TemporalSplit, make_split
from seqrec.errors import SeqrecError
from seqrec.evaluation.horizon import evaluate_horizon
from seqrec.files import RUN_FILES
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.training import distributed, launcher
from seqrec.training.loop import train
from seqrec.training.recipe import RECIPES, Recipe, choose


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
    """(name, type, default, help) of every option a fit takes: model fields, then training."""
    out = []
    for cls in (SASRecConfig, TrainConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name != "n_items":
                out.append(ConfigField(f.name, _base_type(hints[f.name]), f.default, f.metadata["help"]))
    return out


def model_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(SASRecConfig) if f.name != "n_items"}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model options, training options) of one flat dict of option names."""
    names = set(model_defaults())
    return ({k: v for k, v in options.items() if k in names}, {k: v for k, v in options.items() if k not in names})


def check_options(recipe: str, options: dict[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
    """(model options with their defaults, training config) of ``options``; a wrong name or value is a
    ``SeqrecError`` before any data is read."""
    if recipe not in RECIPES:
        raise SeqrecError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    known = {f.name for f in config_fields()}
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SeqrecError(f"unknown SASRec option {name!r}{hint} (see seqrec.training.fit.config_fields())")
    model_opts, train_opts = split_options(options)
    SASRecConfig(n_items=1, **model_opts)  # validate now, not after loading the data
    return {**model_defaults(), **model_opts}, TrainConfig(**train_opts)


def resolve(recipe: str, options: dict[str, Any], ds: Dataset) -> tuple[dict[str, Any], TrainConfig, Recipe]:
    """(model options, training config, recipe) for ``ds``: the recipe's values, then the caller's."""
    chosen_recipe = choose(recipe, ds)
    chosen = dict(chosen_recipe.options)
    if "loss" in options and "n_negatives" not in options:
        chosen.pop("n_negatives", None)  # the recipe's negatives belong to the recipe's loss
    model_opts, train_opts = split_options({**chosen, **options})
    return {**model_defaults(), **model_opts}, TrainConfig(**train_opts), chosen_recipe


@dataclass
class Fitted:
    """What a fit leaves: the model in eval mode, the data set it was trained on (renumbered by a warm
    start), the run's result, the options as trained and the recipe that filled them."""

    model: SASRecModel
    dataset: Dataset
    result: TrainResult
    model_options: dict[str, Any]
    train_config: TrainConfig  # the options as resolved
    fitted_config: TrainConfig  # as run (validation off when the fit was asked for none)
    recipe: Recipe | None


def fit_model(
    recipe: str,
    options: dict[str, Any],
    ds: Dataset,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    valid: bool = True,
    init_from: str | os.PathLike | None = None,
    split: SplitConfig | None = None,
) -> Fitted:
    """Train a SASRec on ``ds`` under ``recipe`` and ``options`` (see the module's docstring), validated and
    tested on ``split`` (leave-one-out by default; a temporal split's horizon adds set metrics to the test)."""
    split = split or SplitConfig()
    _, given = check_options(recipe, options)
    if given.nproc > 1 and not distributed.launched():  # workers train and write the run; read it back
        return _fit_in_workers(recipe, options, given, ds, out_dir, resume, valid, init_from, split)
    start = None
    if init_from is not None:
        ds, start = warm_start(ds, init_from, options)
    model_options, resolved, chosen = resolve(recipe, options, ds)
    if start is not None:
        model_options = {k: v for k, v in start.config.to_dict().items() if k != "n_items"}
    if not resolved.quiet and distributed.is_main():
        print(chosen.describe(options), flush=True)
    cfg = resolved if valid else dataclasses.replace(resolved, eval_every=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if start is None:
            model = SASRecModel.for_data(SASRecConfig(n_items=ds.n_items, **model_options), ds)
        else:
            from seqrec.training.warm import warm_model

            model = warm_model(start, ds.n_items, seed=cfg.seed, dataset=ds)
            if not resolved.quiet and distributed.is_main():
                from seqrec.training.warm import describe

                print(describe(ds.meta["warm_start"]), flush=True)
    parts = make_split(ds, split)
    result = train(model, parts, cfg, out_dir=None if out_dir is None else Path(out_dir), resume=resume)
    if isinstance(parts, TemporalSplit):
        result.test.update({k: v for k, v in parts.describe().items() if k != "scheme"})
        if parts.horizon is not None:
            result.test.update(evaluate_horizon(model.eval(), parts, (10, 20)))
    fitted = Fitted(model.eval(), ds, result, model_options, resolved, cfg, chosen)
    if out_dir is not None and distributed.is_main():  # under several processes rank 0 writes
        save(fitted, out_dir, force=True, keep_files=RUN_FILES)
    return fitted


def warm_start(ds: Dataset, path: str | os.PathLike, options: dict[str, Any]) -> tuple[Dataset, SASRecModel]:
    """``ds`` renumbered to extend the model folder's items, and that folder's model."""
    from seqrec.models.folder import load_folder
    from seqrec.training.warm import extend_items

    bundle = load_folder(path, check_onnx=False)
    if not isinstance(bundle.scorer, SASRecModel):
        raise SeqrecError(f"init_from: {path} holds a {type(bundle.scorer).__name__} model, not a SASRec")
    given, _ = split_options(options)
    old = bundle.scorer.config.to_dict()
    differ = sorted(k for k, v in given.items() if old.get(k) != v)
    if differ:
        raise SeqrecError(
            f"init_from: the model in {path} has {', '.join(f'{k}={old[k]!r}' for k in differ)}; "
            f"a warm start keeps the model's shape, so leave out {', '.join(differ)}"
        )
    return extend_items(ds, bundle.dataset)[0], bundle.scorer


def metrics_of(result: TrainResult | None) -> dict[str, Any]:
    if result is None:
        return {}
    return {"best_epoch": result.best_epoch, "valid": result.best_valid, "test": result.test, "seconds": result.seconds}


def save(fitted: Fitted, path: str | os.PathLike, force: bool = False, keep_files: tuple[str, ...] = ()) -> Path:
    """Write ``fitted`` as a model folder (``seqrec.models.folder``)."""
    from seqrec.models.folder import save_folder

    recipe = fitted.recipe.to_dict() if fitted.recipe is not None else None
    return save_folder(
        path,
        fitted.model,
        fitted.dataset,
        fitted.fitted_config.to_dict(),
        metrics_of(fitted.result),
        force=force,
        keep_files=keep_files,
        recipe=recipe,
    )


def load(path: str | os.PathLike) -> tuple[str, dict[str, Any], Fitted]:
    """(recipe name, options, ``Fitted``) of a SASRec model folder."""
    from seqrec.models.folder import load_folder

    bundle = load_folder(path)
    if bundle.config["kind"] != "sasrec":
        raise SeqrecError(
            f"{path}: holds the {bundle.config['kind']} baseline, not SASRec; use seqrec.models.folder.load_folder"
        )
    model_cfg = {k: v for k, v in bundle.config["model"].items() if k != "n_items"}
    stored = bundle.config.get("recipe") or {}
    name, options = stored.get("name", "auto"), {**model_cfg, **bundle.config["train"]}
    model_options, train_config = check_options(name, options)
    recipe = Recipe(stored["name"], stored.get("options", {}), stored.get("reasons", {})) if stored else None
    m = bundle.metrics
    result = TrainResult(
        int(m.get("best_epoch", 0)), dict(m.get("valid", {})), dict(m.get("test", {})), [], float(m.get("seconds", 0.0))
    )
    assert isinstance(bundle.scorer, SASRecModel)
    return (
        name,
        options,
        Fitted(bundle.scorer, bundle.dataset, result, model_options, train_config, train_config, recipe),
    )


# ----------------------------------------------------------------------------- several processes
def _fit_in_workers(
    recipe: str,
    options: dict[str, Any],
    given: TrainConfig,
    ds: Dataset,
    out_dir: Any,
    resume: bool,
    valid: bool,
    init_from: Any,
    split: SplitConfig,
) -> Fitted:
    spec = {
        "recipe": recipe,
        "options": options,
        "resume": resume,
        "valid": valid,
        "init_from": None if init_from is None else str(init_from),
        "split": dataclasses.asdict(split),
    }
    fitted, history = launcher.fit_in_workers(__name__, spec, given, ds, out_dir, lambda run: load(run)[2])
    fitted.result.history = history
    return fitted


def _worker(job: Path) -> int:
    """One worker of a multi-process fit: ``fit_model`` under the job's options; a failure's message goes
    to ``rank{R}.error`` for the launcher."""
    rank = os.environ.get("RANK", "0")
    launcher.orphan_guard()
    try:
        spec = json.loads((job / "job.json").read_text())
        fit_model(
            spec["recipe"],
            spec["options"],
            Dataset.load(job / "data"),
            out_dir=spec["out_dir"],
            resume=spec["resume"],
            valid=spec["valid"],
            init_from=spec["init_from"],
            split=SplitConfig(**spec["split"]),
        )
    except SeqrecError as e:
        (job / f"rank{rank}.error").write_text(str(e))
        return 2
    except BaseException as e:
        # the others' errors, such as a lost connection to a dead peer, are consequences and stay quiet)
        (job / f"rank{rank}.traceback").write_text(traceback.format_exc())
        (job / f"rank{rank}.error").write_text(f"{type(e).__name__}: {e}")
        return 1
    return 0


__all__ = ["ConfigField", "Fitted", "check_options", "config_fields", "fit_model", "load", "resolve", "save"]

if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1])))
