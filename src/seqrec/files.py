"""The files and folders seqrec writes, at the lowest level: atomic file writes, the folder marker
and the manifest. Imports only ``seqrec.errors``; ``seqrec.publish`` decides which folders seqrec may
replace and swaps new ones in, ``seqrec.data.dataset`` and ``seqrec.models.folder`` write what goes inside.

Two kinds of folder are written: prepared data sets (kind ``"data"``, ``seqrec.data.dataset``) and model /
training-run folders (kind ``"model"``, ``seqrec.models.folder`` and ``seqrec.training.loop``).

* Marker: each such folder holds ``.seqrec`` (JSON: created_by "seqrec", kind, version), written
  before anything else, so even a folder whose writing was interrupted is known to be seqrec's.
* Manifest: ``manifest.json`` (size and sha256 of every content file), written last. Loading checks
  it before parsing any binary file and names the file that differs. A folder with a marker but no
  manifest is incomplete; folders from seqrecs before markers (neither file) load unverified.
* Steps: every step that changes what is on disk while a folder is written or published runs
  through ``_op``, so that tests can stop the process at each of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from seqrec.errors import SeqrecError

# The names of everything seqrec writes, in one place.
MARKER, MANIFEST = ".seqrec", "manifest.json"  # in every folder seqrec makes
MANIFEST_FORMAT = 1
# a prepared data folder (seqrec.data.prepared), also the data/ folder inside a model folder
SEQUENCES, USERS, CATALOG, META = "sequences.npz", "users.parquet", "catalog.parquet", "meta.json"
# a model folder (seqrec.models.folder; model.onnx by export-onnx; features.json for a model with item features)
CONFIG, SUMMARY, WEIGHTS, DATA_DIR, ONNX = "config.json", "metrics.json", "model.safetensors", "data", "model.onnx"
FEATURES = "features.json"
# a training run's files, kept in the model folder it becomes (seqrec.training.loop, seqrec.evaluation.report)
CHECKPOINT, METRICS_LOG, RESULT, PLOT = "checkpoint.safetensors", "metrics.jsonl", "result.json", "training.png"
DATA_FILES = (SEQUENCES, USERS, CATALOG, META)
RUN_FILES = (CHECKPOINT, METRICS_LOG, RESULT, PLOT)
MODEL_FILES = (CONFIG, SUMMARY, WEIGHTS, FEATURES, DATA_DIR, ONNX, *RUN_FILES)
FOLDER_FILES = {"data": DATA_FILES, "model": MODEL_FILES}
FOLDER_NOUNS = {"data": "prepared data folder", "model": "run or model folder"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JSON_LIMIT = 64 << 20  # bytes; seqrec's JSON files are far smaller


def _op(step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one step of writing or publishing a folder. Every step that changes what is on disk goes
    through here, so that tests can stop the process at each of them."""
    return fn(*args, **kwargs)


