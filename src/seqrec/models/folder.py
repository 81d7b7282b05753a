"""Model folders: everything needed to score and recommend, stored without pickle.

A folder holds

* ``config.json`` (sorted keys): ``format_version``, ``seqrec_version``, ``kind`` (``"sasrec"`` or a
  baseline name), ``model`` (the ``SASRecConfig``; ``{}`` for baselines), ``train`` (the
  ``TrainConfig``; ``{}`` for baselines), ``data`` (name, fingerprint and counts of the training data);
* ``model.safetensors``: SASRec weights (absent for baselines, which are refitted on load); with item
  features they hold the item -> feature-id table too, and ``features.json`` the feature vocabulary
  (``seqrec.models.features.FeatureVocab``), from which the model is rebuilt before its weights are read;
* ``metrics.json``: whatever the trainer measured (best epoch, validation and test metrics);
* ``data/``: the training data set as a prepared folder (catalogue and user sequences);
* ``.seqrec`` (the marker saying seqrec made the folder) and ``manifest.json`` (size and sha256 of
  the files above; ``seqrec.files`` describes both);
* from a training run (``seqrec.training.loop``): ``checkpoint.safetensors``, ``metrics.jsonl``,
  ``result.json``, ``training.png``; from ``seqrec export-onnx``: ``model.onnx`` (``register_onnx``
  records it in the manifest with the weights it was exported from).

Folders are built complete beside the target and swapped in (``seqrec.publish.publish_dir``), so a
reader sees the old folder or the new one, never half of one, and a crash leaves one of them; an
existing folder is replaced only when seqrec wrote it. Loading is strict: a missing or changed file,
a missing or unknown key, an absurd model size, non-finite weights, a stale ONNX export, a foreign
folder or a newer ``format_version`` is a ``SeqrecError`` naming the file and the problem.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqrec import files as _files
from seqrec.config import TrainConfig
from seqrec.data.dataset import Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.files import (  # noqa: F401
    CONFIG,
    DATA_DIR,
    DATA_FILES,
    FEATURES,
    MANIFEST,
    MODEL_FILES,
    ONNX,
    RUN_FILES,
    SUMMARY,
    WEIGHTS,
    _few,
    _write_file,
    file_sha256,
    read_json,
    read_manifest,
    seqrec_version,
    verify_manifest,
    write_manifest,
    write_marker,
)
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.models.features import FeatureVocab
from seqrec.models.folder_onnx import checked_onnx, onnx_holds
from seqrec.models.sasrec import SASRecConfig, SASRecModel
from seqrec.publish import building, check_output_folder, publish_dir, recover_dir

FORMAT_VERSION = 1
CONFIG_KEYS = ("data", "format_version", "kind", "model", "seqrec_version", "train")
OPTIONAL_KEYS = ("recipe",)  # the recipe a SASRec was trained with (name, chosen options, reasons)
DATA_KEYS = ("counts", "fingerprint", "name")
METRICS, DATA = SUMMARY, DATA_DIR  # the folder's metrics.json and data/ folder
log = logging.getLogger("seqrec.folder")


@dataclass
class ModelBundle:
    """What ``load_folder`` returns: a ready scorer (eval mode, CPU) and what came with it."""

    scorer: Any
    dataset: Dataset
    config: dict[str, Any]
    metrics: dict[str, Any]
    path: Path
    onnx: Path | None = None  # the folder's model.onnx when it is known to hold these weights


def _kind(scorer: Any) -> str:
    if isinstance(scorer, SASRecModel):
        return "sasrec"
    name = getattr(scorer, "name", None)
    if name in BASELINES:
        return name
    raise SeqrecError(f"cannot store a {type(scorer).__name__} in a model folder: expected SASRecModel or a baseline")


def save_folder(
    path: str | os.PathLike,
    scorer: Any,
    dataset: Dataset,
    config: dict[str, Any] | TrainConfig | None,
    metrics: dict[str, Any],
    force: bool = False,
    keep_files: tuple[str, ...] = (),
    recipe: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder; ``config`` is the training configuration (``{}`` for baselines).

    The folder is built complete beside ``path`` (marker first, manifest last) and swapped in
    (``seqrec.publish.publish_dir``). An existing non-empty ``path`` is replaced only with ``force=True``
    and only when seqrec wrote it (``seqrec.publish.ownership_problem``). Files named in ``keep_files``
    that a run folder holds (checkpoint, metrics.jsonl, ...) are carried over from the existing folder;
    ``model.onnx`` is not (it was exported from the old weights).
    """
    path = Path(path)
    check_output_folder(path, "model", force=force)
    kind = _kind(scorer)
    if int(scorer.n_items) != dataset.n_items:
        raise SeqrecError(f"the {kind} model knows {scorer.n_items} items but the data set has {dataset.n_items}")
    if kind == "sasrec":
        _check_finite(scorer, "the model to save")  # refuse to write what load would refuse to read
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
    vocab = scorer.features.vocab if kind == "sasrec" and scorer.features is not None else None
    content = _content_files(kind, vocab is not None)
    with building(path, "model") as tmp:
        if kind == "sasrec":
            from safetensors.torch import save_model

            _files._op(
                f"write {WEIGHTS}", save_model, scorer, str(tmp / WEIGHTS), metadata={"format": "pt", "kind": "sasrec"}
            )
        if vocab is not None:
            text = json.dumps(vocab.to_json(), indent=1, sort_keys=True) + "\n"
            _files._op(f"write {FEATURES}", _write_file, tmp / FEATURES, text.encode())
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        _files._op(f"write {CONFIG}", _write_file, tmp / CONFIG, text.encode())
        text = json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n"
        _files._op(f"write {METRICS}", _write_file, tmp / METRICS, text.encode())
        _files._op(f"make {DATA}/", (tmp / DATA).mkdir)
        write_marker(tmp / DATA, "data")
        dataset._write(tmp / DATA)
        for name in keep_files:
            if name in RUN_FILES and (path / name).is_file() and not (path / name).is_symlink():
                _files._op(f"keep {name}", _carry, path / name, tmp / name)
        write_manifest(tmp, content)
        publish_dir(tmp, path)
    return path


