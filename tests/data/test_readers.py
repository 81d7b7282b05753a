import numpy as np
import pandas as pd
import polars as pl
import pytest

from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.data.readers import NAMES, format_of, load_dataset, read_interactions
from seqrec.errors import SeqrecError

K0 = CleanConfig(k_core=0)


def seqs(ds: Dataset) -> list[list]:
    """Each user's history as raw item ids, in user raw-id order."""
    return [ds.item_ids.to_raw(ds.sequence(u)) for u in range(ds.n_users)]


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------ MovieLens folders
ML100K_ITEMS = (
    "10|Caf\xe9 au lait (1995)|01-Jan-1996||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1\n"
    "20|Nowhere (1997)|||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "30|unknown|||http://x|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)


@pytest.fixture
def ml100k(tmp_path):
    d = tmp_path / "ml-100k"
    d.mkdir()
    write(d / "u.data", "1\t20\t4\t200\n1\t10\t5\t100\n2\t30\t3\t50\n2\t10\t1\t50\n2\t20\t2\t50\n")
    write(d / "u.item", ML100K_ITEMS, "latin-1")
    return d


def test_ml100k_folder(ml100k):
    ds = load_dataset(ml100k, K0)
    assert format_of(ml100k) == "ml-100k" and ds.meta["format"] == "ml-100k" and ds.meta["name"] == "ml-100k"
    assert seqs(ds) == [[10, 20], [30, 10, 20]]  # sorted by time; ties (user 2) in file order
    cat = ds.catalog.to_dicts()
    assert cat[0]["title"] == "Café au lait (1995)" and cat[0]["genres"] == ["Action", "Western"]
    assert cat[0]["year"] == 1996  # the release date wins over the title
    assert cat[1]["year"] == 1997 and cat[1]["genres"] == ["Comedy"]  # year from the title
    assert cat[2]["year"] is None and cat[2]["genres"] == ["unknown"]


def test_ml100k_genre_file_and_direct_path(ml100k):
    write(ml100k / "u.genre", "".join(f"g{i}|{i}\n" for i in range(19)) + "\n")
    ds = load_dataset(ml100k / "u.data", K0)
    assert ds.catalog["genres"].to_list()[0] == ["g1", "g18"]
    frame, catalog, k = read_interactions(ml100k / "u.data")
    assert frame.columns == ["user", "item", "rating", "timestamp"] and frame.height == 5 and k == 5
    assert catalog.height == 3


def test_ml100k_bad_line(ml100k):
    write(ml100k / "u.data", "1\t10\t5\t100\n1\t20\tfive\t200\n")
    with pytest.raises(SeqrecError, match=r"u\.data line 2: expected 4 tab-separated .*got '1\\t20\\tfive\\t200'"):
        load_dataset(ml100k, K0)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])  # ml-1m is latin-1, ml-10m utf-8
def test_movielens_dat(tmp_path, encoding):
    d = tmp_path / "ml-1m"
    d.mkdir()
    write(d / "ratings.dat", "1::10::5::978300760\n1::20::3::978300700\n2::10::4.5::978300000\n")
    write(
        d / "movies.dat",
        "10::Caf\xe9 (1995)::Comedy|Drama\n20::Star Wars: Episode IV (1977)::(no genres listed)\n",
        encoding,
    )
    ds = load_dataset(d, K0)
    assert format_of(d) == "movielens-dat" and format_of(d / "ratings.dat") == "movielens-dat"
    assert seqs(ds) == [[20, 10], [10]]
    cat = ds.catalog.to_dicts()
    assert cat[0] | {"item": 0} == {
        "item": 0,
        "raw_id": 10,
        "title": "Café (1995)",
        "genres": ["Comedy", "Drama"],
        "year": 1995,
    }
    assert cat[1]["title"] == "Star Wars: Episode IV (1977)" and cat[1]["genres"] == [] and cat[1]["year"] == 1977
    write(d / "ratings.dat", "1::10::5::978300760\n\n1:x:20::3::978300700\n")
    with pytest.raises(SeqrecError, match=r"ratings\.dat line 3: expected 'user::item::rating::timestamp'.*'1:x:20::3"):
        load_dataset(d, K0)