def seqrec_version() -> str:
    """The installed seqrec's version (``0+unknown`` when it runs from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seqrec")
    except PackageNotFoundError:
        return "0+unknown"


def _write_file(path: Path, data: bytes) -> None:
    """Write a file inside a folder that is not published yet (fsynced when the folder is)."""
    with open(path, "wb") as f:
        f.write(data)


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # folders cannot be opened there; NTFS orders its metadata itself
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (before it is renamed into place)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file via a temp file + fsync + rename (then fsync the folder), so readers never see
    half a file and a crash leaves the old one or the new one."""
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_with(path: str | os.PathLike, write: Callable[[BinaryIO], Any], public: bool = False) -> None:
    """``write(binary file)`` into a temp file beside ``path``, fsynced, renamed onto it, the folder fsynced;
    ``public``: the file gets the permissions ``open()`` would give it (not the temp file's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if public:
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(file: Path, what: str) -> Any:
    """A JSON file's value; a ``SeqrecError`` naming the file when it is not (UTF-8) JSON."""
    try:
        if file.stat().st_size > _JSON_LIMIT:
            raise SeqrecError(f"{file}: {what} is {file.stat().st_size:,} bytes, more than a seqrec JSON file can be")
        return json.loads(file.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SeqrecError(f"{file}: {what} is not valid JSON ({e})") from e
    except OSError as e:
        raise SeqrecError(f"{file}: cannot read {what} ({e.strerror or e})") from e


# ----------------------------------------------------------------------------- marker
def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as a ``kind`` folder seqrec made (atomically; before anything else goes in)."""
    doc = {"created_by": "seqrec", "kind": kind, "version": seqrec_version(), "format": MANIFEST_FORMAT}
    _op(f"write {MARKER}", atomic_write_text, Path(folder) / MARKER, json.dumps(doc, sort_keys=True) + "\n")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, or None when it has none (or one that is not seqrec's)."""
    try:
        with open(Path(folder) / MARKER, "rb") as f:
            doc = json.loads(f.read(1 << 16).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and doc.get("created_by") == "seqrec" and doc.get("kind") in FOLDER_FILES:
        return doc
    return None


def _few(names: Sequence[str], n: int = 5) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


# ----------------------------------------------------------------------------- manifests
def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, names: Iterable[str], extra: dict[str, dict[str, Any]] | None = None) -> None:
    """Write ``folder/manifest.json``: size and sha256 of each of ``names`` (paths inside ``folder``,
    "/"-separated), plus ``extra`` fields per name. Written last: the folder is complete once it is."""
    files: dict[str, dict[str, Any]] = {}
    for name in names:
        file = folder / name
        files[name] = {"size": file.stat().st_size, "sha256": file_sha256(file), **(extra or {}).get(name, {})}
    doc = {"created_by": "seqrec", "format": MANIFEST_FORMAT, "files": files}
    _op(f"write {MANIFEST}", atomic_write_text, folder / MANIFEST, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def read_manifest(folder: Path, required: Iterable[str] = ()) -> dict[str, dict[str, Any]] | None:
    """The files a folder's manifest lists, checked for form and for listing every name in
    ``required``; None for a folder from before manifests (no manifest and no marker)."""
    folder = Path(folder)
    file = folder / MANIFEST
    if not file.is_file():
        if (folder / MARKER).exists():
            raise SeqrecError(
                f"{folder}: {MANIFEST} is missing, so the folder is incomplete (its writing was "
                f"interrupted) or was altered; write it again"
            )
        return None
    doc = read_json(file, "the manifest")
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise SeqrecError(f"{file}: expected a JSON object with a 'files' object")
    if doc.get("format") != MANIFEST_FORMAT:
        raise SeqrecError(f"{file}: format {doc.get('format')!r}, this seqrec reads {MANIFEST_FORMAT}")
    files = doc["files"]
    for name, entry in files.items():
        parts = name.split("/")
        if "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise SeqrecError(f"{file}: {name!r} is not a file name inside the folder")
        size = entry.get("size") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or size < 0
            or not isinstance(sha, str)
            or not _SHA256.fullmatch(sha)
        ):
            raise SeqrecError(
                f"{file}: the entry for {name!r} needs a size (integer >= 0) and a sha256 (64 hex digits)"
            )
    missing = [n for n in required if n not in files]
    if missing:
        raise SeqrecError(f"{file}: does not list {_few(missing)}; the folder was altered")
    return files


def verify_manifest(folder: Path, files: dict[str, dict[str, Any]], names: Iterable[str] | None = None) -> None:
    """Check that each listed file (or each of ``names``) has the size and sha256 the manifest says."""
    folder = Path(folder)
    for name in files if names is None else names:
        entry, file = files[name], folder / name
        if not file.is_file():
            raise SeqrecError(f"{file} is missing (listed in {folder / MANIFEST})")
        size = file.stat().st_size
        if size != entry["size"]:
            raise SeqrecError(
                f"{file}: {size:,} bytes, but {MANIFEST} says {entry['size']:,}; the file was "
                f"changed or cut short after seqrec wrote it"
            )
        if file_sha256(file) != entry["sha256"]:
            raise SeqrecError(
                f"{file}: its content differs from the sha256 in {MANIFEST}; the file was changed after seqrec wrote it"
            )