def _content_files(kind: str, features: bool = False) -> list[str]:
    """What a model folder's manifest lists: everything but the run's files and an ONNX export."""
    return (
        [CONFIG, METRICS]
        + ([WEIGHTS] if kind == "sasrec" else [])
        + ([FEATURES] if features else [])
        + [f"{DATA}/{n}" for n in DATA_FILES]
    )


def _carry(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # a checkpoint can be large; every writer of these files replaces or appends
    except OSError:
        shutil.copy2(src, dst)


def _read_json(file: Path, what: str) -> Any:
    if not file.is_file():
        raise SeqrecError(f"{file.parent}: {what} is missing ({file.name})")
    return read_json(file, what)


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
        raise SeqrecError(
            f"{file}: "
            + "; ".join(
                ([f"missing keys {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else [])
            )
        )
    if not isinstance(doc["kind"], str) or (doc["kind"] != "sasrec" and doc["kind"] not in BASELINES):
        raise SeqrecError(f"{file}: kind {doc['kind']!r} is not 'sasrec' or a baseline ({', '.join(BASELINES)})")
    for key in ("model", "train", "data"):
        if not isinstance(doc[key], dict):
            raise SeqrecError(f"{file}: '{key}' must be a JSON object, got {type(doc[key]).__name__}")
    data_missing = sorted(set(DATA_KEYS) - set(doc["data"]))
    if data_missing:
        raise SeqrecError(f"{file}: 'data' lacks keys {data_missing}")
    if not isinstance(doc["data"]["fingerprint"], str):
        raise SeqrecError(f"{file}: 'data' fingerprint must be text, got {doc['data']['fingerprint']!r}")
    if doc["kind"] != "sasrec" and doc["model"]:
        raise SeqrecError(f"{file}: a {doc['kind']} baseline folder has a non-empty 'model' section")
    if "recipe" in doc and not isinstance(doc["recipe"], dict):
        raise SeqrecError(f"{file}: 'recipe' must be a JSON object, got {type(doc['recipe']).__name__}")


def _section(parse: Any, section: dict[str, Any], file: Path, key: str) -> Any:
    """``parse(section)`` with any complaint about the section naming the file it came from."""
    try:
        return parse(section)
    except SeqrecError as e:
        raise SeqrecError(f"{file}: {e}") from e
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise SeqrecError(f"{file}: the '{key}' section does not hold valid settings ({type(e).__name__}: {e})") from e


def load_folder(path: str | os.PathLike, *, check_onnx: bool = True) -> ModelBundle:
    """Read a model folder (never unpickles); the scorer comes back in eval mode on the CPU.

    Checked, in this order, so that nothing damaged is parsed and nothing absurd is allocated:
    config.json and metrics.json (JSON; keys, types and bounds of the model and training
    settings), the weights' header against the configured model's names and shapes, the manifest
    (size and sha256 of every file it lists; any difference names the file), the data folder
    (its own manifest, then the fingerprint in config.json), the weights (no NaN or infinity), and
    an ONNX export in the folder (recorded in the manifest with the weights it was exported from,
    or holding the same item embeddings). Folders from seqrecs before manifests load unverified.
    ``check_onnx=False`` leaves an ONNX export out of the checks and of the bundle (``register_onnx``
    checks a new export itself).
    """
    path = Path(path)
    try:
        recover_dir(path, clean=False)
        if not path.is_dir():
            raise SeqrecError(f"{path}: no such model folder")
    except OSError as e:  # a name the system refuses: a component over 255 characters, no permission
        raise SeqrecError(f"{path}: cannot read this path ({e.strerror or e})") from None
    if not (path / CONFIG).is_file():
        raise SeqrecError(f"{path}: not a seqrec model folder (no {CONFIG})")
    doc = _read_json(path / CONFIG, "the configuration")
    _check_config(doc, path / CONFIG)
    metrics = _read_json(path / METRICS, "the metrics file")
    if not isinstance(metrics, dict):
        raise SeqrecError(f"{path / METRICS}: expected a JSON object, got {type(metrics).__name__}")
    if doc["train"]:
        _section(TrainConfig.from_dict, doc["train"], path / CONFIG, "train")
    kind = doc["kind"]
    cfg = _section(SASRecConfig.from_dict, doc["model"], path / CONFIG, "model") if kind == "sasrec" else None
    vocab = _read_vocab(path) if cfg is not None and cfg.item_features is not None else None
    if cfg is not None:
        _check_weights_header(path, cfg, vocab)
    elif (path / WEIGHTS).exists():
        raise SeqrecError(f"{path}: a {kind} baseline folder should not hold {WEIGHTS}")
    content = _content_files(kind, vocab is not None)
    files = read_manifest(path, content)
    if files is not None:  # an ONNX export may be deleted (and exported again) without touching the rest
        verify_manifest(
            path, files, [n for n in files if "/" not in n and (n != ONNX or (check_onnx and (path / ONNX).exists()))]
        )
    if not (path / DATA).is_dir():
        raise SeqrecError(f"{path}: the training data folder '{DATA}/' is missing")
    in_data = [n for n in files if n.startswith(f"{DATA}/")] if files is not None else []
    if files is not None and not (path / DATA / MANIFEST).is_file():
        verify_manifest(path, files, in_data)  # nothing else guards data/ before it is parsed
    dataset = Dataset.load(path / DATA)
    if dataset.fingerprint() != doc["data"]["fingerprint"]:
        raise SeqrecError(
            f"{path / DATA}: data fingerprint {dataset.fingerprint()} does not match "
            f"{doc['data']['fingerprint']} in {CONFIG}; the folder was altered"
        )
    if files is not None:
        verify_manifest(path, files, in_data)
    onnx = None
    if cfg is not None:
        if cfg.n_items != dataset.n_items:
            raise SeqrecError(f"{path / CONFIG}: model n_items {cfg.n_items} but data/ has {dataset.n_items} items")
        scorer = _load_sasrec(path, cfg, vocab)
        onnx = checked_onnx(path, scorer, files) if check_onnx else None
    else:
        scorer = make_baseline(kind, LeaveOneOut(dataset))  # type: ignore[assignment]  # a bundle holds any Scorer
    return ModelBundle(scorer=scorer, dataset=dataset, config=doc, metrics=metrics, path=path, onnx=onnx)


def _read_vocab(path: Path) -> FeatureVocab:
    """The feature vocabulary of a model folder with item features (``features.json``)."""
    return FeatureVocab.from_json(_read_json(path / FEATURES, "the item feature vocabulary"), str(path / FEATURES))


_DTYPES = {torch.float32: "F32", torch.int64: "I64"}  # safetensors' names of the dtypes a model holds


def _check_weights_header(path: Path, cfg: SASRecConfig, vocab: FeatureVocab | None = None) -> None:
    """The weights file's tensor names, shapes and dtypes against the configured model, read from
    its header before anything is allocated (the model is built on the meta device)."""
    from safetensors import safe_open

    file = path / WEIGHTS
    if not file.is_file():
        raise SeqrecError(f"{path}: the weights file {WEIGHTS} is missing")
    try:
        with safe_open(str(file), framework="pt") as f:
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for damaged or foreign files
        raise SeqrecError(f"{file}: not a readable safetensors file ({e})") from e
    with torch.device("meta"):
        expected = {k: (tuple(v.shape), _DTYPES[v.dtype]) for k, v in SASRecModel(cfg, vocab).state_dict().items()}
    problems = [f"{k} is missing" for k in expected if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    problems += [
        f"{k} is {found[k][1]}{list(found[k][0])}, the config needs {v[1]}{list(v[0])}"
        for k, v in expected.items()
        if k in found and found[k] != v
    ]
    if problems:
        raise SeqrecError(f"{file}: weights do not fit the configured model in {CONFIG} ({_few(problems, 3)})")


def _load_sasrec(path: Path, cfg: SASRecConfig, vocab: FeatureVocab | None = None) -> SASRecModel:
    from safetensors.torch import load_model

    file = path / WEIGHTS
    with torch.device("meta"):
        model = SASRecModel(cfg, vocab)
    model = model.to_empty(device="cpu")  # every tensor is then read from the file (header checked)
    try:
        load_model(model, str(file), strict=True, device="cpu")
    except Exception as e:  # safetensors and torch raise several types for damaged or foreign weights
        raise SeqrecError(f"{file}: weights do not fit the configured model ({e})") from e
    _check_finite(model, str(file))
    if model.features is not None:
        model.features.vocab.check_table(model.features.table.numpy(), str(file))
    return model.eval()


def _check_finite(model: SASRecModel, where: str) -> None:
    for name, tensor in model.state_dict().items():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise SeqrecError(
                f"{where}: tensor {name} holds {bad} NaN or infinite value(s) of {tensor.numel()}; "
                f"the weights are damaged (or came from a diverged training run)"
            )


def register_onnx(path: str | os.PathLike) -> Path:
    """Record ``path/model.onnx`` (written by ``seqrec export-onnx``) in the folder's manifest with the
    sha256 of the weights it was exported from, so that ``load_folder`` refuses it once either changes."""
    path = Path(path)
    bundle = load_folder(path, check_onnx=False)  # checks the rest; an export recorded before may be replaced
    file = path / ONNX
    if not file.is_file():
        raise SeqrecError(f"{path}: there is no {ONNX} to record; run seqrec export-onnx first")
    if isinstance(bundle.scorer, SASRecModel):
        onnx_holds(file, bundle.scorer)  # refuses an export of other weights
    files = read_manifest(path) or {}
    with_features = bool(bundle.config["model"].get("item_features"))
    names = list(dict.fromkeys([*(files or _content_files(bundle.config["kind"], with_features)), ONNX]))
    extra = {ONNX: {"weights_sha256": file_sha256(path / WEIGHTS)}} if (path / WEIGHTS).is_file() else {}
    try:
        write_manifest(path, names, extra)
    except OSError as e:
        raise SeqrecError(f"cannot write {path / MANIFEST}: {e.strerror or e}") from e
    return file
