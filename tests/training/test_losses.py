import math

import numpy as np
import pytest
import torch

from seqrec.errors import SeqrecError
from seqrec.training.losses import (
    LOSSES,
    NegativeSampler,
    bce_loss,
    ce_loss,
    gbce_beta,
    gbce_loss,
    sampled_softmax_loss,
)

# Tiny catalogue, d = 2: item 1 = (1, 0), item 2 = (0, 1), item 3 = (1, 1); row 0 = PAD.
EMB = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
# hidden (1, 2) scores item 1 -> 1, item 2 -> 2, item 3 -> 3.
H = torch.tensor([[1.0, 2.0]])


def sp(x: float) -> float:
    """softplus(x) = -log sigmoid(-x)."""
    return math.log1p(math.exp(x))


def close(t: torch.Tensor, value: float) -> None:
    assert t.dim() == 0
    assert t.item() == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_names():
    assert LOSSES == ("bce", "ce", "sampled-softmax", "gbce")


def test_bce_hand_computed():
    close(bce_loss(H, torch.tensor([3]), torch.tensor([[1]]), EMB), sp(-3) + sp(1))
    # two negatives: their terms are summed; two positions: averaged
    h2 = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    got = bce_loss(h2, torch.tensor([3, 2]), torch.tensor([[1, 2], [1, 3]]), EMB)
    close(got, ((sp(-3) + sp(1) + sp(2)) + (sp(-1) + sp(0) + sp(1))) / 2)


def test_ce_hand_computed():
    close(ce_loss(H, torch.tensor([3]), EMB), -3 + math.log(math.e + math.e**2 + math.e**3))
    close(ce_loss(H, torch.tensor([1]), EMB), -1 + math.log(math.e + math.e**2 + math.e**3))


def test_ce_ignores_pad_row():
    emb = EMB.clone()
    emb[0] = torch.tensor([5.0, 5.0])  # a non-zero PAD row must not enter the softmax
    close(ce_loss(H, torch.tensor([3]), emb), -3 + math.log(math.e + math.e**2 + math.e**3))


def test_ce_chunked_equals_plain_with_gradients():
    torch.manual_seed(0)
    h = torch.randn(37, 4, requires_grad=True)
    emb = torch.randn(12, 4, requires_grad=True)
    pos = torch.randint(1, 12, (37,))
    plain = ce_loss(h, pos, emb)
    g_plain = torch.autograd.grad(plain, (h, emb))
    chunked = ce_loss(h, pos, emb, chunk_elements=50)  # 4 rows a chunk
    g_chunked = torch.autograd.grad(chunked, (h, emb))
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-6)
    for a, b in zip(g_plain, g_chunked):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        assert ce_loss(h, pos, emb, chunk_elements=50).item() == pytest.approx(plain.item(), rel=1e-6)


def test_sampled_softmax_hand_computed():
    pos, neg = torch.tensor([3]), torch.tensor([[1, 2]])
    # over [3, 1, 2] it is the full softmax of this tiny catalogue
    close(sampled_softmax_loss(H, pos, neg, EMB), -3 + math.log(math.e + math.e**2 + math.e**3))


def test_sampled_softmax_logq_correction():
    pos, neg = torch.tensor([3]), torch.tensor([[1, 2]])
    lq_pos = torch.log(torch.tensor([0.5]))
    lq_neg = torch.log(torch.tensor([[0.25, 0.125]]))
    s = [3 - math.log(0.5), 1 - math.log(0.25), 2 - math.log(0.125)]
    want = -s[0] + math.log(sum(math.exp(v) for v in s))
    close(sampled_softmax_loss(H, pos, neg, EMB, lq_pos, lq_neg), want)


def test_sampled_softmax_masks_accidental_hits():
    pos, neg = torch.tensor([3]), torch.tensor([[3, 1]])
    close(sampled_softmax_loss(H, pos, neg, EMB), -3 + math.log(math.e**3 + math.e))
    # every negative a hit: only the positive is left, loss 0, gradients finite
    h = H.clone().requires_grad_()
    loss = sampled_softmax_loss(h, pos, torch.tensor([[3, 3]]), EMB)
    close(loss, 0.0)
    loss.backward()
    assert torch.isfinite(h.grad).all()


