import math

import numpy as np
import pytest
import torch

from seqrec.data.dataset import Dataset
from seqrec.data.split import LeaveOneOut, Segments
from seqrec.errors import SeqrecError
from seqrec.evaluation.evaluator import EvalConfig, Scorer, evaluate, metrics_from_ranks, rank_of_targets
from seqrec.evaluation.sampling import sample_negatives

INF = math.inf


class TableScorer:
    """Fixed score rows looked up by the (unpadded) history."""

    def __init__(self, n_items, table, max_len=10):
        self.n_items, self.max_len = n_items, max_len
        self.table = {k: torch.tensor([0.0, *v]) for k, v in table.items()}

    def score(self, histories):
        return torch.stack([self.table[tuple(i for i in h.tolist() if i)] for h in histories])


class OracleScorer:
    """Knows each user's target (users come in evaluation order); optionally also loves the rest
    of the user's sequence even more, which only matters if those items become candidates."""

    def __init__(self, loo, split="test", boost_rest=False):
        self.n_items, self.max_len = loo.data.n_items, 5
        users, _, self.targets = loo.inputs(split)
        o = loo.data.offsets
        self.whole = Segments(loo.data.items, o[users], o[users + 1])
        self.boost_rest, self.pos = boost_rest, 0

    def score(self, histories):
        rows = np.arange(self.pos, self.pos + len(histories))
        self.pos += len(histories)
        out = torch.zeros(len(histories), self.n_items + 1)
        if self.boost_rest:
            r, i = self.whole.subset(rows).flat()
            out[torch.from_numpy(r), torch.from_numpy(i.astype(np.int64))] = 2.0
        out[torch.arange(len(rows)), torch.from_numpy(self.targets[rows])] = 1.0
        return out


class RandomScorer:
    def __init__(self, n_items, seed=0):
        self.n_items, self.max_len = n_items, 1
        self.gen = torch.Generator().manual_seed(seed)

    def score(self, histories):
        return torch.rand(len(histories), self.n_items + 1, generator=self.gen)


class HashScorer:
    """Deterministic pseudo-random scores that depend only on the history's last item."""

    def __init__(self, n_items):
        self.n_items, self.max_len = n_items, 3

    def score(self, histories):
        j = torch.arange(self.n_items + 1, dtype=torch.float64)[None, :]
        last = histories[:, -1:].double()
        return torch.frac(torch.sin(j * 12.9898 + last * 78.233) * 43758.5453).float()


class ConstantScorer:
    def __init__(self, n_items, value=0.0):
        self.n_items, self.max_len, self.value = n_items, 2, value

    def score(self, histories):
        return torch.full((len(histories), self.n_items + 1), self.value)


@pytest.fixture
def tiny():
    # Raw ids 1..6 all occur, so internal ids equal raw ids.
    ds = Dataset.from_sequences([[1, 2, 3, 4], [5, 6, 1], [2, 5, 2]])
    return LeaveOneOut(ds)


# Test inputs: (1,2,3)->4, (5,6)->1, (2,5)->2 (the target 2 is also in its own history).
TABLE = {
    (1, 2, 3): [9, 8, 7, 5, 6, 1],  # target 4 (5); seen 1,2,3 beat it; item 5 (6) beats it
    (5, 6): [3, 3, 0, 4, 10, 9],  # target 1 (3); item 2 ties, item 4 beats; seen 5,6 beat it
    (2, 5): [3, 4, 2, 1, 9, 0],  # target 2 (4) is seen but still scored; seen item 5 beats it
}


def approx(x):
    return pytest.approx(x, rel=1e-6, abs=1e-9)


def test_rank_of_targets_hand_computed():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5], [0.1, 0.5, 0.3, 0.5], [float("nan"), 0.2, 0.2, 0.0]])
    assert rank_of_targets(scores, torch.tensor([1, 2, 1])).tolist() == [1, 2, 1]
    # A NaN target counts as -inf: everything ties or beats it.
    assert rank_of_targets(scores[2:], torch.tensor([0])).tolist() == [3]
    # Constant scores: the target is last, no free hit.
    assert rank_of_targets(torch.ones(2, 7), torch.tensor([0, 6])).tolist() == [6, 6]


