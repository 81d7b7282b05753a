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

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import polars as pl

from seqrec.config import CleanConfig  # noqa: F401  (re-exported: seqrec.data.CleanConfig)
from seqrec.errors import SeqrecError
from seqrec.prepared import FORMAT_VERSION, read_prepared, write_prepared
from seqrec.publish import building, check_output_folder, publish_dir, recover_dir

PAD = 0
DEFAULT_K_CORE = 5
CATALOG_COLUMNS = ("raw_id", "title", "genres", "year")


_WHOLE_ID = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")  # no leading zeros: 007 is a code
_NUMBER_ID = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def id_key(raw: Any) -> str:
    """The lookup form of a raw id, by the readers' rule (``seqrec.columns``): a whole number is its
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


def _summary(lengths: np.ndarray, n_items: int) -> dict[str, Any]:
    """Counts and history-length percentiles from the users' history lengths (users without any are not counted)."""
    lengths = lengths[lengths > 0]
    if len(lengths) == 0:
        return {"users": 0, "items": n_items, "interactions": 0}
    n_users, n = len(lengths), int(lengths.sum())
    pct = np.percentile(lengths, [5, 25, 50, 75, 95]).round(1).tolist()
    return {
        "users": int(n_users),
        "items": int(n_items),
        "interactions": n,
        "density": float(n / max(1, n_users * max(1, n_items))),
        "length_mean": float(lengths.mean()),
        "length_min": int(lengths.min()),
        "length_max": int(lengths.max()),
        "length_percentiles": dict(zip(["p5", "p25", "p50", "p75", "p95"], pct)),
    }


