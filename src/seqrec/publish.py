"""Which folders seqrec may replace or delete, and how it puts a new folder in place of the old one.

* Ownership (``ownership_problem``): seqrec replaces or deletes a non-empty folder only when every
  entry in it is a name seqrec writes into that kind of folder (``FOLDER_FILES``, the marker, the
  manifest, its own temp files) AND it holds a marker of that kind or, for folders from before
  markers, a file that reads as seqrec's (a config.json or meta.json with seqrec's keys, a seqrec
  checkpoint, training metrics), every such file present reading as seqrec's. Anything else is
  refused with a message naming the folder and a few of the entries that are not seqrec's.
  ``check_output_folder`` applies this (and refuses links, files, the current folder and the ones
  above it, the root and the home folder) before any work is done.
* Publishing (``publish_dir``): a folder is written complete under a temp name beside its target
  (``building``: marker first) and swapped in with one atomic exchange (Linux renameat2, macOS
  renamex_np), so at every instant the target is the old complete folder or the new one; then the
  old one is deleted. Where the OS has no exchange the old folder is renamed to ``.NAME.old`` first,
  and ``recover_dir`` (run before every load and every write) brings it back when the process died
  before the new one was in place.

The marker and the manifest themselves are ``seqrec.files``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from seqrec import files as _files
from seqrec.errors import SeqrecError
from seqrec.files import (
    _JSON_LIMIT,
    CHECKPOINT,
    CONFIG,
    FOLDER_FILES,
    FOLDER_NOUNS,
    MANIFEST,
    MARKER,
    META,
    METRICS_LOG,
    RESULT,
    _few,
    _fsync_dir,
    _sync_tree,
    read_json,
    read_marker,
    write_marker,
)

STALE_SECONDS = 3600.0  # temp folders beside a target older than this are leftovers of a killed writer
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # tempfile's names: .NAME.XXXXXXXX.tmp


# ----------------------------------------------------------------------------- ownership
def _is_temp(name: str, known: set[str]) -> bool:
    m = _TEMP_NAME.fullmatch(name)
    return m is not None and m["name"] in known


def _json_with(keys: tuple[str, ...]) -> Callable[[Path], bool | None]:
    def check(file: Path) -> bool | None:  # True: reads as seqrec's; None: does not
        try:
            doc = read_json(file, file.name)
        except SeqrecError:
            return None
        return True if isinstance(doc, dict) and all(k in doc for k in keys) else None

    return check


def _training_rows(file: Path) -> bool | None:
    """metrics.jsonl: JSON objects with an epoch, one a line (True), or empty (False: proves nothing)."""
    try:
        if file.stat().st_size > _JSON_LIMIT:
            return None
        lines = [line for line in file.read_bytes().decode("utf-8").splitlines() if line.strip()]
        rows = [json.loads(line) for line in lines]
    except (OSError, ValueError, RecursionError):
        return None
    if not all(isinstance(r, dict) and "epoch" in r for r in rows):
        return None
    return bool(rows)


def _seqrec_checkpoint(file: Path) -> bool | None:
    """checkpoint.safetensors whose header carries seqrec's metadata key (read without safetensors)."""
    try:
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= 100 << 20:
                return None
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return True if isinstance(meta, dict) and "seqrec_checkpoint" in meta else None


# Files that identify a folder written by a seqrec from before markers; each, when present, must read
# as seqrec's (None), and at least one must prove it (True).
_SIGNATURES: dict[str, tuple[tuple[str, Callable[[Path], bool | None]], ...]] = {
    "data": ((META, _json_with(("format_version", "cleaning"))),),
    "model": (
        (CONFIG, _json_with(("format_version", "kind", "seqrec_version"))),
        (CHECKPOINT, _seqrec_checkpoint),
        (METRICS_LOG, _training_rows),
        (RESULT, _json_with(("best_epoch", "test"))),
    ),
}


