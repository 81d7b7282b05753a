import time

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.data.dataset import CleanConfig, Dataset
from seqrec.data.split import LeaveOneOut
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import Scorer, evaluate
from seqrec.models.baselines import AR2, BASELINES, Genre, Hybrid, Markov, Popularity, make_baseline


def hist(*rows, length=None):
    """Left-padded LongTensor from lists of item ids."""
    length = length or max(len(r) for r in rows)
    return torch.tensor([[0] * (length - len(r)) + list(r) for r in rows])


@pytest.fixture
def chains():
    # Users with 5 items train on their first 3; users with 1-2 items train on everything.
    # Raw ids 1..6 all occur, so internal ids equal raw ids.
    seqs = [[1, 2, 3, 6, 6], [4, 2, 5, 6, 6], [5], [5], [5], [1, 2]]
    return LeaveOneOut(Dataset.from_sequences(seqs))


def test_popularity_scores_training_counts(chains):
    m = Popularity(6).fit(chains)
    # training: [1,2,3], [4,2,5], [5], [5], [5], [1,2]  (item 6 only in held-out parts)
    assert m.score(hist([1], [])).tolist() == [[0, 2, 3, 1, 1, 4, 0]] * 2
    assert isinstance(m, Scorer) and m.n_items == 6


def test_markov_prefers_observed_successor_then_popularity(chains):
    m = Markov(6).fit(chains)
    s = m.score(hist([3, 1], [6], [4]))
    # after 1: only 2 was ever seen next
    assert int(s[0, 1:].argmax()) + 1 == 2
    # after 6 (no transitions): popularity order 5 > 2 > 1,3,4 > 6
    order = torch.argsort(s[1, 1:], descending=True) + 1
    assert order[:2].tolist() == [5, 2] and order[-1].item() == 6
    # after 4: successor 2 first, then popularity
    assert (torch.argsort(s[2, 1:], descending=True) + 1)[:2].tolist() == [2, 5]
    # the transition dominates the popularity term
    assert s[0, 2] > s[0, 5]


def test_ar2_distinguishes_pairs_where_ar1_cannot(chains):
    ar1, ar2 = Markov(6).fit(chains), AR2(6).fit(chains)
    h = hist([1, 2], [4, 2])
    s1, s2 = ar1.score(h), ar2.score(h)
    assert torch.equal(s1[0], s1[1])  # AR-1 only sees the last item, 2 (-> 3 once, -> 5 once)
    assert s2[0, 3] > s2[0, 5] and s2[1, 5] > s2[1, 3]
    assert int(s2[0, 1:].argmax()) + 1 == 3 and int(s2[1, 1:].argmax()) + 1 == 5


def test_ar2_backs_off_to_ar1_then_popularity(chains):
    m = AR2(6).fit(chains)
    s = m.score(hist([3, 2], [2, 6], [2], []))
    # unseen pair (3, 2): AR-1 row of 2 -> {3, 5}; 5 is more popular
    assert (torch.argsort(s[0, 1:], descending=True) + 1)[:2].tolist() == [5, 3]
    # unseen pair and no transitions from 6: popularity
    assert int(s[1, 1:].argmax()) + 1 == 5
    assert int(s[2, 1:].argmax()) + 1 == 5  # one item: (PAD, 2) never a pair -> AR-1 -> 5 (pop)
    assert int(s[3, 1:].argmax()) + 1 == 5  # empty history -> popularity
    assert m.max_len == 2


def test_hybrid_alpha_is_tuned_on_the_grid():
    rng = np.random.default_rng(0)
    # strong chains: item i is followed by i + 1 (mod 50), with a popular distractor
    seqs = []
    for _ in range(300):
        start = int(rng.integers(0, 50))
        seqs.append([(start + j) % 50 for j in range(6)] + [99])
    seqs += [[99]] * 50
    loo = LeaveOneOut(Dataset.from_sequences(seqs))
    m = Hybrid(loo.data.n_items).fit(loo)
    assert m.alpha in Hybrid.GRID and set(m.tuning) == set(Hybrid.GRID)
    assert m.tuning[m.alpha] == max(m.tuning.values())
    assert m.alpha > 0  # the chains beat popularity on validation
    fixed = Hybrid(loo.data.n_items, alpha=0.0).fit(loo)
    assert fixed.alpha == 0.0 and fixed.tuning == {}
    pop = make_baseline("popularity", loo)
    h = hist([3, 4], [10])

    def order(s):
        return torch.argsort(s[:, 1:], dim=1, stable=True)

    assert torch.equal(order(fixed.score(h)), order(pop.score(h)))
    with pytest.raises(SeqrecError):
        Hybrid(5, alpha=1.5)


