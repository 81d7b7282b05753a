"""Every ```python block of README.md runs as written, on small data.

The mechanism, so that the blocks' own calls really run: before a block is executed, (1) each data path
quoted in it (``"../shared/data/..."``) is replaced by a small MovieLens-latest-shaped folder made here
(ratings.csv, movies.csv with titles, years and genres; the items and users the snippet names), or by
``$SEQREC_README_DATA`` when that is set, and (2) every ``SASRec(`` call gets ``epochs=1, quiet=True,
threads=1`` put first (the snippet's own options follow, and win). The blocks run one after another in
one namespace, in a temporary working folder (their ``runs/`` and ``models/`` land there)."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NAMED_ITEMS = [1, 50, 260, 1196]  # ids the README's snippet asks for
GENRES = ["Comedy", "Drama", "Action", "Romance", "Sci-Fi", "Thriller"]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def small_movielens(folder: Path) -> Path:
    """A MovieLens-latest folder: 150 users rating 16 of 160 films each (enough for the sampled protocol's
    100 negatives; the films the snippet names rated by the first 20 users)."""
    rng = random.Random(0)
    items = NAMED_ITEMS + [i for i in range(2, 200) if i not in NAMED_ITEMS][:156]
    folder.mkdir()
    ratings = ["userId,movieId,rating,timestamp"]
    for user in range(1, 151):
        others = rng.sample(items[len(NAMED_ITEMS) :], 12)
        chosen = others + (NAMED_ITEMS if user <= 20 else rng.sample(items[len(NAMED_ITEMS) :], 4))
        for t, item in enumerate(dict.fromkeys(chosen)):
            ratings.append(f"{user},{item},{rng.choice([3.0, 4.0, 4.5, 5.0])},{1_000_000 + 100 * user + t}")
    (folder / "ratings.csv").write_text("\n".join(ratings) + "\n")
    movies = ["movieId,title,genres"] + [
        f'{i},"Film {i} ({1980 + i % 40})",{GENRES[i % 6]}|{GENRES[(i + 2) % 6]}' for i in items
    ]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    return folder


def runnable(block: str, data: str) -> str:
    block = re.sub(r'"\.\./shared/data/[^"]+"', repr(data), block)
    return re.sub(r"\bSASRec\((?=\S)", "SASRec(epochs=1, quiet=True, threads=1, ", block).replace(
        "SASRec()", "SASRec(epochs=1, quiet=True, threads=1)"
    )


def test_readme_has_python_blocks_that_name_the_calls() -> None:
    blocks = python_blocks(README.read_text())
    assert blocks and any("add_items" in b for b in blocks)
    text = runnable(blocks[0], "DATA")
    assert "'DATA'" in text and "SASRec(epochs=1, quiet=True, threads=1, item_features=" in text


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.environ.get("SEQREC_README_DATA") or str(small_movielens(tmp_path / "ml-latest-small"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for n, block in enumerate(python_blocks(README.read_text())):
        exec(compile(runnable(block, data), f"README.md python block {n + 1}", "exec"), namespace)
    rec = namespace.get("rec")
    if rec is not None:  # the snippet's last call took: the new item is in the catalogue
        assert rec.item("new-1")["popularity"] == 0
