"""ddrsa.policy against an independent reference: optimal stopping on small Markov chains solved by
value iteration, Monte Carlo over simulated units, and hand-built sequences.

The chain: health states 0..m-1 observed at every step; in state s the event happens in the current
step with probability p[s] (a lag-0 event: intervening in that step is a miss); otherwise the state
moves by the transition matrix P. Intervening at step tau costs T - tau when T > tau, else C.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddrsa import policy
from ddrsa.data.azure_pm import azure_labels
from ddrsa.data.windows import make_windows, run_to_failure_labels


# ------------------------------------------------------------------------ exact law of a chain
def chain_survival(P: np.ndarray, p: np.ndarray, L: int) -> np.ndarray:
    """S_s(k) = P(l > k | state s now), k = 0..L-1, by forward recursion over the alive mass. (m, L)."""
    m = len(p)
    out = np.zeros((m, L))
    for s in range(m):
        a = np.zeros(m)
        a[s] = 1.0
        for k in range(L):
            a = a * (1.0 - p)  # survives step j + k
            out[s, k] = a.sum()
            a = a @ P
    return out


def expected_life(P, p) -> np.ndarray:
    """E[l | s] (steps until the event), from l = 0 w.p. p[s], else 1 + l at the next state."""
    m = len(p)
    A = np.eye(m) - (1.0 - p)[:, None] * P
    return np.linalg.solve(A, 1.0 - p)


def value_iteration(P, p, C, tol=1e-12, max_iter=200_000):
    """Optimal expected cost V(s) and the stop / continue costs at the fixed point."""
    stop = C * p + expected_life(P, p)
    V = stop.copy()
    for _ in range(max_iter):
        cont = C * p + (1.0 - p) * (P @ V)
        new = np.minimum(stop, cont)
        if np.max(np.abs(new - V)) < tol:
            V = new
            break
        V = new
    cont = C * p + (1.0 - p) * (P @ V)
    return V, stop, cont


def policy_value(P, p, C, stop_set):
    """Exact (expected cost, miss probability, expected time left 1{caught}) of the stationary policy
    that intervenes in the states of `stop_set`, from each state (linear solves)."""
    m = len(p)
    B = np.asarray(stop_set, bool)
    life = expected_life(P, p)
    A = np.eye(m) - np.where(B, 0.0, 1.0 - p)[:, None] * P
    miss = np.linalg.solve(A, p)  # lag-0 event now; else (1-p) P miss if waiting
    left = np.linalg.solve(A, np.where(B, life, 0.0))
    return left + C * miss, miss, left


def monotone_chain(rng_or_draw, m, q, p):
    """Stochastically monotone, upper-triangular chain: from s move up by d w.p. q[d] (mass past
    the last state lumped there); failure probabilities p increasing. The paper's setting."""
    P = np.zeros((m, m))
    for s in range(m):
        for d, w in enumerate(q):
            P[s, min(s + d, m - 1)] += w
    return P, np.asarray(p, float)


CHAINS = [
    monotone_chain(None, 3, [0.9, 0.1], [0.0, 0.02, 0.2]),
    monotone_chain(None, 4, [0.7, 0.2, 0.1], [0.001, 0.01, 0.05, 0.3]),
    monotone_chain(None, 5, [0.95, 0.05], [0.0, 0.0, 0.01, 0.1, 0.5]),
]


@pytest.mark.parametrize("chain", range(len(CHAINS)))
@pytest.mark.parametrize("C", [3.0, 8.0, 20.0, 64.0, 256.0])
@pytest.mark.parametrize("L", [2, 16, 64])
def test_oti_makes_the_dynamic_programs_decisions_and_cost(chain, C, L):
    P, p = CHAINS[chain]
    V, stop, cont = value_iteration(P, p, C)
    decisive = np.abs(stop - cont) > 1e-7
    dp_stop = stop <= cont
    oti_stop = C >= policy.oti_threshold(chain_survival(P, p, L))
    np.testing.assert_array_equal(oti_stop[decisive], dp_stop[decisive])
    cost, _, _ = policy_value(P, p, C, oti_stop)
    np.testing.assert_allclose(cost, V, rtol=1e-8, atol=1e-8)


