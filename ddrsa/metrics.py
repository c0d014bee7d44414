"""Evaluation metrics of a DDRSA model on survival windows (numpy in, plain floats out)."""

from __future__ import annotations

import numpy as np

BENCHMARK_RUL_CAP = 125.0

# The metrics that rank configurations (the one definition of their names and directions):
# name -> True when larger is better. A completed record's `metrics` holds the test value under
# the name and the validation value of the same (best) checkpoint under `val_<name>`, plus
# `val_loss` (the DDRSA training objective on the validation units, lower is better).
RANKED_METRICS = {"rul_mae": False, "rul_rmse": False, "concordance_index": True, "nasa_score": False}
VAL_PREFIX = "val_"
VAL_LOSS = "val_loss"


def val_key(metric: str) -> str:
    """Record key of the validation value of a test metric: 'rul_rmse' -> 'val_rul_rmse'."""
    return VAL_PREFIX + metric


# Yardstick metrics stored per run next to the ranked ones (test value under the name, validation
# value under `val_<name>`), larger is better for each: the IPCW cumulative/dynamic AUC at k steps
# (`dynamic_auc`, k clamped to the horizon L - 1) and Harrell's C over pairs of windows of DIFFERENT
# units (`concordance_between_units`).
AUC_STEPS = (10, 30, 60)
BETWEEN_UNITS_C = "concordance_between_units"


def auc_key(k: int) -> str:
    """Metric name of the cumulative/dynamic AUC at k steps: 10 -> 'auc_10'."""
    return f"auc_{k}"


YARDSTICK_METRICS = {**{auc_key(k): True for k in AUC_STEPS}, BETWEEN_UNITS_C: True}
VALIDATION_KEYS = (VAL_LOSS, *(val_key(m) for m in RANKED_METRICS), *(val_key(m) for m in YARDSTICK_METRICS))

# C-MAPSS selection that mimics the benchmark protocol (`val_benchmark_metrics`): lower is better.
VAL_BENCHMARK_RMSE = "val_benchmark_rmse"
VAL_BENCHMARK_NASA_SCORE = "val_benchmark_nasa_score"
VAL_BENCHMARK_DRAWS = 10  # random truncation points per validation unit
VAL_BENCHMARK_SEED = 20_260  # fixed: every configuration and seed is ranked on the same windows


def survival_from_logits(logits: np.ndarray) -> np.ndarray:
    """S(k) = prod_{m<=k} (1 - sigmoid(logit_m)). (N, L) -> (N, L), computed in log space."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.cumsum(np.logaddexp(0.0, logits), axis=-1))


def expected_time(survival: np.ndarray) -> np.ndarray:
    """E[min(T, L)] = sum_{k=0}^{L-1} S(k), in steps. (N, L) -> (N,)."""
    return np.asarray(survival, dtype=np.float64).sum(axis=-1)


def nasa_score(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-prediction PHM08 score; d = predicted - true, late (d >= 0) punished harder."""
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))


def concordance(event_times: np.ndarray, predicted_times: np.ndarray, observed: np.ndarray) -> float:
    """Harrell's C-index via lifelines (higher predicted time = longer survival); NaN without pairs.

    lifelines' pair rule: (i, j) is comparable when i has an event and t_i < t_j, or t_i = t_j and
    j is censored (a censoring at t outlives an event at t); two events at the same time are not
    comparable. Concordant when the predicted times order the same way; tied predictions count 1/2.
    `evaluate` passes t = l for events and t = min(c, L) for censoring index c (alive through c),
    so an event at l and a censoring at c are comparable exactly when l <= c.
    """
    if len(event_times) < 2 or not np.any(observed):
        return float("nan")
    from lifelines.utils import concordance_index as lifelines_concordance_index  # slow import

    try:
        return float(lifelines_concordance_index(event_times, predicted_times, observed))
    except ZeroDivisionError:  # lifelines: no admissible pair
        return float("nan")


