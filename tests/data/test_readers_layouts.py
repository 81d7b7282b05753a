"""Headerless integer line files: ``user item`` pairs, one user per line, and item attributes beside them."""

import json

import numpy as np
import pytest

from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.data.readers import format_of, load_dataset, read_interactions
from seqrec.errors import SeqrecError

K0 = CleanConfig(k_core=0)


def seqs(ds: Dataset) -> list[list]:
    """Each user's history as raw item ids, in user raw-id order."""
    return [ds.item_ids.to_raw(ds.sequence(u)) for u in range(ds.n_users)]


def write(path, text: str):
    path.write_bytes(text.encode("utf-8"))
    return path


def attrs(ds: Dataset) -> dict:
    """Raw item id -> attribute list, from the catalogue."""
    return dict(zip(ds.catalog["raw_id"].to_list(), ds.catalog["attributes"].to_list()))


# ------------------------------------------------------------------ one user per line
def test_one_user_per_line(tmp_path):
    p = write(tmp_path / "toys.txt", "3 7 5 9\n\n1\t4   8\n2 5 5 7 \n")
    assert format_of(p) == "s3rec-txt"
    ds = load_dataset(p)  # already filtered: no k-core by default, like the pairs files
    assert seqs(ds) == [[4, 8], [5, 5, 7], [7, 5, 9]]  # items keep line order; repeats kept
    assert ds.meta["cleaning"]["k_core"] == 0 and ds.meta["format"] == "s3rec-txt" and ds.meta["name"] == "toys"
    assert ds.meta["has_timestamps"] is False and "attributes" not in ds.catalog.columns
    frame, catalog, k = read_interactions(p)
    assert frame.columns == ["user", "item"] and k == 0 and catalog is None
    assert frame.rows() == [(3, 7), (3, 5), (3, 9), (1, 4), (1, 8), (2, 5), (2, 5), (2, 7)]
    assert load_dataset(p, CleanConfig(k_core=2)).meta["cleaning"]["k_core"] == 2


def test_detection(tmp_path):
    p = tmp_path / "d.txt"
    assert format_of(write(p, "1 2\n1 3\n2 4\n")) == "sasrec-txt"  # pairs keep their reader
    assert format_of(write(p, "1 2\n2 3\n")) == "sasrec-txt"  # distinct users, one item each: the same data
    assert format_of(write(p, "1 2 3\n2 4\n")) == "s3rec-txt"
    assert format_of(write(p, "1 2\n2 3 4\n3 5\n")) == "s3rec-txt"  # a mix with distinct users: one item users
    assert seqs(load_dataset(p)) == [[2], [3, 4], [5]]
    assert format_of(write(p, "1 2\n1 3 4\n")) == "sasrec-txt"  # a user repeats: pairs (and line 2 is bad)
    assert format_of(write(p, "user item ts\n1 2 3\n")) == "csv"  # a header line: a table, not a line file
    # beyond the 64 KiB sample: distinct users with one item each, then the line that decides
    pairs = "".join(f"{u} {u + 1}\n" for u in range(1, 12_001))
    assert format_of(write(p, pairs + "20000 1 2\n")) == "s3rec-txt"
    ds = load_dataset(p)
    assert ds.n_users == 12_001 and ds.n_interactions == 12_002 and ds.sequence(ds.user_ids.get(20000)).size == 2
    assert format_of(write(p, pairs + "20000 1\n")) == "sasrec-txt"
    assert format_of(write(p, pairs + "1 5\n20000 1 2\n")) == "sasrec-txt"
    with pytest.raises(SeqrecError, match=r"d\.txt line 12002: expected two integers 'user item', got '20000 1 2'"):
        load_dataset(p)


def test_one_user_per_line_errors(tmp_path):
    p = tmp_path / "toys.txt"
    write(p, "1 2 3\n2 4 5\n\n1 6 7\n")
    with pytest.raises(
        SeqrecError,
        match=r"toys\.txt line 4: user 1 is already on line 1; expected one user per "
        r"line 'user item1 item2 \.\.\.' \(integers\) with each user once, "
        r"got '1 6 7'",
    ):
        load_dataset(p)
    write(p, "1 2 3\n2 x 5\n3 4 5\n")
    with pytest.raises(
        SeqrecError,
        match=r"toys\.txt line 2: expected one user per line 'user item1 item2 \.\.\.' "
        r"\(integers\), got '2 x 5'",
    ):
        load_dataset(p)
    write(p, "1 2 3\n7\n")  # a user with no items
    with pytest.raises(SeqrecError, match=r"line 2: expected one user per line .*, got '7'"):
        load_dataset(p)
    write(p, "1 2 3\n2 99999999999999999999 1\n")  # too big for an integer id
    with pytest.raises(SeqrecError, match=r"line 2: expected one user per line"):
        load_dataset(p)
    write(p, "1 2 3\n2 4 5\nabc\n")  # neither layout
    with pytest.raises(SeqrecError, match=r"toys\.txt line 3: expected one user per line .*, got 'abc'"):
        load_dataset(p)
    write(p, "1 2\n1 2 3\n")  # a user repeats and a line has 3 fields: a pairs file with a bad line
    with pytest.raises(SeqrecError, match=r"toys\.txt line 2: expected two integers 'user item', got '1 2 3'"):
        load_dataset(p)


