"""Model zoo: shapes, training signal, dropout, padding masks, collapse at init."""

from __future__ import annotations

import math

import pytest
import torch

from ddrsa import config
from ddrsa.models import MODEL_NAMES, build_model, set_random_key_sampling, uses_attention
from ddrsa.models.probsparse import DistilLayer, ProbSparseSelfAttention

B, K, F, L = 4, 16, 5, 8
ATTENTION = [n for n in MODEL_NAMES if n.startswith(("transformer_", "probsparse_"))]
RNNS = [n for n in MODEL_NAMES if n not in ATTENTION]


@pytest.fixture(autouse=True)
def _small_torch():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


def batch(seed: int = 0, n_real: tuple[int, ...] = (16, 10, 3, 1)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, K, F, generator=g)
    mask = torch.zeros(B, K, dtype=torch.bool)
    for i, n in enumerate(n_real):
        mask[i, K - n :] = True
    return x * mask.unsqueeze(-1), mask


def make(name: str, dropout: float = 0.0):
    model = build_model(name, F, L, dropout, lookback_window=K)
    set_random_key_sampling(model, False)  # probsparse: no sampling noise in train-mode comparisons
    return model


def test_names_come_from_config():
    assert MODEL_NAMES is config.MODEL_NAMES
    assert len(MODEL_NAMES) == 9


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("lstm_huge", F, L, 0.1)


def test_uses_attention():
    assert [n for n in MODEL_NAMES if uses_attention(n)] == ATTENTION
    assert set(ATTENTION) == {"transformer_basic", "transformer_deep", "probsparse_basic", "probsparse_deep"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shape_finite_and_initial_hazard(name):
    model = make(name, 0.1).eval()
    x, mask = batch()
    with torch.no_grad():
        logits = model(x, mask)
    assert logits.shape == (B, L) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    mean_hazard = torch.sigmoid(logits).mean().item()
    assert 0.25 / L < mean_hazard < 4.0 / L  # head bias starts the hazard near 1/L_max


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_step_reaches_every_parameter_and_lowers_loss(name):
    model = make(name, 0.0)
    x, mask = batch()
    target = (torch.rand(B, L, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.eval()
    with torch.no_grad():
        initial = loss_fn(model(x, mask), target).item()
    model.train()
    for step in range(5):
        opt.zero_grad()
        loss = loss_fn(model(x, mask), target)
        loss.backward()
        if step == 0:
            for n, p in model.named_parameters():
                assert p.grad is not None, f"unused parameter {n}"
                assert torch.isfinite(p.grad).all(), f"non-finite grad in {n}"
                assert p.grad.abs().sum() > 0, f"zero grad in {n}"
        opt.step()
    model.eval()
    with torch.no_grad():
        final = loss_fn(model(x, mask), target).item()
    assert math.isfinite(final) and final < initial
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dropout_reaches_every_variant(name):
    x, mask = batch()
    model = make(name, 0.5).train()
    # the encoder state itself is stochastic (not only the decoder head)
    assert not torch.allclose(model.encode(x, mask), model.encode(x, mask))
    assert not torch.allclose(model(x, mask), model(x, mask))
    model.eval()
    assert torch.equal(model(x, mask), model(x, mask))
    model = make(name, 0.0).train()
    assert torch.equal(model(x, mask), model(x, mask))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_padding_values_do_not_change_the_output(name):
    model = make(name, 0.3).eval()
    x, mask = batch()
    noisy = x + 100.0 * torch.randn_like(x) * (~mask).unsqueeze(-1)
    assert not torch.equal(noisy, x)
    with torch.no_grad():
        assert torch.allclose(model(x, mask), model(noisy, mask), atol=1e-5)
        # and the real values do matter
        changed = x + torch.randn_like(x) * mask.unsqueeze(-1)
        assert not torch.allclose(model(x, mask), model(changed, mask), atol=1e-4)


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_mask_matters(name):
    """The same values read with a wider mask give a different output: the mask is used."""
    model = make(name).eval()
    x = torch.randn(B, K, F)
    narrow = torch.zeros(B, K, dtype=torch.bool)
    narrow[:, K - 4 :] = True
    with torch.no_grad():
        assert not torch.allclose(model(x, narrow), model(x, torch.ones(B, K, dtype=torch.bool)), atol=1e-4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_all_real_and_mostly_padded_histories(name):
    model = make(name, 0.1)
    x, _ = batch()
    for mask in (torch.ones(B, K, dtype=torch.bool), batch(n_real=(2, 2, 2, 2))[1], batch(n_real=(1, 1, 1, 1))[1]):
        model.train()
        logits = model(x * mask.unsqueeze(-1), mask)
        assert torch.isfinite(logits).all()
        logits.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()
        model.eval()
        with torch.no_grad():
            assert torch.isfinite(model(x * mask.unsqueeze(-1), mask)).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_not_collapsed_at_init(name):
    """Different histories give clearly different hazards at init (deep RNNs once collapsed)."""
    torch.manual_seed(3)
    model = make(name, 0.1).eval()
    x = torch.randn(16, 32, F)
    mask = torch.ones(16, 32, dtype=torch.bool)
    with torch.no_grad():
        logits = model(x, mask)
    spread = logits.std(dim=0).mean().item()  # across samples, per horizon step
    assert spread > 1e-2, f"{name}: hazard nearly constant across inputs at init ({spread:.2e})"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bf16_autocast_forward_backward(name):
    """Mixed precision (what the trainer uses on CUDA) runs, on CPU here; logits stay float32."""
    model = make(name, 0.1).train()
    x, mask = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x, mask)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_deep_rnn_does_not_collapse_after_training():
    """A few hundred Adam steps on a learnable target keep the deep LSTM input-dependent."""
    torch.manual_seed(0)
    model = make("lstm_deep", 0.1)
    x = torch.randn(32, K, F)
    mask = torch.ones(32, K, dtype=torch.bool)
    # target: hazard high when the last reading of feature 0 is positive
    target = (x[:, -1, 0] > 0).float().unsqueeze(1).expand(32, L)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x, mask), target).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        hazard = torch.sigmoid(model(x, mask)).mean(1)
    assert hazard[target[:, 0] > 0].mean() > hazard[target[:, 0] == 0].mean() + 0.2


def test_probsparse_sampling_train_random_eval_deterministic():
    model = build_model("probsparse_basic", F, L, 0.0, lookback_window=K)
    x, mask = batch()
    model.eval()
    assert torch.equal(model(x, mask), model(x, mask))
    model.train()  # random key sampling (Informer); dropout 0 -> only the sampling varies
    outs = [model(x, mask) for _ in range(5)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def test_probsparse_attention_equals_full_attention_when_all_queries_active():
    """With u >= L every real query gets full masked softmax attention."""
    torch.manual_seed(0)
    attn = ProbSparseSelfAttention(16, 2, 0.0, factor=100).eval()
    x = torch.randn(3, 7, 16)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, :3] = False
    mask[2, :6] = False
    out = attn(x, mask)
    q, k, v = attn.qkv(x).view(3, 7, 3, 2, 8).permute(2, 0, 3, 1, 4)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
    ref = attn.out((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(3, 7, 16))
    assert torch.allclose(out[mask], ref[mask], atol=1e-5)


def test_probsparse_lazy_queries_get_masked_mean_of_v():
    torch.manual_seed(0)
    attn = ProbSparseSelfAttention(8, 1, 0.0, factor=1).eval()  # u = ceil(ln 20) = 3 of 20
    x = torch.randn(2, 20, 8)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, :12] = False
    out = attn(x, mask)
    _, _, v = attn.qkv(x).view(2, 20, 3, 1, 8).permute(2, 0, 3, 1, 4)
    for b in range(2):
        mean_v = attn.out(v[b, 0][mask[b]].mean(0))
        lazy = torch.isclose(out[b], mean_v, atol=1e-5).all(-1)
        assert int(lazy[mask[b]].sum()) == int(mask[b].sum()) - 3


def test_distil_halves_length_and_mask():
    layer = DistilLayer(8)
    x = torch.randn(2, 16, 8)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0] = True
    mask[1, 11:] = True  # real 11..15
    y, m = layer(x, mask)
    assert y.shape == (2, 8, 8) and m.shape == (2, 8)
    assert m[0].all()
    # pooled i covers inputs 2i-1, 2i, 2i+1: real from i = 5 (input 11) on
    assert m[1].tolist() == [False] * 5 + [True] * 3