def nonmonotone_chain():
    """State 0 (no risk now) leads to a risky state 1 (p 0.6) or a long-lived state 2 (p 0.001);
    state 1 leads to 2. Failure risk is not increasing along the chain: outside the paper's setting."""
    P = np.array([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    return P, np.array([0.0, 0.6, 0.001])


def test_outside_the_papers_assumptions_oti_can_stop_where_waiting_is_better():
    """The horizon limits OTI's plans to L-1 steps: in state 0 every plan within 8 steps looks worse
    than intervening (c* ~ 15), while the dynamic program waits (and beats OTI by far)."""
    P, p = nonmonotone_chain()
    C, L = 30.0, 8
    V, stop, cont = value_iteration(P, p, C)
    oti_stop = C >= policy.oti_threshold(chain_survival(P, p, L))
    assert oti_stop[0] and cont[0] < stop[0]
    assert policy_value(P, p, C, oti_stop)[0][0] > V[0] + 100.0


@st.composite
def any_chain(draw):
    m = draw(st.integers(2, 4))
    P = np.array([draw(st.lists(st.floats(0.01, 1.0), min_size=m, max_size=m)) for _ in range(m)])
    P /= P.sum(1, keepdims=True)
    p = np.array(draw(st.lists(st.floats(0.01, 0.9), min_size=m, max_size=m)))
    return P, p


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_chain(), st.floats(1.5, 300.0), st.integers(2, 40))
def test_wherever_the_optimum_intervenes_oti_intervenes(chain, C, L):
    """For ANY chain: intervening now is optimal only if it beats every open-loop plan, so the
    dynamic program's stopping states are OTI stopping states (at any horizon)."""
    P, p = chain
    _, stop, cont = value_iteration(P, p, C)
    oti_stop = C >= policy.oti_threshold(chain_survival(P, p, L))
    dp_stop = stop < cont - 1e-7
    assert not (dp_stop & ~oti_stop).any()


@st.composite
def paper_chain(draw):
    m = draw(st.integers(2, 5))
    k = draw(st.integers(2, 3))
    q = np.array(draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k)))
    q[0] += 0.2
    q /= q.sum()
    p = np.sort(np.array(draw(st.lists(st.floats(0.0, 0.6), min_size=m, max_size=m))))
    p[-1] = max(p[-1], 0.05)
    return monotone_chain(None, m, q, p)


