"""Metrics against hand computations and independent references: a brute-force Harrell pair count
(C-index) and scikit-survival's IPCW Brier scores (integrated Brier score)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddrsa.metrics import (
    benchmark_metrics,
    brier_scores,
    censoring_survival,
    evaluate,
    expected_time,
    integrated_brier_score,
    nasa_score,
    survival_from_logits,
)


def test_survival_and_expected_time_by_hand():
    logits = np.zeros((1, 3))  # h = 0.5 each step
    surv = survival_from_logits(logits)
    assert np.allclose(surv, [[0.5, 0.25, 0.125]])
    assert math.isclose(expected_time(surv)[0], 0.875)


def test_expected_time_has_no_off_by_one():
    horizon = 10
    for lag in range(horizon):
        surv = (np.arange(horizon) < lag).astype(float)[None, :]  # certain event at `lag`
        assert expected_time(surv)[0] == lag
    assert expected_time(np.ones((1, horizon)))[0] == horizon  # never inside the horizon


def test_nasa_score_sign_and_values():
    assert math.isclose(nasa_score(np.array([20.0]), np.array([10.0]))[0], math.e - 1)  # late
    assert math.isclose(nasa_score(np.array([0.0]), np.array([13.0]))[0], math.e - 1)  # early
    assert nasa_score(np.array([15.0]), np.array([10.0]))[0] > nasa_score(np.array([5.0]), np.array([10.0]))[0]


def harrell_brute_force(event_index, censored, predicted):
    """Harrell's C by a plain double loop over ordered pairs, on the discrete labels.

    i must have an event (lag l_i). j outlives i when j has an event at a later lag, or j is
    censored with censoring index >= l_i (alive through that index, so alive at l_i). Two
    events at the same lag are not comparable. Concordant: predicted_i < predicted_j; a tie
    in predictions counts 1/2. NaN when no pair is comparable.
    """
    num, den = 0.0, 0
    for i in range(len(event_index)):
        if censored[i]:
            continue
        for j in range(len(event_index)):
            if j == i:
                continue
            if censored[j]:
                comparable = event_index[j] >= event_index[i]
            else:
                comparable = event_index[j] > event_index[i]
            if not comparable:
                continue
            den += 1
            if predicted[i] < predicted[j]:
                num += 1.0
            elif predicted[i] == predicted[j]:
                num += 0.5
    return num / den if den else float("nan")


def step_survival(predicted_lag, horizon):
    """S(k) = 1{k < p}: expected_time is exactly p, so ties in p are ties in predictions."""
    return (np.arange(horizon)[None, :] < np.asarray(predicted_lag)[:, None]).astype(float)


def test_concordance_matches_brute_force_pair_count():
    rng = np.random.default_rng(3)
    n, horizon = 200, 16
    surv = survival_from_logits(rng.normal(-2, 1, size=(n, horizon)))
    idx = rng.integers(0, 24, size=n)
    cens = (idx >= horizon) | (rng.random(n) < 0.25)  # censored inside the horizon too
    m = evaluate(surv, idx, cens, units=np.arange(n))
    want = harrell_brute_force(idx, cens, expected_time(surv))
    assert math.isclose(m["concordance_index"], want, rel_tol=1e-12)


def test_concordance_by_hand_with_ties_and_censoring():
    # lags/censoring: a event 2, b event 2 (tied with a: not comparable), c censored at 2
    # (alive at 2: comparable with a and b), d censored at 1 (not comparable with a or b)
    idx = np.array([2, 2, 2, 1])
    cens = np.array([False, False, True, True])
    pred = np.array([1, 3, 3, 0])  # pairs (a,c) concordant, (b,c) tied -> (1 + 0.5) / 2
    c = evaluate(step_survival(pred, 6), idx, cens, units=np.arange(4))["concordance_index"]
    assert c == 0.75 == harrell_brute_force(idx, cens, pred)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_concordance_matches_brute_force_with_ties_and_censoring(seed):
    rng = np.random.default_rng(seed)
    n, horizon = int(rng.integers(2, 30)), int(rng.integers(2, 8))
    idx = rng.integers(0, horizon + 3, size=n)
    cens = (idx >= horizon) | (rng.random(n) < 0.3)
    pred = rng.integers(0, min(horizon, 3) + 1, size=n)  # few values: many tied predictions
    surv = step_survival(pred, horizon)
    assert np.array_equal(expected_time(surv), pred)
    c = evaluate(surv, idx, cens, units=np.arange(n))["concordance_index"]
    want = harrell_brute_force(idx, cens, pred)
    assert (math.isnan(c) and math.isnan(want)) or math.isclose(c, want, rel_tol=1e-12)


def test_evaluate_by_hand():
    surv = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=float)  # predicts 2, 1, 4
    idx = np.array([3, 1, 6])
    cens = np.array([False, False, True])
    m = evaluate(surv, idx, cens, units=np.array([7, 7, 8]))
    assert math.isclose(m["rul_mae"], 0.5)  # errors -1, 0
    assert math.isclose(m["rul_rmse"], math.sqrt(0.5))
    assert math.isclose(m["nasa_score"], math.exp(1 / 13) - 1)
    assert m["n_test_units"] == 2 and m["n_test_windows"] == 3 and m["n_uncensored_windows"] == 2
    assert m["concordance_index"] == 1.0
    assert m["constant_prediction"] is False


def test_brier_score_rewards_the_right_model():
    horizon = 6
    idx = np.array([1, 3, 5, 10])
    cens = np.array([False, False, False, True])
    truth = (np.arange(horizon)[None, :] < idx[:, None]).astype(float)
    assert integrated_brier_score(truth, idx, cens) == 0.0
    inverted = 1.0 - truth
    assert integrated_brier_score(inverted, idx, cens) == 1.0
    vague = np.full_like(truth, 0.5)
    assert 0 < integrated_brier_score(vague, idx, cens) < 1


def test_brier_censored_inside_horizon_by_hand():
    """a: event at lag 1; b: censored at 1 (alive through 1); c: event at 3; d: censored beyond.

    Continuous times a 1, b 1.5, c 3, d >= 3.5. Censoring KM: at 1.5 three at risk (b, c, d), one
    censored -> G = 1 at k <= 1, 2/3 at k >= 2. Predictions 0.5 everywhere except S_b = 1.
    BS(k) = 1/4 * sum of: a alive (k=0) or dead (k>=1, / G(1) = 1): 0.25 each; b alive at k <= 1: 0,
    unknown later; c alive at k < 3, dead at 3: 0.25 / G(k); d alive: 0.25 / G(k).
    """
    horizon = 4
    idx = np.array([1, 1, 3, 9])
    cens = np.array([False, True, False, True])
    surv = np.full((4, horizon), 0.5)
    surv[1] = 1.0
    assert np.allclose(censoring_survival(idx, cens, horizon), [1, 1, 2 / 3, 2 / 3])
    want = np.array([0.75, 0.75, 0.25 + 0.375 + 0.375, 0.25 + 0.375 + 0.375]) / 4
    assert np.allclose(brier_scores(surv, idx, cens), want)  # b alive at k = 1 (its censoring index)
    trapezoid = ((want[1:] + want[:-1]) / 2).sum() / (horizon - 1)
    assert math.isclose(integrated_brier_score(surv, idx, cens), trapezoid)
    assert math.isclose(trapezoid, 0.21875)


def test_brier_perfect_model_ignores_predictions_after_censoring():
    rng = np.random.default_rng(5)
    n, horizon = 40, 10
    idx = rng.integers(0, 14, size=n)
    cens = (idx >= horizon) | (rng.random(n) < 0.4)
    k = np.arange(horizon)[None, :]
    perfect = np.where(cens[:, None], k <= idx[:, None], k < idx[:, None]).astype(float)
    after_censoring = cens[:, None] & (k > idx[:, None])
    noisy = np.where(after_censoring, rng.random((n, horizon)), perfect)  # unknown status: free
    assert integrated_brier_score(perfect, idx, cens) == 0.0
    assert integrated_brier_score(noisy, idx, cens) == 0.0
    dead_at_censoring = np.where(cens[:, None] & (k == idx[:, None]), 0.0, perfect)
    if (cens & (idx < horizon)).any():  # calling a censored unit dead at its censoring index costs
        assert integrated_brier_score(dead_at_censoring, idx, cens) > 0.0


def sksurv_reference(surv, idx, cens):
    """scikit-survival's IPCW Brier scores (G by Kaplan-Meier on the same samples).

    Discrete -> continuous time: event at lag l -> (event, l); censoring index c (alive through
    c) -> (censored, c + 0.5), unclipped. Returns (brier_score at k = 0..L-1, integrated score).
    """
    from sksurv.metrics import brier_score
    from sksurv.metrics import integrated_brier_score as sk_ibs
    from sksurv.util import Surv

    y = Surv.from_arrays(event=~cens, time=np.where(cens, idx + 0.5, idx).astype(float))
    times = np.arange(surv.shape[1])
    return brier_score(y, y, surv, times)[1], sk_ibs(y, y, surv, times)


@pytest.mark.parametrize("seed", range(6))
def test_brier_matches_scikit_survival(seed):
    rng = np.random.default_rng(seed)
    n, horizon = int(rng.integers(5, 120)), int(rng.integers(2, 20))
    idx = rng.integers(0, horizon + 8, size=n)
    cens = (idx >= horizon) | (rng.random(n) < 0.35)  # censored inside the horizon too
    idx[0], cens[0] = 0, False  # sksurv needs times within follow-up:
    idx[1], cens[1] = horizon + 2, True  # an event at 0 and a time beyond L - 1
    surv = survival_from_logits(rng.normal(-1.5, 1.5, size=(n, horizon)))
    want_bs, want_ibs = sksurv_reference(surv, idx, cens)
    assert (cens & (idx < horizon - 1)).any()
    np.testing.assert_allclose(brier_scores(surv, idx, cens), want_bs, rtol=1e-12, atol=1e-15)
    assert math.isclose(integrated_brier_score(surv, idx, cens), want_ibs, rel_tol=1e-12)
    assert math.isclose(evaluate(surv, idx, cens, np.arange(n))["integrated_brier_score"], want_ibs, rel_tol=1e-12)


def test_brier_matches_scikit_survival_hand_case():
    idx = np.array([0, 1, 1, 3, 9, 2])
    cens = np.array([False, False, True, False, True, True])
    surv = np.array(
        [
            [0.9, 0.6, 0.5, 0.1],
            [0.8, 0.3, 0.2, 0.2],
            [1.0, 0.9, 0.7, 0.7],
            [0.9, 0.9, 0.6, 0.3],
            [0.95, 0.9, 0.9, 0.85],
            [0.7, 0.7, 0.4, 0.3],
        ]
    )
    want_bs, want_ibs = sksurv_reference(surv, idx, cens)
    np.testing.assert_allclose(brier_scores(surv, idx, cens), want_bs, rtol=1e-12)
    assert math.isclose(integrated_brier_score(surv, idx, cens), want_ibs, rel_tol=1e-12)


def test_constant_prediction_is_flagged():
    surv = np.tile(np.linspace(1, 0.1, 8), (20, 1))
    m = evaluate(surv, np.arange(20) % 8, np.zeros(20, bool), units=np.arange(20))
    assert m["constant_prediction"] is True


def test_benchmark_caps_at_125():
    horizon = 200
    surv = (np.arange(horizon)[None, :] < np.array([[150], [20]])).astype(float)
    m = benchmark_metrics(surv, np.array([300, 30]))
    assert math.isclose(m["benchmark_rmse"], math.sqrt((0 + 100) / 2))
    assert m["benchmark_comparable"] is True
    assert benchmark_metrics(surv[:, :64], np.array([300, 30]))["benchmark_comparable"] is False


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_concordance_in_unit_interval(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    surv = survival_from_logits(rng.normal(0, 2, size=(n, 5)))
    idx = rng.integers(0, 8, size=n)
    cens = idx >= 5
    cens[0] = False
    idx[0] = min(idx[0], 4)
    c = evaluate(surv, idx, cens, units=np.arange(n))["concordance_index"]
    assert math.isnan(c) or 0.0 <= c <= 1.0
