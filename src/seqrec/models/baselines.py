"""Non-neural baselines, fitted on the training part of a leave-one-out split, each a ``Scorer``.

* ``Popularity``: the training count of each item.
* ``Genre``: the user's genre profile (genre shares over the history) dotted with each item's
  genre vector (its genres, summing to 1), plus a small popularity term that orders items within
  a genre mix.
* ``Markov`` (AR-1): transition counts last -> next from consecutive training pairs, the last
  history item's row scaled to [0, 1] by its maximum, plus ``eps`` x popularity (scaled to
  [0, 1]) so unseen transitions fall back to popularity order.
* ``AR2``: transitions from the last two items, (a, b) -> next. Lexicographic back-off: scaled
  pair counts (weight 1), then AR-1 (1e-3), then popularity (1e-6).
* ``Hybrid``: alpha x AR-1 + (1 - alpha) x popularity (each scaled to [0, 1]); alpha is tuned on
  the validation split over a grid by NDCG@10 with the full evaluator.

All scores are float32 [B, n_items + 1]; column 0 (PAD) is ignored by every consumer.

Memory: counts stay sparse. Fitting reads the training sequences a block of users at a time
(``Segments.blocks``), counts each block's (row, next item) pairs as int64 keys with ``np.unique`` and
merges them into the sorted keys so far, and builds the CSR matrix from the merged keys; scoring adds a
batch's sparse rows into its dense scores a bounded number of stored entries at a time. Each baseline's
``memory_bytes()`` says what it holds and what it needs per history scored, which the evaluator's
``memory_budget`` accounts for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from seqrec.data.dataset import PAD
from seqrec.data.split import Segments, Split
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, Scorer, evaluate


# --------------------------------------------------------------------------- helpers
def _scaled(values: np.ndarray) -> np.ndarray:
    """Values divided by their maximum (all zeros stay zeros), float32."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max() if values.size else 0.0
    return (values / top if top > 0 else values).astype(np.float32)


_PIECE = 1 << 20  # stored entries added into scores at a time (about 30 MB of temporaries)
_PIECE_BYTES = 32  # temporaries per such entry: position, flat index, column, value


def _grams(segs: Segments, order: int) -> Iterator[tuple[np.ndarray, ...]]:
    """All runs of ``order + 1`` consecutive items inside one training sequence, as int64 columns, one
    block of sequences at a time."""
    for block in segs.blocks():
        rows, items = segs.subset(block).flat()
        items = items.astype(np.int64)
        n = len(items) - order
        if n <= 0:
            continue
        same = rows[order:] == rows[:n]  # rows are sorted, so the items between share the row too
        del rows
        yield tuple(items[j : j + n][same] for j in range(order + 1))