def test_movielens_csv(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,3.5,5\n2,2,1.0,7\n")
    write(
        d / "movies.csv",
        'movieId,title,genres\n1,"Toy Story, The (1995)",Animation|Comedy\n'
        "2,Babylon 5 (1994-1998) ,(no genres listed)\n",
    )
    ds = load_dataset(d, K0)
    assert format_of(d) == "movielens-csv" and seqs(ds) == [[2, 1], [2]]
    assert ds.catalog.select("title", "genres", "year").to_dicts() == [
        {"title": "Toy Story, The (1995)", "genres": ["Animation", "Comedy"], "year": 1995},
        {"title": "Babylon 5 (1994-1998)", "genres": [], "year": 1994},
    ]
    assert load_dataset(d, CleanConfig(k_core=0, min_rating=3.0)).n_interactions == 2
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,3.5\n")
    with pytest.raises(SeqrecError, match=r"ratings\.csv line 3: expected 'userId,movieId,rating,timestamp'"):
        load_dataset(d, K0)


# ------------------------------------------------------------------ SASRec paper files
def test_sasrec_txt(tmp_path):
    p = write(tmp_path / "games.txt", "2 7\n2 5\n1 9\n1 7\n2 7\n")
    assert format_of(p) == "sasrec-txt"
    ds = load_dataset(p)  # no k-core reapplied: these files are already filtered
    assert seqs(ds) == [[9, 7], [7, 5, 7]] and ds.meta["cleaning"]["k_core"] == 0
    assert ds.meta["has_timestamps"] is False and ds.meta["name"] == "games"
    assert load_dataset(p, CleanConfig(k_core=2)).meta["cleaning"]["k_core"] == 2
    assert read_interactions(p)[2] == 0


def test_sasrec_txt_bad_line(tmp_path):
    p = write(tmp_path / "games.txt", "".join(f"{u} {u}\n" for u in range(1, 17)) + "abc 5\n1 2\n")
    with pytest.raises(SeqrecError, match=r"games\.txt line 17: expected two integers 'user item', got 'abc 5'"):
        load_dataset(p)
    write(p, "1 2\n1 3\n\n\t1   4 \n")  # blank lines and odd spacing are fine
    assert seqs(load_dataset(p)) == [[2, 3, 4]]
    write(p, "1 2\n1 2 3\n")
    with pytest.raises(SeqrecError, match=r"line 2: expected two integers 'user item', got '1 2 3'"):
        load_dataset(p)


# ------------------------------------------------------------------ generic tables
def test_csv_recognised_columns_and_ties(tmp_path):
    p = write(tmp_path / "log.csv", "Customer_ID,SKU,Event_Time,Score\nb,x1,5,1\na,x2,3,2\na,x1,3,3\nb,x3,1,4\n")
    ds = load_dataset(p, K0)
    assert format_of(p) == "csv" and seqs(ds) == [["x2", "x1"], ["x3", "x1"]]
    frame, catalog, k = read_interactions(p)
    assert frame.columns == ["user", "item", "timestamp", "rating"] and catalog is None and k == 5
    assert frame["rating"].to_list() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("sep", ["\t", ";", "|", " "])
def test_separators_sniffed(tmp_path, sep):
    p = write(
        tmp_path / "log.txt",
        sep.join(["user", "item", "ts"])
        + "\n"
        + "".join(sep.join(r) + "\n" for r in [["1", "5", "2"], ["1", "6", "1"], ["2", "5", "1"]]),
    )
    assert seqs(load_dataset(p, K0)) == [[6, 5], [5]]
    assert format_of(p) == ("tsv" if sep == "\t" else "csv")


def test_column_flags_and_sep(tmp_path):
    p = write(tmp_path / "x.csv", "who;what;when;stars\n1;5;2;1\n1;6;1;5\n")
    ds = load_dataset(
        p,
        CleanConfig(k_core=0, min_rating=2),
        user_col="who",
        item_col="WHAT",
        time_col="when",
        rating_col="stars",
        sep=";",
    )
    assert seqs(ds) == [[6]]
    with pytest.raises(SeqrecError, match=r"no user or item column; columns found: 'who', 'what', 'when'.*user_id"):
        load_dataset(p, K0)
    with pytest.raises(SeqrecError, match=r"item_col='nope' is not a column; columns found: 'who'"):
        load_dataset(p, K0, user_col="who", item_col="nope")


def test_headerless_csv_hint(tmp_path):
    p = write(tmp_path / "x.csv", "1,5,2\n1,6,1\n")
    with pytest.raises(SeqrecError, match="looks like data"):
        load_dataset(p, K0)


def test_datetime_strings_and_bad_values(tmp_path):
    p = write(tmp_path / "e.csv", "user_id,item_id,datetime\nu1,p1,2020-01-02 10:00:00\nu1,p2,2020-01-01 09:00:00\n")
    frame, _, _ = read_interactions(p)
    assert frame["timestamp"].to_list() == [1577959200, 1577869200]
    assert seqs(load_dataset(p, K0)) == [["p2", "p1"]]
    write(p, "user_id,item_id,datetime\nu1,p1,2020-01-02\nu1,p2,2020-01-01\nu2,p1,yesterday\n")
    with pytest.raises(SeqrecError, match=r"e\.csv line 4: timestamp column 'datetime' is 'yesterday'"):
        load_dataset(p, K0)
    write(p, "user_id,item_id,rating\nu1,p1,5\n\nu1,,4\n")
    with pytest.raises(SeqrecError, match=r"e\.csv line 4: item column 'item_id' is empty"):
        load_dataset(p, K0)
    write(p, "user_id,item_id,rating\nu1,p1,5\nu1,p2,good\n")
    with pytest.raises(SeqrecError, match=r"line 3: rating column 'rating' is 'good'; expected a number"):
        load_dataset(p, K0)


def test_ragged_csv_line(tmp_path):
    p = write(tmp_path / "r.csv", "user,item\n1,2\n1,3,4,5\n")
    with pytest.raises(SeqrecError, match=r"r\.csv line 3: expected 2 fields separated by ','.*'1,3,4,5'"):
        load_dataset(p, K0)


def test_parquet(tmp_path):
    p = tmp_path / "d.parquet"
    pl.DataFrame({"userId": [3, 3, 1], "movieId": [7, 8, 7], "timestamp": [2, 1, 5]}).write_parquet(p)
    assert format_of(p) == "parquet"
    assert seqs(load_dataset(p, K0)) == [[7], [8, 7]]
    pl.DataFrame({"user": [1, None], "item": [1, 2]}).write_parquet(p)
    with pytest.raises(SeqrecError, match=r"d\.parquet row 2: user column 'user' is empty"):
        load_dataset(p, K0)


def test_frames():
    dates = pd.to_datetime(["2021-01-02", "2021-01-01", "2021-01-01"])
    pdf = pd.DataFrame({"user": ["a", "a", "b"], "item": [1, 2, 1], "date": dates})
    ds = load_dataset(pdf, K0)
    assert seqs(ds) == [[2, 1], [1]] and ds.meta["format"] == "dataframe"
    assert seqs(load_dataset(pl.from_pandas(pdf), K0)) == [[2, 1], [1]]
    assert seqs(load_dataset(pdf.set_index("user"), K0)) == [[2, 1], [1]]  # a named index is a column
    frame = pl.DataFrame({"uid": [1.0, 1.0], "iid": ["5", "6"], "ts": [1.5, 0.5]})
    out, _, _ = read_interactions(frame)
    assert out.schema == {"user": pl.Int64, "item": pl.Int64, "timestamp": pl.Int64}
    with pytest.raises(SeqrecError, match="DataFrame row 1: item column"):
        load_dataset(pl.DataFrame({"user": [1], "item": [None]}, schema={"user": pl.Int64, "item": pl.Int64}))


# ------------------------------------------------------------------ names, paths, prepared folders
def test_names_and_missing_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(SeqrecError, match=r"not downloaded.*seqrec download ml-1m"):
        load_dataset("ml-1m")
    with pytest.raises(SeqrecError, match="no such file or folder.*" + ", ".join(NAMES)):
        load_dataset("ml-2k")
    with pytest.raises(SeqrecError, match="no such file"):
        load_dataset(tmp_path / "nothing.csv")
    write(tmp_path / "empty.csv", "\n\n")
    with pytest.raises(SeqrecError, match="empty"):
        load_dataset(tmp_path / "empty.csv")
    write(tmp_path / "head.csv", "user,item\n")
    with pytest.raises(SeqrecError, match="no data rows"):
        load_dataset(tmp_path / "head.csv")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(SeqrecError, match="not a recognised data folder"):
        load_dataset(tmp_path / "stuff")


def test_name_resolves_under_data_home(ml100k, monkeypatch):
    monkeypatch.setenv("SEQREC_DATA", str(ml100k.parent))
    monkeypatch.chdir(ml100k.parent.parent)
    assert load_dataset("ml-100k", K0).n_interactions == 5


def test_prepared_folder(ml100k, tmp_path):
    ds = load_dataset(ml100k, K0)
    ds.save(tmp_path / "prep")
    assert format_of(tmp_path / "prep") == "prepared"
    again = load_dataset(tmp_path / "prep")
    assert again.fingerprint() == ds.fingerprint() and again.catalog.equals(ds.catalog)
    frame, catalog, k = read_interactions(tmp_path / "prep")
    assert k == 0 and frame.height == 5 and catalog.height == 3


def test_synthetic_name(monkeypatch):
    synthetic = pytest.importorskip("seqrec.data.synthetic.story")
    calls = []

    def fake(seed=0):
        calls.append(seed)
        inter = pl.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "timestamp": [1, 2, 3]})
        return inter, pl.DataFrame({"raw_id": [1, 2], "title": ["a", "b"], "genres": [["x"], []], "year": [None, 1]})

    monkeypatch.setattr(synthetic, "generate", fake)
    ds = load_dataset("synthetic", K0)
    assert calls == [0] and ds.n_interactions == 3 and ds.catalog["title"].to_list() == ["a", "b"]


