"""The training objective: the fused cross-entropy equals the plain reference, every loss name has its
function, and each list of choices has one home."""

import pytest
import torch

from seqrec import baselines, config, losses, train
from seqrec.losses import ce_loss
from seqrec.objective import LOSS_FUNCTIONS, fused_ce_loss


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