def _key_counts(blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct int64 keys over all blocks (sorted) and how often each occurs (int64)."""
    keys, counts = np.empty(0, np.int64), np.empty(0, np.int64)
    for block in blocks:
        k, c = np.unique(block, return_counts=True)
        if len(keys) == 0:
            keys, counts = k, c
            continue
        pos = np.searchsorted(keys, k)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == k[found]
        counts[pos[found]] += c[found]  # the keys of one block are distinct
        new = ~found
        keys, counts = np.insert(keys, pos[new], k[new]), np.insert(counts, pos[new], c[new])
    return keys, counts


def _count_matrix(keys: np.ndarray, counts: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """CSR of the sorted keys ``row * n_cols + col`` with their counts, each row scaled to [0, 1] by its
    maximum; float32 data, int32 column indices."""
    rows = keys // n_cols
    lengths = np.bincount(rows, minlength=n_rows)
    index = np.int32 if len(keys) < 2**31 else np.int64
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index)
    cols = (keys - rows * n_cols).astype(np.int32)
    del rows
    data = counts.astype(np.float32)
    if len(data):
        filled = lengths > 0
        row_max = np.maximum.reduceat(data, indptr[:-1][filled].astype(np.int64))
        data /= np.repeat(row_max, lengths[filled])
    return sp.csr_matrix((data, cols, indptr), shape=(n_rows, n_cols), copy=False)


def _sparse_bytes(m: sp.csr_matrix | None) -> int:
    return 0 if m is None else m.data.nbytes + m.indices.nbytes + m.indptr.nbytes


def _add_rows(
    out: torch.Tensor, matrix: sp.csr_matrix, row_ids: np.ndarray, weight: float, where: np.ndarray | None = None
) -> None:
    """``out[b] += weight * matrix[row_ids[b]]`` for the batch rows ``where`` (default all), vectorised,
    at most ``_PIECE`` stored entries at a time."""
    batch = np.arange(len(row_ids)) if where is None else np.flatnonzero(where)
    if len(batch) == 0:
        return
    picked = row_ids[batch]
    starts = matrix.indptr[picked].astype(np.int64)
    entries = Segments(matrix.indices, starts, matrix.indptr[picked + 1].astype(np.int64))
    flat_out, width = out.view(-1), out.shape[1]
    for piece in entries.blocks(_PIECE):
        part = entries.subset(piece)
        lengths = part.lengths
        rows = np.repeat(batch[piece], lengths)
        pos = np.arange(len(rows)) + np.repeat(part.starts - (np.cumsum(lengths) - lengths), lengths)
        index = rows * width + matrix.indices[pos]
        flat_out.index_add_(0, torch.from_numpy(index), torch.from_numpy(matrix.data[pos] * weight))


class _Baseline:
    """Shared plumbing: item count, training popularity, fitted check."""

    max_len = 1
    name = "baseline"

    def __init__(self, n_items: int) -> None:
        if int(n_items) < 1:
            raise SeqrecError(f"n_items must be positive, got {n_items}")
        self.n_items = int(n_items)
        self.popularity: np.ndarray | None = None  # scaled training counts, float32 [n_items + 1]
        self.counts: np.ndarray | None = None

    def _fit_popularity(self, loo: Split) -> Segments:
        if loo.data.n_items != self.n_items:
            raise SeqrecError(f"{self.name} was built for {self.n_items} items but the data set has {loo.data.n_items}")
        train = loo.train()
        self.counts = train.counts(self.n_items).astype(np.float32)
        self.counts[PAD] = 0
        self.popularity = _scaled(self.counts)
        return train

    def _check(self, histories: torch.Tensor) -> np.ndarray:
        if self.popularity is None:
            raise SeqrecError(f"{self.name} baseline is not fitted; call fit(loo) first")
        if histories.dim() != 2:
            raise SeqrecError(f"histories must be [batch, length], got shape {tuple(histories.shape)}")
        return histories.detach().cpu().numpy().astype(np.int64)

    def memory_bytes(self) -> tuple[int, int]:
        """(bytes this scorer holds, bytes it needs per history scored: its float32 score row)."""
        held = sum(a.nbytes for a in (self.counts, self.popularity) if a is not None)
        return held + self._held(), 4 * (self.n_items + 1) + 8 * self.max_len

    def _held(self) -> int:
        return 0

    def _base(self, batch: int, weight: float) -> torch.Tensor:
        assert self.popularity is not None, "fit first"
        pop = torch.from_numpy(self.popularity * np.float32(weight))
        return pop.unsqueeze(0).repeat(batch, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_items={self.n_items})"


def _last(h: np.ndarray, back: int = 1) -> np.ndarray:
    """The item ``back`` places from the end of each left-padded row (PAD when too short)."""
    if h.shape[1] < back:
        return np.zeros(len(h), dtype=np.int64)
    return h[:, -back]


# --------------------------------------------------------------------------- models
class Popularity(_Baseline):
    """Score = the item's training count."""

    name = "popularity"

    def fit(self, loo: Split) -> Popularity:
        self._fit_popularity(loo)
        return self

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        self._check(histories)
        return torch.from_numpy(self.counts).unsqueeze(0).repeat(len(histories), 1).to(histories.device)


class Markov(_Baseline):
    """AR-1: scaled transition counts from the last item, plus ``eps`` x scaled popularity."""

    name = "markov"

    def __init__(self, n_items: int, eps: float = 1e-3) -> None:
        super().__init__(n_items)
        self.eps = float(eps)
        self.transitions: sp.csr_matrix | None = None

    def fit(self, loo: Split) -> Markov:
        train = self._fit_popularity(loo)
        width = self.n_items + 1
        keys, counts = _key_counts(prev * width + nxt for prev, nxt in _grams(train, 1))
        self.transitions = _count_matrix(keys, counts, width, width)
        return self

    def _held(self) -> int:
        nnz = 0 if self.transitions is None else self.transitions.nnz
        return _sparse_bytes(self.transitions) + _PIECE_BYTES * min(_PIECE, nnz)

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = self._check(histories)
        out = self._base(len(h), self.eps)
        _add_rows(out, self.transitions, _last(h), 1.0)
        return out.to(histories.device)


class AR2(_Baseline):
    """Second-order transitions (a, b) -> next, backing off to AR-1 and then popularity."""

    name = "ar2"
    max_len = 2
    weights = (1.0, 1e-3, 1e-6)  # pair counts, AR-1, popularity: each scaled to [0, 1]

    def __init__(self, n_items: int) -> None:
        super().__init__(n_items)
        self.markov = Markov(n_items)
        self.pair_keys: np.ndarray | None = None  # sorted a * (n_items + 1) + b
        self.pairs: sp.csr_matrix | None = None  # one row per pair key

    def fit(self, loo: Split) -> AR2:
        train = self._fit_popularity(loo)
        self.markov.fit(loo)
        width = self.n_items + 1
        self.pair_keys, _ = _key_counts(a * width + b for a, b, _ in _grams(train, 2))
        keys, counts = _key_counts(
            np.searchsorted(self.pair_keys, a * width + b) * width + c for a, b, c in _grams(train, 2)
        )
        self.pairs = _count_matrix(keys, counts, len(self.pair_keys), width)
        return self

    def _held(self) -> int:
        keys = 0 if self.pair_keys is None else self.pair_keys.nbytes
        return self.markov.memory_bytes()[0] + _sparse_bytes(self.pairs) + keys

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = self._check(histories)
        w_pair, w_ar1, w_pop = self.weights
        out = self._base(len(h), w_pop)
        last = _last(h)
        _add_rows(out, self.markov.transitions, last, w_ar1)
        keys = _last(h, 2) * (self.n_items + 1) + last
        pair_keys = self.pair_keys
        assert pair_keys is not None, "fit first"
        pos = np.minimum(np.searchsorted(pair_keys, keys), max(len(pair_keys) - 1, 0))
        found = (pair_keys[pos] == keys) if len(pair_keys) else np.zeros(len(keys), bool)
        _add_rows(out, self.pairs, pos, w_pair, where=found)
        return out.to(histories.device)


class Hybrid(_Baseline):
    """alpha x AR-1 + (1 - alpha) x popularity, alpha tuned on validation NDCG@10."""

    name = "hybrid"
    GRID = tuple(round(0.1 * i, 1) for i in range(11))

    def __init__(
        self,
        n_items: int,
        grid: tuple[float, ...] = GRID,
        alpha: float | None = None,
        tune_users: int | None = 5000,
        seed: int = 0,
    ) -> None:
        super().__init__(n_items)
        if not grid or any(not 0.0 <= float(a) <= 1.0 for a in grid):
            raise SeqrecError(f"hybrid grid values must lie in [0, 1], got {grid!r}")
        if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
            raise SeqrecError(f"hybrid alpha must lie in [0, 1], got {alpha!r}")
        self.grid = tuple(float(a) for a in grid)
        self.alpha = None if alpha is None else float(alpha)
        self.fixed_alpha = alpha is not None
        self.tune_users = tune_users
        self.seed = seed
        self.markov = Markov(n_items, eps=0.0)
        self.tuning: dict[float, float] = {}  # alpha -> validation NDCG@10

    def fit(self, loo: Split) -> Hybrid:
        self._fit_popularity(loo)
        self.markov.fit(loo)
        if self.fixed_alpha:
            return self
        config = EvalConfig(split="valid", ks=(10,), max_users=self.tune_users, seed=self.seed)
        self.tuning = {}
        for a in self.grid:
            self.alpha = a
            self.tuning[a] = evaluate(self, loo, config)["NDCG@10"]
        self.alpha = max(self.grid, key=lambda a: self.tuning[a])  # first best on ties
        return self

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = self._check(histories)
        if self.alpha is None:
            raise SeqrecError("hybrid baseline is not fitted; call fit(loo) first")
        out = self._base(len(h), 1.0 - self.alpha)
        _add_rows(out, self.markov.transitions, _last(h), self.alpha)
        return out.to(histories.device)

    def _held(self) -> int:
        return self.markov.memory_bytes()[0]

    def __repr__(self) -> str:
        return f"Hybrid(n_items={self.n_items}, alpha={self.alpha})"


class Genre(_Baseline):
    """Genre profile of the history dotted with item genre vectors, plus a small popularity term."""

    name = "genre"

    def __init__(self, n_items: int, max_len: int = 200, pop_weight: float = 1e-3) -> None:
        super().__init__(n_items)
        if int(max_len) < 1:
            raise SeqrecError(f"genre max_len must be positive, got {max_len}")
        self.max_len = int(max_len)
        self.pop_weight = float(pop_weight)
        self.genres: list[str] = []
        self.item_genres: torch.Tensor | None = None  # multi-hot [n_items + 1, G]
        self.item_share: torch.Tensor | None = None  # 1 / the item's number of genres (0 without genres)

    def fit(self, loo: Split) -> Genre:
        self._fit_popularity(loo)
        catalog = loo.data.catalog
        name = loo.data.meta.get("name", "data set")
        if "genres" not in catalog.columns:
            raise SeqrecError(f"genre baseline needs item genres; the catalogue of {name} has no genres column")
        pairs = catalog.select("item", "genres").explode("genres").drop_nulls("genres")
        pairs = pairs.filter(pairs["genres"].str.len_chars() > 0)
        if pairs.height == 0:
            raise SeqrecError(f"genre baseline needs item genres; no item of {name} has any")
        genres, col = np.unique(np.asarray(pairs["genres"].to_list(), dtype=str), return_inverse=True)
        self.genres = genres.tolist()
        multi = np.zeros((self.n_items + 1, len(self.genres)), dtype=np.float32)
        multi[pairs["item"].to_numpy().astype(np.int64), col.ravel()] = 1.0
        multi[PAD] = 0.0
        per_item = multi.sum(1)
        self.item_genres = torch.from_numpy(multi)
        self.item_share = torch.from_numpy(np.divide(1.0, per_item, out=np.zeros_like(per_item), where=per_item > 0))
        return self

    def memory_bytes(self) -> tuple[int, int]:
        """The genre matrices besides the popularity; per history the score row and the history's genre rows."""
        held, per_row = super().memory_bytes()
        return held, per_row + 4 * self.max_len * max(len(self.genres), 1)

    def _held(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.item_genres, self.item_share) if t is not None)

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = self._check(histories)[:, -self.max_len :]  # the last max_len items, like every scorer
        # profile share of genre g x the item's share of g, summed over g = (the history's count of the item's
        # genres) / (the history's genre count x the item's genre count): whole numbers multiplied, so the
        # product is exact and a history scores the same whichever rows it is scored with
        genres, share, popularity = self.item_genres, self.item_share, self.popularity
        assert genres is not None and share is not None and popularity is not None, "fit first"
        counts = genres[torch.from_numpy(h)].sum(1)  # [B, G] genre counts; PAD row is all zeros
        total = counts.sum(1, keepdim=True)
        out = (counts @ genres.T).div_(total.clamp_min(1)).mul_(share)
        out += torch.from_numpy(popularity * np.float32(self.pop_weight))
        return out.to(histories.device)


_FACTORIES = {"popularity": Popularity, "genre": Genre, "markov": Markov, "ar2": AR2, "hybrid": Hybrid}
BASELINES = tuple(_FACTORIES)  # the names, in this order


def make_baseline(name: str, loo: Split) -> Scorer:
    """A baseline by name, fitted on ``loo``'s training data."""
    key = str(name).strip().lower()
    if key not in _FACTORIES:
        raise SeqrecError(f"unknown baseline {name!r}; valid names: {', '.join(BASELINES)}")
    return _FACTORIES[key](loo.data.n_items).fit(loo)
