"""Time-dependent AUC and the between-units C-index, pinned to independent references:
scikit-survival's `cumulative_dynamic_auc` and brute-force pair loops written here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddrsa.metrics import comparable_pairs, concordance_between_units, cumulative_dynamic_auc, dynamic_auc


def _sample(seed: int, n: int = 80, horizon: int = 16):
    rng = np.random.default_rng(seed)
    event_index = rng.integers(0, horizon, n)
    censored = rng.random(n) < 0.3
    risk = -event_index + rng.normal(0, 4, n)  # informative but noisy
    return event_index, censored, risk


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dynamic_auc_equals_scikit_survival(seed):
    from sksurv.metrics import cumulative_dynamic_auc as sk_auc
    from sksurv.util import Surv

    event_index, censored, risk = _sample(seed)
    # the module's time mapping: an event at lag l happens at l, a censoring index c means "alive past c"
    times_cont = np.where(censored, event_index + 0.5, event_index).astype(float)
    y = Surv.from_arrays(event=~censored, time=times_cont)
    ks = [k for k in (2, 5, 9, 12) if times_cont.min() <= k < times_cont.max()]
    expected, _ = sk_auc(y, y, risk, np.asarray(ks, dtype=float))
    got = cumulative_dynamic_auc(risk, event_index, censored, ks)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_dynamic_auc_brute_force_without_censoring():
    # no censoring: every weight is 1, AUC(k) = share of (case, control) pairs ranked right
    rng = np.random.default_rng(7)
    event_index = rng.integers(0, 10, 40)
    censored = np.zeros(40, dtype=bool)
    risk = rng.integers(0, 5, 40).astype(float)  # many ties
    for k in (1, 4, 7):
        cases, controls = np.flatnonzero(event_index <= k), np.flatnonzero(event_index > k)
        score = sum(1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0 for i in cases for j in controls)
        assert cumulative_dynamic_auc(risk, event_index, censored, [k])[0] == pytest.approx(
            score / (len(cases) * len(controls))
        )


def test_dynamic_auc_of_survival_curves_ranks_by_failure_probability():
    # survival curves that know the truth rank perfectly: AUC 1 at every horizon
    event_index = np.array([0, 2, 4, 6, 8, 10])
    lags = np.arange(12)
    survival = (lags[None, :] < event_index[:, None]).astype(float) * 0.9 + 0.05
    got = dynamic_auc(survival, event_index, np.zeros(6, dtype=bool), [2, 5, 8])
    np.testing.assert_allclose(got, 1.0)


def _brute_c_between(t, p, obs, units):
    num = den = 0.0
    for i in range(len(t)):
        for j in range(len(t)):
            if i == j or units[i] == units[j] or not obs[i]:
                continue
            if t[i] < t[j] or (t[i] == t[j] and not obs[j]):
                den += 1
                num += 1.0 if p[i] < p[j] else 0.5 if p[i] == p[j] else 0.0
    return num / den


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_concordance_between_units_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 40))
    units = rng.integers(0, 5, n)
    t = rng.integers(0, 8, n).astype(float)  # ties in time on purpose
    obs = rng.random(n) < 0.7
    obs[0] = True
    p = rng.integers(0, 6, n).astype(float)  # ties in prediction on purpose
    if len(np.unique(units)) < 2:
        units[0] = units[0] + 1
    expected = _brute_c_between(t, p, obs, units)
    if not np.isfinite(expected):
        return
    assert concordance_between_units(t, p, obs, units) == pytest.approx(expected, abs=1e-9)


def test_comparable_pairs_counts_the_pair_rule():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 6, 30).astype(float)
    obs = rng.random(30) < 0.6
    brute = sum(
        1 for i in range(30) for j in range(30) if i != j and obs[i] and (t[i] < t[j] or (t[i] == t[j] and not obs[j]))
    )
    assert comparable_pairs(t, obs) == brute
