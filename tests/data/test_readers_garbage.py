"""Readers refuse ids they would otherwise train on wrongly, and spell one id one way (``seqrec.data.readers``)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from seqrec.data.dataset import CleanConfig, Dataset, IdMap, id_key
from seqrec.data.readers import load_dataset
from seqrec.errors import SeqrecError

K0 = CleanConfig(k_core=0)


def seqs(ds: Dataset) -> list[list]:
    return [ds.item_ids.to_raw(ds.sequence(u)) for u in range(ds.n_users)]


# ------------------------------------------------------------------ not UTF-8
@pytest.mark.parametrize("name, sep", [("log.csv", b","), ("log.tsv", b"\t"), ("log.txt", b" ")])
def test_ids_that_are_not_utf8_are_refused_naming_file_and_line(tmp_path, name, sep) -> None:
    p = tmp_path / name
    p.write_bytes(
        sep.join([b"user", b"item"])
        + b"\n"
        + b"".join(sep.join(r) + b"\n" for r in [[b"1", b"tea"], [b"1", b"caf\xe9"], [b"2", b"caf\xe8"]])
    )
    with pytest.raises(SeqrecError, match=rf"{name} line 3: item column 'item' is 'caf\ufffd'; expected UTF-8 text"):
        load_dataset(p, K0)  # before: caf\xe9 and caf\xe8 both became 'caf\ufffd', one item


def test_utf8_ids_stay_distinct(tmp_path) -> None:
    p = tmp_path / "log.csv"
    p.write_bytes("user,item\n1,café\n1,cafè\n2,café\n".encode())
    ds = load_dataset(p, K0)
    assert ds.item_ids.raw.tolist() == ["cafè", "café"] and seqs(ds) == [["café", "cafè"], ["café"]]


# ------------------------------------------------------------------ missing values
@pytest.mark.parametrize(
    "row, shown",
    [
        ("1,NaN", "'NaN'"),
        ("1,nan", "'nan'"),
        ("1,-NaN", "'-NaN'"),
        ("1,<NA>", "'<NA>'"),
        ("1,null", "'null'"),
        ("1,None", "'None'"),
        ("1,NaT", "'NaT'"),
        ('1,""', "empty"),
        ("1, ", "empty"),
        ("1,", "empty"),
    ],
)
def test_missing_item_ids_are_refused(tmp_path, row: str, shown: str) -> None:
    p = tmp_path / "log.csv"
    p.write_text(f"user,item\n1,5\n2,6\n{row}\n2,7\n")
    with pytest.raises(SeqrecError, match=rf"log\.csv line 4: item column 'item' is {shown}; expected an id"):
        load_dataset(p, K0)


def test_missing_user_id_is_refused(tmp_path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("user_id,item_id\nu1,5\nNaN,6\n")
    with pytest.raises(SeqrecError, match=r"log\.csv line 3: user column 'user_id' is 'NaN'; expected an id"):
        load_dataset(p, K0)


def test_nan_in_float_columns_is_refused_naming_the_row(tmp_path) -> None:
    p = tmp_path / "d.parquet"
    pl.DataFrame({"user": [1, 1, 2], "item": [5.0, float("nan"), 6.0]}).write_parquet(p)
    with pytest.raises(SeqrecError, match=r"d\.parquet row 2: item column 'item' is 'nan'; expected an id"):
        load_dataset(p, K0)
    pl.DataFrame({"user": [1, 1], "item": [5.0, float("inf")]}).write_parquet(p)
    with pytest.raises(SeqrecError, match=r"d\.parquet row 2: item column 'item' is 'inf'"):
        load_dataset(p, K0)
    pdf = pd.DataFrame({"user": ["a", "b", "b"], "item": [1, None, 3]})  # pandas: float with NaN (null in polars)
    with pytest.raises(SeqrecError, match=r"DataFrame row 2: item column 'item' is empty; expected an id"):
        load_dataset(pdf, K0)


# ------------------------------------------------------------------ column types
@pytest.mark.parametrize(
    "values, kind",
    [
        ([[1, 2], [3], [1]], r"List\(Int64\)"),
        ([{"a": 1}, {"a": 2}, {"a": 1}], r"Struct\(\{'a': Int64\}\)"),
        ([True, False, True], "Boolean"),
        ([dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(2020, 1, 1)], "Date"),
    ],
)
def test_parquet_item_columns_of_other_types_are_refused(tmp_path, values, kind: str) -> None:
    p = tmp_path / "d.parquet"
    pl.DataFrame({"user": [1, 1, 2], "movieId": values}).write_parquet(p)
    with pytest.raises(
        SeqrecError,
        match=rf"d\.parquet: item column 'movieId' has type {kind}; expected integer or "
        r"text ids",
    ):
        load_dataset(p, K0)


def test_binary_ids_are_read_as_utf8_or_refused(tmp_path) -> None:
    p = tmp_path / "d.parquet"
    pl.DataFrame({"user": [1, 1, 2], "item": [b"tea", b"caf\xc3\xa9", b"tea"]}).write_parquet(p)
    assert seqs(load_dataset(p, K0)) == [["tea", "café"], ["tea"]]
    pl.DataFrame({"user": [1, 1, 2], "item": [b"tea", b"caf\xe9", b"tea"]}).write_parquet(p)
    with pytest.raises(SeqrecError, match=r"d\.parquet row 2: item column 'item' is \"b'caf\\\\xe9'\"; expected UTF-8"):
        load_dataset(p, K0)


# ------------------------------------------------------------------ one id, one spelling
def test_242_and_242_0_are_one_item(tmp_path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("user,item\n1,242\n1,242.0\n2,+242\n2,2.42e2\n3,7\n3, 7.00 \n")
    ds = load_dataset(p, K0)  # before: items '242', '242.0', ... (text, four items)
    assert ds.n_items == 2 and ds.item_ids.raw.dtype == np.int64 and ds.item_ids.raw.tolist() == [7, 242]
    assert seqs(ds) == [[242, 242], [242, 242], [7, 7]]


def test_whole_numbers_in_a_text_column_are_written_as_integers(tmp_path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("user,item\n1,242\n1,242.0\n1,x9\n2,242.5\n2,242.50\n2,007\n2,7\n2,1e3\n2,1000\n")
    ds = load_dataset(p, K0)
    # 242.5 and 242.50 are fractions, kept as written; 007 is a code; 7.0 would be 7
    assert ds.item_ids.raw.tolist() == ["007", "1000", "242", "242.5", "242.50", "7", "x9"]
    assert seqs(ds) == [["242", "242", "x9"], ["242.5", "242.50", "007", "7", "1000", "1000"]]


def test_float_columns_follow_the_same_rule(tmp_path) -> None:
    p = tmp_path / "d.parquet"
    pl.DataFrame({"user": [1.0, 1.0, 2.0], "item": [242.0, 5.0, 242.0]}).write_parquet(p)
    ds = load_dataset(p, K0)
    assert ds.item_ids.raw.dtype == np.int64 and ds.user_ids.raw.tolist() == [1, 2] and seqs(ds) == [[242, 5], [242]]
    pl.DataFrame({"user": [1, 1, 2], "item": [242.0, 242.5, 242.0]}).write_parquet(p)
    with pytest.raises(SeqrecError, match=r"d.parquet row 2: item column 'item' is '242.5'"):  # numbers, not ids
        load_dataset(p, K0)


def test_lookups_accept_every_spelling_of_an_id() -> None:
    ids = IdMap(np.array([7, 242]), 1)
    assert [ids.get(x) for x in (242, "242", 242.0, "242.0", " 242 ", "2.42e2", np.int32(242), np.float64(242))] == [
        2
    ] * 8
    assert ids.get("0242") is None and ids.get(242.5) is None and ids.get("x") is None
    known, unknown = ids.lookup([7.0, "7", "8", 242])
    assert known.tolist() == [1, 1, 2] and unknown == ["8"]
    text = IdMap(np.array(["007", "242", "x"], dtype=object), 0)
    assert text.get("007") == 0 and text.get(7) is None and text.get(242.0) == 1 and text.get("242.0") == 1
    assert [id_key(x) for x in (50, 50.0, "50", " 50.0 ", "5e1", "-0", "007", "x", 2.5, 1e300, "9" * 30)] == [
        "50",
        "50",
        "50",
        "50",
        "50",
        "0",
        "007",
        "x",
        "2.5",
        "1e+300",
        "9" * 30,
    ]


def test_attribute_keys_follow_the_id_rule(tmp_path) -> None:
    p = tmp_path / "Toys.txt"
    p.write_text("1 242 7\n2 7 242\n")
    (tmp_path / "Toys_item2attributes.json").write_text(json.dumps({"242.0": [3], " 7 ": ["a"]}))
    ds = load_dataset(p)
    assert ds.catalog.select("raw_id", "attributes").to_dicts() == [
        {"raw_id": 7, "attributes": ["a"]},
        {"raw_id": 242, "attributes": ["3"]},
    ]