# ------------------------------------------------------------------ real data
def test_real_ml100k(shared_data):
    ds = load_dataset(shared_data / "ml-100k", K0)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 99_999)
    default = load_dataset(shared_data / "ml-100k")
    before = default.meta["before"]
    assert (before["users"], before["items"], before["interactions"]) == (943, 1682, 99_999)
    assert default.meta["cleaning"]["k_core"] == 5
    assert ds.catalog["title"].null_count() == 0 and ds.catalog["title"][0] == "Toy Story (1995)"
    assert ds.catalog["genres"][0].to_list() == ["Animation", "Children's", "Comedy"]
    assert ds.catalog["year"].null_count() <= 1  # only the 'unknown' entry lacks a date


def test_real_ml_latest_small(shared_data):
    ds = load_dataset(shared_data / "ml-latest-small")
    assert ds.n_users > 600 and ds.n_items > 3000
    known = ds.catalog.filter(pl.col("title").is_not_null())
    assert known.height == ds.n_items
    assert known["year"].null_count() < 20 and known["genres"].list.len().min() >= 0
    assert known.filter(pl.col("raw_id") == 1)["genres"][0].to_list()[:2] == ["Adventure", "Animation"]


def test_real_games(shared_data):
    ds = load_dataset(shared_data / "amazon-games" / "games.txt")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (31_013, 23_715, 287_107)
    assert ds.meta["cleaning"]["k_core"] == 0
    assert np.all(ds.lengths >= 1)


