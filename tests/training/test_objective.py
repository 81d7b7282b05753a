"""The training objective: the fused cross-entropy equals the plain reference, every loss name has its
function, and each list of choices has one home."""

import numpy as np
import pytest
import torch

from seqrec import config
from seqrec.config import TrainConfig
from seqrec.errors import SeqrecError
from seqrec.models import baselines
from seqrec.training import loop as train
from seqrec.training import losses
from seqrec.training.losses import ce_loss
from seqrec.training.objective import LOSS_FUNCTIONS, Objective, fused_ce_loss


@pytest.mark.parametrize("m, n", [(0, 10), (5, 10), (300, 4000)])
def test_fused_ce_equals_the_reference_loss(m, n):
    torch.manual_seed(0)
    h0, e0 = torch.randn(m, 8), torch.randn(n + 1, 8)
    pos = torch.randint(1, n + 1, (m,))
    out = []
    for fn in (ce_loss, fused_ce_loss):
        h, e = h0.clone().requires_grad_(), e0.clone().requires_grad_()
        loss = fn(h, pos, e) * 3.0
        loss.backward()
        out.append((loss.detach(), h.grad, e.grad))
    for a, b in zip(*out):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_every_loss_the_config_accepts_has_one_function():
    assert set(LOSS_FUNCTIONS) == set(config.CHOICES["loss"]) == set(config.DEFAULT_NEGATIVES)


def test_each_list_of_choices_has_one_home():
    assert losses.LOSSES is config.LOSSES is config.CHOICES["loss"]
    assert losses.SAMPLER_MODES is config.CHOICES["negative_sampling"]
    assert baselines.BASELINES == tuple(baselines._FACTORIES)
    assert train.TrainConfig is config.TrainConfig and train.TrainResult is config.TrainResult


def test_in_batch_negatives_are_batch_targets_with_the_mixture_correction():
    counts = np.array([0, 6, 3, 1, 0, 0, 0, 0, 0, 0, 2], dtype=np.int64)  # ids 0..10, 12 interactions
    pos = torch.tensor([1, 1, 2, 3, 10, 1])
    k, take = 4, 3
    plain = Objective(TrainConfig(loss="sampled-softmax", n_negatives=k, shared_negatives=True), 10, counts)
    cfg = TrainConfig(loss="sampled-softmax", n_negatives=k, shared_negatives=True, in_batch_negatives=take)
    obj = Objective(cfg, 10, counts)
    p_idx, n_idx, rows, lq_pos, lq_neg, ib_idx, lq_ib = obj.prepare(pos, epoch=1, index=0)
    assert torch.equal(rows[p_idx], pos)
    _, n_plain, rows_plain = plain.prepare(pos, epoch=1, index=0)
    assert torch.equal(rows[n_idx], rows_plain[n_plain])  # the same sampled negatives as without in-batch ones
    in_batch = rows[ib_idx]
    assert len(in_batch) == take and all(int(i) in pos.tolist() for i in in_batch)
    # uniform q = 1/10; expected occurrences among a row's candidates: k q(i) + take p(i)
    expect = lambda items: torch.log(k / 10 + take * torch.from_numpy(counts / 12.0)[items]).float()
    torch.testing.assert_close(lq_pos, expect(pos))
    torch.testing.assert_close(lq_neg, expect(rows[n_idx]))
    torch.testing.assert_close(lq_ib, expect(in_batch))
    # the positive left uncorrected on request; at most the batch's positions are taken
    no_pos = Objective(
        TrainConfig(loss="sampled-softmax", n_negatives=k, in_batch_negatives=50, logq_positive=False), 10, counts
    ).prepare(pos, epoch=1, index=0)
    assert torch.equal(no_pos[3], torch.zeros(len(pos))) and len(no_pos[5]) == len(pos)
    extra = (lq_pos, lq_neg, ib_idx, lq_ib)
    loss = LOSS_FUNCTIONS["sampled-softmax"](obj, torch.randn(6, 3), torch.randn(len(rows), 3), p_idx, n_idx, extra)
    assert torch.isfinite(loss)


def test_in_batch_negatives_only_for_sampled_softmax():
    with pytest.raises(SeqrecError, match="in_batch_negatives"):
        TrainConfig(loss="gbce", in_batch_negatives=8)
    with pytest.raises(SeqrecError, match="in_batch_negatives"):
        TrainConfig(loss="sampled-softmax", in_batch_negatives=-1)