def test_metrics_from_ranks_hand_computed():
    m = metrics_from_ranks(torch.tensor([0, 1, 4, 10]), (1, 5))
    assert m["HR@1"] == approx(0.25) and m["NDCG@1"] == approx(0.25)
    assert m["HR@5"] == approx(0.75) and m["Recall@5"] == approx(0.75)
    assert m["Precision@5"] == approx(0.15) and m["Precision@1"] == approx(0.25)
    assert m["NDCG@5"] == approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    assert m["MRR"] == approx((1 + 1 / 2 + 1 / 5 + 1 / 11) / 4)
    with pytest.raises(SeqrecError):
        metrics_from_ranks(np.array([], dtype=np.int64), (10,))


def test_full_ranking_excludes_seen_and_scores_target(tiny):
    # seen_target="keep": the numbers evaluate() gave before seen_target existed
    m = evaluate(TableScorer(6, TABLE), tiny, EvalConfig(ks=(1, 2, 3), seen_target="keep"))
    # ranks: [1, 2, 0]
    assert m["users"] == 3 and m["dropped_users"] == 0
    assert m["HR@1"] == approx(1 / 3) and m["HR@2"] == approx(2 / 3) and m["HR@3"] == approx(1.0)
    assert m["NDCG@2"] == approx((1 / math.log2(3) + 1) / 3)
    assert m["NDCG@3"] == approx((1 / math.log2(3) + 1 / math.log2(4) + 1) / 3)
    assert m["MRR"] == approx((1 / 2 + 1 / 3 + 1) / 3)
    assert m["Precision@2"] == approx(2 / 3 / 2) and m["Recall@2"] == m["HR@2"]
    # top-1 lists: {5}, {4}, {2}; top-3 lists cover every item
    assert m["Coverage@1"] == approx(3 / 6) and m["Coverage@3"] == approx(1.0)
    assert list(m)[-3:] == ["MRR", "users", "dropped_users"]
    # training part: [1, 2], [5], [2]: item 2 taken by 2 of 3 users, every other by 1 (or none: counted as 1)
    assert m["Popularity@1"] == approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert m["Novelty@1"] == approx((2 * math.log2(3) + math.log2(3 / 2)) / 3)
    assert "Diversity@1" not in m  # no genres or attributes in this catalogue


def test_seen_target_miss_removes_a_seen_target(tiny):
    # User 2's target 2 is in its history (2, 5): removed like the other seen items -> rank inf.
    m = evaluate(TableScorer(6, TABLE), tiny, EvalConfig(ks=(1, 2, 3), seen_target="miss"))
    # ranks: [1, 2, inf]; the user stays in the denominator
    assert m["users"] == 3 and m["dropped_users"] == 0
    assert m["HR@1"] == 0.0 and m["HR@2"] == approx(1 / 3) and m["HR@3"] == approx(2 / 3)
    assert m["NDCG@1"] == 0.0 and m["NDCG@2"] == approx(1 / math.log2(3) / 3)
    assert m["NDCG@3"] == approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert m["MRR"] == approx((1 / 2 + 1 / 3) / 3)
    assert m["Precision@2"] == approx(1 / 3 / 2) and m["Recall@3"] == m["HR@3"]
    # the removed target is not in user 2's top list either: top-1 lists {5}, {4}, {1}
    assert m["Coverage@1"] == approx(3 / 6) and m["Coverage@3"] == approx(1.0)


def test_seen_target_drop_leaves_out_seen_and_cold_targets(tiny):
    # Training parts: [1, 2], [5], [2]. User 0's target 4 is cold (never in training), user 2's
    # target 2 is in its history: both dropped. User 1 (5, 6) -> 1 is left, rank 2.
    m = evaluate(TableScorer(6, TABLE), tiny, EvalConfig(ks=(1, 2, 3), seen_target="drop"))
    assert m["users"] == 1 and m["dropped_users"] == 2
    assert m["HR@1"] == 0.0 and m["HR@2"] == 0.0 and m["HR@3"] == 1.0
    assert m["NDCG@2"] == 0.0 and m["NDCG@3"] == approx(1 / math.log2(4))
    assert m["MRR"] == approx(1 / 3) and m["Precision@3"] == approx(1 / 3)
    # only user 1's lists count: top-1 {4}, top-3 {4, 1, 2}
    assert m["Coverage@1"] == approx(1 / 6) and m["Coverage@3"] == approx(3 / 6)


