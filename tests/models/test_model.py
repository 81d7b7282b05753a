import json

import pytest
import torch

from seqrec.data.dataset import PAD
from seqrec.errors import SeqrecError
from seqrec.models.sasrec import Block, SASRecConfig, SASRecModel
from seqrec.training.losses import ce_loss


def make(**kw) -> SASRecModel:
    torch.manual_seed(kw.pop("seed", 0))
    cfg = dict(n_items=30, hidden=16, blocks=2, heads=2, max_len=10, dropout=0.2)
    cfg.update(kw)
    return SASRecModel(SASRecConfig(**cfg))


def batch() -> torch.Tensor:
    """Left-padded [4, 10]: full row, length 3, length 1, all padding."""
    x = torch.zeros(4, 10, dtype=torch.long)
    x[0] = torch.arange(1, 11)
    x[1, -3:] = torch.tensor([5, 7, 9])
    x[2, -1] = 30
    return x


# ----------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_items", 0),
        ("hidden", 0),
        ("blocks", 0),
        ("heads", 0),
        ("max_len", 0),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("activation", "tanh"),
        ("norm", "mid"),
        ("hidden", 2.5),
        ("dropout", "x"),
    ],
)
def test_config_rejects_bad_fields(field, value):
    kw = {"n_items": 10, field: value}
    with pytest.raises(SeqrecError, match=field):
        SASRecConfig(**kw)


def test_config_hidden_divisible_by_heads():
    with pytest.raises(SeqrecError, match=r"hidden \(50\) must be divisible by heads \(3\)"):
        SASRecConfig(n_items=10, hidden=50, heads=3)


def test_config_json_round_trip():
    cfg = SASRecConfig(n_items=7, hidden=32, blocks=3, heads=4, max_len=20, dropout=0.1, activation="relu", norm="post")
    again = SASRecConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert SASRecConfig.from_dict({"n_items": 5, "dropout": 0}).dropout == 0.0


def test_config_from_dict_errors():
    with pytest.raises(SeqrecError, match=r"unknown keys \['colour', 'size'\]"):
        SASRecConfig.from_dict({"n_items": 5, "size": 1, "colour": 2})
    with pytest.raises(SeqrecError, match="n_items is missing"):
        SASRecConfig.from_dict({"hidden": 5})


# ----------------------------------------------------------------- model


def test_shapes_and_attributes():
    m = make()
    x = batch()
    assert m(x).shape == (4, 10, 16)
    assert m(x[:, -4:]).shape == (4, 4, 16)
    assert m.score(x).shape == (4, 31)
    assert m.item_embeddings().shape == (31, 16)
    assert (m.max_len, m.n_items) == (10, 30)
    assert m.config.hidden == 16
    assert torch.all(m.item_embeddings()[PAD] == 0)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(2, 11, dtype=torch.long))


@pytest.mark.parametrize("norm", ["pre", "post", "paper"])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_no_nan_forward_and_backward(norm, activation):
    m = make(norm=norm, activation=activation)
    m.train()
    x = batch()
    h = m(x)
    assert torch.isfinite(h).all()
    real = x[:, :-1] != PAD
    loss = ce_loss(h[:, :-1][real], x[:, 1:][real], m.item_embeddings()) + (h**2).sum() + m(x[2:]).sum()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the two rows with no or one item alone, eval mode
    m.eval()
    m.zero_grad()
    h = m(x[2:])
    (h.sum() + m.score(x[2:]).sum()).backward()
    assert torch.isfinite(h).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_padding_positions_are_zero():
    m = make()
    m.train()
    x = batch()
    h = m(x)
    assert torch.all(h[x == PAD] == 0)
    assert torch.all(h[x != PAD].abs().sum(-1) > 0)
    assert torch.all(m.score(x)[3] == 0)  # all-padding row: zero scores


@pytest.mark.parametrize("norm", ["pre", "post", "paper"])
def test_causality(norm):
    m = make(norm=norm).eval()
    x = batch()
    y = x.clone()
    y[0, 6:] = torch.tensor([20, 21, 22, 23])
    y[1, -1] = 29
    hx, hy = m(x), m(y)
    torch.testing.assert_close(hx[0, :6], hy[0, :6])
    torch.testing.assert_close(hx[1, :-1], hy[1, :-1])
    assert not torch.allclose(hx[0, 6:], hy[0, 6:])