def heuristic_stop_sets(S: np.ndarray):
    """Stop sets of the tte and window heuristics over their threshold grids, from S (m, L)."""
    L = S.shape[1]
    sets = []
    for theta in policy.policy_grid("tte", L):
        sets.append(policy.expected_tte(S) <= theta)
    for w in (1, 2, max(1, L // 4), L):
        for prob in policy.policy_grid("window", L)[::7]:
            sets.append(policy.window_probability(S, w) >= prob)
    return sets


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paper_chain(), st.sampled_from([2.0, 5.0, 8.0, 16.0, 40.0, 128.0]), st.sampled_from([4, 16, 64]))
def test_no_heuristic_beats_oti_at_its_miss_rate(chain, C, L):
    """On chains in the paper's setting (started healthy): no tte/window threshold has a lower
    expected cost than OTI at the same C, hence none with a miss rate at most OTI's has less
    expected time left (E[time left 1{caught}])."""
    P, p = chain
    S = chain_survival(P, p, L)
    cost_o, miss_o, left_o = (v[0] for v in policy_value(P, p, C, C >= policy.oti_threshold(S)))
    for stop_set in heuristic_stop_sets(S):
        cost_h, miss_h, left_h = (v[0] for v in policy_value(P, p, C, stop_set))
        assert cost_o <= cost_h + 1e-9
        if miss_h <= miss_o + 1e-12:
            assert left_o <= left_h + 1e-9


# ------------------------------------------------------------------------ Monte Carlo units
def simulate_units(P, p, L, n, rng, start=0):
    """n units from `start` run to failure; one window per step: (survival, unit, step, rul, censored)."""
    S_state = chain_survival(P, p, L)
    states = []
    state = np.full(n, start)
    alive = np.ones(n, bool)
    t = 0
    life = np.zeros(n, np.int64)
    while alive.any():
        states.append(np.where(alive, state, -1))
        fail = alive & (rng.random(n) < p[np.maximum(state, 0)])
        life[fail] = t
        alive &= ~fail
        cum = P[state].cumsum(1)
        state = np.where(alive, (rng.random(n)[:, None] > cum).sum(1), state)
        t += 1
    states = np.array(states)  # (steps, n), -1 after the event
    steps, units = np.nonzero(states.T >= 0)  # unit-major, time order
    rul = life[steps] - units
    st_ = states.T[steps, units]
    return S_state[st_], steps, units, rul, rul >= L


@pytest.mark.parametrize("C", [8.0, 64.0])
def test_monte_carlo_units_reach_the_dynamic_programs_cost(C):
    P, p = CHAINS[1]
    L = 32
    rng = np.random.default_rng(7)
    surv, unit, step, rul, cens = simulate_units(P, p, L, 20_000, rng)
    seqs = policy.sequences(unit, step, rul, cens)
    assert len(seqs) == 20_000 and seqs.failed.all()
    first = policy.first_firing(policy.oti_threshold(surv) <= C, seqs)
    out = policy.outcome(first, seqs)
    cost = np.where(out["missed"], C, np.nan_to_num(out["time_left"]))
    V, _, _ = value_iteration(P, p, C)
    se = cost.std() / np.sqrt(len(cost))
    assert abs(cost.mean() - V[0]) < 4 * se
    _, miss, _ = policy_value(P, p, C, C >= policy.oti_threshold(chain_survival(P, p, L)))
    row = policy.evaluate_policy(surv, seqs, "oti", [C])[0]
    assert abs(row["miss_rate"] - miss[0]) < 4 * np.sqrt(miss[0] * (1 - miss[0]) / 20_000) + 1e-9
    assert row["n_caught"] + row["n_missed"] == 20_000


# ------------------------------------------------------------------------ hand-built sequences
def _seqs(rul, unit=None, censored=None, step=None):
    rul = np.asarray(rul, float)
    unit = np.zeros(len(rul), int) if unit is None else np.asarray(unit)
    step = np.arange(len(rul)) if step is None else np.asarray(step)
    censored = np.zeros(len(rul), bool) if censored is None else np.asarray(censored, bool)
    return policy.sequences(unit, step, rul, censored)


def _one(score, seqs, t=0.5):
    return policy.evaluate_scores(np.asarray(score, float), [t], seqs)[0]


def test_catch_counts_the_time_left_at_the_first_firing():
    seqs = _seqs([4, 3, 2, 1, 0])
    row = _one([1, 0, 1, 0, 0], seqs)  # fires at rul 3, again later: acts once
    assert (row["miss_rate"], row["mean_tte"], row["n_caught"]) == (0.0, 3.0, 1)


def test_firing_at_lag_zero_is_a_miss():
    row = _one([1, 1, 1, 1, 0], _seqs([4, 3, 2, 1, 0]))
    assert (row["miss_rate"], row["n_missed"], row["n_caught"]) == (1.0, 1, 0)
    assert np.isnan(row["mean_tte"])


def test_never_firing_is_a_miss_and_a_late_firing_one_step_ahead_is_a_catch():
    seqs = _seqs([2, 1, 0, 2, 1, 0], unit=[1, 1, 1, 2, 2, 2])
    row = _one([1, 1, 1, 1, 0, 1], seqs)
    assert (row["miss_rate"], row["mean_tte"], row["n_failures"]) == (0.5, 1.0, 2)


def test_the_policy_is_judged_per_unit_not_per_window():
    """Firing in 1 of 5 windows of each of 2 units: both units caught (a per-window count would say
    80% of windows 'missed')."""
    seqs = _seqs([4, 3, 2, 1, 0] * 2, unit=[1] * 5 + [2] * 5)
    row = _one([1, 0, 1, 1, 1, 1, 1, 0, 1, 1], seqs)
    assert (row["miss_rate"], row["n_caught"], row["mean_tte"], row["median_tte"]) == (0.0, 2, 2.5, 2.5)


def test_censored_sequences_count_false_alarms_never_catches():
    # unit 1 fails (rul 2..0); unit 2's record ends alive (censored, censoring index 2..0)
    seqs = _seqs([2, 1, 0, 2, 1, 0], unit=[1, 1, 1, 2, 2, 2], censored=[0, 0, 0, 1, 1, 1])
    row = _one([1, 1, 1, 0, 1, 1], seqs)  # fires only on the censored unit
    assert (row["miss_rate"], row["false_alarms"], row["n_failures"], row["n_censored"]) == (1.0, 1, 1, 1)
    assert row["n_caught"] == 0 and np.isnan(row["mean_tte"])
    quiet = _one([1, 1, 1, 1, 1, 1], seqs)
    assert quiet["false_alarms"] == 0


def test_windows_of_an_azure_machine_split_into_segments_with_stride():
    """Real labels (azure_labels) and windows (make_windows, stride 3): failures at steps 10 and 25
    of 40, horizon 8 -> two failure segments and one censored tail, in time order. Kept steps are
    39, 36, ..., 0 (counted back from the last); step 10, the first failure, is not kept."""
    ev, cens, rul = azure_labels(40, np.array([10, 25]), 8)
    w = make_windows([7], [np.zeros((40, 1))], [ev], [cens], [rul], lookback=4, stride=3)
    seqs = policy.windows_sequences(w)
    assert list(seqs.failed) == [True, True, False] and list(seqs.unit) == [7, 7, 7]
    steps = w.end[seqs.order] - 3  # row -> step (K-1 = 3 padding rows)
    assert [list(steps[a:b]) for a, b in zip(seqs.bounds[:-1], seqs.bounds[1:])] == [
        [0, 3, 6, 9],
        [12, 15, 18, 21, 24],
        [27, 30, 33, 36, 39],
    ]
    # fire everywhere: segment 1 caught at step 0 (rul 10), segment 2 at step 12 (rul 13), tail alarm
    row = _one(np.zeros(len(w)), seqs)
    assert (row["n_caught"], row["false_alarms"], row["mean_tte"]) == (2, 1, (10 + 13) / 2)
    # fire from step 24 on: segment 2 caught one step ahead (rul 1); segment 1 never fired: missed
    row = _one(np.where(w.end - 3 >= 24, 0.0, 1.0), seqs)
    assert (row["n_caught"], row["n_missed"], row["mean_tte"], row["false_alarms"]) == (1, 1, 1.0, 1)


def test_stride_lets_the_policy_act_only_at_kept_steps():
    """C-MAPSS-like unit of 10 cycles, stride 4: kept every 4th window counted back from the failure
    step: rul 8, 4, 0."""
    ev, cens, rul = run_to_failure_labels(10, 64)
    w = make_windows([1], [np.zeros((10, 1))], [ev], [cens], [rul], lookback=2, stride=4)
    assert sorted(w.rul.tolist()) == [0.0, 4.0, 8.0]
    seqs = policy.windows_sequences(w)
    order_rul = w.rul[seqs.order].tolist()
    assert order_rul == [8.0, 4.0, 0.0]
    assert _one(np.where(w.rul == 0, 0.0, 1.0), seqs)["miss_rate"] == 1.0  # sees danger only at lag 0
    assert _one(np.where(w.rul == 4, 0.0, 1.0), seqs)["mean_tte"] == 4.0


# ------------------------------------------------------------------------ the OTI threshold itself
def test_oti_threshold_by_brute_force_over_plans():
    """c* = the least C at which g(0) <= g(v) for every plan v, g from its definition (tail mass
    beyond L put at lag L: it cancels)."""
    rng = np.random.default_rng(3)
    h = rng.uniform(0, 0.3, size=(50, 12))
    S = np.cumprod(1 - h, axis=1)
    cstar = policy.oti_threshold(S)
    L = S.shape[1]
    for s, c in zip(S, cstar):

        def g(v, C, s=s):
            tail = s[-1]  # any tail value: compare plans with two
            return C * (1 - s[v]) + s[v:].sum() + tail * 7.0

        for C in (c * 0.999, c * 1.001):
            stop = all(g(0, C) <= g(v, C) + 1e-12 for v in range(1, L))
            assert stop == (C >= c)


def test_oti_intervenes_at_a_tie_and_never_without_risk_in_the_horizon():
    S = np.array([[1.0, 0.5, 0.25, 0.125], [0.9, 0.8, 0.5, 0.2], [1, 1, 1, 1], [0, 0, 0, 0.0]])
    c = policy.oti_threshold(S)
    assert c[0] == 2.0 and c[2] == np.inf and c[3] == 0.0  # every plan ratio is exactly 2
    np.testing.assert_allclose(c[1], 9.0)
    row = policy.evaluate_policy(S[:1], _seqs([3]), "oti", [2.0])[0]
    assert row["n_caught"] == 1 and row["mean_tte"] == 3.0


def test_oti_metrics_keys_and_values():
    seqs = _seqs([3, 2, 1, 0])
    S = np.array([[1, 1, 1, 1], [1.0, 0.95, 0.9, 0.85], [1.0, 0.7, 0.4, 0.1], [0.0, 0, 0, 0]])
    m = policy.oti_metrics(S, seqs, prefix="val_")
    assert set(m) == {"val_" + k for k in policy.OTI_METRIC_KEYS} | {"val_oti_n_failures", "val_oti_n_censored"}
    cstar = policy.oti_threshold(S)  # inf, 20, ~3.33, 0
    for c in policy.OTI_COSTS:
        first = 1 if c >= cstar[1] else 2
        assert m[f"val_oti_miss_rate_C{c}"] == 0.0 and m[f"val_oti_avg_tte_C{c}"] == 3 - first


def test_choose_cost_picks_the_miss_rate_closest_to_alpha():
    assert policy.choose_cost({8: 0.3, 16: 0.1, 32: 0.04, 64: 0.0}, 0.05) == 32
    assert policy.choose_cost({8: 0.1, 16: 0.0}, 0.05) == 16  # tie: fewer misses
    assert policy.choose_cost({8: float("nan")}, 0.05) is None


# ------------------------------------------------------------------------ records (a real run)
def _walk_units(survival, windows, C):
    """Brute-force per-unit walk (plain loops, no ddrsa.policy grouping): (miss rate, mean time left)."""
    cstar = policy.oti_threshold(survival)
    misses, left, n_fail = 0, [], 0
    for u in np.unique(windows.unit):
        idx = np.flatnonzero(windows.unit == u)
        idx = idx[np.argsort(windows.end[idx])]
        segments, current = [], [idx[0]]
        for a, b in zip(idx[:-1], idx[1:]):  # a failure between a and b: rul jumps up
            if windows.rul[b] > windows.rul[a] - (windows.end[b] - windows.end[a]):
                segments.append(current)
                current = []
            current.append(b)
        segments.append(current)
        for seg in segments:
            if windows.censored[seg].all():
                continue
            n_fail += 1
            fired = [i for i in seg if cstar[i] <= C]
            if fired and windows.rul[fired[0]] >= 1:
                left.append(float(windows.rul[fired[0]]))
            else:
                misses += 1
    return misses / n_fail, (float(np.mean(left)) if left else None)


@pytest.mark.parametrize("dataset, split", [("azure_pm", "held-out"), ("turbofan", "official")])
def test_a_run_writes_oti_metrics_walked_per_unit(tmp_path, dataset, split):
    """test_metrics.json holds oti_* on held-out test units (Azure: several segments per machine) and
    val_oti_* always; never oti_* on the official C-MAPSS test units. Values = a per-unit loop."""
    import json

    import torch

    from ddrsa.config import ExperimentConfig
    from ddrsa.data import load_dataset
    from ddrsa.device import Split
    from ddrsa.evaluation import predict_logits
    from ddrsa.metrics import survival_from_logits
    from ddrsa.models import build_model
    from ddrsa.settings import Settings
    from ddrsa.trainer import train

    config = ExperimentConfig(
        dataset=dataset,
        model="gru_basic",
        num_epochs=1,
        data_source="synthetic",
        max_units=12,
        window_stride=4,
        lookback_window=16,
        pred_horizon=16,
        test_split=split,
        amp=False,
    )
    result = train(config, tmp_path / "run", settings=Settings(torch_threads=1))
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert result.status == "completed"
    val_keys = {"val_" + k for k in policy.OTI_METRIC_KEYS}
    assert val_keys <= set(metrics)
    assert (set(policy.OTI_METRIC_KEYS) <= set(metrics)) == (split == "held-out")
    data = load_dataset(config.data_config(), Settings(torch_threads=1))
    model = build_model(
        config.model, n_features=data.train.n_features, pred_horizon=16, dropout=0.1, lookback_window=16
    )
    model.load_state_dict(torch.load(tmp_path / "run" / "checkpoint_best.pt", weights_only=True)["model"])
    parts = [("val_", data.val)] + ([("", data.test)] if split == "held-out" else [])
    for prefix, windows in parts:
        surv = survival_from_logits(
            predict_logits(model, Split.from_windows(windows, torch.device("cpu")), torch.device("cpu"), False).numpy()
        )
        for c in policy.OTI_COSTS:
            miss, tte = _walk_units(surv, windows, c)
            assert metrics[prefix + policy.oti_miss_key(c)] == pytest.approx(miss)
            got = metrics[prefix + policy.oti_tte_key(c)]
            assert (got is None and tte is None) or got == pytest.approx(tte)


# ------------------------------------------------------------------------ the intervention criterion
def _record(model, seed, val_rates, val_tte, test_rates, test_tte):
    metrics = {"rul_rmse": 10.0, "val_rul_rmse": 10.0, "val_loss": 1.0}
    for c, vr, vt, tr, tt in zip(policy.OTI_COSTS, val_rates, val_tte, test_rates, test_tte):
        metrics.update(
            {
                "val_" + policy.oti_miss_key(c): vr,
                "val_" + policy.oti_tte_key(c): vt,
                policy.oti_miss_key(c): tr,
                policy.oti_tte_key(c): tt,
            }
        )
    return {
        "experiment_id": f"{model}{seed}",
        "name": f"turbofan/{model}/s{seed}",
        "dataset": "turbofan",
        "subset": "FD001",
        "model": model,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "lambda_param": 0.75,
        "nasa_weight": 0.1,
        "dropout": 0.1,
        "seed": seed,
        "num_epochs": 2,
        "status": "completed",
        "metrics": metrics,
        "data_source": "synthetic",
    }


def test_intervention_criterion_ranks_on_validation_time_left_at_the_chosen_cost():
    from reports.tables import best_configurations, manifest_miss_rate, records_frame

    rates = [0.5, 0.3, 0.1, 0.05, 0.0, 0.0]
    # lstm: at the C with val miss rate 0.05 (C=64) val time left 10; gru: 12 (but better on test)
    recs = [_record("lstm_basic", s, rates, [1, 2, 4, 10 + s, 30, 40], rates, [1, 2, 4, 20, 30, 40]) for s in (1, 2)]
    recs += [_record("gru_basic", s, rates, [1, 2, 4, 12 + s, 20, 25], rates, [1, 2, 4, 5, 6, 7]) for s in (1, 2)]
    for r in recs:
        r["model"] = "paper"  # one model, two configurations (dropout differs)
    for r in recs[2:]:
        r["dropout"] = 0.2
    best = best_configurations(records_frame(recs, miss_rate=0.05))
    row = best[best["criterion"] == "Intervention"].iloc[0]
    assert row["dropout"] == 0.1 and row["selected_on"] == "validation"
    assert row["selection_score"] == pytest.approx(11.5) and row["intervention_tte"] == pytest.approx(20.0)
    assert row["intervention_cost"] == 64 and row["val_intervention_miss_rate"] == pytest.approx(0.05)
    # alpha 0.3 chooses C = 16: both configurations have val time left 2 there; alpha 0.0 -> C = 256
    loose = best_configurations(records_frame(recs, miss_rate=0.3))
    assert loose[loose["criterion"] == "Intervention"].iloc[0]["intervention_cost"] == 16
    strict = best_configurations(records_frame(recs, miss_rate=0.001))
    row = strict[strict["criterion"] == "Intervention"].iloc[0]
    assert row["dropout"] == 0.2 and row["intervention_cost"] == 256 and row["intervention_tte"] == 7.0
    assert manifest_miss_rate({"spec": {"miss_rate": 0.1}}) == 0.1 and manifest_miss_rate(None) == 0.05


def test_records_without_oti_keys_get_no_intervention_row():
    from reports.tables import best_configurations, records_frame

    rec = _record("paper", 1, [0.1] * 6, [1.0] * 6, [0.1] * 6, [1.0] * 6)
    rec["metrics"] = {k: v for k, v in rec["metrics"].items() if "oti" not in k}
    best = best_configurations(records_frame([rec]))
    assert "Intervention" not in set(best["criterion"]) and "RMSE" in set(best["criterion"])


# ------------------------------------------------------------------------ charts
def test_policy_charts_from_a_runs_predictions_and_from_records(tmp_path):
    """A real 1-epoch held-out run: its run folder's charts include the trade-off (OTI and both
    heuristics, whole grids) and the unit timelines; the report's chart comes from records alone."""
    import json

    from ddrsa.config import ExperimentConfig
    from ddrsa.run_predictions import load_predictions, save_predictions
    from ddrsa.settings import Settings
    from ddrsa.trainer import train
    from reports.policy_charts import (
        intervention_frame,
        intervention_headline,
        intervention_trade_off,
        run_frame,
        run_trade_off,
        timeline_frame,
        unit_timelines,
    )
    from reports.tables import best_configurations, records_frame

    config = ExperimentConfig(
        dataset="turbofan",
        model="gru_basic",
        num_epochs=1,
        data_source="synthetic",
        max_units=12,
        window_stride=4,
        lookback_window=16,
        pred_horizon=16,
        amp=False,
    )
    result = train(config, tmp_path / "run", settings=Settings(torch_threads=1), return_predictions=True)
    save_predictions(tmp_path / "run", result.predictions)
    pred = load_predictions(tmp_path / "run")
    frame = run_frame(pred, cost=64.0)
    assert set(frame["policy"]) == set(policy.POLICIES) and frame["chosen"].sum() == 1
    oti64 = frame[(frame["policy"] == "oti") & (frame["threshold"] == 64.0)].iloc[0]
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert oti64["miss_rate"] == pytest.approx(metrics["oti_miss_rate_C64"])
    tl = timeline_frame(pred, 64.0, n_units=2)
    assert tl["unit"].nunique() == 2 and (tl["failure"] >= tl["step"]).all()
    # run_charts writes both (PNG + HTML; tests/test_train.py checks the files): here the specs
    assert run_trade_off(pred, 64.0).to_dict()["facet"] and unit_timelines(pred, 64.0).to_dict()["facet"]
    record = {
        "experiment_id": "a",
        "name": "x",
        "dataset": "turbofan",
        "subset": "FD001",
        "model": "gru_basic",
        "batch_size": 128,
        "learning_rate": 1e-3,
        "lambda_param": 0.75,
        "nasa_weight": 0.1,
        "dropout": 0.1,
        "seed": 42,
        "num_epochs": 1,
        "status": "completed",
        "metrics": metrics,
        "data_source": "synthetic",
    }
    best = best_configurations(records_frame([record]))
    df = intervention_frame([record], best)
    assert list(df["C"]) == list(policy.OTI_COSTS) and df["chosen"].sum() == 1
    assert intervention_trade_off([record], best).to_dict()["facet"]
    (line,) = intervention_headline(best, 0.05)
    assert line.startswith("turbofan FD001 when to intervene") and f"C = {df[df['chosen']]['C'].iloc[0]:g}" in line


# ------------------------------------------------------------------------ the search objective
def test_search_objective_intervention_ranks_paused_and_finished_runs_on_validation_time_left(tmp_path):
    """A paused run (stop_after_epoch) reports val_oti_* of its best checkpoint; flows/search.py's
    `objective` ranks on val mean time left at the C chosen for --miss-rate (val_loss otherwise)."""
    from ddrsa.config import ExperimentConfig
    from ddrsa.settings import Settings
    from ddrsa.sweep.spec import SweepSpec
    from ddrsa.trainer import train
    from flows.halving import objective

    config = ExperimentConfig(
        dataset="azure_pm",
        model="gru_basic",
        num_epochs=3,
        data_source="synthetic",
        max_units=12,
        window_stride=4,
        lookback_window=16,
        pred_horizon=16,
        amp=False,
    )
    paused = train(config, tmp_path / "run", settings=Settings(torch_threads=1), stop_after_epoch=1)
    assert paused.status == "paused" and set(paused.val_policy) >= {"val_" + k for k in policy.OTI_METRIC_KEYS}
    record = {"status": "paused", "best_val_loss": paused.best_val_loss, "val_policy": paused.val_policy}
    spec = SweepSpec(search_objective="intervention", miss_rate=0.2)
    chosen = policy.choose_cost({c: paused.val_policy["val_" + policy.oti_miss_key(c)] for c in policy.OTI_COSTS}, 0.2)
    expected = paused.val_policy["val_" + policy.oti_tte_key(chosen)]
    assert objective(record, spec) == (pytest.approx(expected) if np.isfinite(expected) else None)
    assert objective(record, SweepSpec()) == pytest.approx(paused.best_val_loss)
    done = {
        "status": "completed",
        "metrics": {
            "val_loss": 0.5,
            "val_oti_miss_rate_C8": 0.3,
            "val_oti_avg_tte_C8": 9.0,
            "val_oti_miss_rate_C16": 0.19,
            "val_oti_avg_tte_C16": 12.0,
        },
    }
    assert objective(done, spec) == 12.0 and objective(done, SweepSpec()) == 0.5
    assert objective({"status": "failed"}, spec) is None