def censoring_survival(event_index: np.ndarray, censored: np.ndarray, horizon: int) -> np.ndarray:
    """Kaplan-Meier estimate of the censoring survival G(k) = P(C > k) at k = 0..horizon-1.

    Uses the continuous-time mapping of `brier_scores` (event at lag l -> time l, censoring index
    c -> time c + 1/2), estimated on the given samples: events count as censored for G.
    G(k) = prod_{c <= k-1} (1 - d_c / n_c), d_c = samples censored with index c,
    n_c = samples with time >= c + 1/2 (events with l >= c + 1, censorings with index >= c).
    Returns float64 (horizon,), G(0) = 1.
    """
    time2 = _doubled_times(event_index, censored, horizon)
    counts = np.bincount(time2, minlength=2 * horizon + 1)
    at_risk = np.cumsum(counts[::-1])[::-1]  # at_risk[v] = #{2 * time >= v}
    c = np.arange(horizon - 1)
    d, n = counts[2 * c + 1], at_risk[2 * c + 1]
    factor = 1.0 - np.divide(d, n, out=np.zeros(len(c)), where=n > 0)
    return np.concatenate([[1.0], np.cumprod(factor)])


def _doubled_times(event_index, censored, horizon: int) -> np.ndarray:
    """2 * (continuous time) as int64: 2l for an event at lag l, 2c + 1 for censoring index c.

    Both are clipped to the horizon (events to l = horizon, censorings to c = horizon - 1): a
    sample alive through horizon - 1 is alive at every k on the grid, so the clip changes
    neither the indicators nor G on the grid.
    """
    idx = np.asarray(event_index, dtype=np.int64)
    if idx.size and idx.min() < 0:
        raise ValueError("event_index must be >= 0")
    cens = np.asarray(censored, dtype=bool)
    return np.where(cens, 2 * np.minimum(idx, horizon - 1) + 1, 2 * np.minimum(idx, horizon))