def _genre_loo():
    frame = pl.DataFrame(
        {
            "user": [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3],
            "item": ["c1", "c2", "c1", "d1", "d1", "d2", "d1", "c3", "c3", "d1", "c2", "x"],
        }
    )
    catalog = pl.DataFrame(
        {
            "raw_id": ["c1", "c2", "c3", "d1", "d2", "x"],
            "genres": [["Comedy"], ["Comedy"], ["Comedy"], ["Drama"], ["Drama"], []],
        }
    )
    return LeaveOneOut(Dataset.from_interactions(frame, catalog=catalog, config=CleanConfig(k_core=0)))


def test_genre_profile_then_popularity():
    loo = _genre_loo()
    ids = {r: loo.data.item_ids.get(r) for r in ["c1", "c2", "c3", "d1", "d2", "x"]}
    m = Genre(loo.data.n_items).fit(loo)
    assert m.genres == ["Comedy", "Drama"]
    s = m.score(hist([ids["c1"], ids["c2"]], [ids["d2"]], [ids["x"]]))
    comedy, drama = [ids[i] for i in ("c1", "c2", "c3")], [ids["d1"], ids["d2"]]
    assert s[0, comedy].min() > s[0, drama].max() > 0
    assert s[1, drama].min() > s[1, comedy].max()
    # within a genre, popularity decides: training counts c1 1, c2 2, c3 1, d1 1, d2 0
    assert s[0, ids["c2"]] > s[0, ids["c1"]] and s[1, ids["d1"]] > s[1, ids["d2"]]
    # an item without genres, or a profile without genres, falls back to popularity
    assert s[2, ids["c2"]] > s[2, ids["c1"]] and s[2].max() < 0.01


def test_genre_needs_genres(chains):
    with pytest.raises(SeqrecError, match="genre baseline needs item genres"):
        Genre(6).fit(chains)


def test_make_baseline_and_errors(chains):
    for name in ("popularity", "markov", "ar2", "hybrid"):
        m = make_baseline(name, chains)
        assert isinstance(m, Scorer) and m.n_items == 6
        out = m.score(hist([1, 2], []))
        assert out.shape == (2, 7) and out.dtype == torch.float32
        assert 0 <= evaluate(m, chains)["HR@10"] <= 1
    assert BASELINES == ("popularity", "genre", "markov", "ar2", "hybrid")
    with pytest.raises(SeqrecError, match="popularity, genre, markov, ar2, hybrid"):
        make_baseline("sasrec", chains)
    with pytest.raises(SeqrecError, match="not fitted"):
        Markov(6).score(hist([1]))
    with pytest.raises(SeqrecError, match="items"):
        Popularity(9).fit(chains)


@pytest.mark.realdata
def test_amazon_games_popularity_and_markov_speed(shared_data):
    path = shared_data / "amazon-games" / "games.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    frame = pl.read_csv(path, separator=" ", has_header=False, new_columns=["user", "item"])
    loo = LeaveOneOut(Dataset.from_interactions(frame, config=CleanConfig(k_core=0)))
    wall, cpu = time.perf_counter(), time.process_time()
    results = {name: evaluate(make_baseline(name, loo), loo) for name in ("popularity", "markov", "ar2")}
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print({n: {k: round(r[k], 4) for k in ("HR@10", "NDCG@10", "MRR")} for n, r in results.items()})
    print(f"fit + full evaluation of popularity, AR-1, AR-2: {wall:.1f} s wall, {cpu:.1f} s CPU")
    assert results["popularity"]["users"] == 30901
    assert 0.005 < results["popularity"]["NDCG@10"] < 0.02
    assert results["markov"]["NDCG@10"] > 2 * results["popularity"]["NDCG@10"]
    assert results["ar2"]["NDCG@10"] > 2 * results["popularity"]["NDCG@10"]
    # CPU time, not wall time: the shared machine's load would otherwise decide the outcome.
    assert cpu < 30