def test_seen_target_without_exclusion(tiny):
    # Everything is a candidate: miss and keep both score the target among all items.
    ms = {
        mode: evaluate(TableScorer(6, TABLE), tiny, EvalConfig(ks=(1, 2, 5), exclude_seen=False, seen_target=mode))
        for mode in ("miss", "drop", "keep")
    }
    assert ms["miss"] == ms["keep"]
    assert ms["miss"]["MRR"] == approx((1 / 5 + 1 / 5 + 1 / 2) / 3)  # ranks [4, 4, 1]
    d = ms["drop"]  # user 1 only, rank 4
    assert d["users"] == 1 and d["dropped_users"] == 2
    assert d["HR@2"] == 0.0 and d["HR@5"] == 1.0 and d["NDCG@5"] == approx(1 / math.log2(6))
    assert d["MRR"] == approx(1 / 5)


def test_seen_target_default_is_miss(tiny):
    assert EvalConfig().seen_target == "miss"
    scorer = TableScorer(6, TABLE)
    default = evaluate(scorer, tiny, EvalConfig(ks=(1, 2, 3)))
    assert default == evaluate(scorer, tiny, EvalConfig(ks=(1, 2, 3), seen_target="miss"))
    assert default != evaluate(scorer, tiny, EvalConfig(ks=(1, 2, 3), seen_target="keep"))
    assert evaluate(scorer, tiny)["MRR"] == approx((1 / 2 + 1 / 3) / 3)


def test_seen_target_drop_everyone_is_an_error():
    loo = LeaveOneOut(Dataset.from_sequences([[1, 2, 1], [2, 1, 2]]))  # both targets seen
    with pytest.raises(SeqrecError, match="seen_target='drop'"):
        evaluate(ConstantScorer(2), loo, EvalConfig(seen_target="drop"))
    assert evaluate(ConstantScorer(2), loo, EvalConfig(seen_target="miss"))["users"] == 2


def _reference_ranks(scorer, loo, exclude_seen, seen_target):
    """A per-user loop: (ranks of the evaluated users, number dropped)."""
    users, segs, targets = loo.inputs("test")
    train = loo.train().counts(loo.data.n_items)
    ranks, dropped = [], 0
    for u in range(len(users)):
        hist, t = segs.sequence(u).tolist(), int(targets[u])
        if seen_target == "drop" and (t in hist or train[t] == 0):
            dropped += 1
            continue
        if exclude_seen and seen_target == "miss" and t in hist:
            ranks.append(INF)
            continue
        row = torch.nan_to_num(scorer.score(segs.left_padded(scorer.max_len, np.array([u])))[0].double(), nan=-INF)
        cand = [j for j in range(1, loo.data.n_items + 1) if j != t and not (exclude_seen and j in hist)]
        ranks.append(int(sum(row[j] >= row[t] for j in cand)))
    return np.array(ranks, dtype=np.float64), dropped


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("seen_target", ["miss", "drop", "keep"])
def test_seen_target_matches_a_loop_on_repeat_heavy_data(exclude_seen, seen_target):
    rng = np.random.default_rng(1)
    seqs = rng.integers(0, 25, size=(200, 6)).tolist() + [list(range(25))]  # many repeated items
    seqs += [[100 + i, 200 + i, 300 + i] for i in range(5)]  # cold targets 300..304
    loo = LeaveOneOut(Dataset.from_sequences(seqs))
    scorer = HashScorer(loo.data.n_items)
    ranks, dropped = _reference_ranks(scorer, loo, exclude_seen, seen_target)
    assert (ranks == INF).any() == (seen_target == "miss" and exclude_seen)
    want = metrics_from_ranks(ranks, (1, 5, 10))
    for batch_size in (1024, 7):
        cfg = EvalConfig(ks=(1, 5, 10), exclude_seen=exclude_seen, seen_target=seen_target, batch_size=batch_size)
        m = evaluate(scorer, loo, cfg)
        assert m["users"] == len(ranks) and m["dropped_users"] == dropped
        assert {k: m[k] for k in want} == approx(want)
    if seen_target == "drop":
        assert dropped > 5  # the cold ones and the repeats