# ------------------------------------------------------------------ item attributes
def test_attributes_beside_one_user_per_line(tmp_path):
    p = write(tmp_path / "toys.txt", "3 7 5 9\n1 4 8\n")
    (tmp_path / "toys_item2attributes.json").write_text(json.dumps({"7": [1, 2], "5": ["red", 3], "9": [], "100": [4]}))
    ds = load_dataset(p)
    assert ds.catalog.columns == ["item", "raw_id", "title", "genres", "year", "attributes"]
    assert attrs(ds) == {4: [], 5: ["red", "3"], 7: ["1", "2"], 8: [], 9: []}  # strings; no entry: empty
    assert read_interactions(p)[1].height == 4  # the raw catalogue has every JSON entry
    ds.save(tmp_path / "prep")
    again = load_dataset(tmp_path / "prep")
    assert again.catalog.equals(ds.catalog) and attrs(again) == attrs(ds)
    frame, catalog, _ = read_interactions(tmp_path / "prep")  # re-reading a prepared folder keeps them too
    assert catalog.columns[-1] == "attributes"
    assert attrs(Dataset.from_interactions(frame, catalog, K0)) == attrs(ds)


def test_attributes_beside_pairs_and_file_names(tmp_path):
    p = write(tmp_path / "Toys_and_Games.txt", "1 7\n1 5\n2 7\n")
    assert "attributes" not in load_dataset(p).catalog.columns
    write(tmp_path / "Toys_and_Games_item2attributes.json", "{}")  # no entries: every item an empty list
    assert attrs(load_dataset(p)) == {5: [], 7: []}
    (tmp_path / "Toys_and_Games_item2attributes.json").unlink()
    write(tmp_path / "Beauty_item2attributes.json", '{"7": [1]}')  # another data set's file: not used
    assert "attributes" not in load_dataset(p).catalog.columns
    write(tmp_path / "Toys_item2attributes.json", '{"7": [2]}')  # the prefix matches the stem
    assert attrs(load_dataset(p)) == {5: [], 7: ["2"]}
    write(tmp_path / "Toys_and_Games_5core_item2attributes.json", '{"7": [3]}')
    with pytest.raises(SeqrecError, match=r"several item attribute files beside it \(Toys_and_Games_5core_item2"):
        load_dataset(p)
    write(tmp_path / "Toys_and_Games_item2attributes.json", '{"5": [4]}')  # the exact name wins
    ds = load_dataset(p)
    assert ds.meta["format"] == "sasrec-txt" and attrs(ds) == {5: ["4"], 7: []}


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"7": [1], "5": [2',
            r"toys_item2attributes\.json: not valid JSON \(.* at line 1 column \d+\); expected a JSON",
        ),
        ("[[1, 2]]", r"toys_item2attributes\.json: expected a JSON object .*, got a JSON list"),
        ('{"7": [1], "5": 2}', r"toys_item2attributes\.json: item '5': expected a list of attribute ids .*got 2$"),
        ('{"7": [1.5]}', r"item '7': expected a list of attribute ids \(integers or strings\), got \[1\.5\]"),
        ('{"7": [true]}', r"item '7': expected a list"),
        ('{"7": [[1]]}', r"item '7': expected a list"),
    ],
)
def test_bad_attributes(tmp_path, text, message):
    p = write(tmp_path / "toys.txt", "3 7 5 9\n")
    write(tmp_path / "toys_item2attributes.json", text)
    with pytest.raises(SeqrecError, match=message):
        load_dataset(p)


# ------------------------------------------------------------------ real data
def test_real_toys(shared_data, tmp_path):
    p = shared_data / "amazon-toys" / "Toys_and_Games.txt"
    assert format_of(p) == "s3rec-txt"
    ds = load_dataset(p)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (19_412, 11_924, 167_597)
    assert ds.meta["cleaning"]["k_core"] == 0 and np.all(ds.lengths >= 5)
    first = p.read_text().split("\n", 1)[0].split()  # items keep line order
    assert ds.item_ids.to_raw(ds.sequence(ds.user_ids.get(int(first[0])))) == [int(i) for i in first[1:]]
    sizes = ds.catalog["attributes"].list.len()
    assert (sizes > 0).mean() > 0.9 and sizes.max() > 1
    ds.save(tmp_path / "toys")
    assert Dataset.load(tmp_path / "toys").catalog.equals(ds.catalog)


def test_real_ml1m_pairs(shared_data):
    p = shared_data / "ml-1m" / "ml-1m.txt"
    assert format_of(p) == "sasrec-txt"
    ds = load_dataset(p)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6_040, 3_416, 999_611)
    assert ds.meta["cleaning"]["k_core"] == 0 and "attributes" not in ds.catalog.columns