def test_seeded_attention_is_pytorch_attention_with_its_own_dropout_stream():
    """SeededMultiheadAttention's own path (used in training with a generator) computes what
    nn.MultiheadAttention computes, padding included; its dropout masks follow the generator,
    not the global RNG."""
    from ddrsa.models.seeding import SeededMultiheadAttention

    g = torch.Generator().manual_seed(3)
    attn = SeededMultiheadAttention(8, 2, dropout=0.0)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ref.load_state_dict(attn.state_dict())
    x = torch.randn(3, 5, 8, generator=g)
    pad = torch.tensor([[True, True, False, False, False], [False] * 5, [True] * 4 + [False]])
    want, want_w = ref(x, x, x, key_padding_mask=pad)
    got, got_w = attn.attend(x, x, x, pad, True, True, lambda w: w)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_w, want_w, rtol=1e-5, atol=1e-6)

    attn.dropout = 0.4
    attn.train()

    def out(global_seed: int, stream_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        attn.generator = torch.Generator().manual_seed(stream_seed)
        return attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]

    assert torch.equal(out(0, 1), out(99, 1))
    assert not torch.equal(out(0, 1), out(0, 2))


@pytest.mark.parametrize("name", ["transformer_basic", "probsparse_basic", "lstm_deep"])
def test_training_forward_ignores_the_global_rng(name):
    """Every random draw of a training forward (init, dropout, attention dropout, key sampling)
    comes from the experiment's generators: the global RNG state changes nothing."""
    from ddrsa.models.seeding import set_generator

    def run(global_seed: int):
        torch.manual_seed(global_seed)
        model = build_model(name, F, L, 0.3, lookback_window=K, generator=torch.Generator().manual_seed(7))
        set_generator(model, torch.Generator().manual_seed(11))
        return model.train()(*batch())

    torch.testing.assert_close(run(0), run(123), rtol=0, atol=0)
