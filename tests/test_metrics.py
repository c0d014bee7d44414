"""Metrics against hand computations and lifelines."""
import math

import numpy as np
from hypothesis import given, settings, strategies as st
from lifelines.utils import concordance_index

from ddrsa.metrics import (benchmark_metrics, evaluate, expected_time, integrated_brier_score,
                           nasa_score, survival_from_logits)


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
    assert math.isclose(nasa_score(np.array([0.0]), np.array([13.0]))[0], math.e - 1)   # early
    assert nasa_score(np.array([15.0]), np.array([10.0]))[0] > nasa_score(np.array([5.0]), np.array([10.0]))[0]


def test_concordance_equals_lifelines_with_censoring():
    rng = np.random.default_rng(3)
    n, horizon = 200, 16
    surv = survival_from_logits(rng.normal(-2, 1, size=(n, horizon)))
    idx = rng.integers(0, 24, size=n)
    cens = idx >= horizon
    m = evaluate(surv, idx, cens, units=np.arange(n))
    times = np.where(cens, np.minimum(idx, horizon), idx)
    want = concordance_index(times, expected_time(surv), ~cens)
    assert math.isclose(m["concordance_index"], want)


def test_evaluate_by_hand():
    surv = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=float)  # predicts 2, 1, 4
    idx = np.array([3, 1, 6])
    cens = np.array([False, False, True])
    m = evaluate(surv, idx, cens, units=np.array([7, 7, 8]))
    assert math.isclose(m["rul_mae"], 0.5)          # errors -1, 0
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