def test_seen_target_has_no_effect_under_sampled(random_loo):
    n = random_loo.data.n_items
    ms = [
        evaluate(HashScorer(n), random_loo, EvalConfig(protocol="sampled", seen_target=mode))
        for mode in ("miss", "drop", "keep")
    ]
    assert ms[0] == ms[1] == ms[2] and ms[0]["dropped_users"] == 0


def test_cli_seen_target_flag():
    from seqrec.cli.commands import build_parser
    from seqrec.cli.options import _eval_config

    parser = build_parser()
    args = parser.parse_args(["evaluate", "synthetic"])
    assert _eval_config(args, "full").seen_target == EvalConfig().seen_target == "miss"
    for mode in ("drop", "keep"):
        args = parser.parse_args(["compare", "synthetic", "--seen-target", mode])
        assert _eval_config(args, "full").seen_target == mode
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "synthetic", "--seen-target", "skip"])


def test_full_ranking_without_exclusion(tiny):
    m = evaluate(TableScorer(6, TABLE), tiny, EvalConfig(ks=(1, 2, 5), exclude_seen=False))
    # ranks: [4, 4, 1]
    assert m["HR@1"] == 0.0 and m["HR@2"] == approx(1 / 3) and m["HR@5"] == approx(1.0)
    assert m["MRR"] == approx((1 / 5 + 1 / 5 + 1 / 2) / 3)
    assert m["Coverage@1"] == approx(2 / 6)  # top-1 lists: {1}, {5}, {5}


def test_constant_and_nan_scores_get_no_free_hits(tiny):
    # candidates other than the target: {5,6}, {2,3,4}, {1,3,4,6} -> ranks 2, 3, 4
    # (seen_target="miss": user 2's seen target is removed, rank inf)
    expected_mrr = {"keep": (1 / 3 + 1 / 4 + 1 / 5) / 3, "miss": (1 / 3 + 1 / 4) / 3}
    for scorer in (ConstantScorer(6), ConstantScorer(6, float("nan")), ConstantScorer(6, -INF)):
        for mode, mrr in expected_mrr.items():
            m = evaluate(scorer, tiny, EvalConfig(ks=(1, 2, 3), seen_target=mode))
            assert m["HR@1"] == 0.0 and m["HR@2"] == 0.0 and m["HR@3"] == approx(1 / 3)
            assert m["MRR"] == approx(mrr)


def test_valid_split_uses_valid_targets(tiny):
    # valid inputs: (1,2)->3, (5,)->6, (2,)->5
    table = {(1, 2): [0, 0, 1, 0, 0, 0], (5,): [0, 0, 0, 0, 0, 1], (2,): [0, 0, 0, 0, 1, 0]}
    m = evaluate(TableScorer(6, table), tiny, EvalConfig(split="valid", ks=(1,)))
    assert m["HR@1"] == 1.0 and m["MRR"] == 1.0


@pytest.fixture
def random_loo():
    rng = np.random.default_rng(0)
    return LeaveOneOut(Dataset.from_sequences(rng.integers(0, 1000, size=(4000, 3)).tolist()))


def test_oracle_and_random_scorers(random_loo):
    n = random_loo.data.n_items
    assert n == 1000
    assert isinstance(RandomScorer(n), Scorer)
    m = evaluate(OracleScorer(random_loo), random_loo, EvalConfig(seen_target="keep"))
    assert m["HR@1"] == 1.0 and m["NDCG@10"] == 1.0 and m["MRR"] == 1.0
    # default seen_target="miss": the oracle misses exactly the users whose target repeats
    _, segs, targets = random_loo.inputs("test")
    fresh = np.mean([t not in segs.sequence(u) for u, t in enumerate(targets)])
    assert 0.99 < fresh < 1.0
    m = evaluate(OracleScorer(random_loo), random_loo)
    assert m["HR@1"] == approx(fresh) and m["NDCG@10"] == approx(fresh) and m["MRR"] == approx(fresh)
    m = evaluate(RandomScorer(n), random_loo, EvalConfig(ks=(10,)))
    assert 0.006 < m["HR@10"] < 0.014  # ~ 10 / 998 candidates
    assert 0.005 < m["MRR"] < 0.011  # ~ H(998) / 998 = 0.0075


