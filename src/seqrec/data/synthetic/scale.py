"""The synthetic story of ``seqrec.data.synthetic.story`` at any size: vectorised, users in chunks, bounded memory.

``generate_large(n_users, n_items, n_interactions, seed)`` and ``write_synthetic(out, ...)`` (what
``seqrec synthetic`` runs) tell the same story as ``seqrec.data.synthetic.story.generate``: films in one to three
genres with Zipf popularity, series of 3-6 parts watched in order, popular hubs between parts that tell
which of several series a user is in, genre-affine free picks, strictly increasing timestamps per user,
nobody watching a film twice. Nothing is of size users x items, and no Python loop runs per user:

* *free picks* are a mixture, exactly as ``popularity x (0.04 + genre affinity)`` decomposes: a
  component (global popularity, or one of the user's genres) is drawn by the user's weights, then an
  item by inverse CDF (one ``np.searchsorted`` over the components' CDFs laid end to end); draws a user
  already has are dropped and the missing ones drawn again (a last round draws uniformly);
* *series runs* are array arithmetic: per run a number of parts (geometric stops), per gap an interlude
  (one of the series' hubs, a free-pick slot or nothing); a hub a user already met is dropped;
* *blocks* (single picks and runs) are shuffled per user with one stable sort on ``user + random key``,
  the run a user is caught in when the log ends sorted last.

History lengths are long-tailed (lognormal) and scaled so that they sum to ``n_interactions`` exactly;
each user's history is then filled to its length, so the total is exact. Users are generated in
chunks of about ``CHUNK_ROWS`` interactions, each from its own generator seeded by (seed, chunk), so
memory is that of one chunk plus the catalogue and the per-user lengths.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import polars as pl

from seqrec.data.synthetic.story import (
    _ROMAN,
    _SUBTITLES,
    _T0,
    _T1,
    GENRES,
    _genre_names,
    _titles,
    _topk_gumbel,
    _zipf,
)
from seqrec.errors import MAX_SEED, SeqrecError

CHUNK_ROWS = 2_000_000  # interactions per chunk of users
P_CONTINUE, P_HUB, P_OTHER, P_END_IN_SERIES = 0.85, 0.55, 0.15, 0.65
CURIOSITY = 0.04  # affinity every user has for every film, beside their genres
_HOUR, _DAY = 3600.0, 86400.0


@dataclass
class Layout:
    """The catalogue's arrays, internal item index: series parts (series by series), hubs, other films."""

    n_items: int
    n_series_items: int
    n_parts: np.ndarray  # [S]
    series_start: np.ndarray  # [S] first part's index
    series_hubs: np.ndarray  # [S, 3] hub item indices, the first n_tied of each row used
    n_tied: np.ndarray  # [S]
    free_cdf: np.ndarray  # [(G + 1) * F] component c's CDF over free films, plus c (so rising overall)
    free_mass: np.ndarray  # [G + 1] each component's unnormalised mass
    series_cdf: np.ndarray  # [(G + 1) * S] the same over series
    series_mass: np.ndarray  # [G + 1]
    log_gw: np.ndarray  # [G] log genre frequency
    raw_of: np.ndarray  # [n_items] internal index -> raw id
    catalog: pl.DataFrame


def _draw_genres(rng: np.random.Generator, n: int, log_gw: np.ndarray) -> np.ndarray:
    """[n, G] 0/1 membership, 1-3 genres each, common genres more likely."""
    g = len(log_gw)
    order = _topk_gumbel(rng, np.broadcast_to(log_gw, (n, g)), min(3, g))
    k = np.minimum(rng.choice([1, 2, 3], size=n, p=[0.45, 0.4, 0.15]), order.shape[1])
    member = np.zeros((n, g), dtype=np.float64)
    rows = np.repeat(np.arange(n), k)
    member[rows, order[rows, np.arange(len(rows)) - np.repeat(np.cumsum(k) - k, k)]] = 1.0
    return member


def _cdfs(pop: np.ndarray, member: np.ndarray, curiosity: float) -> tuple[np.ndarray, np.ndarray]:
    """Component 0: popularity x curiosity; component g: popularity x membership / genres of the film.
    Each normalised CDF is offset by its component's index, so one searchsorted serves them all."""
    weights = np.concatenate([curiosity * pop[None, :], (pop / np.maximum(member.sum(1), 1.0))[None, :] * member.T])
    mass = weights.sum(axis=1)
    weights[mass == 0] = pop  # a genre without films falls back to popularity
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return (cdf + np.arange(len(cdf))[:, None]).ravel(), mass