def brier_scores(survival: np.ndarray, event_index: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """IPCW Brier score BS(k) at k = 0..L-1 (Graf et al. 1999), lower is better. -> (L,) float64.

    Discrete grid (docs/CONTRACTS.md, SCIENCE-NOTES): S_i(k) = P(T_i > k) = survival[i, k]; an
    uncensored sample with event index l has T = l (alive at k < l, dead at k >= l); a censored
    sample with censoring index c is alive through c (T > c) and its status after c is unknown.
    Mapped onto continuous time as scikit-survival's `brier_score` expects: an event at lag l ->
    (event, time l); censoring index c -> (censored, time c + 1/2), i.e. the unit is seen alive at
    step c and lost before step c + 1. At a grid point k this gives exactly the discrete status
    (time <= k and event: dead; time > k: alive, which for a censoring means c >= k), and no event
    ever ties with a censoring, so the Kaplan-Meier G needs no tie convention. Then
        BS(k) = 1/N sum_i [ 1{event, l_i <= k} S_i(k)^2 / G(l_i) + 1{time_i > k} (1 - S_i(k))^2 / G(k) ]
    with G the censoring survival of `censoring_survival` (Kaplan-Meier on these same samples).
    Uncensored event indices >= L count as alive over the whole grid. A weight whose G is 0
    multiplies only zero indicators (nobody is left at risk) and is taken as 0.
    """
    survival = np.asarray(survival, dtype=np.float64)
    n, horizon = survival.shape
    if n == 0:
        return np.full(horizon, np.nan)
    time2 = _doubled_times(event_index, censored, horizon)
    event = ~np.asarray(censored, dtype=bool)
    g = censoring_survival(event_index, censored, horizon)
    inv_g = np.divide(1.0, g, out=np.zeros_like(g), where=g > 0)  # (L,)
    k2 = 2 * np.arange(horizon)[None, :]
    dead = event[:, None] & (time2[:, None] <= k2)  # (N, L)
    alive = time2[:, None] > k2
    inv_g_event = inv_g[np.minimum(time2 // 2, horizon - 1)][:, None]  # 1/G(l_i), used only where dead
    terms = np.where(dead, survival**2 * inv_g_event, 0.0) + np.where(alive, (1.0 - survival) ** 2 * inv_g, 0.0)
    return terms.mean(axis=0)


def integrated_brier_score(survival: np.ndarray, event_index: np.ndarray, censored: np.ndarray) -> float:
    """IPCW integrated Brier score over the grid k = 0..L-1, lower is better (0 = perfect).

    The trapezoidal integral of `brier_scores` over k divided by its length L - 1, the rule of
    scikit-survival's `integrated_brier_score(y, y, survival, times=arange(L))` with the time
    mapping of `brier_scores` (the tests pin it there); BS(0) when L = 1.
    survival (N, L) = S(k); event_index (N,) int; censored (N,) bool.
    """
    bs = brier_scores(survival, event_index, censored)
    if len(bs) < 2:
        return float(bs[0]) if len(bs) else float("nan")
    return float(((bs[1:] + bs[:-1]) / 2.0).sum() / (len(bs) - 1))


def evaluate(survival: np.ndarray, event_index: np.ndarray, censored: np.ndarray, units: np.ndarray) -> dict:
    """Test metrics over windows. survival (N, L); event_index (N,) steps; censored (N,) bool.

    rul_* and nasa_* use the uncensored windows; concordance_index is Harrell's C over all windows
    (see `concordance`); integrated_brier_score is the IPCW integrated Brier score of
    `integrated_brier_score`, its censoring distribution estimated on these windows. Plus the
    YARDSTICK_METRICS: `auc_<k>` = `dynamic_auc` at min(k, L - 1) for k in AUC_STEPS (NaN without
    cases or controls at that k) and `concordance_between_units` (same times and predictions as
    concordance_index, pairs of two windows of one unit left out).
    """
    survival = np.asarray(survival, dtype=np.float64)
    horizon = survival.shape[1]
    event_index = np.asarray(event_index, dtype=np.float64)
    censored = np.asarray(censored, dtype=bool)
    predicted = expected_time(survival)
    observed = ~censored
    err = predicted[observed] - event_index[observed]
    times = np.where(censored, np.minimum(event_index, horizon), event_index)
    scores = nasa_score(predicted[observed], event_index[observed])
    n_obs = int(observed.sum())
    units = np.asarray(units)
    steps = [min(k, horizon - 1) for k in AUC_STEPS]
    auc = dynamic_auc(survival, event_index.astype(np.int64), censored, steps) if len(survival) else [np.nan] * 3
    c_index = concordance(times, predicted, observed)
    return {
        "rul_mae": float(np.abs(err).mean()) if n_obs else float("nan"),
        "rul_rmse": float(np.sqrt((err**2).mean())) if n_obs else float("nan"),
        "concordance_index": c_index,
        "nasa_score": float(scores.sum()),
        "nasa_score_mean": float(scores.mean()) if n_obs else float("nan"),
        "integrated_brier_score": integrated_brier_score(survival, event_index.astype(np.int64), censored),
        "n_test_units": int(len(np.unique(units))),
        "n_test_windows": int(len(event_index)),
        "n_uncensored_windows": n_obs,
        "constant_prediction": bool(len(predicted) > 1 and np.std(predicted) < 1e-3 * horizon),
        **{auc_key(k): float(a) for k, a in zip(AUC_STEPS, auc)},
        BETWEEN_UNITS_C: concordance_between_units(times, predicted, observed, units, c_all=c_index),
    }


def benchmark_metrics(survival: np.ndarray, true_rul: np.ndarray) -> dict:
    """C-MAPSS benchmark protocol: one window per test unit, both sides capped at 125 cycles.

    `benchmark_rmse` and `benchmark_nasa_score` (sum over units) compare with truth capped at 125,
    as the literature does; `benchmark_rmse_uncapped` with the raw RUL_FD00x.txt truth (the
    prediction is capped in both, at 125 cycles; E[min(T, L)] is at most L anyway)."""
    horizon = np.asarray(survival).shape[1]
    predicted = np.minimum(expected_time(survival), BENCHMARK_RUL_CAP)
    raw_truth = np.asarray(true_rul, dtype=np.float64)
    truth = np.minimum(raw_truth, BENCHMARK_RUL_CAP)
    return {
        "benchmark_rmse": float(np.sqrt(((predicted - truth) ** 2).mean())),
        "benchmark_rmse_uncapped": float(np.sqrt(((predicted - raw_truth) ** 2).mean())),
        "benchmark_nasa_score": float(nasa_score(predicted, truth).sum()),
        "benchmark_n_units": int(len(truth)),
        "benchmark_comparable": bool(horizon >= BENCHMARK_RUL_CAP),
    }


def truncation_windows(
    units: np.ndarray, n_draws: int = VAL_BENCHMARK_DRAWS, seed: int = VAL_BENCHMARK_SEED
) -> np.ndarray:
    """Window indices of `n_draws` random truncations of every unit, the benchmark's test protocol
    on units whose full history is known: per draw and unit, one of the unit's windows uniformly at
    random (its end is the truncation point). units (N,) -> int64 (n_draws, n_units), units in
    sorted order; seeded by `seed` alone, so the same windows whatever the model."""
    units = np.asarray(units)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(units == u) for u in np.unique(units)]
    out = np.empty((n_draws, len(groups)), dtype=np.int64)
    for d in range(n_draws):
        for j, idx in enumerate(groups):
            out[d, j] = idx[rng.integers(len(idx))]
    return out


def val_benchmark_metrics(
    survival: np.ndarray,
    true_rul: np.ndarray,
    units: np.ndarray,
    n_draws: int = VAL_BENCHMARK_DRAWS,
    seed: int = VAL_BENCHMARK_SEED,
) -> dict:
    """The C-MAPSS benchmark measured on validation units (`truncation_windows`): prediction
    min(E[min(T, L)], 125) against the true RUL capped at 125, as `benchmark_metrics` scores the
    official test units. `val_benchmark_rmse`: RMSE over all draws (cycles);
    `val_benchmark_nasa_score`: PHM08 score summed over the units, mean over draws.
    survival (N, L); true_rul (N,) cycles (known beyond the horizon on training units); units (N,)."""
    picks = truncation_windows(units, n_draws, seed)
    if not picks.size:
        return {VAL_BENCHMARK_RMSE: float("nan"), VAL_BENCHMARK_NASA_SCORE: float("nan")}
    predicted = np.minimum(expected_time(survival), BENCHMARK_RUL_CAP)[picks]
    truth = np.minimum(np.asarray(true_rul, dtype=np.float64), BENCHMARK_RUL_CAP)[picks]
    return {
        VAL_BENCHMARK_RMSE: float(np.sqrt(((predicted - truth) ** 2).mean())),
        VAL_BENCHMARK_NASA_SCORE: float(nasa_score(predicted, truth).sum(axis=1).mean()),
    }


def cumulative_dynamic_auc(risk: np.ndarray, event_index: np.ndarray, censored: np.ndarray, times) -> np.ndarray:
    """IPCW cumulative/dynamic AUC(k) (Uno et al. 2007) at steps k in `times`, higher is better.

    "Are the windows whose event comes within k steps ranked above those that outlive k?"
    Time mapping of `brier_scores` (event at lag l -> time l; censoring index c -> c + 1/2), so at
    k: cases = uncensored with l <= k, controls = samples with time > k (events l > k, censorings
    c >= k). AUC(k) = sum_{case i, control j} w_i [1(r_i > r_j) + 1/2 1(r_i = r_j)] /
    (sum_cases w_i * n_controls), w_i = 1 / G(l_i), G the censoring Kaplan-Meier of
    `censoring_survival` on these samples (scikit-survival's `cumulative_dynamic_auc` with
    survival_train = survival_test; the tests pin it there). risk (N,) or (N, len(times)), higher =
    earlier event (e.g. 1 - S(k), see `dynamic_auc`). times: ints 0 <= k. NaN at a k without cases
    or controls. -> float64 (len(times),).
    """
    times = np.atleast_1d(np.asarray(times, dtype=np.int64))
    risk = np.asarray(risk, dtype=np.float64)
    risk = np.broadcast_to(risk[:, None], (len(risk), len(times))) if risk.ndim == 1 else risk
    n = len(risk)
    out = np.full(len(times), np.nan)
    if n == 0:
        return out
    horizon = int(max(times.max() + 1, 1))
    time2 = _doubled_times(event_index, censored, horizon + 1)
    event = ~np.asarray(censored, dtype=bool)
    g = censoring_survival(event_index, censored, horizon + 1)
    inv_g = np.divide(1.0, g, out=np.zeros_like(g), where=g > 0)
    w = np.where(event, inv_g[np.minimum(time2 // 2, horizon)], 0.0)
    for t, k in enumerate(times):
        case = event & (time2 <= 2 * k)
        control = time2 > 2 * k
        if not case.any() or not control.any():
            continue
        r = risk[:, t]
        rc = np.sort(r[control])
        below = np.searchsorted(rc, r[case], side="left")  # controls with r_j < r_i
        ties = np.searchsorted(rc, r[case], side="right") - below
        num = (w[case] * (below + 0.5 * ties)).sum()
        out[t] = num / (w[case].sum() * len(rc))
    return out


def dynamic_auc(survival: np.ndarray, event_index: np.ndarray, censored: np.ndarray, times) -> np.ndarray:
    """`cumulative_dynamic_auc` with the risk at k = P(T <= k) = 1 - S(k). survival (N, L); times < L."""
    times = np.atleast_1d(np.asarray(times, dtype=np.int64))
    survival = np.asarray(survival, dtype=np.float64)
    return cumulative_dynamic_auc(1.0 - survival[:, times], event_index, censored, times)


def comparable_pairs(event_times: np.ndarray, observed: np.ndarray) -> int:
    """Number of pairs comparable under the pair rule of `concordance` (O(N log N))."""
    t = np.asarray(event_times, dtype=np.float64)
    obs = np.asarray(observed, dtype=bool)
    ts = np.sort(t)
    tc = np.sort(t[~obs])
    te = t[obs]
    later = len(ts) - np.searchsorted(ts, te, side="right")
    same_censored = np.searchsorted(tc, te, side="right") - np.searchsorted(tc, te, side="left")
    return int(later.sum() + same_censored.sum())


def _pair_counts(t: np.ndarray, p: np.ndarray, obs: np.ndarray) -> tuple[float, int]:
    """(concordant + tied/2, comparable) over all pairs of one small group, brute force (n^2)."""
    ti, tj = t[:, None], t[None, :]
    comp = obs[:, None] & ((ti < tj) | ((ti == tj) & ~obs[None, :]))
    pi, pj = p[:, None], p[None, :]
    score = np.where(pi < pj, 1.0, np.where(pi == pj, 0.5, 0.0))
    return float(score[comp].sum()), int(comp.sum())


def concordance_between_units(
    event_times: np.ndarray,
    predicted_times: np.ndarray,
    observed: np.ndarray,
    units: np.ndarray,
    c_all: float | None = None,
) -> float:
    """Harrell's C over pairs of windows of DIFFERENT units only; NaN without such pairs.

    Same pair rule, times and scores as `concordance` (higher predicted time = longer survival;
    tied predictions count 1/2); a pair of two windows of one unit is dropped, so the value shows
    how well the model orders engines rather than the windows of one engine by time. Computed as
    (C_all * P_all - within-unit concordance) / (P_all - within-unit pairs), the within-unit part
    counted per unit by brute force (sum of n_u^2). `c_all`: `concordance` of the same arguments when
    the caller has it already (saves a second lifelines call)."""
    t = np.asarray(event_times, dtype=np.float64)
    p = np.asarray(predicted_times, dtype=np.float64)
    obs = np.asarray(observed, dtype=bool)
    units = np.asarray(units)
    n_all = comparable_pairs(t, obs)
    if n_all == 0:
        return float("nan")
    c_all = concordance(t, p, obs) if c_all is None else c_all
    within_score, within_n = 0.0, 0
    order = np.argsort(units, kind="stable")
    bounds = np.flatnonzero(np.diff(units[order])) + 1
    for idx in np.split(order, bounds):
        s, m = _pair_counts(t[idx], p[idx], obs[idx])
        within_score += s
        within_n += m
    if n_all - within_n == 0:
        return float("nan")
    return float((c_all * n_all - within_score) / (n_all - within_n))
