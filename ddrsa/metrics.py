"""Evaluation metrics of a DDRSA model on survival windows (numpy in, plain floats out)."""
from __future__ import annotations

import numpy as np

BENCHMARK_RUL_CAP = 125.0


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
    """Harrell's C-index via lifelines (higher predicted time = longer survival)."""
    if len(event_times) < 2 or not np.any(observed):
        return float("nan")
    from lifelines.utils import concordance_index as lifelines_concordance_index  # slow import

    try:
        return float(lifelines_concordance_index(event_times, predicted_times, observed))
    except ZeroDivisionError:  # lifelines: no admissible pair
        return float("nan")


def integrated_brier_score(survival: np.ndarray, event_index: np.ndarray, censored: np.ndarray) -> float:
    """Mean over k of BS(k) = mean_i (1{T_i > k} - S_i(k))^2, lower is better.

    A sample enters BS(k) while its status at k is known: always when uncensored, and for
    k <= censoring index when censored (then 1{T > k} = 1).
    """
    survival = np.asarray(survival, dtype=np.float64)
    horizon = survival.shape[1]
    k = np.arange(horizon)[None, :]
    idx = np.asarray(event_index)[:, None]
    cens = np.asarray(censored, dtype=bool)[:, None]
    alive = (k < idx).astype(np.float64)
    known = np.where(cens, k <= idx, True)
    sq = np.where(known, (alive - survival) ** 2, 0.0)
    per_k = sq.sum(0) / np.maximum(known.sum(0), 1)
    return float(per_k[known.any(0)].mean())


def evaluate(survival: np.ndarray, event_index: np.ndarray, censored: np.ndarray,
             units: np.ndarray) -> dict:
    """Test metrics over windows. survival (N, L); event_index (N,) steps; censored (N,) bool."""
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
    return {
        "rul_mae": float(np.abs(err).mean()) if n_obs else float("nan"),
        "rul_rmse": float(np.sqrt((err ** 2).mean())) if n_obs else float("nan"),
        "concordance_index": concordance(times, predicted, observed),
        "nasa_score": float(scores.sum()),
        "nasa_score_mean": float(scores.mean()) if n_obs else float("nan"),
        "integrated_brier_score": integrated_brier_score(survival, event_index.astype(np.int64), censored),
        "n_test_units": int(len(np.unique(units))),
        "n_test_windows": int(len(event_index)),
        "n_uncensored_windows": n_obs,
        "constant_prediction": bool(len(predicted) > 1 and np.std(predicted) < 1e-3 * horizon),
    }


def benchmark_metrics(survival: np.ndarray, true_rul: np.ndarray) -> dict:
    """C-MAPSS benchmark protocol: one window per test unit, both sides capped at 125 cycles."""
    horizon = np.asarray(survival).shape[1]
    predicted = np.minimum(expected_time(survival), BENCHMARK_RUL_CAP)
    truth = np.minimum(np.asarray(true_rul, dtype=np.float64), BENCHMARK_RUL_CAP)
    return {
        "benchmark_rmse": float(np.sqrt(((predicted - truth) ** 2).mean())),
        "benchmark_nasa_score": float(nasa_score(predicted, truth).sum()),
        "benchmark_n_units": int(len(truth)),
        "benchmark_comparable": bool(horizon >= BENCHMARK_RUL_CAP),
    }
