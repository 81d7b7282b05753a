"""The embedded default data set: a synthetic movie-watching log with planted sequential structure.

Nothing is downloaded; ``generate(seed)`` is deterministic (one ``numpy`` Generator) and builds
the default size (2000 users, 1500 items, about 80k interactions) in a fraction of a second.

The generative story
--------------------
*Catalogue.* Items are films. Each belongs to one to three genres (Drama, Comedy, Sci-Fi, ...;
common genres are more frequent), has a year between 1970 and 2024 and a readable title
("The Silent Harbor"). Some films form **series** of 3-6 parts released a few years apart
("Star Voyage", "Star Voyage II: The Return", ...). A small pool of popular standalone films are
**hubs**: each series is tied to two or three hubs of a matching genre, so every hub is shared by
several series (think of a crossover special or the blockbuster everyone watches between parts).
Popularity is Zipf-like over standalone films (hubs sit among the popular ones) and over series.

*Users.* Each user has one to three interest genres (Dirichlet weights) plus a little curiosity
for everything else, and a long-tailed history length (5 to 200, mean about 40). A history is a
shuffled mix of single **free picks** and **series runs**:

* a free pick is drawn without replacement with probability proportional to
  ``popularity x genre affinity`` (series parts are never picked on their own);
* a series run starts at part 1 of a series chosen by series popularity and genre affinity, and
  after part k goes on to part k+1 with high probability; between two parts there is often one
  **interlude**: usually one of the series' hubs, sometimes another free pick.

Nobody watches a film twice. Many users are caught mid-series when the log ends: their last
block is a run of at least two parts, so the held-out last items carry the structure too.

*What this plants.* After a part, the next part is likely (a first-order Markov model sees it).
After a hub, the next item is the continuation of whichever of the hub's several series the user
came from: the last item alone is ambiguous, the last *two* items are not. After a free-pick
interlude even the last two items are (almost) never seen together; only the item two back tells
what comes next. So a second-order model beats a first-order one, which beats popularity, and a
sequence model that reads further back and sees the user's genres can do better still. With the
defaults, leave-one-out full-ranking test NDCG@10 is about 0.57 (AR-2), 0.38 (AR-1) and 0.03
(popularity); genre matching reaches about 0.05.

*Time.* Histories start between 2000 and 2019; items within a run are hours apart, blocks are
days apart; timestamps (epoch seconds) strictly increase per user.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from seqrec.errors import SeqrecError

DEFAULT_SEED = 0

GENRES = (
    "Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi", "Adventure", "Crime",
    "Horror", "Fantasy", "Animation", "Documentary", "Mystery", "Family", "War", "Western",
    "Musical", "Film-Noir",
)  # fmt: skip
_ADJECTIVES = (
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Midnight", "Endless", "Frozen",
    "Burning", "Lost", "Wild", "Distant", "Secret", "Savage", "Quiet", "Iron", "Electric",
    "Hollow", "Scarlet", "Forgotten", "Restless", "Shattered", "Velvet", "Northern", "Eternal",
    "Lonely", "Rising", "Dark", "Bright", "Final", "Falling", "Stolen", "Invisible", "Crystal",
    "Wandering", "Bitter", "Sudden", "Perfect", "Little", "Star", "Paper", "Glass", "Blue",
)  # fmt: skip
_NOUNS = (
    "Harbor", "Empire", "Voyage", "Garden", "River", "Kingdom", "Horizon", "Frontier", "Mirror",
    "Signal", "Storm", "Promise", "Shadow", "Island", "Station", "Letter", "Summer", "Winter",
    "Road", "Tower", "Circle", "Witness", "Stranger", "Heart", "Machine", "Ocean", "Forest",
    "Desert", "City", "Night", "Dream", "Legacy", "Covenant", "Echo", "Paradise", "Protocol",
    "Orchard", "Crossing", "Company", "Game", "Lighthouse", "Detective", "Orbit", "Carnival",
)  # fmt: skip
_PLACES = (
    "Paris", "Tokyo", "the Dark", "Winter", "Brooklyn", "the Desert", "Venice", "the Rain",
    "Berlin", "Space", "the Valley", "Havana", "the Woods", "Marrakesh", "the North",
)  # fmt: skip
_SUBTITLES = (
    "The Return", "Rising", "Revenge", "The Reckoning", "Legacy", "Endgame", "Resurrection",
    "The Last Stand", "Homecoming", "Awakening", "Origins", "Redemption", "Dawn", "Requiem",
    "Into the Storm", "The Lost Years", "First Blood", "Exodus", "Judgment Day", "Reborn",
)  # fmt: skip
_ROMAN = ("", "", "II", "III", "IV", "V", "VI", "VII", "VIII")

_T0 = 946_684_800  # 2000-01-01 UTC
_T1 = 1_546_300_800  # 2019-01-01 UTC
_MAX_RUNS = 8  # series runs per user at most
_PLACE = -1  # a free-pick placeholder inside a run


def _genre_names(n_genres: int) -> list[str]:
    return list(GENRES[:n_genres]) + [f"Genre {i + 1}" for i in range(len(GENRES), n_genres)]


def _titles(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct standalone-style titles."""
    na, nn, npl = len(_ADJECTIVES), len(_NOUNS), len(_PLACES)
    sizes = [na * nn, na * nn, nn * npl, nn * nn]  # "The A N", "A N", "A N in P", "The N and the N"
    total = sum(sizes)
    out = []
    rounds = -(-n // total)  # past every combination, titles repeat with a number: "The Silent Harbor #2"
    for code in rng.permutation(rounds * total)[:n].tolist():
        code, again = code % total, code // total
        out.append(_title(code, sizes) + (f" #{again + 1}" if again else ""))
    return out


def _title(code: int, sizes: list[int]) -> str:
    nn, npl = len(_NOUNS), len(_PLACES)
    if code < sizes[0]:
        return f"The {_ADJECTIVES[code // nn]} {_NOUNS[code % nn]}"
    code -= sizes[0]
    if code < sizes[1]:
        return f"{_ADJECTIVES[code // nn]} {_NOUNS[code % nn]}"
    code -= sizes[1]
    if code < sizes[2]:
        noun = _NOUNS[code // npl]
        return f"{'An' if noun[0] in 'AEIOU' else 'A'} {noun} in {_PLACES[code % npl]}"
    a, b = divmod(code - sizes[2], nn)
    return f"The {_NOUNS[a]} and the {_NOUNS[b] if b != a else 'Sea'}"


def _zipf(rng: np.random.Generator, n: int, exponent: float, shift: float = 3.0) -> np.ndarray:
    """Zipf-like weights over ``n`` things in random rank order (sums to 1)."""
    w = (np.arange(n) + shift) ** -exponent
    w = w[rng.permutation(n)]
    return w / w.sum()


def _topk_gumbel(rng: np.random.Generator, logw: np.ndarray, k: int | None = None) -> np.ndarray:
    """Row-wise weighted sample without replacement (Gumbel-top-k): the first ``k`` columns drawn."""
    keys = -(logw + rng.gumbel(size=logw.shape))
    if k is None or k >= keys.shape[-1]:
        return np.argsort(keys, axis=-1, kind="stable")
    top = np.argpartition(keys, k - 1, axis=-1)[..., :k]
    return np.take_along_axis(top, np.argsort(np.take_along_axis(keys, top, -1), axis=-1, kind="stable"), -1)


def generate(
    seed: int = DEFAULT_SEED,
    n_users: int = 2000,
    n_items: int = 1500,
    n_genres: int = 12,
    n_series: int = 150,
    n_hubs: int = 30,
    mean_length: float = 40.0,
    min_length: int = 5,
    max_length: int = 200,
    zipf_exponent: float = 1.0,
    p_continue: float = 0.85,
    p_hub: float = 0.55,
    p_other: float = 0.15,
    p_end_in_series: float = 0.65,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Synthetic interactions and catalogue (see the module docstring for the story).

    Returns ``(interactions, catalog)``: interactions have ``user`` (1..n_users), ``item`` (raw id
    1..n_items) and ``timestamp`` (int epoch seconds, strictly increasing per user), sorted by user
    and time; the catalogue has one row per item: ``raw_id``, ``title``, ``genres`` (list[str]),
    ``year``.
    """
    if n_users < 1 or n_genres < 1 or n_series < 0 or n_hubs < 0:
        raise SeqrecError("synthetic: n_users, n_genres must be >= 1 and n_series, n_hubs >= 0")
    if not 1 <= min_length <= mean_length <= max_length:
        raise SeqrecError(f"synthetic: need 1 <= min_length <= mean_length <= max_length, got "
                          f"{min_length}, {mean_length}, {max_length}")  # fmt: skip
    for name, p in (("p_continue", p_continue), ("p_hub", p_hub), ("p_other", p_other),
                    ("p_end_in_series", p_end_in_series), ("p_hub + p_other", p_hub + p_other)):  # fmt: skip
        if not 0.0 <= p <= 1.0:
            raise SeqrecError(f"synthetic: {name} must be in [0, 1], got {p}")
    rng = np.random.default_rng(seed)
    genre_names = _genre_names(n_genres)

    # ---------------------------------------------------------------- catalogue layout
    # internal item index: series parts first (series by series), then hubs, then standalone films
    n_parts = rng.integers(3, 7, size=n_series)
    n_series_items = int(n_parts.sum())
    n_free_items = n_items - n_series_items
    if n_free_items < max(n_hubs, 1) + max_length:
        raise SeqrecError(
            f"synthetic: {n_items} items are too few for {n_series} series ({n_series_items} parts), "
            f"{n_hubs} hubs and histories up to {max_length}; raise n_items or lower n_series"
        )
    series_start = (np.cumsum(n_parts) - n_parts).astype(np.int64)
    series_of_part = np.repeat(np.arange(n_series), n_parts)

    genre_w = 1.0 / (np.arange(n_genres) + 1.0) ** 0.6
    genre_w = genre_w[rng.permutation(n_genres)] if n_genres > len(GENRES) else genre_w
    log_gw = np.log(genre_w / genre_w.sum())

    def draw_genres(n: int) -> np.ndarray:
        """[n, n_genres] 0/1 membership, 1-3 genres each, common genres more likely."""
        order = _topk_gumbel(rng, np.broadcast_to(log_gw, (n, n_genres)))
        k = np.minimum(rng.choice([1, 2, 3], size=n, p=[0.45, 0.4, 0.15]), n_genres)
        member = np.zeros((n, n_genres), dtype=np.float64)
        rows = np.repeat(np.arange(n), k)
        member[rows, order[rows, np.arange(len(rows)) - np.repeat(np.cumsum(k) - k, k)]] = 1.0
        return member

    series_genres = draw_genres(n_series)
    free_genres = draw_genres(n_free_items)
    item_genres = np.concatenate([series_genres[series_of_part], free_genres])  # [n_items, G]

    # popularity: Zipf over standalone films (hubs among the popular ones) and over series
    free_pop = (np.arange(n_free_items) + 3.0) ** -zipf_exponent
    hub_ranks = np.sort(rng.choice(min(n_free_items, 4 * n_hubs + 20), size=n_hubs, replace=False))
    rest = np.setdiff1d(np.arange(n_free_items), hub_ranks)
    free_pop = np.concatenate([free_pop[hub_ranks], free_pop[rest[rng.permutation(len(rest))]]])
    free_pop /= free_pop.sum()
    series_pop = _zipf(rng, n_series, 0.8 * zipf_exponent, shift=5.0)
    hub_items = n_series_items + np.arange(n_hubs)

    # each series is tied to 2-3 hubs, preferring hubs that share a genre with it
    if n_hubs and n_series:
        overlap = series_genres @ item_genres[hub_items].T  # [S, H]
        n_tied = np.minimum(rng.integers(2, 4, size=n_series), n_hubs)
        series_hubs = hub_items[_topk_gumbel(rng, np.log(0.15 + overlap))]  # first n_tied per row
    else:
        n_tied = np.zeros(n_series, dtype=np.int64)
        series_hubs = np.zeros((n_series, 0), dtype=np.int64)

    # ---------------------------------------------------------------- users
    g_user = np.zeros((n_users, n_genres))
    n_int = np.minimum(rng.choice([1, 2, 3], size=n_users, p=[0.3, 0.45, 0.25]), n_genres)
    interest = _topk_gumbel(rng, np.broadcast_to(log_gw, (n_users, n_genres)))
    weights = rng.dirichlet(np.ones(3), size=n_users)
    for j in range(min(3, n_genres)):
        has = n_int > j
        g_user[np.flatnonzero(has), interest[has, j]] = weights[has, j]
    g_user /= g_user.sum(axis=1, keepdims=True)
    n_g = np.maximum(item_genres.sum(axis=1), 1.0)
    affinity = 0.04 + (g_user @ item_genres.T) / n_g  # [U, n_items]

    log_free = np.log(free_pop)[None, :] + np.log(affinity[:, n_series_items:])
    free_order = _topk_gumbel(rng, log_free, max_length + n_hubs) + n_series_items  # [U, k] item indices
    s_aff = 0.04 + (g_user @ series_genres.T) / np.maximum(series_genres.sum(axis=1), 1.0)
    series_order = _topk_gumbel(rng, np.log(series_pop)[None, :] + 2.0 * np.log(s_aff), _MAX_RUNS)

    span = max_length - min_length
    mu = np.log(max(mean_length - min_length, 0.5)) - 0.5 * 0.9**2
    lengths = min_length + np.minimum(np.round(rng.lognormal(mu, 0.9, size=n_users)), span).astype(np.int64)

    # per-user random draws made up front (one Generator call each, not one per step)
    end_in_series = ((rng.random(n_users) < p_end_in_series) & (n_series > 0)).tolist()
    n_runs = rng.poisson(lengths * 0.45 / 5.0).tolist()  # about 45% of a history in runs of ~5 items
    steps = rng.random((n_users, _MAX_RUNS, 5, 3))  # [user, run, gap, (go on?, interlude, hub)]
    tied = [row[:k] for row, k in zip(series_hubs.tolist(), n_tied.tolist())]
    first_part, count_parts = series_start.tolist(), n_parts.tolist()
    orders, lens = series_order.tolist(), lengths.tolist()
    p_interlude = p_hub + p_other

    flat: list[int] = []
    in_run: list[bool] = []
    for u in range(n_users):
        L, ends = lens[u], end_in_series[u]
        runs: list[list[int]] = []
        used_hubs: set[int] = set()
        budget = L - 1  # at least one free pick per history
        want = min(max(n_runs[u], int(ends)), _MAX_RUNS, n_series)
        user_steps = steps[u, :want].tolist()
        for r in range(want):
            s = orders[u][r]
            first, step = first_part[s], user_steps[r]
            run = [first]
            for k in range(1, count_parts[s]):
                go_on, interlude, pick = step[k - 1]
                if go_on >= p_continue and not (ends and r == want - 1 and k == 1):
                    break
                if interlude < p_hub:
                    ties = [h for h in tied[s] if h not in used_hubs]
                    if ties:
                        h = ties[int(pick * len(ties))]
                        used_hubs.add(h)
                        run.append(h)
                elif interlude < p_interlude:
                    run.append(_PLACE)
                run.append(first + k)
            if len(run) > budget:
                break
            budget -= len(run)
            runs.append(run)
        n_single = budget + 1
        pool = free_order[u, : L + len(used_hubs)].tolist()
        pool = [i for i in pool if i not in used_hubs] if used_hubs else pool
        fill = iter(pool[n_single:])
        runs = [[next(fill) if x == _PLACE else x for x in run] for run in runs]
        last = runs.pop() if (ends and runs and len(runs[-1]) > 1) else None
        blocks = [[x] for x in pool[:n_single]] + runs
        blocks = [blocks[i] for i in rng.permutation(len(blocks)).tolist()]
        if last is not None:
            blocks.append(last)
        for block in blocks:
            flat.extend(block)
            in_run.append(False)
            in_run.extend([True] * (len(block) - 1))

    items = np.asarray(flat, dtype=np.int64)
    in_run_mask = np.asarray(in_run, dtype=bool)

    # ---------------------------------------------------------------- timestamps
    total = len(items)
    gaps = np.where(in_run_mask, rng.exponential(8 * 3600.0, total), rng.exponential(3 * 86400.0, total))
    gaps = 60 + gaps.astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    gaps[starts] = rng.integers(_T0, _T1, size=n_users)
    cum = np.cumsum(gaps)
    timestamp = cum - np.repeat(cum[starts] - gaps[starts], lengths)

    # ---------------------------------------------------------------- catalogue rows
    raw_of = rng.permutation(n_items) + 1  # internal index -> raw id
    base_titles = _titles(rng, n_series + n_free_items)
    titles = [""] * n_items
    sub_pick = _topk_gumbel(rng, np.zeros((n_series, len(_SUBTITLES))))
    for s in range(n_series):
        base = base_titles[s]
        titles[series_start[s]] = base
        for k in range(1, int(n_parts[s])):
            titles[series_start[s] + k] = f"{base} {_ROMAN[k + 1]}: {_SUBTITLES[sub_pick[s, k - 1]]}"
    titles[n_series_items:] = base_titles[n_series:]

    first_year = rng.integers(1970, 2011, size=n_series)
    part_gap = rng.integers(2, 5, size=n_series_items)
    part_gap[series_start] = 0
    series_years = (
        np.repeat(first_year, n_parts) + np.cumsum(part_gap) - np.repeat(np.cumsum(part_gap)[series_start], n_parts)
    )
    free_years = 1970 + np.floor(55 * rng.beta(2.0, 1.3, size=n_free_items)).astype(np.int64)
    years = np.minimum(np.concatenate([series_years, free_years]), 2024)

    member_rows, member_cols = np.nonzero(item_genres)
    names = np.asarray(genre_names, dtype=object)[member_cols]
    split_at = np.cumsum(np.bincount(member_rows, minlength=n_items))[:-1]
    genres = [list(g) for g in np.split(names, split_at)]

    catalog = pl.DataFrame(
        {"raw_id": raw_of.astype(np.int64), "title": titles, "genres": genres, "year": years.astype(np.int64)},
        schema={"raw_id": pl.Int64, "title": pl.String, "genres": pl.List(pl.String), "year": pl.Int64},
    ).sort("raw_id")
    interactions = pl.DataFrame(
        {
            "user": np.repeat(np.arange(1, n_users + 1, dtype=np.int64), lengths),
            "item": raw_of[items].astype(np.int64),
            "timestamp": timestamp.astype(np.int64),
        }
    )
    return interactions, catalog