def layout(
    seed: int, n_items: int, n_genres: int = len(GENRES), series_share: float = 0.1, zipf_exponent: float = 1.0
) -> Layout:
    """The catalogue of ``n_items`` films: about ``series_share x n_items`` series, a hub per five series."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise SeqrecError(f"synthetic: seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    rng = np.random.default_rng([seed, 0])
    n_series = int(n_items * series_share)
    n_hubs = n_series // 5
    n_parts = rng.integers(3, 7, size=n_series)
    n_series_items = int(n_parts.sum())
    n_free = n_items - n_series_items
    if n_free < max(2 * n_hubs, 20):
        raise SeqrecError(
            f"synthetic: --items {n_items} is too few: {n_series_items} go to series, leaving "
            f"{n_free} films; use at least 100 items"
        )
    series_start = (np.cumsum(n_parts) - n_parts).astype(np.int64)
    genre_w = 1.0 / (np.arange(n_genres) + 1.0) ** 0.6
    log_gw = np.log(genre_w / genre_w.sum())
    series_genres = _draw_genres(rng, n_series, log_gw)
    free_genres = _draw_genres(rng, n_free, log_gw)

    free_pop = (np.arange(n_free) + 3.0) ** -zipf_exponent
    hub_ranks = np.sort(rng.choice(min(n_free, 4 * n_hubs + 20), size=n_hubs, replace=False))
    rest = np.setdiff1d(np.arange(n_free), hub_ranks)
    free_pop = np.concatenate([free_pop[hub_ranks], free_pop[rest[rng.permutation(len(rest))]]])
    free_pop /= free_pop.sum()
    series_pop = _zipf(rng, n_series, 0.8 * zipf_exponent, shift=5.0) if n_series else np.zeros(0)

    hub_items = n_series_items + np.arange(n_hubs)
    if n_hubs:
        overlap = series_genres @ free_genres[:n_hubs].T  # [S, H]
        n_tied = np.minimum(rng.integers(2, 4, size=n_series), n_hubs)
        series_hubs = hub_items[_topk_gumbel(rng, np.log(0.15 + overlap), min(3, n_hubs))]
    else:
        n_tied, series_hubs = np.zeros(n_series, np.int64), np.zeros((n_series, 1), np.int64)
    free_cdf, free_mass = _cdfs(free_pop, free_genres, CURIOSITY)
    series_cdf, series_mass = _cdfs(series_pop, series_genres, CURIOSITY / 2) if n_series else (np.zeros(0),) * 2
    raw_of = rng.permutation(n_items).astype(np.int64) + 1
    catalog = _catalog(
        rng,
        n_parts,
        series_start,
        np.concatenate([series_genres[np.repeat(np.arange(n_series), n_parts)], free_genres]),
        n_genres,
        raw_of,
    )
    return Layout(
        n_items,
        n_series_items,
        n_parts,
        series_start,
        series_hubs,
        n_tied,
        free_cdf,
        free_mass,
        series_cdf,
        series_mass,
        log_gw,
        raw_of,
        catalog,
    )


def _catalog(
    rng: np.random.Generator,
    n_parts: np.ndarray,
    series_start: np.ndarray,
    item_genres: np.ndarray,
    n_genres: int,
    raw_of: np.ndarray,
) -> pl.DataFrame:
    n_items, n_series = len(item_genres), len(n_parts)
    n_series_items = int(n_parts.sum())
    base = _titles(rng, n_series + n_items - n_series_items)
    series_of_part = np.repeat(np.arange(n_series), n_parts)
    part = np.arange(n_series_items) - series_start[series_of_part]
    sub = rng.integers(0, len(_SUBTITLES), size=n_series_items)
    series_titles = [
        base[s] if k == 0 else f"{base[s]} {_ROMAN[k + 1]}: {_SUBTITLES[j]}"
        for s, k, j in zip(series_of_part.tolist(), part.tolist(), sub.tolist())
    ]
    first_year = rng.integers(1970, 2011, size=n_series)
    gap = rng.integers(2, 5, size=n_series_items)
    gap[series_start] = 0
    cum = np.cumsum(gap)
    series_years = np.repeat(first_year, n_parts) + cum - np.repeat(cum[series_start], n_parts) if n_series else gap
    free_years = 1970 + np.floor(55 * rng.beta(2.0, 1.3, size=n_items - n_series_items)).astype(np.int64)
    rows, cols = np.nonzero(item_genres)
    names = pl.Series(np.asarray(_genre_names(n_genres), dtype=object)[cols].tolist(), dtype=pl.String)
    genres = pl.DataFrame({"row": rows, "g": names}).group_by("row", maintain_order=True).agg("g")["g"]
    return pl.DataFrame(
        {
            "raw_id": raw_of,
            "title": series_titles + base[n_series:],
            "genres": genres,
            "year": np.minimum(np.concatenate([series_years, free_years]), 2024).astype(np.int64),
        },
        schema={"raw_id": pl.Int64, "title": pl.String, "genres": pl.List(pl.String), "year": pl.Int64},
    ).sort("raw_id")


def lengths_for(rng: np.random.Generator, n_users: int, total: int, min_length: int, max_length: int) -> np.ndarray:
    """Long-tailed history lengths in [min_length, max_length] summing to ``total`` exactly."""
    if not n_users * min_length <= total <= n_users * max_length:
        raise SeqrecError(
            f"synthetic: --interactions {total:,} must be between {min_length} and {max_length:,} "
            f"per user ({n_users * min_length:,} .. {n_users * max_length:,} for {n_users:,} users)"
        )
    raw = rng.lognormal(0.0, 1.1, size=n_users)
    span, extra = max_length - min_length, total - n_users * min_length
    scale = extra / raw.sum()
    for _ in range(50):  # clipping at the top loses mass: scale up until the sum is about right
        got = np.minimum(np.floor(raw * scale), span)
        if abs(got.sum() - extra) <= n_users or got.sum() == span * n_users:
            break
        scale *= extra / max(got.sum(), 1.0)
    got = got.astype(np.int64)
    diff = int(extra - got.sum())  # the rounding: +-1 on random users with room
    step = 1 if diff > 0 else -1
    while diff:
        room = np.flatnonzero(got < span) if step > 0 else np.flatnonzero(got > 0)
        pick = rng.choice(room, size=min(abs(diff), len(room)), replace=False)
        got[pick] += step
        diff -= step * len(pick)
    return min_length + got


def _mixture(
    rng: np.random.Generator, who: np.ndarray, comp: np.ndarray, cum_w: np.ndarray, cdf: np.ndarray, n: int
) -> np.ndarray:
    """One draw per entry of ``who`` (local user): a component by the user's cumulative weights, then an
    index in 0..n-1 by that component's CDF."""
    r = rng.random(len(who)) * cum_w[who, -1]
    k = (cum_w[who, :-1] <= r[:, None]).sum(axis=1)
    c = comp[who, k]
    idx = np.searchsorted(cdf, c + rng.random(len(who)), side="right") - c * n
    return np.minimum(idx, n - 1)


