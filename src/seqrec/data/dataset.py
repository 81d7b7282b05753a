"""Cleaned interactions as per-user chronological sequences in CSR form.

``Dataset.build(cleaned, catalog)`` makes one from what ``seqrec.data.clean.clean`` left
(``Dataset.from_interactions`` does both steps from a standardised frame):

* dense item ids ``1..N`` ordered by raw id, with ``PAD = 0`` reserved for padding;
  users ``0..U-1`` ordered by raw id;
* each user's interactions in time order (as cleaning sorted them);
* the catalogue aligned with the items (``title``, ``genres``, ``year``, ``attributes``).

The result holds ``offsets`` (int64, U+1) and ``items`` (int32): user ``u``'s sequence is
``items[offsets[u]:offsets[u+1]]``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqrec.config import CleanConfig
from seqrec.data.clean import Cleaned, clean, summary
from seqrec.data.prepared import FORMAT_VERSION, read_prepared, write_prepared
from seqrec.publish import building, check_output_folder, publish_dir, recover_dir

PAD = 0
CATALOG_COLUMNS = ("raw_id", "title", "genres", "year")


_WHOLE_ID = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")  # no leading zeros: 007 is a code
_NUMBER_ID = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def id_key(raw: Any) -> str:
    """The lookup form of a raw id, by the readers' rule (``seqrec.data.columns``): a whole number is its
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


def _normalise_catalog(catalog: pl.DataFrame | None, raw_items: pl.Series) -> pl.DataFrame:
    """One catalogue row per internal item 1..N with columns item, raw_id, title, genres, year, and
    ``attributes`` (list of strings, empty for items without an entry) when the given catalogue has it."""
    base = pl.DataFrame({"item": np.arange(1, len(raw_items) + 1, dtype=np.int32), "raw_id": raw_items})
    if catalog is None or catalog.height == 0:
        return base.with_columns(
            pl.lit(None, dtype=pl.String).alias("title"),
            pl.lit([], dtype=pl.List(pl.String)).alias("genres"),
            pl.lit(None, dtype=pl.Int32).alias("year"),
            *(
                [pl.lit([], dtype=pl.List(pl.String)).alias("attributes")]
                if catalog is not None and "attributes" in catalog.columns
                else []
            ),
        )
    cat = catalog.select(
        pl.col("raw_id").cast(pl.String).alias("_key"),
        (pl.col("title") if "title" in catalog.columns else pl.lit(None)).cast(pl.String).alias("title"),
        (pl.col("genres") if "genres" in catalog.columns else pl.lit([])).cast(pl.List(pl.String)).alias("genres"),
        (pl.col("year") if "year" in catalog.columns else pl.lit(None)).cast(pl.Int32).alias("year"),
        *([pl.col("attributes").cast(pl.List(pl.String))] if "attributes" in catalog.columns else []),
    ).unique("_key", keep="first", maintain_order=True)
    out = base.with_columns(pl.col("raw_id").cast(pl.String).alias("_key")).join(cat, on="_key", how="left")
    return (
        out.sort("item")
        .drop("_key")
        .with_columns(pl.col(c).fill_null([]) for c in ("genres", "attributes") if c in cat.columns)
    )


@dataclass
class Dataset:
    """Per-user chronological sequences of internal item ids (CSR) plus the id maps and catalogue."""

    offsets: np.ndarray
    items: np.ndarray
    user_ids: IdMap
    item_ids: IdMap
    catalog: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    times: np.ndarray | None = None  # int64 epoch seconds aligned with ``items`` (None: no timestamps)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_interactions(
        cls,
        frame: pl.DataFrame,
        catalog: pl.DataFrame | None = None,
        config: CleanConfig = CleanConfig(),
        name: str = "data",
        source: str = "",
    ) -> Dataset:
        """Clean ``frame`` (``seqrec.data.clean``) and build the data set from what is left."""
        return cls.build(clean(frame, config, source or name), catalog, name=name, source=source)

    @classmethod
    def build(
        cls, cleaned: Cleaned, catalog: pl.DataFrame | None = None, name: str = "data", source: str = ""
    ) -> Dataset:
        """The CSR data set of cleaned interactions: users 0..U-1 and items 1..N by raw id, the catalogue
        aligned with the items, and ``meta`` (what cleaning did, counts)."""
        per_user = np.bincount(cleaned.users, minlength=len(cleaned.raw_users))
        item_seen = np.bincount(cleaned.items, minlength=len(cleaned.raw_items)) > 0
        raw_users = cleaned.raw_users.filter(pl.Series(per_user > 0))
        raw_items = cleaned.raw_items.filter(pl.Series(item_seen))
        offsets = np.zeros(len(raw_users) + 1, dtype=np.int64)
        np.cumsum(per_user[per_user > 0], out=offsets[1:])
        ds = cls(
            offsets=offsets,
            items=np.cumsum(item_seen, dtype=np.int32)[cleaned.items],  # 1..N in raw-id order
            user_ids=IdMap(raw_users, offset=0),
            item_ids=IdMap(raw_items, offset=1),
            catalog=_normalise_catalog(catalog, raw_items),
            times=cleaned.times,
        )
        ds.meta = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "source": source,
            "has_timestamps": cleaned.has_timestamps,
            "before": cleaned.before,
            "cleaning": cleaned.report,
        }
        ds.meta.update(ds.counts())
        return ds

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[Any]], name: str = "sequences", k_core: int = 0) -> Dataset:
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

    def sequence(self, user: int | np.integer) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.offsets.astype(np.int64).tobytes())
        h.update(self.items.astype(np.int32).tobytes())
        return h.hexdigest()[:16]

    def counts(self) -> dict[str, Any]:
        stats = summary(self.lengths, self.n_items)
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
        write_prepared(folder, self.offsets, self.items, self.user_ids.raw, self.catalog, self.meta, self.times)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dataset:
        """Read a prepared data set folder (``seqrec.data.prepared``). Its manifest, when it has one, is
        checked before any binary file is parsed; anything missing, damaged or inconsistent is a
        ``SeqrecError`` naming the file and what was expected. Nothing is unpickled."""
        path = Path(path)
        recover_dir(path, clean=False)
        offsets, items, users, catalog, meta, times = read_prepared(path)
        return cls(offsets, items, IdMap(users["raw_id"], 0), IdMap(catalog["raw_id"], 1), catalog, meta, times)