# ------------------------------------------------------------------ the typed fast path of plain integer tables
PLAIN_CASES = [
    "user,item,timestamp\n1,10,100\n1,20,50\n2,10,7\n",
    "user,item,timestamp\n1,10,100\n1,20,50\n2,10,7",  # no newline at the end
    "user,item,timestamp\r\n1,10,100\r\n2,10,7\r\n",
    "user,item,timestamp\n1,007,100\n1,7,50\n2,10,7\n",  # 007 is a code, not 7
    "user,item,timestamp\n1,+7,100\n1,7,50\n2,10,7\n",
    "user,item,timestamp\n1, 7,100\n1,7,50\n2,10,7\n",
    'user,item,timestamp\n1,"7",100\n1,8,50\n2,10,7\n',
    "user,item,timestamp\n1,7.0,100\n1,8,50\n2,10,7\n",
    "user,item,timestamp\n-1,-0,100\n1,8,50\n-2,-10,7\n",
    "user,item,timestamp\n1,9223372036854775807,1\n-9223372036854775808,8,5\n",
    "user,item,rating,timestamp,tag\n1,10,4.5,100,a b\n1,20, 3 ,50,\n2,10,1.0,7,x\n",
    "user,item,rating,timestamp\n1,10,4.5,100\n1,20,,50\n",
    "user,item,timestamp\n1,10,100\n\n2,10,7\n",
    "user,item,timestamp\n1,10,100\n1,,50\n",
    "user;item;timestamp\n1;10;100\n1;20;50\n",
    "\ufeffuser,item,timestamp\n1,10,100\n1,20,50\n",
    "user,item,timestamp\n1,a,100\n1,20,2020-01-01\n",
]