def test_batches_and_chunks_do_not_change_results(random_loo):
    n = random_loo.data.n_items
    a = evaluate(HashScorer(n), random_loo, EvalConfig(batch_size=1024))
    b = evaluate(HashScorer(n), random_loo, EvalConfig(batch_size=77))
    assert a == b


def test_max_users_subsample_is_seeded(random_loo):
    n = random_loo.data.n_items
    cfg = EvalConfig(max_users=500, seed=3)
    a = evaluate(HashScorer(n), random_loo, cfg)
    assert a["users"] == 500
    assert a == evaluate(HashScorer(n), random_loo, cfg)
    assert a != evaluate(HashScorer(n), random_loo, EvalConfig(max_users=500, seed=4))


def test_sampled_protocol(random_loo):
    n = random_loo.data.n_items
    # Every other item of the user's sequence is loved more than the target: never a negative.
    m = evaluate(OracleScorer(random_loo, "valid", boost_rest=True), random_loo, EvalConfig("valid", "sampled"))
    assert m["HR@1"] == 1.0
    m = evaluate(ConstantScorer(n), random_loo, EvalConfig(protocol="sampled", ks=(10, 100)))
    assert m["HR@10"] == 0.0 and m["HR@100"] == 0.0 and m["MRR"] == approx(1 / 101)
    m = evaluate(RandomScorer(n), random_loo, EvalConfig(protocol="sampled", ks=(10,)))
    assert abs(m["HR@10"] - 10 / 101) < 0.015
    cfg = EvalConfig(protocol="sampled", negatives="popularity", seed=5)
    assert evaluate(HashScorer(n), random_loo, cfg) == evaluate(HashScorer(n), random_loo, cfg)


def _zipf_sequences(n_users=300, n_items=400, length=20, seed=0):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    seqs = [rng.choice(n_items, size=length, replace=False, p=p / p.sum()).tolist() for _ in range(n_users)]
    seqs.append(list(range(n_items)))  # every item occurs
    return Dataset.from_sequences(seqs)


def test_sample_negatives_properties():
    ds = _zipf_sequences()
    segs = Segments(ds.items, ds.offsets[:-2], ds.offsets[1:-1])  # all but the all-items user
    n = ds.n_items
    negs = sample_negatives(segs, n, 100, np.random.default_rng(1))
    assert negs.shape == (len(segs), 100)
    assert negs.min() >= 1 and negs.max() <= n
    for row in range(len(segs)):
        assert len(set(negs[row].tolist())) == 100
        assert not set(negs[row].tolist()) & set(segs.sequence(row).tolist())
    again = sample_negatives(segs, n, 100, np.random.default_rng(1))
    other = sample_negatives(segs, n, 100, np.random.default_rng(2))
    assert np.array_equal(negs, again) and not np.array_equal(negs, other)


def test_sample_negatives_by_popularity():
    rng = np.random.default_rng(0)
    short = rng.permuted(np.tile(np.arange(400), (300, 1)), axis=1)[:, :5].tolist()
    ds = Dataset.from_sequences(short + [list(range(400))])
    segs = Segments(ds.items, ds.offsets[:-2], ds.offsets[1:-1])
    n = ds.n_items
    weights = np.zeros(n + 1)
    weights[1:] = 1.0 / np.arange(1, n + 1)  # item 1 most popular
    pop = sample_negatives(segs, n, 100, np.random.default_rng(1), weights=weights)
    uni = sample_negatives(segs, n, 100, np.random.default_rng(1))
    for negs in (pop, uni):
        for row in range(len(segs)):
            assert len(set(negs[row].tolist())) == 100
            assert not set(negs[row].tolist()) & set(segs.sequence(row).tolist())
    drawn, drawn_uni = np.bincount(pop.ravel(), minlength=n + 1), np.bincount(uni.ravel(), minlength=n + 1)
    assert drawn[1:21].mean() > 3 * drawn[-200:].mean()
    assert drawn[1:21].sum() > 2 * drawn_uni[1:21].sum()
    assert np.array_equal(pop, sample_negatives(segs, n, 100, np.random.default_rng(1), weights=weights))
    # items of weight 0 are never drawn
    weights[1:11] = 0.0
    assert sample_negatives(segs, n, 100, np.random.default_rng(1), weights=weights).min() > 10


