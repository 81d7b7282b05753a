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
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from seqrec.data import PAD
from seqrec.errors import SeqrecError
from seqrec.evaluate import EvalConfig, Scorer, evaluate
from seqrec.split import LeaveOneOut, Segments


# --------------------------------------------------------------------------- helpers
def _scaled(values: np.ndarray) -> np.ndarray:
    """Values divided by their maximum (all zeros stay zeros), float32."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max() if values.size else 0.0
    return (values / top if top > 0 else values).astype(np.float32)


def _grams(segs: Segments, order: int) -> tuple[np.ndarray, ...]:
    """All runs of ``order + 1`` consecutive items inside one training sequence, as columns."""
    rows, items = segs.flat()
    items = items.astype(np.int64)
    n = len(items) - order
    if n <= 0:
        return tuple(np.empty(0, np.int64) for _ in range(order + 1))
    same = rows[order:] == rows[:n]  # rows are sorted, so the items between share the row too
    return tuple(items[j : j + n][same] for j in range(order + 1))


def _count_matrix(row_ids: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """Counts of (row, col) pairs, each row scaled to [0, 1] by its maximum; float32 CSR."""
    m = sp.csr_matrix(
        (np.ones(len(row_ids), np.float32), (row_ids, cols)), shape=(n_rows, n_cols), dtype=np.float32
    )
    m.sum_duplicates()
    if m.nnz:
        row_max = np.maximum.reduceat(m.data, m.indptr[:-1][np.diff(m.indptr) > 0])
        m.data /= np.repeat(row_max, np.diff(m.indptr)[np.diff(m.indptr) > 0])
    return m


def _add_rows(
    out: torch.Tensor, matrix: sp.csr_matrix, row_ids: np.ndarray, weight: float, where: np.ndarray | None = None
) -> None:
    """``out[b] += weight * matrix[row_ids[b]]`` for the batch rows ``where`` (default all), vectorised."""
    batch = np.arange(len(row_ids)) if where is None else np.flatnonzero(where)
    if len(batch) == 0:
        return
    sub = matrix[row_ids[batch]]
    rows = np.repeat(batch, np.diff(sub.indptr))
    out.index_put_(
        (torch.from_numpy(rows), torch.from_numpy(sub.indices.astype(np.int64))),
        torch.from_numpy(sub.data.astype(np.float32) * weight),
        accumulate=True,
    )


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

    def _fit_popularity(self, loo: LeaveOneOut) -> Segments:
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

    def _base(self, batch: int, weight: float) -> torch.Tensor:
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

    def fit(self, loo: LeaveOneOut) -> "Popularity":
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

    def fit(self, loo: LeaveOneOut) -> "Markov":
        train = self._fit_popularity(loo)
        prev, nxt = _grams(train, 1)
        self.transitions = _count_matrix(prev, nxt, self.n_items + 1, self.n_items + 1)
        return self

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

    def fit(self, loo: LeaveOneOut) -> "AR2":
        train = self._fit_popularity(loo)
        self.markov.fit(loo)
        a, b, c = _grams(train, 2)
        self.pair_keys, pair_id = np.unique(a * (self.n_items + 1) + b, return_inverse=True)
        self.pairs = _count_matrix(pair_id.ravel(), c, len(self.pair_keys), self.n_items + 1)
        return self

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = self._check(histories)
        w_pair, w_ar1, w_pop = self.weights
        out = self._base(len(h), w_pop)
        last = _last(h)
        _add_rows(out, self.markov.transitions, last, w_ar1)
        keys = _last(h, 2) * (self.n_items + 1) + last
        pos = np.minimum(np.searchsorted(self.pair_keys, keys), max(len(self.pair_keys) - 1, 0))
        found = (self.pair_keys[pos] == keys) if len(self.pair_keys) else np.zeros(len(keys), bool)
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

    def fit(self, loo: LeaveOneOut) -> "Hybrid":
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
        self.item_vectors: torch.Tensor | None = None  # rows sum to 1 (or 0 without genres)

    def fit(self, loo: LeaveOneOut) -> "Genre":
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
        per_item = multi.sum(1, keepdims=True)
        self.item_genres = torch.from_numpy(multi)
        self.item_vectors = torch.from_numpy(np.divide(multi, per_item, out=np.zeros_like(multi), where=per_item > 0))
        return self

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = self._check(histories)[:, -self.max_len :]  # the last max_len items, like every scorer
        profile = self.item_genres[torch.from_numpy(h)].sum(1)  # PAD row is all zeros
        total = profile.sum(1, keepdim=True)
        profile = torch.where(total > 0, profile / total.clamp_min(1e-12), profile)
        out = profile @ self.item_vectors.T
        out += torch.from_numpy(self.popularity * np.float32(self.pop_weight))
        return out.to(histories.device)


_FACTORIES = {"popularity": Popularity, "genre": Genre, "markov": Markov, "ar2": AR2, "hybrid": Hybrid}
BASELINES = tuple(_FACTORIES)  # the names, in this order


def make_baseline(name: str, loo: LeaveOneOut) -> Scorer:
    """A baseline by name, fitted on ``loo``'s training data."""
    key = str(name).strip().lower()
    if key not in _FACTORIES:
        raise SeqrecError(f"unknown baseline {name!r}; valid names: {', '.join(BASELINES)}")
    return _FACTORIES[key](loo.data.n_items).fit(loo)
