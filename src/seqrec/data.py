"""Cleaned interactions as per-user chronological sequences in CSR form.

``Dataset.from_interactions`` takes a polars frame with columns ``user``, ``item`` and optionally
``timestamp`` and ``rating`` (raw ids of any type), cleans it and maps ids:

* optional rating threshold (``min_rating``), optional dedupe of repeated (user, item) pairs
  (the earliest interaction is kept);
* iterated k-core on users and items until every user and item has at least ``k_core``
  interactions (the paper uses 5);
* dense item ids ``1..N`` ordered by raw id, with ``PAD = 0`` reserved for padding;
  users ``0..U-1`` ordered by raw id;
* each user's interactions ordered by timestamp, ties (and files without timestamps) kept in
  file order: the sort is stable.

The result holds ``offsets`` (int64, U+1) and ``items`` (int32): user ``u``'s sequence is
``items[offsets[u]:offsets[u+1]]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import polars as pl

from seqrec.errors import SeqrecError

PAD = 0
FORMAT_VERSION = 1
DEFAULT_K_CORE = 5
CATALOG_COLUMNS = ("raw_id", "title", "genres", "year")


@dataclass(frozen=True)
class CleanConfig:
    """How raw interactions are filtered before ids are mapped."""

    min_rating: float | None = None
    dedupe: bool = False
    k_core: int | None = None  # None: the format's default (5 for raw logs, 0 for already-filtered paper files)

    def __post_init__(self) -> None:
        if self.k_core is not None and self.k_core < 0:
            raise SeqrecError(f"k_core must be >= 0, got {self.k_core}")


_WHOLE_ID = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")  # no leading zeros: 007 is a code
_NUMBER_ID = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def id_key(raw: Any) -> str:
    """The lookup form of a raw id, by the readers' rule (``seqrec.readers``): a whole number is its
    integer in decimal (``50``, ``50.0``, ``"50"``, ``" 50.0 "``, ``"5e1"`` are all ``"50"``; integers within
    64 bits, numbers with a fraction or exponent within +-2**53); other text is trimmed, kept as written."""
    if isinstance(raw, (int, np.integer)) and not isinstance(raw, (bool, np.bool_)):
        return str(int(raw))
    if isinstance(raw, (float, np.floating)):
        f = float(raw)
        return str(int(f)) if f.is_integer() and abs(f) <= 2**53 else str(raw)
    text = str(raw).strip()
    if len(text) <= 20 and _WHOLE_ID.fullmatch(text):
        value = int(text)
        return str(value) if -(2**63) <= value < 2**63 else text
    if len(text) <= 400 and _NUMBER_ID.fullmatch(text):
        f = float(text)
        if f.is_integer() and abs(f) <= 2**53:
            return str(int(f))
    return text


class IdMap:
    """An immutable map between raw ids and dense internal ids ``offset .. offset+len-1``.

    Lookups accept the raw id or another spelling of it (``id_key``: ``50``, ``"50"`` and ``50.0`` find
    the same item).
    """

    def __init__(self, raw: Sequence[Any] | np.ndarray | pl.Series, offset: int) -> None:
        self.raw = raw.to_numpy() if isinstance(raw, pl.Series) else np.asarray(raw)
        self.offset = offset
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.raw)

    def _lookup_table(self) -> dict[str, int]:
        if self._index is None:
            raws = self.raw.tolist()
            index = {str(r): i + self.offset for i, r in enumerate(raws)}
            for i, r in enumerate(raws):  # other spellings (242.0 for 242); an exact raw id keeps its entry
                index.setdefault(id_key(r), i + self.offset)
            self._index = index
        return self._index

    def get(self, raw: Any) -> int | None:
        """Internal id of one raw id, or None when unknown."""
        table = self._lookup_table()
        found = table.get(str(raw))
        return table.get(id_key(raw)) if found is None else found

    def lookup(self, raws: Iterable[Any]) -> tuple[np.ndarray, list[Any]]:
        """Internal ids of the known raw ids (in order) and the list of unknown ones."""
        table = self._lookup_table()
        known, unknown = [], []
        for r in raws:
            i = table.get(str(r))
            if i is None:
                i = table.get(id_key(r))
            if i is None:
                unknown.append(r)
            else:
                known.append(i)
        return np.asarray(known, dtype=np.int64), unknown

    def to_raw(self, internal: np.ndarray | Sequence[int]) -> list[Any]:
        """Raw ids of internal ids (as Python values)."""
        idx = np.asarray(internal, dtype=np.int64) - self.offset
        return self.raw[idx].tolist()


def _summary(user: np.ndarray, n_items: int) -> dict[str, Any]:
    """Counts and history-length percentiles from a user column (any dtype)."""
    if len(user) == 0:
        return {"users": 0, "items": n_items, "interactions": 0}
    _, lengths = np.unique(user, return_counts=True)
    n_users = len(lengths)
    pct = np.percentile(lengths, [5, 25, 50, 75, 95]).round(1).tolist()
    return {
        "users": int(n_users),
        "items": int(n_items),
        "interactions": int(len(user)),
        "density": float(len(user) / max(1, n_users * max(1, n_items))),
        "length_mean": float(lengths.mean()),
        "length_min": int(lengths.min()),
        "length_max": int(lengths.max()),
        "length_percentiles": dict(zip(["p5", "p25", "p50", "p75", "p95"], pct)),
    }


def _frame_summary(frame: pl.DataFrame) -> dict[str, Any]:
    user = frame["user"].to_numpy()
    return _summary(user, frame["item"].n_unique() if frame.height else 0)


def k_core(frame: pl.DataFrame, k: int) -> tuple[pl.DataFrame, list[dict[str, int]]]:
    """Iterated k-core: drop users and items with fewer than k interactions until none is left.

    Returns the filtered frame and one record per pass (users, items, interactions left).
    """
    steps: list[dict[str, int]] = []
    if k <= 1:
        return frame, steps
    while True:
        before = frame.height
        frame = frame.filter(pl.len().over("user") >= k)
        frame = frame.filter(pl.len().over("item") >= k)
        steps.append(
            {"users": frame["user"].n_unique(), "items": frame["item"].n_unique(), "interactions": frame.height}
        )
        if frame.height == before or frame.height == 0:
            return frame, steps


def _normalise_catalog(catalog: pl.DataFrame | None, raw_items: pl.Series) -> pl.DataFrame:
    """One catalogue row per internal item 1..N with columns item, raw_id, title, genres, year, and
    ``attributes`` (list of strings, empty for items without an entry) when the given catalogue has it."""
    base = pl.DataFrame({"item": np.arange(1, len(raw_items) + 1, dtype=np.int32), "raw_id": raw_items})
    if catalog is None or catalog.height == 0:
        return base.with_columns(
            pl.lit(None, dtype=pl.String).alias("title"),
            pl.lit([], dtype=pl.List(pl.String)).alias("genres"),
            pl.lit(None, dtype=pl.Int32).alias("year"),
            *([pl.lit([], dtype=pl.List(pl.String)).alias("attributes")] if catalog is not None
              and "attributes" in catalog.columns else []),
        )
    cat = catalog.select(
        pl.col("raw_id").cast(pl.String).alias("_key"),
        (pl.col("title") if "title" in catalog.columns else pl.lit(None)).cast(pl.String).alias("title"),
        (pl.col("genres") if "genres" in catalog.columns else pl.lit([])).cast(pl.List(pl.String)).alias("genres"),
        (pl.col("year") if "year" in catalog.columns else pl.lit(None)).cast(pl.Int32).alias("year"),
        *([pl.col("attributes").cast(pl.List(pl.String))] if "attributes" in catalog.columns else []),
    ).unique("_key", keep="first", maintain_order=True)
    out = base.with_columns(pl.col("raw_id").cast(pl.String).alias("_key")).join(cat, on="_key", how="left")
    return out.sort("item").drop("_key").with_columns(pl.col(c).fill_null([]) for c in ("genres", "attributes")
                                                      if c in cat.columns)


@dataclass
class Dataset:
    """Per-user chronological sequences of internal item ids (CSR) plus the id maps and catalogue."""

    offsets: np.ndarray
    items: np.ndarray
    user_ids: IdMap
    item_ids: IdMap
    catalog: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_interactions(
        cls,
        frame: pl.DataFrame,
        catalog: pl.DataFrame | None = None,
        config: CleanConfig = CleanConfig(),
        name: str = "data",
        source: str = "",
    ) -> "Dataset":
        for col in ("user", "item"):
            if col not in frame.columns:
                raise SeqrecError(f"{source or name}: interactions need a '{col}' column, got {frame.columns}")
        frame = frame.with_row_index("_row")
        before = _frame_summary(frame)
        cleaning: dict[str, Any] = {"config": asdict(config)}
        if config.min_rating is not None:
            if "rating" not in frame.columns:
                raise SeqrecError(f"{source or name}: min_rating={config.min_rating} given but the data has no rating")
            frame = frame.filter(pl.col("rating") >= config.min_rating)
            cleaning["after_min_rating"] = frame.height
        order = ["user", "timestamp", "_row"] if "timestamp" in frame.columns else ["user", "_row"]
        frame = frame.sort(order)  # "_row" makes the order total: ties keep file order
        if config.dedupe:
            frame = frame.unique(["user", "item"], keep="first", maintain_order=True)
            cleaning["after_dedupe"] = frame.height
        k = DEFAULT_K_CORE if config.k_core is None else config.k_core
        cleaning["k_core"] = k
        frame, steps = k_core(frame, k)
        cleaning["k_core_steps"] = steps
        if frame.height == 0:
            trail = "; ".join(
                f"pass {i + 1}: {s['users']} users, {s['items']} items, {s['interactions']} interactions"
                for i, s in enumerate(steps)
            )
            raise SeqrecError(
                f"{source or name}: nothing left after cleaning (min_rating={config.min_rating}, "
                f"k_core={k}; started with {before['users']} users, {before['items']} items, "
                f"{before['interactions']} interactions; {trail or 'no k-core pass'})"
            )
        raw_items = frame["item"].unique().sort()
        raw_users = frame["user"].unique().sort()
        item_code = frame["item"].rank("dense").cast(pl.Int32)  # 1..N in raw-id order
        user_code = frame["user"].rank("dense").cast(pl.Int64) - 1
        user_np = user_code.to_numpy()
        offsets = np.zeros(len(raw_users) + 1, dtype=np.int64)
        np.cumsum(np.bincount(user_np, minlength=len(raw_users)), out=offsets[1:])
        ds = cls(
            offsets=offsets,
            items=item_code.to_numpy().astype(np.int32),
            user_ids=IdMap(raw_users, offset=0),
            item_ids=IdMap(raw_items, offset=1),
            catalog=_normalise_catalog(catalog, raw_items),
        )
        ds.meta = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "source": source,
            "has_timestamps": "timestamp" in frame.columns,
            "before": before,
            "cleaning": cleaning,
        }
        ds.meta.update(ds.counts())
        return ds

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[Any]], name: str = "sequences", k_core: int = 0) -> "Dataset":
        """Build from a list of per-user item lists already in time order (handy in tests)."""
        users = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
        items = [i for s in sequences for i in s]
        frame = pl.DataFrame({"user": users, "item": items})
        return cls.from_interactions(frame, config=CleanConfig(k_core=k_core), name=name)

    # ----------------------------------------------------------------- views
    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.offsets.astype(np.int64).tobytes())
        h.update(self.items.astype(np.int32).tobytes())
        return h.hexdigest()[:16]

    def counts(self) -> dict[str, Any]:
        stats = _summary(np.repeat(np.arange(self.n_users), self.lengths), self.n_items)
        stats["fingerprint"] = self.fingerprint()
        return stats

    def item_genres(self) -> list[str]:
        """Sorted list of all genres in the catalogue."""
        return sorted(set(self.catalog["genres"].explode().drop_nulls().to_list()))

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write a prepared data set folder: built complete under a temp name beside ``path`` (marker
        first, manifest last), then swapped in (``publish_dir``). An existing folder is replaced only
        with ``force=True`` and only when seqrec wrote it (``ownership_problem``)."""
        path = Path(path)
        check_output_folder(path, "data", force=force)
        with building(path, "data") as tmp:
            self._write(tmp)
            publish_dir(tmp, path)
        return path

    def _write(self, folder: Path) -> None:
        """The files of a prepared folder into ``folder`` (new, holding only its marker), manifest last."""
        _op("write sequences.npz", _write_npz, folder / "sequences.npz", offsets=self.offsets, items=self.items)
        _op("write users.parquet", pl.DataFrame({"raw_id": self.user_ids.raw}).write_parquet, folder / "users.parquet")
        _op("write catalog.parquet", self.catalog.write_parquet, folder / "catalog.parquet")
        meta = json.dumps(self.meta, indent=2, sort_keys=True, default=str)
        _op("write meta.json", _write_file, folder / "meta.json", meta.encode("utf-8"))
        write_manifest(folder, DATA_FILES)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dataset":
        """Read a prepared data set folder. Its manifest, when it has one, is checked before any
        binary file is parsed; anything missing, damaged or inconsistent is a ``SeqrecError`` naming
        the file and what was expected. Nothing is unpickled."""
        path = Path(path)
        recover_dir(path, clean=False)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise SeqrecError(f"{path}: not a prepared data set (no meta.json)")
        meta = read_json(meta_file, "the data set description")
        if not isinstance(meta, dict):
            raise SeqrecError(f"{meta_file}: expected a JSON object, got {type(meta).__name__}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise SeqrecError(
                f"{meta_file}: format_version {meta.get('format_version')!r}, this seqrec reads {FORMAT_VERSION}"
            )
        _check_meta(meta, meta_file)
        files = read_manifest(path, DATA_FILES)
        if files is not None:
            verify_manifest(path, files)
        for name in DATA_FILES:
            if not (path / name).is_file():
                raise SeqrecError(f"{path}: prepared data set is incomplete: {name} is missing")
        offsets, items = _read_sequences(path / "sequences.npz")
        n_users = len(offsets) - 1
        users = _read_parquet(path / "users.parquet")
        catalog = _read_parquet(path / "catalog.parquet")
        _check_users(users, n_users, path / "users.parquet")
        _check_catalog(catalog, path / "catalog.parquet")
        n_items = catalog.height
        if len(items) and (int(items.min()) < 1 or int(items.max()) > n_items):
            raise SeqrecError(f"{path / 'sequences.npz'}: item ids must be in 1..{n_items} (the catalogue's rows), "
                              f"got {int(items.min())}..{int(items.max())}")
        for key, value in (("users", n_users), ("items", n_items), ("interactions", len(items))):
            if key in meta and meta[key] != value:
                raise SeqrecError(f"{meta_file}: says {meta[key]} {key} but the folder's files hold {value}")
        return cls(offsets, items, IdMap(users["raw_id"], 0), IdMap(catalog["raw_id"], 1), catalog, meta)