@pytest.mark.parametrize("text", PLAIN_CASES)
def test_plain_fast_path_reads_as_the_checked_reader(tmp_path, monkeypatch, text):
    import seqrec.data.readers as readers

    path = write(tmp_path / "log.csv", text)

    def read():
        try:
            return read_interactions(path)[0]
        except SeqrecError as e:
            return str(e)

    fast = read()
    monkeypatch.setattr(readers, "_plain_table", lambda *a: None)
    checked = read()
    assert type(fast) is type(checked)
    assert fast == checked if isinstance(fast, str) else fast.equals(checked), (fast, checked)


def test_plain_fast_path_is_taken_for_plain_files(tmp_path, monkeypatch):
    import seqrec.data.columns as columns

    path = write(tmp_path / "log.csv", "user,item,timestamp\n1,10,100\n1,20,50\n2,10,7\n")
    monkeypatch.setattr(columns, "_ids", lambda *a: pytest.fail("the checked id parser ran"))
    frame = read_interactions(path)[0]
    assert frame.schema == pl.Schema({"user": pl.Int64, "item": pl.Int64, "timestamp": pl.Int64})
    assert load_dataset(path, K0).meta["has_timestamps"] and seqs(load_dataset(path, K0)) == [[20, 10], [10]]


def test_ml25m_folder_layout(tmp_path, monkeypatch):
    import seqrec.data.layouts as layouts

    d = tmp_path / "ml-25m"
    d.mkdir()
    rows = [
        (u, m, r, t)
        for u in range(1, 6)
        for m, r, t in (
            (296, 5.0, 1147880044 + u),
            (306, 3.5, 1147868817 + u),
            (307, 5.0, 1147868828 + u),
            (665, 5.0, 1147878820 + u),
            (899, 3.5, 1147868510 + u),
        )
    ]
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n" + "".join(f"{u},{m},{r},{t}\n" for u, m, r, t in rows))
    write(
        d / "movies.csv",
        "movieId,title,genres\n296,Pulp Fiction (1994),Comedy|Crime|Drama|Thriller\n"
        '306,"Three Colors: Red (Trois couleurs: Rouge) (1994)",Drama\n307,"Three Colors: Blue '
        '(Trois couleurs: Bleu) (1993)",Drama\n665,Underground (1995),Comedy|Drama|War\n'
        "899,Singin' in the Rain (1952),Comedy|Musical|Romance\n",
    )
    for extra in ("tags.csv", "links.csv", "genome-scores.csv", "genome-tags.csv", "README.txt"):
        write(d / extra, "x\n")
    monkeypatch.setattr(layouts, "_parse_lines", lambda *a: pytest.fail("the line-by-line parser ran"))
    assert format_of(d) == "movielens-csv"
    ds = load_dataset(d)
    assert ds.n_users == 5 and ds.n_items == 5 and ds.n_interactions == 25
    assert seqs(ds)[0] == [899, 306, 307, 665, 296]  # by time
    assert ds.catalog["year"].to_list() == [1994, 1994, 1993, 1995, 1952]
    assert load_dataset(d, CleanConfig(min_rating=4.0, k_core=0)).n_interactions == 15


def _reference_clean(frame: pl.DataFrame, config: CleanConfig) -> tuple[list, list, list, dict]:
    """Cleaning as one plain polars pipeline: the order and the counts the data set must have."""
    frame = frame.with_row_index("_row")
    if config.min_rating is not None:
        frame = frame.filter(pl.col("rating") >= config.min_rating)
    frame = frame.sort(["user", "timestamp", "_row"] if "timestamp" in frame.columns else ["user", "_row"])
    if config.dedupe:
        frame = frame.unique(["user", "item"], keep="first", maintain_order=True)
    steps, k = [], config.k_core
    while k > 1:
        before = frame.height
        frame = frame.filter(pl.len().over("user") >= k).filter(pl.len().over("item") >= k)
        steps.append(
            {"users": frame["user"].n_unique(), "items": frame["item"].n_unique(), "interactions": frame.height}
        )
        if frame.height in (before, 0):
            break
    histories = frame.group_by("user", maintain_order=True).agg("item").sort("user")
    return histories["user"].to_list(), histories["item"].to_list(), frame["item"].unique().sort().to_list(), steps