def ownership_problem(path: str | os.PathLike, kind: str) -> str | None:
    """Why seqrec may not replace or delete the folder ``path`` as a ``kind`` folder; None when it may
    (see the rules above: only seqrec's names, and its marker or, from before markers, its files)."""
    path = Path(path)
    known = set(FOLDER_FILES[kind]) | {MARKER, MANIFEST}
    try:
        entries = sorted(p.name for p in path.iterdir())
    except OSError as e:
        return f"it cannot be listed ({e.strerror or e})"
    marker = read_marker(path) if MARKER in entries else None
    if marker is not None and marker["kind"] != kind:
        return f"it is a seqrec {FOLDER_NOUNS[marker['kind']]}"
    foreign = [n for n in entries if n not in known and not _is_temp(n, known)]
    if foreign:
        return f"it holds {_few(foreign)}, which seqrec did not write"
    proof = marker is not None
    for name in entries:
        p = path / name
        if _is_temp(name, known):
            continue
        if name == "data" and kind == "model":
            if p.is_symlink() or not p.is_dir():
                return "its data is not a folder"
            problem = ownership_problem(p, "data")
            if problem:
                return f"its data/ folder: {problem}"
            proof = proof or any(p.iterdir())
        elif p.is_symlink() or not p.is_file():
            return f"its {name} is not a regular file"
    if marker is not None:
        return None
    for name, check in _SIGNATURES[kind]:
        if (path / name).is_file():
            verdict = check(path / name)
            if verdict is None:
                return f"its {name} does not read as one seqrec wrote"
            proof = proof or verdict
    if entries and not proof:
        return f"it has no {MARKER} marker and nothing in it ({_few(entries)}) reads as seqrec's"
    return None


def _owned_by_seqrec(path: Path) -> bool:
    return any(ownership_problem(path, kind) is None for kind in FOLDER_FILES)