@pytest.mark.parametrize("norm", ["pre", "post", "paper"])
def test_cropping_padding_changes_nothing(norm):
    m = make(norm=norm).eval()
    x = batch()[1:]  # longest real history: 3
    full = m(x)
    for width in (3, 5, 9):
        torch.testing.assert_close(m(x[:, -width:]), full[:, -width:])
    torch.testing.assert_close(m.score(x[:, -3:]), m.score(x))


def test_score_is_last_hidden_times_embeddings():
    m = make().eval()
    x = batch()
    with torch.no_grad():
        want = m(x)[:, -1] @ m.item_embeddings().T
    torch.testing.assert_close(m.score(x), want)
    # wider than max_len: only the last max_len columns are read
    wide = torch.cat([torch.randint(1, 31, (4, 5)), x], dim=1)
    torch.testing.assert_close(m.score(wide), want)


def test_score_runs_in_inference_mode_and_restores_mode():
    m = make(dropout=0.5)
    m.train()
    x = batch()
    a, b = m.score(x), m.score(x)
    assert torch.equal(a, b) and not a.requires_grad
    assert m.training
    assert m.score(torch.zeros(0, 10, dtype=torch.long)).shape == (0, 31)


def test_learns_a_deterministic_pattern():
    """next = (cur % 20) + 1: a tiny model trained with full softmax gets HR@1 near 1."""
    torch.manual_seed(0)
    n, max_len = 20, 8
    m = SASRecModel(SASRecConfig(n_items=n, hidden=32, blocks=1, heads=1, max_len=max_len, dropout=0.0))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)

    def sequences(b: int) -> torch.Tensor:
        start = torch.randint(0, n, (b, 1))
        seq = (start + torch.arange(max_len + 1)) % n + 1  # [b, max_len + 1]
        lengths = torch.randint(2, max_len + 2, (b, 1))
        return seq.masked_fill(torch.arange(max_len + 1) < max_len + 1 - lengths, PAD)

    m.train()
    for _ in range(40):
        s = sequences(32)
        inp, tgt = s[:, :-1], s[:, 1:]
        real = inp != PAD
        loss = ce_loss(m(inp)[real], tgt[real], m.item_embeddings())
        opt.zero_grad()
        loss.backward()
        opt.step()
    s = sequences(500)[:, :-1]
    s = s[(s != PAD).any(1)]
    top = m.score(s)[:, 1:].argmax(1) + 1
    hr1 = (top == s[:, -1] % n + 1).float().mean().item()
    assert hr1 > 0.95, (hr1, loss.item())
    assert torch.all(m.item_embeddings()[PAD] == 0)  # the PAD row never trains


def test_dropout_keeps_expected_fraction_and_scale():
    from seqrec.models.sasrec import Dropout

    d = Dropout(0.25)
    x = torch.ones(200_000)
    y = d(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1 / 0.75)))
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(d.eval()(x), x)


def test_paper_norm_normalises_queries_but_not_keys():
    """The authors' block: q = LN(x); x = q + attn(q, keys/values x); x = LN(x) + ffn(LN(x))."""
    torch.manual_seed(0)
    block = Block(SASRecConfig(n_items=5, hidden=8, heads=2, max_len=4, dropout=0.0, norm="paper")).eval()
    x = torch.randn(2, 4, 8) * 3 + 1
    mask = SASRecModel.attention_mask(torch.ones(2, 4, dtype=torch.bool))
    attn = block.attn
    q = block.ln1(x)
    w, b = attn.qkv.weight, attn.qkv.bias
    Q = (q @ w[:8].T + b[:8]).view(2, 4, 2, 4).transpose(1, 2)
    K = (x @ w[8:16].T + b[8:16]).view(2, 4, 2, 4).transpose(1, 2)
    V = (x @ w[16:].T + b[16:]).view(2, 4, 2, 4).transpose(1, 2)
    causal = torch.tril(torch.ones(4, 4, dtype=torch.bool))
    att = ((Q @ K.transpose(-1, -2)) / 2.0).masked_fill(~causal, float("-inf")).softmax(-1)
    y = q + attn.proj((att @ V).transpose(1, 2).reshape(2, 4, 8))
    y = block.ln2(y)
    want = y + block.ffn(y)
    with torch.no_grad():
        torch.testing.assert_close(block(x, mask), want)
