"""MovieLens folders: the ratings files' layouts and the catalogues beside them (``u.item`` with ``u.genre``,
``movies.dat``, ``movies.csv``: title, genres, year)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from seqrec.data.layouts import _decoded, _fail, _lines, _split
from seqrec.errors import SeqrecError

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
RATINGS = [("user", pl.Int64), ("item", pl.Int64), ("rating", pl.Float64), ("timestamp", pl.Int64)]
_YEAR_IN_TITLE = r"\((\d{4})[^()]*\)\s*$"


def _year(title: pl.Expr) -> pl.Expr:
    return title.str.extract(_YEAR_IN_TITLE, 1).cast(pl.Int32, strict=False)


def _genre_list(genres: pl.Expr) -> pl.Expr:
    empty = genres.is_null() | genres.str.strip_chars().is_in(["(no genres listed)", ""])
    return pl.when(empty).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(genres.str.split("|"))


def _ml100k_catalog(item_file: Path) -> pl.DataFrame:
    folder = item_file.parent
    names = list(ML100K_GENRES)
    if (folder / "u.genre").is_file():
        names = _lines(_decoded(folder / "u.genre")).select(_split("|").list.first())["line"].to_list() or names
    p = pl.col("_p").list
    df = _lines(_decoded(folder / "u.item")).with_columns(_split("|").alias("_p"))
    df = df.with_columns(p.get(0).str.to_integer(strict=False).alias("raw_id"))
    _fail(
        folder / "u.item",
        df.filter(pl.col("raw_id").is_null() | (p.len() < 3 + len(names))).head(1),
        f"expected 'id|title|release date|video date|url|{len(names)} genre flags'",
    )
    title = p.get(1).str.strip_chars()
    date_year = p.get(2).str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False)
    flags = p.slice(-len(names)).list
    genres = pl.concat_list(pl.when(flags.get(j) == "1").then(pl.lit(n)) for j, n in enumerate(names))
    return df.select(
        "raw_id",
        title.alias("title"),
        genres.list.drop_nulls().alias("genres"),
        date_year.fill_null(_year(title)).alias("year"),
    )


def _ml_dat_catalog(path: Path) -> pl.DataFrame:
    p = pl.col("_p").list
    df = _lines(_decoded(path)).with_columns(_split("::").alias("_p"))
    df = df.with_columns(p.get(0).str.to_integer(strict=False).alias("raw_id"))
    _fail(path, df.filter(pl.col("raw_id").is_null() | (p.len() < 3)).head(1), "expected 'id::title::genres'")
    title = p.slice(1, p.len() - 2).list.join("::").str.strip_chars()
    return df.select("raw_id", title.alias("title"), _genre_list(p.last()).alias("genres"), _year(title).alias("year"))


def _ml_csv_catalog(path: Path) -> pl.DataFrame:
    df = pl.read_csv(_decoded(path), infer_schema=False)
    if {"movieId", "title", "genres"} - set(df.columns):
        raise SeqrecError(f"{path}: expected columns movieId,title,genres, found {','.join(df.columns)}")
    title = pl.col("title").str.strip_chars()
    return df.select(
        pl.col("movieId").str.to_integer(strict=False).alias("raw_id"),
        title.alias("title"),
        _genre_list(pl.col("genres")).alias("genres"),
        _year(title).alias("year"),
    ).drop_nulls("raw_id")


MOVIELENS = {  # format: separator, header lines, layout, catalogue file beside the ratings, its reader
    "ml-100k": ("\t", 0, "4 tab-separated fields 'user item rating timestamp'", "u.item", _ml100k_catalog),
    "movielens-dat": ("::", 0, "'user::item::rating::timestamp'", "movies.dat", _ml_dat_catalog),
    "movielens-csv": (",", 1, "'userId,movieId,rating,timestamp'", "movies.csv", _ml_csv_catalog),
}