def check_output_folder(path: str | os.PathLike, kind: str, *, force: bool = True) -> Path:
    """Refuse, before any work, an output folder that seqrec may not write a ``kind`` folder to:

    a symbolic link, an existing file, the current folder or one above it, the file-system root, the
    home folder, a folder whose parent cannot be written, a non-empty folder without ``force`` and a
    non-empty folder seqrec does not own (``ownership_problem``). An interrupted earlier write is
    recovered first (``recover_dir``). Returns ``path``.
    """
    path = Path(path)
    noun = FOLDER_NOUNS[kind]
    if path.is_symlink():
        raise SeqrecError(
            f"{path} is a symbolic link; give the folder itself (seqrec replaces its output folder as a whole)"
        )
    target = Path(os.path.abspath(path))
    real, here = target.resolve(), Path.cwd().resolve()
    if real == here or real in here.parents:
        where = "the current folder" if real == here else "a folder above the current one"
        raise SeqrecError(
            f"{path} is {where}; seqrec replaces its output folder as a whole, so give a new "
            f"folder inside it (for example {Path(path) / 'out'})"
        )
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):  # no home folder known
        home = None
    if real.parent == real or real == home:
        raise SeqrecError(
            f"{path} is {'the root folder' if real.parent == real else 'your home folder'}; "
            f"give a new folder for the output"
        )
    recover_dir(target)
    if path.exists() and not path.is_dir():
        raise SeqrecError(
            f"{path} exists and is a file, not a folder; the output must be a new or empty folder or a seqrec {noun}"
        )
    parent = target.parent
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SeqrecError(f"cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SeqrecError(f"cannot write {path}: no permission to write in {parent}")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise SeqrecError(f"cannot write in {path}: permission denied")
        if any(path.iterdir()):
            if not force:
                raise SeqrecError(f"{path} already exists; pass --force (force=True) to replace it")
            problem = ownership_problem(path, kind)
            if problem:
                raise SeqrecError(
                    f"{path} is not a seqrec {noun}: {problem}; seqrec replaces only folders it "
                    f"made, so choose a new or empty folder"
                )
    return path


# ----------------------------------------------------------------------------- publishing
@contextlib.contextmanager
def building(path: Path, kind: str) -> Iterator[Path]:
    """A new marked temp folder beside ``path`` to build a ``kind`` folder in (removed on the way out
    unless published). OSErrors (disk full, permissions) become a ``SeqrecError`` naming ``path``."""
    path = Path(path)
    try:
        _files._op("make parent", path.parent.mkdir, parents=True, exist_ok=True)
        tmp = Path(_files._op("make temp folder", _make_temp_dir, path))
    except OSError as e:
        raise SeqrecError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        write_marker(tmp, kind)
        yield tmp
    except OSError as e:
        raise SeqrecError(f"could not write {path}: {e.strerror or e} ({e.filename or path})") from e
    finally:
        if tmp.exists():
            _files._op("remove temp folder", shutil.rmtree, tmp, True)


def _make_temp_dir(path: Path) -> Path:
    """An empty folder named like tempfile's (.NAME.XXXXXXXX.tmp) beside ``path``, with the mode a new
    folder gets (tempfile.mkdtemp's 0700 would be what the published folder ends up with)."""
    import secrets

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_"
    while True:
        name = f".{path.name}.{''.join(secrets.choice(alphabet) for _ in range(8))}.tmp"
        try:
            os.mkdir(path.parent / name, 0o777)  # the umask applies
            return path.parent / name
        except FileExistsError:
            continue


_EXCHANGE: Any = None


def _exchange_function() -> Callable[[bytes, bytes], int] | None:
    """The C call that swaps two paths atomically, or None on systems without one."""
    global _EXCHANGE
    if _EXCHANGE is None:
        import ctypes
        import sys

        _EXCHANGE = False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if sys.platform.startswith("linux"):
                fn = libc.renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                _EXCHANGE = lambda a, b: fn(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
            elif sys.platform == "darwin":
                fn = libc.renamex_np
                fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
                _EXCHANGE = lambda a, b: fn(a, b, 2)  # RENAME_SWAP
        except (OSError, AttributeError):
            _EXCHANGE = False
    return _EXCHANGE or None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step; False where the system cannot."""
    import ctypes
    import errno

    fn = _exchange_function()
    if fn is None:
        return False
    if fn(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish_dir(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the complete folder ``tmp`` (on the same file system) at ``path``, so that at no instant
    there is neither the old folder nor the new one: swapped in atomically where the system can, else
    with the old one kept as ``.NAME.old`` until the new one is in place (``recover_dir`` brings it back
    after a crash). The old folder is then deleted: callers check ownership first."""
    tmp, path = Path(tmp), Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise SeqrecError(f"{path} exists and is not a folder; seqrec replaces only folders")
    _files._op("sync new folder", _sync_tree, tmp)
    if not path.exists():
        _files._op("rename into place", os.replace, tmp, path)
        _files._op("sync parent", _fsync_dir, path.parent)
        return
    if _files._op("exchange", _exchange, tmp, path):
        _files._op("sync parent", _fsync_dir, path.parent)
        _files._op("remove old folder", shutil.rmtree, tmp)  # tmp now holds the old folder
        return
    old = path.with_name(f".{path.name}.old")
    if old.exists() or old.is_symlink():
        if old.is_symlink() or not old.is_dir() or not _owned_by_seqrec(old):
            raise SeqrecError(f"{old} is in the way of replacing {path} and seqrec did not write it; move it away")
        _files._op("remove stale old folder", shutil.rmtree, old)
    _files._op("move old folder aside", os.replace, path, old)
    _files._op("rename into place", os.replace, tmp, path)
    _files._op("sync parent", _fsync_dir, path.parent)
    _files._op("remove old folder", shutil.rmtree, old)


def recover_dir(path: str | os.PathLike, clean: bool = True) -> None:
    """Finish what an interrupted ``publish_dir`` left beside ``path``: a ``.NAME.old`` folder seqrec
    wrote comes back when NAME is missing (and, with ``clean``, is deleted when NAME is there); with
    ``clean``, seqrec's temp folders for NAME older than ``STALE_SECONDS`` are deleted."""
    path = Path(os.path.abspath(path))
    if path.parent == path:
        return
    old = path.with_name(f".{path.name}.old")
    if old.is_dir() and not old.is_symlink() and (clean or not path.exists()) and _owned_by_seqrec(old):
        if not path.exists() and not path.is_symlink():
            _files._op("bring old folder back", os.replace, old, path)
        elif path.is_dir():
            _files._op("remove old folder", shutil.rmtree, old)
    if not clean:
        return
    try:
        siblings = [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    except OSError:
        return
    now = time.time()
    for p in siblings:
        m = _TEMP_NAME.fullmatch(p.name)
        if m is None or m["name"] != path.name or p.is_symlink() or not p.is_dir():
            continue
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if age > STALE_SECONDS and _owned_by_seqrec(p):
            _files._op("remove leftover temp folder", shutil.rmtree, p, True)