def _sorted(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``frame`` in ``by`` order, ties in their order (a stable sort), without the columns after the first of
    ``by``. Integer columns are sorted as one int64 key (user, then time) with numpy; none when in order."""
    rest = [c for c in frame.columns if c not in by[1:]]
    cols = [frame[c] for c in by]
    if frame.height and all(c.dtype.is_integer() for c in cols):
        lows, spans = [int(c.min()) for c in cols], [int(c.max()) - int(c.min()) + 1 for c in cols]
        small = all(-(1 << 62) < lo and lo + span < 1 << 62 for lo, span in zip(lows, spans))
        if small and np.prod(np.array(spans, dtype=float)) < 2.0**62:
            key = cols[0].to_numpy().astype(np.int64, copy=False) - lows[0]
            if len(by) > 1:
                key = key * spans[1] + (cols[1].to_numpy().astype(np.int64, copy=False) - lows[1])
            if np.all(key[1:] >= key[:-1]):
                return frame.select(rest)
            order = np.argsort(key, kind="stable")
            del key
            return frame.select(rest)[order]
    return frame.sort(by, maintain_order=True).select(rest)


def _codes(s: pl.Series, in_order: bool = False) -> tuple[np.ndarray, pl.Series]:
    """Dense codes 0..n-1 of a column's values in value order (int32) and the values (sorted, distinct).
    ``in_order``: the column is sorted, so codes come from where the value changes."""
    if len(s) and in_order:
        x = s.to_numpy() if s.dtype.is_integer() else None
        new = np.empty(len(s), dtype=bool)
        if x is not None:
            new[0] = True
            np.not_equal(x[1:], x[:-1], out=new[1:])
        else:
            new[:] = s.ne_missing(s.shift(1)).fill_null(True).to_numpy()
        return (np.cumsum(new, dtype=np.int32) - 1), s.filter(pl.Series(new))
    if len(s) and s.dtype.is_integer():
        lo, hi = s.min(), s.max()
        if -(1 << 62) < lo and hi < 1 << 62 and hi - lo <= max(2 * len(s), 1 << 20) and hi - lo < 1 << 25:  # a small range of ids: a lookup table
            x = (s.to_numpy() - lo).astype(np.int64, copy=False)
            present = np.bincount(x, minlength=hi - lo + 1) > 0
            code = np.cumsum(present, dtype=np.int32) - 1
            return code[x], pl.Series(s.name, np.flatnonzero(present) + lo).cast(s.dtype)
    return (s.rank("dense").cast(pl.Int32) - 1).to_numpy(), s.unique().sort()


def _k_core_codes(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                  k: int) -> tuple[np.ndarray, np.ndarray, list[dict[str, int]]]:
    """``k_core`` on code arrays (users, items in 0..n-1): the rows kept and one record per pass."""
    steps: list[dict[str, int]] = []
    if k <= 1:
        return users, items, steps
    while True:
        before = len(users)
        keep = np.bincount(users, minlength=n_users)[users] >= k  # users first, then items, as k_core
        if not keep.all():
            users, items = users[keep], items[keep]
        keep = np.bincount(items, minlength=n_items)[items] >= k
        if not keep.all():
            users, items = users[keep], items[keep]
        steps.append({"users": int(np.count_nonzero(np.bincount(users, minlength=n_users))),
                      "items": int(np.count_nonzero(np.bincount(items, minlength=n_items))),
                      "interactions": len(users)})
        if len(users) == before or len(users) == 0:
            return users, items, steps


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
        if config.min_rating is not None and "rating" not in frame.columns:
            raise SeqrecError(f"{source or name}: min_rating={config.min_rating} given but the data has no rating")
        has_time = "timestamp" in frame.columns
        order = ["user", "timestamp"] if has_time else ["user"]
        # a stable sort: ties (and files without timestamps) keep file order; rating only to filter on
        frame = _sorted(frame.select(*order, "item", *(["rating"] if config.min_rating is not None else [])), order)
        users, raw_users = _codes(frame["user"], in_order=True)
        items, raw_items = _codes(frame["item"])
        n_users, n_items = len(raw_users), len(raw_items)
        before = _summary(np.bincount(users, minlength=n_users), n_items)
        cleaning: dict[str, Any] = {"config": asdict(config)}
        if config.min_rating is not None:
            keep = (frame["rating"] >= config.min_rating).fill_null(False).to_numpy()
            users, items = users[keep], items[keep]
            cleaning["after_min_rating"] = len(users)
        del frame
        if config.dedupe:  # the first of each (user, item) pair in time order
            _, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)
            first.sort()
            users, items = users[first], items[first]
            cleaning["after_dedupe"] = len(users)
        k = DEFAULT_K_CORE if config.k_core is None else config.k_core
        cleaning["k_core"] = k
        users, items, steps = _k_core_codes(users, items, n_users, n_items, k)
        cleaning["k_core_steps"] = steps
        if len(users) == 0:
            trail = "; ".join(
                f"pass {i + 1}: {s['users']} users, {s['items']} items, {s['interactions']} interactions"
                for i, s in enumerate(steps)
            )
            raise SeqrecError(
                f"{source or name}: nothing left after cleaning (min_rating={config.min_rating}, "
                f"k_core={k}; started with {before['users']} users, {before['items']} items, "
                f"{before['interactions']} interactions; {trail or 'no k-core pass'})"
            )
        per_user = np.bincount(users, minlength=n_users)
        item_seen = np.bincount(items, minlength=n_items) > 0
        raw_users, raw_items = raw_users.filter(pl.Series(per_user > 0)), raw_items.filter(pl.Series(item_seen))
        offsets = np.zeros(len(raw_users) + 1, dtype=np.int64)
        np.cumsum(per_user[per_user > 0], out=offsets[1:])
        ds = cls(
            offsets=offsets,
            items=np.cumsum(item_seen, dtype=np.int32)[items],  # 1..N in raw-id order
            user_ids=IdMap(raw_users, offset=0),
            item_ids=IdMap(raw_items, offset=1),
            catalog=_normalise_catalog(catalog, raw_items),
        )
        ds.meta = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "source": source,
            "has_timestamps": has_time,
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
        stats = _summary(self.lengths, self.n_items)
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
        write_prepared(folder, self.offsets, self.items, self.user_ids.raw, self.catalog, self.meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dataset":
        """Read a prepared data set folder (``seqrec.prepared``). Its manifest, when it has one, is
        checked before any binary file is parsed; anything missing, damaged or inconsistent is a
        ``SeqrecError`` naming the file and what was expected. Nothing is unpickled."""
        path = Path(path)
        recover_dir(path, clean=False)
        offsets, items, users, catalog, meta = read_prepared(path)
        return cls(offsets, items, IdMap(users["raw_id"], 0), IdMap(catalog["raw_id"], 1), catalog, meta)
