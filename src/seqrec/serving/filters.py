"""Shop rules on item facts: filters compiled into a boolean mask over the catalogue.

A filter is a mapping of catalogue fields to conditions, all of which must hold (AND)::

    {"genres": {"any": ["Comedy", "Drama"]}, "year": {"gte": 1990, "lte": 1999}, "item_id": {"none": [50, 172]}}

* a list field (``genres``, ``attributes``, any list-of-text column): ``any`` (at least one of the values),
  ``all`` (every value), ``none`` (none of the values);
* a numeric field (``year``, any integer or float column): ``gte`` and ``lte`` (an item without a value fails);
* a text field (a column of text other than the title): ``any`` and ``none`` of the values;
* ``item_id``: ``any`` (only these raw ids) and ``none`` (never these raw ids); unknown ids are ignored.

``FilterIndex`` is built once per catalogue (``Catalogue.filters``): per list and text field the item ids of
each value (a CSR of the exploded column), per numeric field a float array (NaN where missing). ``mask(spec)``
checks ``spec`` against the catalogue's fields (``FilterError`` naming the field or operator: a 422 in the
service, exit 2 on the command line) and returns a bool array [N+1] (padding False) built with array
operations only: the cost is O(N) per condition and O(items holding a value) per listed value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from seqrec.data.dataset import PAD, Dataset
from seqrec.errors import SeqrecError

ID_FIELD = "item_id"
SET_OPS = ("any", "all", "none")
RANGE_OPS = ("gte", "lte")
_SKIP = ("item", "raw_id", "title")  # catalogue columns that are not filter fields (item_id stands for raw_id)


FilterSpec = Mapping[str, Any] | np.ndarray | None  # a filter, or the mask FilterIndex.mask made of it


class FilterError(SeqrecError):
    """A filter that does not fit the catalogue; ``loc`` is the path of the offending part (field, operator)."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(f"filter.{'.'.join(loc)}: {message}" if loc else f"filter: {message}")
        self.loc = loc
        self.message = message


class _Values:
    """Item ids per value of a list (or text) column, as one CSR: ``ids[lo:hi]`` with ``lookup[value] = (lo, hi)``."""

    def __init__(self, pairs: pl.DataFrame, name: str) -> None:
        groups = pairs.group_by(name).agg(pl.col("item").cast(pl.Int64))
        sizes = groups["item"].list.len().to_numpy()
        ends = np.cumsum(sizes)
        self.ids = groups["item"].explode().to_numpy() if len(sizes) else np.zeros(0, np.int64)
        self.lookup: dict[str, tuple[int, int]] = {
            v: (int(e - n), int(e)) for v, n, e in zip(groups[name].to_list(), sizes, ends)
        }

    def items(self, value: str) -> np.ndarray:
        lo, hi = self.lookup.get(value, (0, 0))
        return self.ids[lo:hi]