def test_sampled_softmax_logq_with_shared_negatives_hand_computed():
    # two rows share the negatives [1, 2]; q(1) = 0.25, q(2) = 0.125, the positives' q 0.5 and 0.2
    h = torch.tensor([[1.0, 2.0], [2.0, 0.0]])  # scores: row 0 -> (1, 2, 3), row 1 -> (2, 0, 2)
    pos, neg = torch.tensor([3, 3]), torch.tensor([1, 2])
    lq_pos, lq_neg = torch.log(torch.tensor([0.5, 0.2])), torch.log(torch.tensor([0.25, 0.125]))
    want = 0.0
    for scores, q_pos in (((1, 2, 3), 0.5), ((2, 0, 2), 0.2)):
        s = [scores[2] - math.log(q_pos), scores[0] - math.log(0.25), scores[1] - math.log(0.125)]
        want += -s[0] + math.log(sum(math.exp(v) for v in s))
    close(sampled_softmax_loss(h, pos, neg, EMB, lq_pos, lq_neg), want / 2)
    # the positive left uncorrected (a zero correction): only the negatives move
    s = [3, 1 - math.log(0.25), 2 - math.log(0.125)]
    close(sampled_softmax_loss(H, pos[:1], neg, EMB, torch.zeros(1), lq_neg), -s[0] + math.log(sum(map(math.exp, s))))


def test_in_batch_negatives_mask_a_positions_own_positive_and_equal_items():
    h = torch.tensor([[1.0, 2.0], [2.0, 0.0], [1.0, 2.0]])  # scores row 0, 2 -> (1, 2, 3); row 1 -> (2, 0, 2)
    pos = torch.tensor([3, 1, 3])  # rows 0 and 2 have the same target
    neg = torch.tensor([2])  # one shared sampled negative
    lq = torch.log(torch.tensor([0.5, 0.25, 0.5]))  # log q of the candidates, by position
    in_batch, lq_in = pos.clone(), lq.clone()  # every target of the batch as a negative
    got = sampled_softmax_loss(h, pos, neg, EMB, lq, torch.log(torch.tensor([0.1])), in_batch, lq_in)
    lse = lambda *v: math.log(sum(map(math.exp, v)))
    l2, l25, l1 = math.log(2), math.log(0.25), math.log(0.1)
    # row 0 (target 3): the in-batch 3s (its own and row 2's) masked, item 1 kept
    row0 = -(3 + l2) + lse(3 + l2, 2 - l1, 1 - l25)
    # row 1 (target 1): its own in-batch 1 masked, both 3s kept
    row1 = -(2 - l25) + lse(2 - l25, 0 - l1, 2 + l2, 2 + l2)
    close(got, (2 * row0 + row1) / 3)
    # with nothing but the positive and masked candidates the loss is 0 and gradients finite
    h1 = H.clone().requires_grad_()
    loss = sampled_softmax_loss(h1, torch.tensor([3]), torch.tensor([3]), EMB, None, None, torch.tensor([3, 3]))
    close(loss, 0.0)
    loss.backward()
    assert torch.isfinite(h1.grad).all()


def test_bce_and_gbce_leave_out_a_negative_that_is_the_positive():
    pos = torch.tensor([3])
    close(bce_loss(H, pos, torch.tensor([3, 1]), EMB), sp(-3) + sp(1))  # shared [k]
    close(bce_loss(H, pos, torch.tensor([[1, 3]]), EMB), sp(-3) + sp(1))  # per row [M, k]
    beta = gbce_beta(2, 3, 0.5)
    close(gbce_loss(H, pos, torch.tensor([3, 2]), EMB, n_items=3, t=0.5), beta * sp(-3) + sp(2))


