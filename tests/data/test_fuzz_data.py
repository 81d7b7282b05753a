"""Fuzzing the readers: random bytes, truncations and mutations of small real-shaped data files give a
``Dataset`` or a ``SeqrecError``, never another exception or a hang; a Dataset they give has one
spelling per id and none of the values the readers refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqrec.data.columns import MISSING_IDS
from seqrec.data.dataset import CleanConfig, Dataset, id_key
from seqrec.data.readers import load_dataset
from seqrec.errors import SeqrecError
from timeouts import time_limit

SEEDS = {  # file name (folder/name), contents: one of each layout, a few users and items
    "log.csv": b"user_id,item_id,timestamp,rating\nu1,10,5,4.0\nu1,11,6,3\nu2,10,1,5\nu2,12,2,1.5\nu3,11,9,2\n",
    "games.txt": b"1 10\n1 11\n2 10\n2 12\n3 11\n3 10\n",
    "Toys.txt": b"1 10 11 12\n2 11 12\n3 10 12 11 13\n",
    "ml-100k/u.data": b"1\t10\t4\t881250949\n1\t11\t3\t891717742\n2\t10\t5\t878887116\n3\t12\t1\t880606923\n",
}
TOKENS = [
    b"NaN",
    b"nan",
    b"inf",
    b"-",
    b"1e400",
    b"242.0",
    b"\xff",
    b"\xe9",
    b"\x00",
    b"\r\n",
    b"\n",
    b'"',
    b",",
    b"\t",
    b" ",
    b"::",
    b"9" * 40,
    b"",
    b"null",
    b"<NA>",
    b"0x1f",
    b"\xef\xbb\xbf",
    b"\\ud800",
    b"[1,2]",
]
CASES: list[str] = []


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = SEEDS[name]
    kind = draw(st.sampled_from(["bytes", "truncate", "mutate", "mutate", "mutate"]))
    if kind == "bytes":
        return name, draw(st.binary(max_size=200))
    if kind == "truncate":
        return name, data[: draw(st.integers(0, len(data)))]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "token", "line"]))
        if op == "replace" and i < len(data):
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
        elif op == "insert":
            data = data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
        elif op == "delete":
            data = data[:i] + data[i + draw(st.integers(1, 10)) :]
        elif op == "token":
            j = min(len(data), i + draw(st.integers(0, 4)))
            data = data[:i] + draw(st.sampled_from(TOKENS)) + data[j:]
        else:  # repeat or drop a whole line
            lines = data.split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines[k : k + 1] = [lines[k]] * draw(st.integers(0, 3))
            data = b"\n".join(lines)
    return name, data


def check(ds: Dataset) -> None:
    """What a Dataset from these readers must hold."""
    assert ds.n_users >= 1 and ds.n_items >= 1
    assert ds.offsets[0] == 0 and ds.offsets[-1] == len(ds.items) and np.all(np.diff(ds.offsets) >= 1)
    assert ds.items.min() >= 1 and ds.items.max() <= ds.n_items
    for ids in (ds.user_ids.raw.tolist(), ds.item_ids.raw.tolist()):
        keys = [id_key(x) for x in ids]
        assert len(set(keys)) == len(keys), ids  # one id, one spelling
        assert not any(isinstance(x, str) and (x.strip().lower() in MISSING_IDS or "\ufffd" in x) for x in ids), ids


@given(case=mutated(), k_core=st.sampled_from([0, None]))
@settings(
    max_examples=600,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
def test_readers_give_a_dataset_or_a_seqrec_error(tmp_path: Path, case: tuple[str, bytes], k_core: int | None) -> None:
    name, data = case
    path = tmp_path / "fuzz" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        with time_limit(20, "load_dataset"):
            ds = load_dataset(path, CleanConfig(k_core=k_core))
    except SeqrecError as e:
        assert str(e).strip() and "\n" not in str(e).strip(), repr(str(e))  # one clear line
        CASES.append("error")
    else:
        check(ds)
        CASES.append("dataset")


def test_the_fuzzing_reached_both_outcomes() -> None:
    if not CASES:
        import pytest

        pytest.skip("run together with test_readers_give_a_dataset_or_a_seqrec_error")
    print(f"readers fuzz: {len(CASES)} cases, {CASES.count('dataset')} datasets, {CASES.count('error')} errors")
    assert len(CASES) >= 500 and CASES.count("dataset") >= 50 and CASES.count("error") >= 50


ID_CHARS = st.sampled_from(list("ab1 '\",;|\t\n\r#é\\") + ["\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\x1c", "\x1f"])


@given(
    rows=st.lists(
        st.tuples(
            st.lists(ID_CHARS, min_size=1, max_size=6).map("".join),
            st.lists(ID_CHARS, min_size=1, max_size=6).map("".join),
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_an_exported_store_reads_back_as_written(tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    """Ids the store holds (quotes, separators, line ends, U+2028 ...): ``export-events``'s CSV reads back to
    the same ids in the same order."""
    from seqrec.data.readers import read_interactions
    from seqrec.serving.store import EventStore
    from seqrec.serving.stores import export_events, read_events

    db, out = tmp_path / f"e{len(CASES)}.db", tmp_path / f"e{len(CASES)}.csv"
    CASES.append("export")
    with EventStore(db) as store:
        try:
            store.append([(u, i, float(n)) for n, (u, i) in enumerate(rows)])
        except SeqrecError:
            return  # not ids (blank after trimming)
    export_events(db, out)
    want, got = read_events(db), read_interactions(out)[0]
    assert [str(x) for x in got["user"].to_list()] == want["user_id"].to_list()
    assert [str(x) for x in got["item"].to_list()] == want["item_id"].to_list()