@pytest.mark.parametrize("seed", range(6))
def test_cleaning_matches_a_plain_pipeline(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    user = rng.integers(0, 150, n)
    item = rng.zipf(1.6, n) % 400 * (1000 if seed == 1 else 1)  # seed 1: ids spread over a wide range
    frame = pl.DataFrame(
        {
            "user": user,
            "item": item,
            "timestamp": rng.integers(0, 50, n),  # many ties
            "rating": rng.integers(1, 6, n).astype(float),
        }
    )
    if seed == 2:
        frame = frame.with_columns(pl.format("u{}", "user").alias("user"), pl.format("i{}", "item").alias("item"))
    if seed == 3:
        frame = frame.drop("timestamp")
    if seed == 4:
        frame = frame.sort("user", "timestamp")  # in order already: no sort
    config = CleanConfig(k_core=[5, 3, 2, 4, 5, 0][seed], dedupe=seed in (0, 3), min_rating=3.0 if seed == 5 else None)
    users, histories, items, steps = _reference_clean(frame, config)
    ds = Dataset.from_interactions(frame, config=config)
    assert ds.user_ids.raw.tolist() == users and ds.item_ids.raw.tolist() == items
    assert seqs(ds) == histories
    assert ds.meta["cleaning"]["k_core_steps"] == steps
    assert ds.meta["before"]["interactions"] == n and ds.meta["interactions"] == sum(map(len, histories))


def test_an_id_holding_nul_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"user_id,item_id\n1,a\n2,b\x00c\n")
    with pytest.raises(SeqrecError, match=r"nul.csv line 3: item column 'item_id' .*NUL"):
        read_interactions(path)


def test_ids_given_alone_follow_the_readers_rule():
    from seqrec.data.columns import id_problem

    for good in (0, -5, 2**53 - 1, -(2**53 - 1), "abc", "007", "x" * 256, np.int64(7)):
        assert id_problem(good) is None, good
    for bad in ("NaN", "null", " <NA> ", "", "a\0b", 2**53, 10**30, 2**63, True, 1.5, None, "x" * 257, "\ud800"):
        assert id_problem(bad), bad


@pytest.mark.parametrize(
    "text, name",
    [
        ("user_id,item_id,item_id,rating\n1,10,20,4\n1,11,21,3\n", "dup.csv"),
        ("user_id\titem_id\tuser_id\n1\t10\t2\n1\t11\t2\n", "dup.tsv"),
        ("user_id item_id item_id\n1 10 20\n1 11 21\n", "dup.txt"),
        ("userId,ITEM_ID,item_id\n1,10,20\n1,11,21\n", "case.csv"),
    ],
)
def test_a_role_column_named_twice_is_refused_naming_it(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(
        SeqrecError, match=rf"{name}: the header names column '(item_id|user_id|ITEM_ID / item_id)' .*times"
    ):
        read_interactions(path)


def test_columns_named_twice_elsewhere(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("user_id,item_id,note,note\n1,10,a,b\n1,11,c,d\n")  # a repeated column no role reads
    assert read_interactions(path)[0]["item"].to_list() == [10, 11]
    frame = pd.DataFrame([[1, 10, 20]], columns=["user_id", "item_id", "item_id"])
    with pytest.raises(SeqrecError, match="column 'item_id' appears 2 times"):
        read_interactions(frame)


def test_fractional_ids_in_a_float_column_are_refused(tmp_path):
    path = tmp_path / "frac.parquet"
    pl.DataFrame({"user_id": [1.0, 196.5, 3.0], "item_id": [1, 2, 3]}).write_parquet(path)
    with pytest.raises(SeqrecError, match=r"frac.parquet row 2: user column 'user_id' is '196.5'; expected an id"):
        read_interactions(path)
    with pytest.raises(SeqrecError, match=r"row 1: item column 'item_id' is '2.5'"):
        read_interactions(pl.DataFrame({"user_id": [1, 2], "item_id": [2.5, 3.0]}))
    whole = tmp_path / "whole.parquet"
    pl.DataFrame({"user_id": [1.0, 196.0], "item_id": [1, 2]}).write_parquet(whole)
    assert read_interactions(whole)[0]["user"].to_list() == [1, 196]
