"""Model folders: everything needed to score and recommend, stored without pickle.

A folder holds

* ``config.json`` (sorted keys): ``format_version``, ``seqrec_version``, ``kind`` (``"sasrec"`` or a
  baseline name), ``model`` (the ``SASRecConfig``; ``{}`` for baselines), ``train`` (the
  ``TrainConfig``; ``{}`` for baselines), ``data`` (name, fingerprint and counts of the training data);
* ``model.safetensors``: SASRec weights (absent for baselines, which are refitted on load);
* ``metrics.json``: whatever the trainer measured (best epoch, validation and test metrics);
* ``data/``: the training data set as a prepared folder (catalogue and user sequences).

Folders are written into a temp folder beside the target and renamed into place, so a reader sees
the old folder or the new one, never half of one. Loading is strict: a missing file, a missing or
unknown key, a foreign folder or a newer ``format_version`` is a ``SeqrecError`` naming the problem.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqrec.baselines import BASELINES, make_baseline
from seqrec.data import Dataset, replace_dir
from seqrec.errors import SeqrecError
from seqrec.model import SASRecConfig, SASRecModel
from seqrec.split import LeaveOneOut
from seqrec.train import TrainConfig

FORMAT_VERSION = 1
CONFIG_KEYS = ("data", "format_version", "kind", "model", "seqrec_version", "train")
OPTIONAL_KEYS = ("recipe",)  # the recipe a SASRec was trained with (name, chosen options, reasons)
DATA_KEYS = ("counts", "fingerprint", "name")
WEIGHTS, CONFIG, METRICS, DATA = "model.safetensors", "config.json", "metrics.json", "data"


@dataclass
class ModelBundle:
    """What ``load_folder`` returns: a ready scorer (eval mode, CPU) and what came with it."""

    scorer: Any
    dataset: Dataset
    config: dict[str, Any]
    metrics: dict[str, Any]
    path: Path


def seqrec_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seqrec")
    except PackageNotFoundError:
        return "0+unknown"


def _kind(scorer: Any) -> str:
    if isinstance(scorer, SASRecModel):
        return "sasrec"
    name = getattr(scorer, "name", None)
    if name in BASELINES:
        return name
    raise SeqrecError(f"cannot store a {type(scorer).__name__} in a model folder: expected SASRecModel or a baseline")


def save_folder(path: str | os.PathLike, scorer: Any, dataset: Dataset, config: dict[str, Any] | TrainConfig | None,
                metrics: dict[str, Any], force: bool = False, keep_files: tuple[str, ...] = (),
                recipe: dict[str, Any] | None = None) -> Path:
    """Write a model folder atomically; ``config`` is the training configuration (``{}`` for baselines).

    An existing ``path`` is replaced only with ``force=True``, and only once the new folder is
    complete. Files named in ``keep_files`` are carried over from the existing folder (a training
    run's checkpoint and metrics, say).
    """
    path = Path(path)
    if path.exists() and not force:
        raise SeqrecError(f"{path} already exists; pass --force (force=True) to replace it")
    if path.exists() and not path.is_dir():
        raise SeqrecError(f"{path} exists and is not a folder")
    kind = _kind(scorer)
    if int(scorer.n_items) != dataset.n_items:
        raise SeqrecError(f"the {kind} model knows {scorer.n_items} items but the data set has {dataset.n_items}")
    train = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
    if train:
        TrainConfig.from_dict(train)  # refuse to write what load would refuse to read
    counts = dataset.counts()
    doc = {
        "format_version": FORMAT_VERSION,
        "seqrec_version": seqrec_version(),
        "kind": kind,
        "model": scorer.config.to_dict() if kind == "sasrec" else {},
        "train": train,
        "data": {"name": dataset.meta.get("name", ""), "fingerprint": counts.pop("fingerprint"), "counts": counts},
    }
    if recipe:
        doc["recipe"] = recipe
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        if kind == "sasrec":
            from safetensors.torch import save_model

            save_model(scorer, str(tmp / WEIGHTS), metadata={"format": "pt", "kind": "sasrec"})
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
        dataset.save(tmp / DATA)
        for name in keep_files:
            if (path / name).is_file():
                shutil.copy2(path / name, tmp / name)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _read_json(file: Path, what: str) -> Any:
    if not file.is_file():
        raise SeqrecError(f"{file.parent}: {what} is missing ({file.name})")
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SeqrecError(f"{file}: not valid JSON ({e})") from e


def _check_config(doc: Any, file: Path) -> None:
    if not isinstance(doc, dict):
        raise SeqrecError(f"{file}: expected a JSON object, got {type(doc).__name__}")
    if "format_version" not in doc or "kind" not in doc:
        raise SeqrecError(f"{file}: not a seqrec model folder (no format_version / kind)")
    version = doc["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise SeqrecError(f"{file}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise SeqrecError(
            f"{file}: format_version {version} was written by a newer seqrec ({doc.get('seqrec_version')}); "
            f"this seqrec ({seqrec_version()}) reads format_version <= {FORMAT_VERSION}; upgrade seqrec"
        )
    if version < 1:
        raise SeqrecError(f"{file}: format_version {version} is not a version seqrec ever wrote")
    missing, unknown = sorted(set(CONFIG_KEYS) - set(doc)), sorted(set(doc) - set(CONFIG_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        raise SeqrecError(f"{file}: " + "; ".join(
            ([f"missing keys {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else [])))
    if doc["kind"] != "sasrec" and doc["kind"] not in BASELINES:
        raise SeqrecError(f"{file}: kind {doc['kind']!r} is not 'sasrec' or a baseline ({', '.join(BASELINES)})")
    for key in ("model", "train", "data"):
        if not isinstance(doc[key], dict):
            raise SeqrecError(f"{file}: '{key}' must be a JSON object, got {type(doc[key]).__name__}")
    data_missing = sorted(set(DATA_KEYS) - set(doc["data"]))
    if data_missing:
        raise SeqrecError(f"{file}: 'data' lacks keys {data_missing}")
    if doc["kind"] != "sasrec" and doc["model"]:
        raise SeqrecError(f"{file}: a {doc['kind']} baseline folder has a non-empty 'model' section")


def load_folder(path: str | os.PathLike) -> ModelBundle:
    """Read a model folder (never unpickles); the scorer comes back in eval mode on the CPU."""
    path = Path(path)
    if not path.is_dir():
        raise SeqrecError(f"{path}: no such model folder")
    if not (path / CONFIG).is_file():
        raise SeqrecError(f"{path}: not a seqrec model folder (no {CONFIG})")
    doc = _read_json(path / CONFIG, "the configuration")
    _check_config(doc, path / CONFIG)
    metrics = _read_json(path / METRICS, "the metrics file")
    if not isinstance(metrics, dict):
        raise SeqrecError(f"{path / METRICS}: expected a JSON object, got {type(metrics).__name__}")
    if doc["train"]:
        TrainConfig.from_dict(doc["train"])
    if not (path / DATA).is_dir():
        raise SeqrecError(f"{path}: the training data folder '{DATA}/' is missing")
    dataset = Dataset.load(path / DATA)
    if dataset.fingerprint() != doc["data"]["fingerprint"]:
        raise SeqrecError(f"{path / DATA}: data fingerprint {dataset.fingerprint()} does not match "
                          f"{doc['data']['fingerprint']} in {CONFIG}; the folder was altered")
    kind = doc["kind"]
    if kind == "sasrec":
        scorer = _load_sasrec(path, doc["model"], dataset)
    else:
        if (path / WEIGHTS).exists():
            raise SeqrecError(f"{path}: a {kind} baseline folder should not hold {WEIGHTS}")
        scorer = make_baseline(kind, LeaveOneOut(dataset))
    return ModelBundle(scorer=scorer, dataset=dataset, config=doc, metrics=metrics, path=path)


def _load_sasrec(path: Path, model_doc: dict[str, Any], dataset: Dataset) -> SASRecModel:
    from safetensors.torch import load_model

    cfg = SASRecConfig.from_dict(model_doc)
    if cfg.n_items != dataset.n_items:
        raise SeqrecError(f"{path / CONFIG}: model n_items {cfg.n_items} but data/ has {dataset.n_items} items")
    if not (path / WEIGHTS).is_file():
        raise SeqrecError(f"{path}: the weights file {WEIGHTS} is missing")
    with torch.random.fork_rng(devices=[]):
        model = SASRecModel(cfg)
    try:
        load_model(model, str(path / WEIGHTS), strict=True, device="cpu")
    except Exception as e:  # safetensors and torch raise several types for damaged or foreign weights
        raise SeqrecError(f"{path / WEIGHTS}: weights do not fit the configured model ({e})") from e
    return model.eval()