def test_sample_negatives_too_few_items():
    ds = Dataset.from_sequences([[1, 2, 3], [4, 5, 6]])
    segs = Segments(ds.items, ds.offsets[:-1], ds.offsets[1:])
    with pytest.raises(SeqrecError, match="negatives"):
        sample_negatives(segs, ds.n_items, 4, np.random.default_rng(0))
    negs = sample_negatives(segs, ds.n_items, 3, np.random.default_rng(0))
    assert sorted(negs[0].tolist()) == [4, 5, 6] and sorted(negs[1].tolist()) == [1, 2, 3]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "train"},
        {"protocol": "all"},
        {"ks": ()},
        {"ks": (0, 10)},
        {"ks": (1.5,)},
        {"n_negatives": 0},
        {"negatives": "zipf"},
        {"batch_size": 0},
        {"max_users": 0},
        {"seed": "x"},
        {"seed": -1},
        {"seed": 2**32},
        {"seen_target": "skip"},
        {"seen_target": None},
        {"seen_target": ["miss"]},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(SeqrecError, match=next(iter(kwargs))):
        EvalConfig(**kwargs)


def test_config_normalises_ks():
    assert EvalConfig(ks=[10, 1, 10]).ks == (1, 10)


def test_scorer_mismatch_is_reported(tiny):
    with pytest.raises(SeqrecError, match="items"):
        evaluate(ConstantScorer(7), tiny)

    class Wrong(ConstantScorer):
        def score(self, histories):
            return torch.zeros(len(histories), 3)

    with pytest.raises(SeqrecError, match="expected"):
        evaluate(Wrong(6), tiny)


# --------------------------------------------------------------------------- memory budget
class CountingScorer(HashScorer):
    """HashScorer that records how many histories each call scored."""

    def __init__(self, n_items):
        super().__init__(n_items)
        self.calls = []

    def score(self, histories):
        self.calls.append(len(histories))
        return super().score(histories)


def test_memory_budget_parses_sizes():
    from seqrec.config import parse_bytes

    assert EvalConfig().budget_bytes == 2 * 10**9
    assert parse_bytes("512MB") == 512 * 10**6 and parse_bytes("1.5 GiB") == 3 * 2**29
    assert parse_bytes(4096) == parse_bytes("4096") == parse_bytes("4kib") == 4096
    for bad in ("", "lots", "2XB", "GB", "0", "-1GB", "nan", "inf", 0, 1.5, True, None):
        with pytest.raises(SeqrecError, match="memory_budget must be a positive size"):
            EvalConfig(memory_budget=bad)


@pytest.mark.parametrize(
    "protocol,seen_target", [("full", "miss"), ("full", "drop"), ("full", "keep"), ("sampled", "miss")]
)
def test_a_tiny_memory_budget_gives_the_same_metrics(random_loo, protocol, seen_target):
    from seqrec.evaluation.evaluator import block_users

    n = random_loo.data.n_items
    small, default = CountingScorer(n), CountingScorer(n)
    tiny_budget = EvalConfig(protocol=protocol, seen_target=seen_target, memory_budget="400KB")
    users = len(random_loo.inputs("test")[0])
    block = block_users(small, n, tiny_budget, users)
    assert 1 <= block < 64
    a = evaluate(small, random_loo, tiny_budget)
    b = evaluate(default, random_loo, EvalConfig(protocol=protocol, seen_target=seen_target))
    assert a == b
    assert max(small.calls) == block and max(default.calls) == 1024
    assert sum(small.calls) == sum(default.calls) == a["users"]


def test_an_impossible_memory_budget_is_refused_before_any_scoring(random_loo):
    from seqrec.evaluation.evaluator import check_budget

    scorer = CountingScorer(random_loo.data.n_items)
    with pytest.raises(SeqrecError, match=r"memory_budget '20KB' \(20 KB\) is too small: .* give at least \d"):
        evaluate(scorer, random_loo, EvalConfig(memory_budget="20KB"))
    assert scorer.calls == []
    with pytest.raises(
        SeqrecError,
        match=r"memory_budget '5KB' \(5 KB\) is too small: one user's scores over "
        r"1,000 items and their ranking need 10 KB",
    ):
        check_budget(1000, EvalConfig(memory_budget="5KB"))
    check_budget(1000, EvalConfig(memory_budget="11KB"))


