"""Item fields defined once: ``Item`` drives ``ItemOut`` and the service's JSON items; the catalogue module."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing

import pytest

from seqrec.serving.catalogue import Catalogue, Item
from seqrec.serving.http import ITEM_FIELDS, _item_dict, _items, _items_json
from seqrec.serving.schemas import ItemOut

ITEMS = [
    Item(1, 50, 0.75, "Amélie «Le Fabuleux Destin» 東京", ["Comedy", "Romance"]),
    Item(2, "tt-0042", -1.5e-7, None, []),
    Item(3, 7, 3.0, 'quote " brace {x} \\ NUL \x00 tab \t', ["Sci-Fi"]),
    Item(4, "ĝ-ÿ", -0.12345678901234567, "", ["Ünïcode", "😀"]),
]


class Owner:
    """Stands in for a ``Recommender``: ``_items_json`` only keys its fragment cache on it."""


def test_itemout_has_the_item_dataclass_fields_in_order() -> None:
    names = [f.name for f in dataclasses.fields(Item)]
    assert list(ItemOut.model_fields) == names == list(ITEM_FIELDS)
    hints = typing.get_type_hints(Item)
    assert {n: f.annotation for n, f in ItemOut.model_fields.items()} == {n: hints[n] for n in names}
    assert all(f.is_required() for f in ItemOut.model_fields.values())
    schema = ItemOut.model_json_schema()
    assert schema["title"] == "ItemOut" and schema["required"] == names and list(schema["properties"]) == names
    assert ItemOut(**_item_dict(ITEMS[0])).model_dump() == _item_dict(ITEMS[0])


def test_items_json_is_the_json_of_items() -> None:
    owner = Owner()
    for _ in range(2):  # fragments built, then read from the cache
        text = _items_json(owner, ITEMS)
        assert json.loads(text) == _items(ITEMS)
        assert text == json.dumps(_items(ITEMS), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert [list(d) for d in _items(ITEMS)] == [list(ITEM_FIELDS)] * len(ITEMS)
    moved = [dataclasses.replace(ITEMS[1], rank=9, score=2.5)]  # rank and score change per answer
    assert json.loads(_items_json(owner, moved)) == _items(moved)
    assert _items_json(owner, []) == "[]"
    with pytest.raises(ValueError, match="not a JSON number"):
        _items_json(owner, [dataclasses.replace(ITEMS[0], score=float("nan"))])


def test_recommend_reexports_what_moved() -> None:
    import seqrec.serving.catalogue
    import seqrec.serving.exports
    import seqrec.serving.recommender as R

    assert R.Item is seqrec.serving.catalogue.Item and R.UnknownIdError is seqrec.serving.catalogue.UnknownIdError
    assert R.export_items is seqrec.serving.exports.export_items


def test_items_and_exports_do_not_import_the_recommender() -> None:
    code = "import sys, seqrec.serving.catalogue, seqrec.serving.exports; print('seqrec.serving.recommender' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_catalogue_without_a_scorer(tiny_dataset, titles) -> None:
    cat = Catalogue(tiny_dataset())
    i = cat.internal("106")
    ranked = cat.ranked([2.0, 1.0, float("-inf"), 0.5], [i, cat.internal(107), cat.internal(108), cat.internal(109)])
    assert [(x.rank, x.item_id) for x in ranked] == [(1, 106), (2, 107)]  # a masked score ends the list
    assert (ranked[0].title, ranked[0].genres) == titles[106]
    assert cat.ranked([float("nan")], [i]) == []
    assert cat.item(106)["item_id"] == 106 and cat.facts(i) == cat.item("106")
    assert [x.item_id for x in cat.similar(106, k=2)] == [107, 109]  # adjacent-item co-occurrence


def test_ranked_items_hold_their_features_and_interactions() -> None:
    import math

    import polars as pl

    from seqrec.data.dataset import CleanConfig, Dataset
    from seqrec.models.features import build_vocab
    from seqrec.serving.catalogue import add_to_catalogue

    frame = pl.DataFrame({"user": [0, 0, 1, 1, 1], "item": [1, 2, 1, 3, 1], "timestamp": [0, 1, 0, 1, 2]})
    catalog = pl.DataFrame(
        {"raw_id": [1, 2, 3], "title": ["a", "b", None], "genres": [["Drama"], [], None], "year": [1994, None, 2001]}
    )
    ds = Dataset.from_interactions(frame, catalog=catalog, config=CleanConfig(k_core=0), name="three")
    more = pl.DataFrame({"raw_id": [1, 2, 3], "rating": [4.5, float("nan"), None], "studio": ["x", None, "y"]})
    ds = Dataset(
        ds.offsets,
        ds.items,
        ds.user_ids,
        ds.item_ids,  # other catalogue fields, as item files give
        ds.catalog.join(more.cast({"raw_id": ds.catalog["raw_id"].dtype}), on="raw_id", how="left"),
        ds.meta,
    )
    new = {"item_id": 4, "title": "d", "genres": ["Comedy", "Drama"], "year": 1980, "rating": 3.0, "studio": "z"}
    ds = add_to_catalogue(ds, [new], build_vocab(ds.catalog.sort("item"), "genres"))[0]  # no interactions
    cat = Catalogue(ds)
    items = {x.item_id: x for x in cat.ranked([4.0, 3.0, 2.0, 1.0], [cat.internal(r) for r in (1, 2, 3, 4)])}
    assert items[1].features == {"genres": ["Drama"], "year": 1994, "rating": 4.5, "studio": "x"}
    assert items[2].features == {}  # empty, missing and non-finite values are left out
    assert items[3].features == {"year": 2001, "studio": "y"}
    assert {r: x.interactions for r, x in items.items()} == {1: 3, 2: 1, 3: 1, 4: 0}  # 4: nobody yet
    assert items[4].interactions == cat.facts(cat.internal(4))["popularity"] == 0
    assert json.loads(_items_json(Owner(), list(items.values()))) == _items(list(items.values()))
    assert all(not isinstance(v, float) or math.isfinite(v) for x in items.values() for v in x.features.values())
    out = ItemOut(**_item_dict(items[4])).model_dump()
    assert out["features"] == {"genres": ["Comedy", "Drama"], "year": 1980, "rating": 3.0, "studio": "z"}
    assert Item(1, 5, 0.5, None, []).features == {} and Item(1, 5, 0.5, None, []).interactions == 0