def test_shared_negatives_equal_per_row():
    torch.manual_seed(1)
    h, emb = torch.randn(6, 3), torch.randn(9, 3)
    pos = torch.randint(1, 9, (6,))
    shared = torch.tensor([1, 4, 7])
    per_row = shared.expand(6, 3)
    lq = torch.log(torch.tensor([0.1, 0.2, 0.3]))
    for f in (bce_loss, lambda *a: gbce_loss(*a, n_items=8, t=0.5)):
        torch.testing.assert_close(f(h, pos, shared, emb), f(h, pos, per_row, emb))
    torch.testing.assert_close(
        sampled_softmax_loss(h, pos, shared, emb, None, lq),
        sampled_softmax_loss(h, pos, per_row, emb, None, lq.expand(6, 3)),
    )


def test_per_row_negatives_by_matrix_product_equal_the_gather():
    from seqrec.training import losses as L

    torch.manual_seed(3)
    h, emb = torch.randn(20, 4, requires_grad=True), torch.randn(30, 4, requires_grad=True)
    neg = torch.randint(0, 30, (20, 12))
    fast = L._neg_logits(h, neg, emb)  # k >= 8 and small: one product, then a gather
    slow = torch.einsum("md,mkd->mk", h, emb[neg])
    torch.testing.assert_close(fast, slow)
    g_fast = torch.autograd.grad(fast.sum(), (h, emb))
    g_slow = torch.autograd.grad(slow.sum(), (h, emb))
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b)


def test_gbce_hand_computed():
    # n_items = 3, k = 1: alpha = 1/2; t = 0.5: beta = 0.5 * (0.5 * (1 - 2) + 2) = 0.75
    assert gbce_beta(1, 3, 0.5) == pytest.approx(0.75)
    close(gbce_loss(H, torch.tensor([3]), torch.tensor([[1]]), EMB, n_items=3, t=0.5), 0.75 * sp(-3) + sp(1))
    # the same as BCE on the transformed positive logit log(1 / (sigma(s)^-beta - 1))
    sig = 1 / (1 + math.exp(-3))
    s_prime = math.log(1 / (sig**-0.75 - 1))
    close(gbce_loss(H, torch.tensor([3]), torch.tensor([[1]]), EMB, n_items=3, t=0.5), sp(-s_prime) + sp(1))


def test_gbce_beta_limits():
    assert gbce_beta(4, 101, 0.0) == pytest.approx(1.0)
    assert gbce_beta(4, 101, 1.0) == pytest.approx(4 / 100)  # beta = alpha
    with pytest.raises(SeqrecError, match="t must be"):
        gbce_beta(1, 10, 1.5)


def test_gbce_t0_equals_bce():
    torch.manual_seed(2)
    h, emb = torch.randn(10, 4), torch.randn(30, 4)
    pos, neg = torch.randint(1, 30, (10,)), torch.randint(1, 30, (10, 5))
    torch.testing.assert_close(gbce_loss(h, pos, neg, emb, n_items=29, t=0.0), bce_loss(h, pos, neg, emb))


def test_losses_stable_for_huge_logits_and_empty_batches():
    h = torch.tensor([[1e4, -1e4]], requires_grad=True)
    pos, neg = torch.tensor([2]), torch.tensor([[1]])
    for loss in (
        bce_loss(h, pos, neg, EMB),
        gbce_loss(h, pos, neg, EMB, n_items=3),
        ce_loss(h, pos, EMB),
        sampled_softmax_loss(h, pos, neg, EMB),
    ):
        assert torch.isfinite(loss)
        (g,) = torch.autograd.grad(loss, h)
        assert torch.isfinite(g).all()
    empty_h, empty_p, empty_n = torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, dtype=torch.long)
    for loss in (
        bce_loss(empty_h, empty_p, empty_n, EMB),
        gbce_loss(empty_h, empty_p, empty_n, EMB, n_items=3),
        ce_loss(empty_h, empty_p, EMB),
        sampled_softmax_loss(empty_h, empty_p, empty_n, EMB),
    ):
        assert loss.item() == 0.0


# ----------------------------------------------------------------- samplers


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", ["uniform", "popularity", "mixed"])
def test_sampler_never_returns_the_positive_and_stays_in_range(mode):
    n = 5
    counts = np.array([0, 50, 20, 10, 5, 1])
    s = NegativeSampler(n, counts, mode=mode, generator=gen(0))
    pos = torch.randint(1, n + 1, (2000,), generator=gen(1))
    neg = s.sample(pos, 7)
    assert neg.shape == (2000, 7) and neg.dtype == torch.int64
    assert (neg >= 1).all() and (neg <= n).all()
    assert not (neg == pos[:, None]).any()