def _first_per_user(keys: np.ndarray, fixed: int, users: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Positions (>= fixed, in order) of new keys not seen before in ``keys``, at most ``want[u]`` per user.
    ``keys[:fixed]`` are kept ones; ``keys[fixed:]`` are grouped by user, ``users`` their users."""
    _, first = np.unique(keys, return_index=True)
    pos = np.sort(first[first >= fixed]) - fixed
    u = users[pos]
    rank = np.arange(len(pos)) - np.searchsorted(u, u, side="left")
    return pos[rank < want[u]]


def _chunk(lay: Layout, rng: np.random.Generator, lengths: np.ndarray, user0: int) -> pl.DataFrame:
    n = len(lengths)
    n_free, n_series = lay.n_items - lay.n_series_items, len(lay.n_parts)
    g = len(lay.log_gw)
    # users: 1-3 interest genres with Dirichlet weights, plus curiosity; mixture components 0 and 1 + genre
    interest = _topk_gumbel(rng, np.broadcast_to(lay.log_gw, (n, g)), min(3, g))
    k_int = np.minimum(rng.choice([1, 2, 3], size=n, p=[0.3, 0.45, 0.25]), interest.shape[1])
    w = rng.dirichlet(np.ones(interest.shape[1]), size=n) * (np.arange(interest.shape[1]) < k_int[:, None])
    w /= w.sum(axis=1, keepdims=True)
    comp = np.concatenate([np.zeros((n, 1), np.int64), 1 + interest], axis=1)

    def weights(mass: np.ndarray) -> np.ndarray:
        return np.cumsum(np.concatenate([np.full((n, 1), mass[0]), w * mass[1 + interest]], axis=1), axis=1)

    free_w = weights(lay.free_mass)
    # ------------------------------------------------------------ series runs
    if n_series:
        want = np.minimum(rng.poisson(lengths * 0.45 / 6.0), n_series)
        ends = rng.random(n) < P_END_IN_SERIES
        want = np.maximum(want, ends)
        who = np.repeat(np.arange(n), want + want // 2 + 2)
        cand = _mixture(rng, who, comp, weights(lay.series_mass), lay.series_cdf, n_series)
        keep = _first_per_user(who * n_series + cand, 0, who, want)
        run_user, run_series = who[keep], cand[keep]
    else:
        run_user = run_series = np.zeros(0, np.int64)
        ends = np.zeros(n, bool)
    n_runs = len(run_user)
    first_run = np.ones(n_runs, bool)
    first_run[1:] = run_user[1:] != run_user[:-1]
    parts = lay.n_parts[run_series]
    k = 1 + np.minimum(rng.geometric(1.0 - P_CONTINUE, size=n_runs) - 1, parts - 1)
    ending = first_run & ends[run_user]
    k = np.where(ending, np.maximum(k, 2), k)
    slots = 2 * k - 1  # part, gap, part, ..., part
    slot_run = np.repeat(np.arange(n_runs), slots)
    pos = np.arange(len(slot_run)) - np.repeat(np.cumsum(slots) - slots, slots)
    s = run_series[slot_run]
    item = lay.series_start[s] + pos // 2
    gap = pos % 2 == 1
    r = rng.random(len(slot_run))
    hub = gap & (r < P_HUB) & (lay.n_tied[s] > 0)
    tie = np.minimum((rng.random(len(slot_run)) * lay.n_tied[s]).astype(np.int64), lay.series_hubs.shape[1] - 1)
    item = np.where(hub, lay.series_hubs[s, tie], item)
    item = np.where(gap & ~hub, np.where((r >= P_HUB) & (r < P_HUB + P_OTHER), -1, -2), item)
    slot_user = run_user[slot_run]
    is_hub = np.flatnonzero(hub)
    _, once = np.unique(slot_user[is_hub] * lay.n_items + item[is_hub], return_index=True)
    item[np.setdiff1d(is_hub, is_hub[once])] = -2  # a hub the user met in an earlier run
    live = item != -2
    slot_run, slot_user, item = slot_run[live], slot_user[live], item[live]
    # the runs that fit each user's budget (length - 1: at least one single pick), in order
    size = np.bincount(slot_run, minlength=n_runs)
    cum = np.cumsum(size)
    run_start = np.flatnonzero(first_run)  # each user's first run
    cum_user = cum - np.repeat((cum - size)[run_start], np.diff(np.append(run_start, n_runs)))
    fits = cum_user <= lengths[run_user] - 1
    live = fits[slot_run]
    slot_run, slot_user, item = slot_run[live], slot_user[live], item[live]
    placeholders = np.flatnonzero(item == -1)
    used = np.bincount(slot_user, minlength=n)
    need = lengths - used + np.bincount(slot_user[placeholders], minlength=n)
    # ------------------------------------------------------------ free picks: distinct, not a hub the user met
    hubs_met = slot_user * lay.n_items + item
    hubs_met = hubs_met[item >= lay.n_series_items]
    got_user, got_item = np.zeros(0, np.int64), np.zeros(0, np.int64)
    deficit = need.copy()
    for round_ in range(12):
        short = np.flatnonzero(deficit > 0)
        if len(short) == 0:
            break
        draws = np.ceil(deficit[short] * (1.3 if round_ == 0 else 2.0)).astype(np.int64) + 2
        who = np.repeat(short, draws)
        cand = (
            _mixture(rng, who, comp, free_w, lay.free_cdf, n_free)
            if round_ < 10
            else rng.integers(0, n_free, size=len(who))
        ) + lay.n_series_items
        mine = deficit > 0
        kept = np.concatenate(
            [hubs_met[mine[hubs_met // lay.n_items]], (got_user * lay.n_items + got_item)[mine[got_user]]]
        )
        take = _first_per_user(np.concatenate([kept, who * lay.n_items + cand]), len(kept), who, deficit)
        got_user, got_item = np.concatenate([got_user, who[take]]), np.concatenate([got_item, cand[take]])
        deficit -= np.bincount(who[take], minlength=n)
    order = np.argsort(got_user, kind="stable")
    got_user, got_item = got_user[order], got_item[order]
    rank = np.arange(len(got_user)) - np.searchsorted(got_user, got_user, side="left")
    singles = lengths - used  # the first picks of each user are single blocks, the rest fill the slots
    single = rank < singles[got_user]
    filler = got_item[~single]  # grouped by user, as the placeholders are
    if deficit.any() or len(filler) != len(placeholders):
        raise SeqrecError(
            f"synthetic: {int(deficit.max())} films short for a history; raise --items or lower the longest history"
        )
    item[placeholders] = filler
    # ------------------------------------------------------------ blocks shuffled per user, elements in order
    run_key = np.where(ending & fits, 2.0, rng.random(n_runs))
    el_user = np.concatenate([got_user[single], slot_user])
    el_item = np.concatenate([got_item[single], item])
    el_key = np.concatenate([rng.random(int(single.sum())), run_key[slot_run]])
    order = np.argsort(el_user * 4.0 + el_key, kind="stable")
    el_user, el_item, el_key = el_user[order], el_item[order], el_key[order]
    new_block = np.ones(len(el_user), bool)
    new_block[1:] = (el_user[1:] != el_user[:-1]) | (el_key[1:] != el_key[:-1])
    # ------------------------------------------------------------ timestamps
    counts = np.bincount(el_user, minlength=n)
    day = 3 * _DAY * np.minimum(1.0, 200.0 / np.maximum(counts, 1))[el_user]
    gaps = 60 + np.where(
        new_block, rng.exponential(1.0, len(el_user)) * day, rng.exponential(8 * _HOUR, len(el_user))
    ).astype(np.int64)
    starts = np.cumsum(counts) - counts  # every user has at least one interaction
    gaps[starts] = rng.integers(_T0, _T1, size=n)
    cum = np.cumsum(gaps)
    ts = cum - np.repeat(cum[starts] - gaps[starts], counts)
    return pl.DataFrame(
        {"user": el_user + user0 + 1, "item": lay.raw_of[el_item], "timestamp": ts},
        schema={"user": pl.Int64, "item": pl.Int64, "timestamp": pl.Int64},
    )


def iter_chunks(
    n_users: int,
    n_items: int,
    n_interactions: int,
    seed: int = 0,
    *,
    min_length: int = 5,
    max_length: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    lay: Layout | None = None,
) -> Iterator[pl.DataFrame]:
    """The interactions (``user``, ``item``, ``timestamp``; sorted by user and time) a chunk of users at a time."""
    if n_users < 1 or n_items < 1:
        raise SeqrecError(f"synthetic: --users and --items must be >= 1, got {n_users} and {n_items}")
    lay = lay or layout(seed, n_items)
    n_free = n_items - lay.n_series_items
    if max_length is None:
        max_length = max(min_length, min(n_free // 3, 20 * -(-n_interactions // n_users)))
    lengths = lengths_for(np.random.default_rng([seed, 1]), n_users, n_interactions, min_length, max_length)
    bounds = np.searchsorted(np.cumsum(lengths), np.arange(chunk_rows, n_interactions, chunk_rows))
    edges = [0, *sorted(set((bounds + 1).tolist()) - {0, n_users}), n_users]
    for c, (a, b) in enumerate(pairwise(edges)):
        yield _chunk(lay, np.random.default_rng([seed, 2, c]), lengths[a:b], a)


def generate_large(
    n_users: int, n_items: int, n_interactions: int, seed: int = 0, **kwargs
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(interactions, catalog)`` in memory, in the form of ``seqrec.data.synthetic.story.generate``."""
    lay = layout(seed, n_items)
    frames = list(iter_chunks(n_users, n_items, n_interactions, seed, lay=lay, **kwargs))
    return pl.concat(frames), lay.catalog
