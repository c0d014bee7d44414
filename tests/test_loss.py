"""DDRSA loss and NASA auxiliary loss against brute-force and hand computations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ddrsa.config import DataConfig
from ddrsa.data import load_dataset
from ddrsa.errors import DDRSAError
from ddrsa.losses import DDRSALoss, LabelError, check_labels, ddrsa_loss, nasa_expected_loss, nasa_score_terms


def brute_force_ddrsa(logits, event_index, censored, lam):
    """Direct products of hazards, one sample at a time (float64, no log tricks)."""
    total = 0.0
    for x, l, c in zip(logits, event_index, censored):
        h = [1.0 / (1.0 + math.exp(-v)) for v in x]
        horizon = len(h)
        surv = []
        acc = 1.0
        for hk in h:
            acc *= 1.0 - hk
            surv.append(acc)
        if c:
            total += -(1 - lam) * math.log(surv[min(l, horizon - 1)])
        else:
            prev = surv[l - 1] if l > 0 else 1.0
            lz = h[l] * prev
            lu = 1.0 - surv[-1]
            total += -lam * math.log(lz) - (1 - lam) * math.log(lu)
    return total / len(logits)


def test_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(-1.5, 1.0, size=(32, 10))
    event_index = rng.integers(0, 14, size=32)
    censored = event_index >= 10
    for lam in (0.0, 0.25, 0.75, 1.0):
        got = ddrsa_loss(torch.tensor(logits), torch.tensor(event_index), torch.tensor(censored), lam)
        want = brute_force_ddrsa(logits, event_index, censored, lam)
        assert abs(got.item() - want) < 1e-5


def test_hand_computed_case():
    # h = (0.5, 0.5): event at lag 1 -> l_z = 0.5 * 0.5, l_u = 1 - 0.25 = 0.75
    logits = torch.zeros(1, 2)
    got = ddrsa_loss(logits, torch.tensor([1]), torch.tensor([False]), 0.75).item()
    assert abs(got - (-0.75 * math.log(0.25) - 0.25 * math.log(0.75))) < 1e-6
    # censored beyond the horizon -> l_c = S(1) = 0.25
    got = ddrsa_loss(logits, torch.tensor([5]), torch.tensor([True]), 0.75).item()
    assert abs(got - (-0.25 * math.log(0.25))) < 1e-6


def test_extreme_logits_are_finite_with_finite_gradients():
    logits = torch.tensor([[-200.0, 200.0, -200.0, 0.0], [200.0] * 4, [-200.0] * 4], requires_grad=True)
    loss = DDRSALoss(0.75, 0.1)(logits, torch.tensor([0, 3, 2]), torch.tensor([False, True, False]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-60, 60, allow_nan=False), min_size=6, max_size=6),
    st.integers(0, 9),
    st.booleans(),
    st.floats(0, 1),
)
def test_loss_finite_for_any_logits(values, index, is_censored, lam):
    logits = torch.tensor([values], dtype=torch.float32, requires_grad=True)
    loss = DDRSALoss(lam, 0.5)(logits, torch.tensor([index]), torch.tensor([is_censored or index >= 6]))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= -1e-5
    assert torch.isfinite(logits.grad).all()


def test_loss_decreases_when_mass_moves_to_true_lag():
    horizon = 8
    base = torch.full((1, horizon), -3.0)
    sharp = base.clone()
    sharp[0, 4] = 4.0
    idx, cens = torch.tensor([4]), torch.tensor([False])
    assert ddrsa_loss(sharp, idx, cens, 0.75) < ddrsa_loss(base, idx, cens, 0.75)


def test_nasa_score_terms_punish_late_more_than_early():
    d = torch.tensor([-10.0, 10.0, -30.0, 30.0, 0.0])
    s = nasa_score_terms(d)
    assert s[1] > s[0] and s[3] > s[2]
    assert abs(s[0].item() - (math.exp(10 / 13) - 1)) < 1e-5
    assert abs(s[1].item() - (math.exp(1.0) - 1)) < 1e-5
    assert s[4].item() == 0.0


def brute_force_nasa(logits, event_index, censored):
    """log1p of the expected PHM08 score per window, mean over all windows, by explicit loops
    (float64, plain products of hazards, no log space): the predicted lag is k < L with
    probability h(k) prod_{m<k} (1 - h(m)), and L with probability S(L-1). Uncensored: true lag
    l. Censored at c: known T >= t = min(c, L-1) + 1; only predicted lags k < t are scored,
    early by t - k."""
    total = 0.0
    for x, l, c in zip(logits, event_index, censored):
        horizon = len(x)
        surv, p = 1.0, []
        for v in x:
            hk = 1.0 / (1.0 + math.exp(-v))
            p.append(surv * hk)
            surv *= 1.0 - hk
        p.append(surv)
        expected = 0.0
        for k in range(horizon + 1):
            if c:
                t = min(int(l), horizon - 1) + 1
                if k < t:
                    expected += p[k] * (math.exp((t - k) / 13.0) - 1.0)
            else:
                d = k - int(l)
                score = math.exp(-d / 13.0) - 1.0 if d < 0 else math.exp(d / 10.0) - 1.0
                expected += p[k] * score
        total += math.log1p(expected)
    return total / len(logits)


def sharp_logits(horizon, lag, beyond=False):
    """(1, L) logits putting (almost) all mass on `lag` (or beyond the horizon)."""
    logits = torch.full((1, horizon), -40.0, dtype=torch.float64)
    if not beyond:
        logits[0, lag] = 40.0
    return logits


def test_expected_nasa_loss_matches_brute_force():
    rng = np.random.default_rng(1)
    for horizon in (6, 64, 125):
        logits = rng.normal(-2, 1.5, size=(40, horizon))
        idx = rng.integers(0, horizon + 30, size=40)
        cens = (idx >= horizon) | (rng.random(40) < 0.3)
        got = nasa_expected_loss(torch.tensor(logits), torch.tensor(idx), torch.tensor(cens)).item()
        assert abs(got - brute_force_nasa(logits, idx, cens)) < 1e-4 * max(1.0, got)


def test_expected_nasa_loss_per_member_axis():
    """A leading member axis gives each member the loss of its own batch."""
    rng = np.random.default_rng(2)
    logits = torch.tensor(rng.normal(-1, 1, size=(3, 8, 10)), dtype=torch.float32)
    idx = torch.tensor(rng.integers(0, 14, size=(3, 8)))
    cens = idx >= 10
    got = nasa_expected_loss(logits, idx, cens)
    assert got.shape == (3,)
    for m in range(3):
        assert torch.allclose(got[m], nasa_expected_loss(logits[m], idx[m], cens[m]))


def test_expected_nasa_loss_hand_values():
    """Sharp predictions: log1p(s) = |d|/13 early, d/10 late (a swap of the branches fails here);
    a censored window is charged only for predictions before its censoring time."""
    L = 64
    one = lambda c: torch.tensor([c])
    late = nasa_expected_loss(sharp_logits(L, 30), one(20), one(False)).item()
    early = nasa_expected_loss(sharp_logits(L, 10), one(20), one(False)).item()
    assert late == pytest.approx(10 / 10, abs=1e-6) and early == pytest.approx(10 / 13, abs=1e-6)
    # beyond the horizon is scored as lag L: true lag 54 -> late by 10
    assert nasa_expected_loss(sharp_logits(L, 0, beyond=True), one(54), one(False)).item() == pytest.approx(
        1.0, abs=1e-6
    )
    # censored, alive through lag 20 (T >= 21): predicting 11 is early by 10; 21, 40 or beyond: unknown
    assert nasa_expected_loss(sharp_logits(L, 11), one(20), one(True)).item() == pytest.approx(10 / 13, abs=1e-6)
    for lag in (21, 40):
        assert nasa_expected_loss(sharp_logits(L, lag), one(20), one(True)).item() < 1e-12
    assert nasa_expected_loss(sharp_logits(L, 0, beyond=True), one(200), one(True)).item() < 1e-12
    # censored beyond the horizon reads as T >= L: predicting lag L-1 costs exp(1/13) - 1
    assert nasa_expected_loss(sharp_logits(L, L - 1), one(200), one(True)).item() == pytest.approx(1 / 13, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 130), st.data())
def test_expected_nasa_loss_properties(horizon, data):
    """Bounded by L/10, non-negative, ~0 for a sharp correct prediction, and a sharp prediction
    `o` steps late costs more than one `o` steps early, by the NASA asymmetry (o/10 against o/13)."""
    values = data.draw(st.lists(st.floats(-30, 30, allow_nan=False), min_size=horizon, max_size=horizon))
    true_lag = data.draw(st.integers(0, horizon - 1))
    is_censored = data.draw(st.booleans())
    logits = torch.tensor([values], dtype=torch.float64, requires_grad=True)
    loss = nasa_expected_loss(logits, torch.tensor([true_lag]), torch.tensor([is_censored]))
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert -1e-9 <= loss.item() <= horizon / 10 + 1e-6
    idx, unc = torch.tensor([true_lag]), torch.tensor([False])
    assert nasa_expected_loss(sharp_logits(horizon, true_lag), idx, unc).item() < 1e-9
    offset = data.draw(st.integers(1, horizon))
    if true_lag - offset >= 0 and true_lag + offset < horizon:
        late = nasa_expected_loss(sharp_logits(horizon, true_lag + offset), idx, unc).item()
        early = nasa_expected_loss(sharp_logits(horizon, true_lag - offset), idx, unc).item()
        assert late > early
        assert late == pytest.approx(offset / 10, abs=1e-6) and early == pytest.approx(offset / 13, abs=1e-6)


def test_expected_nasa_loss_is_comparable_to_ddrsa_at_init():
    """Random-initialisation-like logits (hazard ~ 0.5): the term stays within a few units of the
    DDRSA loss (the unbounded version 1 was ~120 at L = 64 and ~48,000 at L = 125)."""
    rng = np.random.default_rng(3)
    for horizon in (64, 125):
        logits = torch.tensor(rng.normal(0, 0.1, size=(256, horizon)), dtype=torch.float32)
        idx = torch.tensor(rng.integers(0, 2 * horizon, size=256))
        cens = idx >= horizon
        nasa = nasa_expected_loss(logits, idx, cens).item()
        assert 0 < nasa <= horizon / 10
        assert nasa < 3 * ddrsa_loss(logits, idx, cens, 0.75).item()


def test_nasa_weight_zero_disables_auxiliary_loss():
    logits = torch.randn(5, 7)
    idx, cens = torch.tensor([0, 1, 2, 3, 9]), torch.tensor([False] * 4 + [True])
    assert torch.allclose(DDRSALoss(0.6, 0.0)(logits, idx, cens), ddrsa_loss(logits, idx, cens, 0.6))


def test_nasa_weight_adds_the_expected_nasa_loss():
    """DDRSALoss(lam, w) = ddrsa_loss + w * nasa_expected_loss, float and member forms (w > 0)."""
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(3))
    idx, cens = torch.tensor([0, 1, 2, 3, 9]), torch.tensor([False] * 4 + [True])
    want = ddrsa_loss(logits, idx, cens, 0.6) + 0.3 * nasa_expected_loss(logits, idx, cens)
    torch.testing.assert_close(DDRSALoss(0.6, 0.3)(logits, idx, cens), want)
    member = DDRSALoss(torch.tensor([0.6, 0.6], dtype=torch.float64), torch.tensor([0.3, 0.0]))
    got = member(torch.stack([logits, logits]), torch.stack([idx, idx]), torch.stack([cens, cens]))
    torch.testing.assert_close(got, torch.stack([want, ddrsa_loss(logits, idx, cens, 0.6)]), rtol=1e-5, atol=1e-6)


def test_uncensored_label_at_or_beyond_horizon_is_refused():
    logits = torch.zeros(3, 5)
    cens = torch.tensor([False, False, True])
    for bad in (5, 9):  # at and beyond the horizon L = 5
        idx = torch.tensor([1, bad, 7])
        for loss in (lambda: ddrsa_loss(logits, idx, cens, 0.75), lambda: DDRSALoss(0.75, 0.1)(logits, idx, cens)):
            with pytest.raises(LabelError, match="^ddrsa_loss: 1 uncensored label.*horizon 5") as err:
                loss()
            assert "\n" not in str(err.value)
            assert isinstance(err.value, ValueError) and isinstance(err.value, DDRSAError)
    with pytest.raises(LabelError, match="negative"):
        ddrsa_loss(logits, torch.tensor([1, -1, 7]), cens, 0.75)
    # the same labels censored are fine: censoring indices beyond the horizon are clipped
    ok = ddrsa_loss(logits, torch.tensor([1, 4, 7]), torch.tensor([False, True, True]), 0.75)
    assert torch.isfinite(ok)


def test_check_labels_on_numpy_splits():
    check_labels(np.array([0, 3, 4, 10]), np.array([False, False, True, True]), 5)
    with pytest.raises(LabelError, match="val: 2 uncensored"):
        check_labels(np.array([5, 6, 1]), np.array([False, False, False]), 5, where="val")


def test_loaders_never_emit_uncensored_labels_beyond_the_horizon():
    """Every split of the synthetic C-MAPSS and Azure loaders (same label code as the real files)."""
    for cfg in (
        DataConfig(data_source="synthetic", lookback_window=8, pred_horizon=16, window_stride=4),
        DataConfig(dataset="azure_pm", data_source="synthetic", lookback_window=8, pred_horizon=16),
    ):
        data = load_dataset(cfg)
        for name in ("train", "val", "test", "benchmark"):
            w = getattr(data, name)
            if w is not None:
                if name != "benchmark":  # both kinds of label are there to check
                    assert w.censored.any() and (~w.censored).any()
                check_labels(w.event_index, w.censored, cfg.pred_horizon, where=name)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    members=st.integers(1, 4),
    batch=st.integers(1, 9),
    horizon=st.integers(1, 12),
    lams=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    nasas=st.lists(st.sampled_from([0.0, 0.05, 0.3, 1.0]), min_size=4, max_size=4),
)
def test_member_axis_loss_is_each_member_s_ddrsa_loss(seed, members, batch, horizon, lams, nasas):
    """With a leading member axis (one lambda and NASA weight per member, as ddrsa/fused trains a
    group), member m's loss (and its gradient) = DDRSALoss(lambda_m, nasa_m) on its own batch, for
    any mix of censored and uncensored labels, NASA weights zero or not, batches without an
    uncensored sample included."""
    _assert_member_axis_is_each_member(seed, members, batch, horizon, lams, nasas)


@pytest.mark.parametrize(
    "lams, nasas",
    [
        ([0.2, 0.75, 1.0], [0.0, 0.3, 1.0]),  # NASA on for some members only
        ([0.5, 0.9, 0.0], [0.0, 0.0, 0.0]),  # NASA off for all: the DDRSA loss alone
        ([0.6, 0.6, 0.6], [0.05, 0.05, 0.05]),
    ],
)
def test_member_axis_fixed_cases(lams, nasas):
    """The property above on fixed cases (fast: what `make mutation` runs for the member axis)."""
    _assert_member_axis_is_each_member(7, 3, 6, 5, lams, nasas)
    loss = DDRSALoss(torch.tensor(lams, dtype=torch.float64), torch.tensor(nasas))
    assert loss.per_member and loss.use_nasa == any(n > 0 for n in nasas)
    assert not DDRSALoss(0.5, 0.0).use_nasa and DDRSALoss(0.5, 0.1).use_nasa and not DDRSALoss(0.5, 0.1).per_member


def _assert_member_axis_is_each_member(seed, members, batch, horizon, lams, nasas):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(members, batch, horizon, generator=g) * 3).requires_grad_(True)
    censored = torch.rand(members, batch, generator=g) < 0.4
    event = torch.randint(0, horizon, (members, batch), generator=g)
    lam = torch.tensor(lams[:members], dtype=torch.float64)
    nasa = torch.tensor(nasas[:members], dtype=torch.float32)
    got = DDRSALoss(lam, nasa)(logits, event, censored)
    got.sum().backward()
    for m in range(members):
        one = logits[m].detach().clone().requires_grad_(True)
        want = DDRSALoss(lams[m], nasas[m])(one, event[m], censored[m])
        want.backward()
        torch.testing.assert_close(got[m], want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logits.grad[m], one.grad, rtol=1e-5, atol=1e-6)