def test_sampler_shifts_when_redrawing_cannot_help():
    # all popularity mass on item 1 and every positive is item 1
    s = NegativeSampler(4, np.array([0, 9, 0, 0, 0]), mode="popularity", generator=gen(0))
    neg = s.sample(torch.ones(100, dtype=torch.long), 3)
    assert not (neg == 1).any() and (neg >= 1).all() and (neg <= 4).all()


def test_sampler_uniform_and_log_prob():
    s = NegativeSampler(10, generator=gen(3))
    neg = s.sample(torch.zeros(20_000, dtype=torch.long), 5)  # PAD positives: no collisions
    freq = np.bincount(neg.flatten().numpy(), minlength=11)[1:] / neg.numel()
    assert np.abs(freq - 0.1).max() < 0.01
    torch.testing.assert_close(s.log_prob(torch.tensor([1, 10])), torch.full((2,), -math.log(10)))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_sampler_popularity_follows_counts(alpha):
    counts = np.array([0, 1, 2, 3, 4, 0, 10])  # item 5 never seen: never drawn
    s = NegativeSampler(6, counts, mode="popularity", alpha=alpha, generator=gen(4))
    neg = s.sample(torch.zeros(50_000, dtype=torch.long), 2)
    freq = np.bincount(neg.flatten().numpy(), minlength=7)[1:] / neg.numel()
    w = counts[1:] ** alpha * (counts[1:] > 0)
    want = w / w.sum()
    assert np.abs(freq - want).max() < 0.01
    assert freq[4] == 0.0
    # chi-square-ish: each observed count within 5 standard deviations
    n = neg.numel()
    sd = np.sqrt(n * want * (1 - want)) + 1e-9
    assert np.all(np.abs(freq * n - want * n) < 5 * sd + 1e-6)
    torch.testing.assert_close(
        s.log_prob(torch.tensor([1, 6])), torch.log(torch.tensor(want[[0, 5]], dtype=torch.float32))
    )


def test_sampler_mixed_fraction():
    counts = np.array([7, 0, 0, 5, 0])  # length N = 5 (no PAD entry): all popularity mass on item 4
    s = NegativeSampler(5, counts, mode="mixed", mix=0.3, generator=gen(5))
    neg = s.sample(torch.zeros(40_000, dtype=torch.long), 1)
    share = (neg == 4).float().mean().item()
    pop = counts / counts.sum()
    want = 0.3 * pop + 0.7 / 5
    assert share == pytest.approx(want[3], abs=0.01)
    torch.testing.assert_close(s.log_prob(torch.arange(1, 6)), torch.log(torch.tensor(want, dtype=torch.float32)))


def test_sampler_reproducible_by_seed():
    counts = np.arange(11)
    pos = torch.randint(1, 11, (500,), generator=gen(9))
    for mode in ("uniform", "popularity", "mixed"):
        a = NegativeSampler(10, counts, mode=mode, generator=gen(42)).sample(pos, 4)
        b = NegativeSampler(10, counts, mode=mode, generator=gen(42)).sample(pos, 4)
        c = NegativeSampler(10, counts, mode=mode, generator=gen(43)).sample(pos, 4)
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_sampler_errors():
    with pytest.raises(SeqrecError, match="mode"):
        NegativeSampler(5, mode="zipf")
    with pytest.raises(SeqrecError, match="counts"):
        NegativeSampler(5, mode="popularity")
    with pytest.raises(SeqrecError, match="length 5 or 6"):
        NegativeSampler(5, np.ones(3), mode="popularity")
    with pytest.raises(SeqrecError, match="not all zero"):
        NegativeSampler(5, np.zeros(6), mode="mixed")
    with pytest.raises(SeqrecError, match="at least 2 items"):
        NegativeSampler(1)
    with pytest.raises(SeqrecError, match="mix"):
        NegativeSampler(5, np.ones(6), mode="mixed", mix=1.5)