class FilterIndex:
    """Per-field indexes of a catalogue (rows sorted by internal id 1..N), for ``mask``."""

    def __init__(self, catalog: pl.DataFrame, item_ids: Any) -> None:
        cat = catalog.sort("item")
        self.n_items, self.item_ids = cat.height, item_ids
        self.lists: dict[str, _Values] = {}
        self.texts: dict[str, _Values] = {}
        self.numbers: dict[str, np.ndarray] = {}
        for name, dtype in cat.schema.items():
            if name in _SKIP:
                continue
            if isinstance(dtype, pl.List):
                pairs = cat.select(pl.col("item"), pl.col(name).cast(pl.List(pl.String))).explode(name).drop_nulls()
                self.lists[name] = _Values(pairs, name)
            elif dtype.is_numeric():
                values = np.full(self.n_items + 1, np.nan)
                values[1:] = cat[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()
                self.numbers[name] = values
            elif dtype == pl.String:
                pairs = cat.select(pl.col("item"), pl.col(name)).drop_nulls()
                self.texts[name] = _Values(pairs, name)

    def fields(self) -> dict[str, str]:
        """Each filter field and its kind (``list``, ``number``, ``text``, ``id``)."""
        out = {ID_FIELD: "id"}
        out.update(dict.fromkeys(self.lists, "list"))
        out.update(dict.fromkeys(self.numbers, "number"))
        out.update(dict.fromkeys(self.texts, "text"))
        return out

    def mask(self, spec: Mapping[str, Any]) -> np.ndarray:
        """bool [N+1]: the items every condition of ``spec`` lets through (padding never)."""
        if not isinstance(spec, Mapping):
            raise FilterError((), f"expected an object of field conditions, got {type(spec).__name__}")
        out = np.ones(self.n_items + 1, dtype=bool)
        out[0] = False
        kinds = self.fields()
        for name, cond in spec.items():
            kind = kinds.get(name)
            if kind is None:
                raise FilterError((str(name),), f"unknown field; the catalogue's fields are {', '.join(kinds)}")
            if not isinstance(cond, Mapping) or not cond:
                raise FilterError((name,), 'expected an object of operators, e.g. {"any": [...]} or {"gte": 1990}')
            ops = RANGE_OPS if kind == "number" else SET_OPS if kind == "list" else ("any", "none")
            for op, value in cond.items():
                if op not in ops:
                    raise FilterError((name, str(op)), f"unknown operator for a {kind} field; use {', '.join(ops)}")
                out &= self._condition(name, kind, op, value)
        return out

    def _condition(self, name: str, kind: str, op: str, value: Any) -> np.ndarray:
        loc = (name, op)
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FilterError(loc, f"expected a number, got {value!r}")
            column = self.numbers[name]
            with np.errstate(invalid="ignore"):
                return column >= value if op == "gte" else column <= value
        if not isinstance(value, (list, tuple)):
            raise FilterError(loc, f"expected a list of values, got {type(value).__name__}")
        if kind == "id":
            for v in value:
                if isinstance(v, bool) or not isinstance(v, (int, str)):
                    raise FilterError(loc, f"expected item ids (integers or text), got {v!r}")
            hit = np.zeros(self.n_items + 1, dtype=bool)
            hit[self.item_ids.lookup(value)[0]] = True
            return ~hit if op == "none" else hit
        for v in value:
            if not isinstance(v, str):
                raise FilterError(loc, f"expected text values, got {v!r}")
        index = self.lists[name] if kind == "list" else self.texts[name]
        if op == "all":
            hit = np.ones(self.n_items + 1, dtype=bool)
            for v in value:
                one = np.zeros(self.n_items + 1, dtype=bool)
                one[index.items(v)] = True
                hit &= one
            return hit
        hit = np.zeros(self.n_items + 1, dtype=bool)
        for v in value:
            hit[index.items(v)] = True
        return ~hit if op == "none" else hit


class ShopRules:
    """The masks of ``seqrec.serving.recommender.Recommender``: its ``filters`` (a ``FilterIndex``) and
    ``available`` (bool [N+1]: False for an item never to recommend), set when it is made."""

    filters: FilterIndex
    available: np.ndarray
    dataset: Dataset

    def allowed(self, filter: FilterSpec = None) -> np.ndarray | None:
        """bool [N+1]: the items ``filter`` lets through that are available; None when every item may be.
        ``filter`` may be a mask ``FilterIndex.mask`` made already (a request compiles its filter once)."""
        if isinstance(filter, np.ndarray):
            mask: np.ndarray | None = filter.copy()
        else:
            mask = None if filter is None else self.filters.mask(filter)
        if not self.available.all():
            mask = self.available.copy() if mask is None else mask & self.available
            mask[PAD] = False
        return mask

    def set_available(self, item_ids: Sequence[Any], available: bool) -> int:
        """Make raw ``item_ids`` available (``True``) or never recommended (``False``); ``UnknownIdError`` for an
        id not in the catalogue (nothing changed then). Returns how many items changed."""
        from seqrec.serving.catalogue import UnknownIdError

        ids, missing = self.dataset.item_ids.lookup(item_ids)
        if missing:
            raise UnknownIdError(f"unknown item id(s): {missing[:10]}")
        changed = int((self.available[ids] != bool(available)).sum())
        self.available[ids] = bool(available)
        return changed

    def unavailable(self) -> list[Any]:
        """The raw ids of the items made unavailable."""
        return self.dataset.item_ids.to_raw(np.flatnonzero(~self.available[1:]) + 1)
