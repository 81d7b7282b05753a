"""The demo's options and its model cache: features on where the catalogue has them; a cached model is
reused only when it was trained as the demo would train now."""

from __future__ import annotations

import polars as pl

from seqrec.api import SASRec
from seqrec.cli.demo import _cached, demo_options
from seqrec.config import CleanConfig
from seqrec.data.dataset import Dataset
from seqrec.data.synthetic.story import generate


def small(with_features: bool = True, seed: int = 0) -> Dataset:
    frame, catalog = generate(seed=seed, n_users=120, n_items=400, n_series=20, n_hubs=5, max_length=40)
    if not with_features:
        catalog = catalog.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("year"), pl.lit([], dtype=pl.List(pl.String)).alias("genres")
        )
    return Dataset.from_interactions(frame, catalog=catalog, config=CleanConfig(k_core=0), name="small")


def test_the_demo_reads_genres_and_years_only_where_the_catalogue_has_them():
    opts = demo_options(small())
    assert opts["item_features"] == "genres,year" and opts["feature_output"] is True
    assert "item_features" not in demo_options(small(with_features=False))


def test_a_cached_model_is_reused_only_when_trained_as_the_demo_would_train(tmp_path):
    ds = small()
    quick = {"epochs": 1, "eval_every": 0, "hidden": 16, "blocks": 1}
    SASRec(**{**demo_options(ds), **quick, "quiet": True, "threads": 1}).fit(ds, out_dir=tmp_path / "m")
    same = SASRec(**{**demo_options(ds), **quick, "quiet": False, "threads": 2})  # settings that change nothing
    model, why = _cached(tmp_path / "m", same, ds)
    assert model is not None and why is None
    ids_only = {k: v for k, v in demo_options(ds).items() if k not in ("item_features", "feature_output")}
    model, why = _cached(tmp_path / "m", SASRec(**{**ids_only, **quick}), ds)
    assert model is None and "item_features='genres,year' (now 'unset')" in why
    model, why = _cached(tmp_path / "m", same, small(seed=1))
    assert model is None and why == "it was trained on other data"
    model, why = _cached(tmp_path / "missing", same, ds)
    assert model is None and why.startswith("it does not load")