def test_cli_memory_budget_flag(capsys):
    from seqrec.cli.commands import build_parser, main
    from seqrec.cli.options import _eval_config

    args = build_parser().parse_args(["compare", "synthetic", "--memory-budget", "64MB"])
    assert _eval_config(args, "full").memory_budget == "64MB"
    assert main(["evaluate", "synthetic", "--model", "markov", "--memory-budget", "1KB", "--quiet"]) == 2
    assert "memory_budget '1KB' (1 KB) is too small: one user's scores over" in capsys.readouterr().err
    assert main(["evaluate", "synthetic", "--memory-budget", "much", "--quiet"]) == 2
    assert "memory_budget must be a positive size" in capsys.readouterr().err


def test_sasrec_at_200k_items_is_scored_in_blocks_that_follow_the_budget():
    import polars as pl

    from seqrec.config import SASRecConfig, parse_bytes
    from seqrec.data.dataset import CleanConfig
    from seqrec.evaluation.evaluator import _RANK_BYTES, _USER_BYTES, block_users, scorer_memory
    from seqrec.models.sasrec import SASRecModel

    n_items, users, length = 200_000, 1_000, 200
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"user": np.repeat(np.arange(users), length), "item": rng.permutation(n_items)})
    loo = LeaveOneOut(Dataset.from_interactions(frame, config=CleanConfig(k_core=0)))
    assert loo.data.n_items == n_items
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(n_items=n_items, hidden=16, blocks=1, heads=1, max_len=20)).eval()
    seen = []
    last_hidden = model.last_hidden  # the evaluator takes SASRec's score product itself, a chunk at a time
    model.last_hidden = lambda histories: (seen.append(len(histories)), last_hidden(histories))[1]
    fixed, per_row = scorer_memory(model)
    assert fixed >= 2 * 4 * 16 * (n_items + 1) and per_row > 4 * (n_items + 1)
    results, blocks = {}, {}
    for budget in ("40MB", "80MB", "2GB"):
        config = EvalConfig(ks=(10,), max_users=150, memory_budget=budget)
        block = blocks[budget] = block_users(model, n_items, config, users)
        seen.clear()
        results[budget] = evaluate(model, loo, config)
        assert max(seen) == min(block, 150) and sum(seen) == 150
    # each block's users fit the budget with the fixed part; one more would not
    own = _USER_BYTES * users + (n_items + 1) * 9  # per-user arrays, coverage flags of ks=(10,), counts
    row = per_row + _RANK_BYTES * (n_items + 1) + 8 * 20 * 3
    for budget, block in blocks.items():
        if block < 1024:
            assert fixed + own + block * row <= parse_bytes(budget) < fixed + own + (block + 1) * row
    assert 1 <= blocks["40MB"] < blocks["80MB"] < blocks["2GB"] <= 1024
    assert results["40MB"]["users"] == results["2GB"]["users"] == 150
    assert results["40MB"]["NDCG@10"] == pytest.approx(results["2GB"]["NDCG@10"], abs=0.02)


def test_list_diversity_by_hand():
    from seqrec.evaluation.beyond import ListStats

    # items 1..3 with features {a}, {a, b}, {c}
    features = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    stats = ListStats((2, 3), 3, features=features, takers=np.array([0, 1, 1, 1]), users=2)
    stats.update(torch.tensor([[1, 2, 3], [3, 1, 2]]), torch.tensor([[True, True, True], [True, True, False]]))
    m = stats.metrics()
    # top 2: {1, 2}: 1 - 1/2 = 0.5; {3, 1}: 1.  top 3: {1,2,3}: (0.5 + 1 + 1) / 3; {3, 1} (2 unreal): 1
    assert m["Diversity@2"] == approx((0.5 + 1.0) / 2)
    assert m["Diversity@3"] == approx(((0.5 + 1 + 1) / 3 + 1.0) / 2)
    assert m["Coverage@2"] == approx(1.0) and m["Popularity@2"] == approx(0.5)