# --------------------------------------------------------------------------- sparse fitting, memory budget
def _dense_counts(loo, order):
    """(context tuple) -> next item -> count, by a plain loop over the training sequences."""
    train, out = loo.train(), {}
    for u in range(len(train)):
        seq = train.sequence(u).tolist()
        for j in range(len(seq) - order):
            row = out.setdefault(tuple(seq[j : j + order]), {})
            row[seq[j + order]] = row.get(seq[j + order], 0) + 1
    return out


@pytest.fixture
def random_chains():
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 40, size=int(rng.integers(1, 30))).tolist() for _ in range(300)]
    return LeaveOneOut(Dataset.from_sequences(seqs))


def test_count_matrices_match_a_loop_and_do_not_depend_on_blocks(random_chains, monkeypatch):
    from seqrec.data import split
    from seqrec.models import baselines

    n = random_chains.data.n_items
    m, a = Markov(n).fit(random_chains), AR2(n).fit(random_chains)
    for order, got in (
        (1, lambda ctx: m.transitions[ctx[0]]),
        (2, lambda ctx: a.pairs[int(np.searchsorted(a.pair_keys, ctx[0] * (n + 1) + ctx[1]))]),
    ):
        ref = _dense_counts(random_chains, order)
        if order == 2:
            assert a.pair_keys.tolist() == sorted(x * (n + 1) + y for x, y in ref)
        for ctx, row in ref.items():
            top = max(row.values())
            want = {item: np.float32(c) / np.float32(top) for item, c in row.items()}
            r = got(ctx)
            assert dict(zip(r.indices.tolist(), r.data.tolist())) == pytest.approx(want, rel=0, abs=0)
    assert m.transitions.nnz == sum(len(r) for r in _dense_counts(random_chains, 1).values())
    _, segs, _ = random_chains.inputs("test")
    h = segs.left_padded(2)
    scores = {name: model.score(h) for name, model in (("markov", m), ("ar2", a))}
    # many small blocks of sequences while fitting, few stored entries at a time while scoring
    monkeypatch.setattr(split, "BLOCK_EVENTS", 7)
    monkeypatch.setattr(baselines, "_PIECE", 5)
    m2, a2 = Markov(n).fit(random_chains), AR2(n).fit(random_chains)
    assert (m2.transitions != m.transitions).nnz == 0 and (a2.pairs != a.pairs).nnz == 0
    assert np.array_equal(a2.pair_keys, a.pair_keys)
    assert torch.equal(m2.score(h), scores["markov"]) and torch.equal(a2.score(h), scores["ar2"])
    assert np.array_equal(
        random_chains.train().counts(n), np.bincount(random_chains.train().flat()[1], minlength=n + 1)
    )


def test_baselines_report_their_memory(random_chains):
    n = random_chains.data.n_items
    m, a = Markov(n).fit(random_chains), AR2(n).fit(random_chains)
    held, per_row = m.memory_bytes()
    matrix = m.transitions.data.nbytes + m.transitions.indices.nbytes + m.transitions.indptr.nbytes
    assert held >= matrix + m.counts.nbytes and per_row == 4 * (n + 1) + 8
    assert a.memory_bytes()[0] >= held + a.pairs.data.nbytes + a.pair_keys.nbytes
    assert Popularity(n).fit(random_chains).memory_bytes()[0] < held


def test_every_baseline_gives_the_same_metrics_under_a_tiny_memory_budget():
    from seqrec.data.readers import load_dataset
    from seqrec.evaluation.evaluator import EvalConfig, block_users

    loo = LeaveOneOut(load_dataset("synthetic"))
    n, users = loo.data.n_items, len(loo.inputs("test")[0])
    for name in BASELINES:
        model = make_baseline(name, loo)
        for protocol in ("full", "sampled"):
            tiny = EvalConfig(protocol=protocol, memory_budget=model.memory_bytes()[0] + 200_000)
            assert 1 <= block_users(model, n, tiny, users) <= 10, name
            assert evaluate(model, loo, tiny) == evaluate(model, loo, EvalConfig(protocol=protocol)), name


def test_a_budget_below_a_baselines_matrices_is_refused_with_the_figure(random_chains):
    from seqrec.evaluation.evaluator import EvalConfig

    m = Markov(random_chains.data.n_items).fit(random_chains)
    held = m.memory_bytes()[0]
    with pytest.raises(SeqrecError, match=r"memory_budget .* is too small: the markov scorer holds [\d.]+ [KM]B"):
        evaluate(m, random_chains, EvalConfig(memory_budget=held))
