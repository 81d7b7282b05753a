"""The columns of an interaction table: which column plays which role, and raw ids by one rule.

``_standardise`` turns any table (CSV / TSV / Parquet, a pandas or polars frame) into the columns
``user``, ``item``, [``timestamp``], [``rating``]: roles are found by the ``user_col`` / ``item_col`` /
``time_col`` / ``rating_col`` flags first, then by common names (``ROLE_NAMES``, any case); times become
epoch seconds, ratings floats; a bad value names its file, line (or row) and column.

Raw ids (the user and item columns) follow one rule in every format:

* text is trimmed; an empty id, or a missing-value marker (``NaN``, ``<NA>``, ``NaT``, ``None``, ``null``, in
  any case), is refused naming the file, line (or row) and column; so is text that is not UTF-8 (a byte
  that is not UTF-8 reads as U+FFFD, and two such ids would silently become one);
* a value written as a whole number is that integer: ``242``, ``242.0``, ``+242`` and ``2.42e2`` are the
  one id 242 (numbers with a fraction or exponent within +-2**53, where a float is exact; integers within
  64 bits). Numbers with a fractional part (``242.5``) and integers written with leading zeros (``007``,
  a code) are kept as text, exactly as written. Float columns (Parquet, frames) follow the same rule for
  whole numbers; NaN, infinities and fractions there (``196.5``: a column of numbers, not of ids) are
  refused naming the row and column;
* a header that names the same column twice (``user_id,item_id,item_id``) is refused naming the column,
  when the column plays a role (either copy could be meant);
* a column is integer ids when every value is an integer, else text ids (integers then written in
  decimal, ``"242"``); ``50`` and ``"50"`` find the same item either way (``seqrec.data.dataset.id_key``);
* a column of another type (list, struct, date, boolean, ...) is refused naming the column and its type;
* an id holding a NUL character is refused (no tool that reads the id back keeps it whole).

An id given alone (an event, an item added to a running service) follows the same rule, checked by
``id_problem``; as a number it is an integer within +-(2**53 - 1), which every JSON reader holds exactly
(larger ones are sent as text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from seqrec.errors import SeqrecError

ROLE_NAMES = {
    "user": ("user_id", "userId", "user", "uid", "customer_id", "visitor_id", "session_id"),
    "item": ("item_id", "movieId", "item", "iid", "product_id", "sku", "song_id", "track_id"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "event_time", "unix_time"),
    "rating": ("rating", "score", "value", "weight"),
}
FLAG_NAMES = {"user": "user_col", "item": "item_col", "timestamp": "time_col", "rating": "rating_col"}


def _pick(
    columns: list[str], cols: dict[str, str | None], label: str, header: list[str] | None = None
) -> dict[str, str]:
    """Which column plays which role (user, item, timestamp, rating): flags first, then common names.
    ``header``: the names as the file writes them (a reader may have renamed repeated ones); a role column
    named twice there is refused."""
    written = columns if header is None else header
    flags = {f for f in cols.values() if f is not None}
    for c in dict.fromkeys(n.lower() for n in written if n != "_line"):
        same = [i for i, n in enumerate(written) if n.lower() == c]
        if len(same) < 2 or not _plays_a_role(c, cols):
            continue
        if any(written.count(f) == 1 and f.lower() == c for f in flags):  # a flag names one of them exactly
            continue
        shown = written[same[0]] if len({written[i] for i in same}) == 1 else " / ".join(written[i] for i in same)
        where = ", ".join(str(i + 1) for i in same)
        raise SeqrecError(
            f"{label}: the header names column {shown!r} {len(same)} times (columns {where}); "
            f"which one is meant is unclear: rename or remove the others"
        )
    lower = {c.lower(): c for c in reversed(columns)}  # the first of equal names wins
    found = ", ".join(repr(c) for c in columns if c != "_line")
    chosen: dict[str, str] = {}
    for role, names in ROLE_NAMES.items():
        flag = cols.get(role)
        if flag is not None:
            col = flag if flag in columns else lower.get(flag.lower())
            if col is None:
                raise SeqrecError(f"{label}: {FLAG_NAMES[role]}={flag!r} is not a column; columns found: {found}")
        else:
            col = next((lower[n.lower()] for n in names if n.lower() in lower), None)
        if col is not None:
            chosen[role] = col
    missing = [r for r in ("user", "item") if r not in chosen]
    if missing:
        known = "; ".join(f"for {r}: {', '.join(ROLE_NAMES[r])}" for r in missing)
        numeric = all(re.fullmatch(r"[-+.\deE]+", c) for c in columns if c != "_line")
        hint = " (the first line looks like data: a header line naming the columns is needed)" if numeric else ""
        raise SeqrecError(
            f"{label}: no {' or '.join(missing)} column{hint}; columns found: {found}; names "
            f"recognised (any case) {known}; or name the columns with "
            f"{', '.join(FLAG_NAMES[r] + '=' for r in missing)} "
            f"({', '.join(f'--{r}-col' for r in missing)})"
        )
    return chosen


def _plays_a_role(name: str, cols: dict[str, str | None]) -> bool:
    """Whether column ``name`` is given by a flag or is one of the common names of a role."""
    flags = {f for f in cols.values() if f is not None}
    common = {n.lower() for role, names in ROLE_NAMES.items() if cols.get(role) is None for n in names}
    return name in flags or name.lower() in {f.lower() for f in flags} or name.lower() in common


def _standardise(frame: pl.DataFrame, cols: dict[str, str | None], label: str, word: str) -> pl.DataFrame:
    """Columns user, item, [timestamp], [rating] with clean dtypes; a bad value names its line or row."""
    roles = _pick(frame.columns, cols, label)
    df = frame.select(pl.col("_line"), *(pl.col(c).alias(r) for r, c in roles.items()))
    df = df.filter(~pl.all_horizontal(pl.col(r).is_null() for r in roles))  # blank lines
    if df.height == 0:
        raise SeqrecError(f"{label}: no data rows")

    def refuser(role: str) -> Callable[[pl.Series, str], None]:
        def refuse(bad: pl.Series, expected: str) -> None:
            bad = bad.fill_null(True)
            if bad.any():
                i = bad.arg_true()[0]
                value = df[role][i]
                empty = value is None or (isinstance(value, str) and not value.strip())
                shown = "is empty" if empty else f"is {str(value)!r}"
                where = f"{label} {word} {df['_line'][i]}"
                raise SeqrecError(f"{where}: {role} column {roles[role]!r} {shown}; expected {expected}")

        return refuse

    def check(converted: pl.Series, role: str, expected: str) -> pl.Series:
        bad = converted.is_null()
        bad = (bad | converted.is_nan()) if converted.dtype.is_float() else bad
        refuser(role)(bad, expected)
        return converted

    out = {role: _ids(df[role], refuser(role), f"{label}: {role} column {roles[role]!r}") for role in ("user", "item")}
    if "timestamp" in roles:
        out["timestamp"] = check(_epoch(df["timestamp"]), "timestamp", "a number (epoch seconds) or a date/time")
    if "rating" in roles:
        rating = df["rating"].str.strip_chars() if df["rating"].dtype == pl.String else df["rating"]
        out["rating"] = check(rating.cast(pl.Float64, strict=False), "rating", "a number")
    return pl.DataFrame(out)


MISSING_IDS = ("", "nan", "+nan", "-nan", "<na>", "nat", "none", "null")  # lower case
_PLAIN_INT = r"^[+-]?(?:0|[1-9][0-9]*)$"  # no leading zeros: 007 is a code
_NUMBER = r"^[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_EXACT = 2**53  # floats are exact integers up to here
MAX_ID_CHARS = 256  # an id given alone (an event, an added item) holds at most this many characters


def id_problem(raw: Any) -> str | None:
    """Why one id given alone (an event's, an item added to a running service) is not an id by the rule of
    this module, or None: an integer (not a boolean) within +-(2**53 - 1), or text of at most
    ``MAX_ID_CHARS`` characters that, trimmed, is not empty, not a missing-value marker, holds no NUL
    character and no unpaired surrogate."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str, np.integer)):
        return f"expected an integer or a string, got {type(raw).__name__}"
    if not isinstance(raw, str):
        return (
            None
            if abs(int(raw)) < _EXACT
            else (f"{int(raw)} is beyond +-(2**53 - 1), which JSON readers cannot hold exactly; send it as a string")
        )
    if len(raw) > MAX_ID_CHARS:
        return f"an id holds at most {MAX_ID_CHARS} characters, this one {len(raw)}"
    if raw.strip().lower() in MISSING_IDS:
        return "an id is needed: empty values and missing-value markers such as NaN are not ids"
    if "\x00" in raw:
        return "an id may not hold a NUL character"
    if not _utf8_text(raw):
        return "an id may not hold an unpaired surrogate"
    return None


def _utf8_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ids(s: pl.Series, refuse: Callable[[pl.Series, str], None], what: str) -> pl.Series:
    """Raw ids by the rule in the module docstring: Int64 when every value is an integer, else String.
    ``refuse(mask, expected)`` raises for the first marked row; ``what`` names the column for type errors."""
    expected_id = "an id (empty values and missing-value markers such as NaN are not ids)"
    dtype = s.dtype
    if dtype == pl.Null:
        s = s.cast(pl.String)
    elif isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype.is_decimal():
        s = s.cast(pl.String)
    elif dtype == pl.Object:
        s = pl.Series(s.name, [None if v is None else str(v) for v in s.to_list()], dtype=pl.String)
    elif dtype == pl.Binary:
        try:
            s = s.cast(pl.String)
        except pl.exceptions.PolarsError:
            bad = [not _utf8(v) for v in s.to_list()]
            refuse(pl.Series(bad), "UTF-8 text (these bytes are not UTF-8)")
            raise
    if s.dtype.is_integer():
        refuse(s.is_null(), expected_id)
        out = s.cast(pl.Int64, strict=False)
        refuse(out.is_null(), "an id that fits a 64-bit signed integer")
        return out
    if s.dtype.is_float():
        refuse(s.is_null() | s.is_nan() | s.is_infinite(), expected_id)
        refuse(
            s != s.round(0),
            "an id: a whole number or text (a float column of ids holds no fractions; is this the right column?)",
        )
        whole = (s == s.round(0)) & (s.abs() <= _EXACT)
        return _merge(whole, s, s.cast(pl.String))
    if s.dtype != pl.String:
        raise SeqrecError(f"{what} has type {dtype}; expected integer or text ids")
    s = s.str.strip_chars()
    refuse(s.is_null() | s.str.to_lowercase().is_in(MISSING_IDS), expected_id)
    refuse(s.str.contains("\x00", literal=True), "an id without NUL characters")
    refuse(
        s.str.contains("\ufffd", literal=True),
        "UTF-8 text (the file holds bytes that are not UTF-8 here, read as U+FFFD; convert it to UTF-8)",
    )
    n = s.str.to_integer(strict=False)
    if n.null_count() == 0 and (n.cast(pl.String) == s).all():  # the common case: plain integers
        return n
    frame = pl.DataFrame({"s": s})
    text = pl.col("s")
    f = text.cast(pl.Float64, strict=False)
    plain = text.str.contains(_PLAIN_INT)
    number = ~plain & text.str.contains(_NUMBER) & (f == f.round(0)) & (f.abs() <= _EXACT)
    value = (
        pl.when(plain)
        .then(text.str.to_integer(strict=False))
        .when(number)
        .then(f.cast(pl.Int64, strict=False))
        .otherwise(None)
    )
    ints = frame.select(value.alias("n"))["n"]
    return _merge(ints.is_not_null(), ints, s)


def _merge(whole: pl.Series, numbers: pl.Series, text: pl.Series) -> pl.Series:
    """Integer ids where ``whole`` holds everywhere; else text, whole numbers written as integers."""
    if whole.all():
        return numbers.cast(pl.Int64)
    frame = pl.DataFrame({"w": whole, "n": numbers, "t": text})
    as_text = pl.when(pl.col("w")).then(pl.col("n").cast(pl.Int64).cast(pl.String)).otherwise(pl.col("t"))
    return frame.select(as_text.alias(text.name))[text.name]


def _utf8(value: bytes | None) -> bool:
    try:
        value is None or value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _epoch(s: pl.Series) -> pl.Series:
    """Times as integer epoch seconds, from numbers, numeric strings, dates or date/time strings."""
    if s.dtype == pl.Date or isinstance(s.dtype, pl.Datetime):
        return s.cast(pl.Datetime("ms")).dt.epoch("s") if s.dtype == pl.Date else s.dt.epoch("s")
    if s.dtype == pl.String:
        s = s.str.strip_chars()
        num = s.cast(pl.Float64, strict=False)
        if num.null_count() > s.null_count():
            try:
                return s.str.to_datetime(strict=False).dt.epoch("s")
            except pl.exceptions.PolarsError:  # no date format fits the first value
                pass
        s = num
    if s.dtype.is_numeric():
        return (s.fill_nan(None).floor() if s.dtype.is_float() else s).cast(pl.Int64)
    return pl.Series(s.name, [None] * len(s), dtype=pl.Int64)


def decimal_chars(s: pl.Series) -> int:
    """How many characters the integers of ``s`` (no nulls) take written plainly: an optional ``-`` and the
    digits, without leading zeros. Any other spelling of the same numbers (``+5``, ``05``, `` 5``, ``"5"``,
    ``5.0``) is longer, so a file whose size this accounts for holds plain integers only."""
    x = s.to_numpy()
    if len(x) == 0:
        return 0
    low, n = x.min(), len(x)
    if low < 0:
        n += int(np.count_nonzero(x < 0))
        mag, low = np.abs(x).view(np.uint64), 0  # abs(-2**63) reads right as uint64
    else:
        mag = x.view(np.uint64) if x.dtype.kind == "i" else x.astype(np.uint64, copy=False)
    top, power = int(mag.max()), 10
    while power <= top:  # one more digit for each power of ten a value reaches
        n += len(x) if power <= low else int(np.count_nonzero(mag >= power))
        power *= 10
    return n