def _write_npz(file: Path, **arrays: np.ndarray) -> None:
    with open(file, "wb") as f:
        np.savez(f, **arrays)


def _check_meta(meta: dict[str, Any], file: Path) -> None:
    for key, kind, expected in (("name", str, "text"), ("source", str, "text"), ("has_timestamps", bool, "true or false"),
                                ("before", dict, "a JSON object"), ("cleaning", dict, "a JSON object")):
        if key in meta and not isinstance(meta[key], kind):
            raise SeqrecError(f"{file}: '{key}' must be {expected}, got {meta[key]!r}")
    for key in ("users", "items", "interactions"):
        v = meta.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SeqrecError(f"{file}: '{key}' must be a count (an integer >= 0), got {v!r}")


def _read_sequences(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as z:
            names = sorted(z.files)
            if names != ["items", "offsets"]:
                raise SeqrecError(f"{file}: expected the arrays ['items', 'offsets'], got {names}")
            offsets, items = z["offsets"], z["items"]
    except SeqrecError:
        raise
    except Exception as e:  # numpy and zipfile raise many types for a damaged archive
        raise SeqrecError(f"{file}: not a readable sequences file ({type(e).__name__}: {e})") from e
    for name, a in (("offsets", offsets), ("items", items)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise SeqrecError(f"{file}: '{name}' must be a 1-D integer array, got {a.dtype} of shape {a.shape}")
    offsets, items = offsets.astype(np.int64, copy=False), items.astype(np.int32, copy=False)
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(items) or np.any(np.diff(offsets) < 0):
        raise SeqrecError(f"{file}: 'offsets' must rise from 0 to the number of items ({len(items)}), one entry per "
                          f"user plus one")
    return offsets, items


def _read_parquet(file: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(file)
    except Exception as e:  # polars raises many types for a damaged file
        raise SeqrecError(f"{file}: not a readable Parquet file ({type(e).__name__}: {e})") from e


def _check_users(users: pl.DataFrame, n_users: int, file: Path) -> None:
    if "raw_id" not in users.columns:
        raise SeqrecError(f"{file}: expected a 'raw_id' column, got {users.columns}")
    if users.height != n_users:
        raise SeqrecError(f"{file}: {users.height} users, but sequences.npz holds {n_users}")
    if users["raw_id"].n_unique() != users.height:
        raise SeqrecError(f"{file}: user ids (raw_id) must be distinct")


def _check_catalog(catalog: pl.DataFrame, file: Path) -> None:
    missing = [c for c in ("item", "raw_id", "title", "genres", "year") if c not in catalog.columns]
    if missing:
        raise SeqrecError(f"{file}: missing columns {missing}; a catalogue has item, raw_id, title, genres, year")
    types = catalog.schema
    text_lists = (pl.List(pl.String), pl.List(pl.Null))
    checks = (("item", types["item"].is_integer(), "integers"),
              ("title", types["title"] in (pl.String, pl.Null), "text"),
              ("genres", types["genres"] in text_lists, "lists of text"),
              ("year", types["year"].is_integer() or types["year"] == pl.Null, "integers"),
              ("attributes", "attributes" not in types or types["attributes"] in text_lists, "lists of text"))
    for column, ok, expected in checks:
        if not ok:
            raise SeqrecError(f"{file}: column '{column}' must hold {expected}, got {types[column]}")
    if not catalog["item"].equals(pl.Series("item", np.arange(1, catalog.height + 1)), check_dtypes=False):
        raise SeqrecError(f"{file}: column 'item' must be 1..{catalog.height} in order")
    if catalog["raw_id"].n_unique() != catalog.height:
        raise SeqrecError(f"{file}: item ids (raw_id) must be distinct")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file via a temp file + fsync + rename (then fsync the folder), so readers never see
    half a file and a crash leaves the old one or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ============================================================================= folders seqrec writes
# Ownership, manifests and crash-safe publishing of the folders seqrec creates: prepared data sets
# (kind "data", written above) and model / training-run folders (kind "model", written by
# seqrec.folder and seqrec.train).
#
# * Marker: each such folder holds ``.seqrec`` (JSON: created_by "seqrec", kind, version), written
#   before anything else, so even a folder whose writing was interrupted is known to be seqrec's.
# * Manifest: ``manifest.json`` (size and sha256 of every content file), written last. Loading checks
#   it before parsing any binary file and names the file that differs. A folder with a marker but no
#   manifest is incomplete; folders from seqrecs before markers (neither file) load unverified.
# * Ownership (``ownership_problem``): seqrec replaces or deletes a non-empty folder only when every
#   entry in it is a name seqrec writes into that kind of folder (``FOLDER_FILES``, the marker, the
#   manifest, its own temp files) AND it holds a marker of that kind or, for folders from before
#   markers, a file that reads as seqrec's (a config.json or meta.json with seqrec's keys, a seqrec
#   checkpoint, training metrics), every such file present reading as seqrec's. Anything else is
#   refused with a message naming the folder and a few of the entries that are not seqrec's.
# * Publishing (``publish_dir``): a folder is written complete under a temp name beside its target and
#   swapped in with one atomic exchange (Linux renameat2, macOS renamex_np), so at every instant the
#   target is the old complete folder or the new one; then the old one is deleted. Where the OS has
#   no exchange the old folder is renamed to ``.NAME.old`` first, and ``recover_dir`` (run before
#   every load and every write) brings it back when the process died before the new one was in place.

MARKER, MANIFEST = ".seqrec", "manifest.json"
MANIFEST_FORMAT = 1
DATA_FILES = ("sequences.npz", "users.parquet", "catalog.parquet", "meta.json")
MODEL_FILES = ("config.json", "metrics.json", "model.safetensors", "data", "model.onnx",  # seqrec.folder, export-onnx
               "checkpoint.safetensors", "metrics.jsonl", "result.json", "training.png")  # seqrec.train, plot
FOLDER_FILES = {"data": DATA_FILES, "model": MODEL_FILES}
FOLDER_NOUNS = {"data": "prepared data folder", "model": "run or model folder"}
STALE_SECONDS = 3600.0  # temp folders beside a target older than this are leftovers of a killed writer
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # tempfile's names: .NAME.XXXXXXXX.tmp
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JSON_LIMIT = 64 << 20  # bytes; seqrec's JSON files are far smaller


def _op(step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one step of writing or publishing a folder. Every step that changes what is on disk goes
    through here, so that tests can stop the process at each of them."""
    return fn(*args, **kwargs)


def _seqrec_version() -> str:
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


# ----------------------------------------------------------------------------- marker and ownership
def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as a ``kind`` folder seqrec made (atomically; before anything else goes in)."""
    doc = {"created_by": "seqrec", "kind": kind, "version": _seqrec_version(), "format": MANIFEST_FORMAT}
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
    "data": (("meta.json", _json_with(("format_version", "cleaning"))),),
    "model": (("config.json", _json_with(("format_version", "kind", "seqrec_version"))),
              ("checkpoint.safetensors", _seqrec_checkpoint),
              ("metrics.jsonl", _training_rows),
              ("result.json", _json_with(("best_epoch", "test")))),
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
        raise SeqrecError(f"{path} is a symbolic link; give the folder itself (seqrec replaces its output "
                          f"folder as a whole)")
    target = Path(os.path.abspath(path))
    real, here = target.resolve(), Path.cwd().resolve()
    if real == here or real in here.parents:
        where = "the current folder" if real == here else "a folder above the current one"
        raise SeqrecError(f"{path} is {where}; seqrec replaces its output folder as a whole, so give a new "
                          f"folder inside it (for example {Path(path) / 'out'})")
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):  # no home folder known
        home = None
    if real.parent == real or real == home:
        raise SeqrecError(f"{path} is {'the root folder' if real.parent == real else 'your home folder'}; "
                          f"give a new folder for the output")
    recover_dir(target)
    if path.exists() and not path.is_dir():
        raise SeqrecError(f"{path} exists and is a file, not a folder; the output must be a new or empty "
                          f"folder or a seqrec {noun}")
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
                raise SeqrecError(f"{path} is not a seqrec {noun}: {problem}; seqrec replaces only folders it "
                                  f"made, so choose a new or empty folder")
    return path


# ----------------------------------------------------------------------------- publishing
@contextlib.contextmanager
def building(path: Path, kind: str) -> Iterator[Path]:
    """A new marked temp folder beside ``path`` to build a ``kind`` folder in (removed on the way out
    unless published). OSErrors (disk full, permissions) become a ``SeqrecError`` naming ``path``."""
    path = Path(path)
    try:
        _op("make parent", path.parent.mkdir, parents=True, exist_ok=True)
        tmp = Path(_op("make temp folder", _make_temp_dir, path))
    except OSError as e:
        raise SeqrecError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        write_marker(tmp, kind)
        yield tmp
    except OSError as e:
        raise SeqrecError(f"could not write {path}: {e.strerror or e} ({e.filename or path})") from e
    finally:
        if tmp.exists():
            _op("remove temp folder", shutil.rmtree, tmp, True)


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
                _EXCHANGE = lambda a, b: fn(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE  # noqa: E731
            elif sys.platform == "darwin":
                fn = libc.renamex_np
                fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
                _EXCHANGE = lambda a, b: fn(a, b, 2)  # RENAME_SWAP  # noqa: E731
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
    _op("sync new folder", _sync_tree, tmp)
    if not path.exists():
        _op("rename into place", os.replace, tmp, path)
        _op("sync parent", _fsync_dir, path.parent)
        return
    if _op("exchange", _exchange, tmp, path):
        _op("sync parent", _fsync_dir, path.parent)
        _op("remove old folder", shutil.rmtree, tmp)  # tmp now holds the old folder
        return
    old = path.with_name(f".{path.name}.old")
    if old.exists() or old.is_symlink():
        if old.is_symlink() or not old.is_dir() or not _owned_by_seqrec(old):
            raise SeqrecError(f"{old} is in the way of replacing {path} and seqrec did not write it; move it away")
        _op("remove stale old folder", shutil.rmtree, old)
    _op("move old folder aside", os.replace, path, old)
    _op("rename into place", os.replace, tmp, path)
    _op("sync parent", _fsync_dir, path.parent)
    _op("remove old folder", shutil.rmtree, old)


def replace_dir(tmp: Path, path: Path) -> None:
    """Former name of ``publish_dir``."""
    publish_dir(tmp, path)


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
            _op("bring old folder back", os.replace, old, path)
        elif path.is_dir():
            _op("remove old folder", shutil.rmtree, old)
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
            _op("remove leftover temp folder", shutil.rmtree, p, True)


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
            raise SeqrecError(f"{folder}: {MANIFEST} is missing, so the folder is incomplete (its writing was "
                              f"interrupted) or was altered; write it again")
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
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or not isinstance(sha, str) \
                or not _SHA256.fullmatch(sha):
            raise SeqrecError(f"{file}: the entry for {name!r} needs a size (integer >= 0) and a sha256 (64 hex digits)")
    missing = [n for n in required if n not in files]
    if missing:
        raise SeqrecError(f"{file}: does not list {_few(missing)}; the folder was altered")
    return files


def verify_manifest(folder: Path, files: dict[str, dict[str, Any]], names: Iterable[str] | None = None) -> None:
    """Check that each listed file (or each of ``names``) has the size and sha256 the manifest says."""
    folder = Path(folder)
    for name in (files if names is None else names):
        entry, file = files[name], folder / name
        if not file.is_file():
            raise SeqrecError(f"{file} is missing (listed in {folder / MANIFEST})")
        size = file.stat().st_size
        if size != entry["size"]:
            raise SeqrecError(f"{file}: {size:,} bytes, but {MANIFEST} says {entry['size']:,}; the file was "
                              f"changed or cut short after seqrec wrote it")
        if file_sha256(file) != entry["sha256"]:
            raise SeqrecError(f"{file}: its content differs from the sha256 in {MANIFEST}; the file was changed "
                              f"after seqrec wrote it")
