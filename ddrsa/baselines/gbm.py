"""`gbm`: gradient-boosted trees (scikit-learn `HistGradientBoostingRegressor`) on window summaries
(ddrsa/baselines/features.py) predicting the capped time to event p = E[min(T, L)].

Target per training window: min(l, L) for an event at lag l; L for a window censored at or beyond
the horizon's end (censoring index c >= L - 1: alive through L - 1, so min(T, L) = L exactly);
windows censored earlier (Azure PM after a machine's last failure, c < L - 1) only bound the target
from below and are left out. Fitted on the training units; the validation units (same target rule)
only stop the boosting early. Its survival curve is the step function at the prediction,
S(k) = clip(p - k, 0, 1), p clipped to [0, L], so that sum_k S(k) = p exactly and every metric
(RMSE, C-index, Brier, AUC) reads p through the same code as a DDRSA curve.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from .features import window_summaries

MAX_ITER, LEARNING_RATE, PATIENCE = 300, 0.05, 20


def capped_target(windows, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(target float64, usable bool) per window: min(l, L) for events, L for c >= L - 1, unusable else."""
    l = np.asarray(windows.event_index, dtype=np.float64)
    cens = np.asarray(windows.censored, dtype=bool)
    usable = ~cens | (l >= horizon - 1)
    return np.where(cens, float(horizon), np.minimum(l, horizon)), usable


def step_survival(p: np.ndarray, horizon: int) -> np.ndarray:
    """S(k) = clip(p - k, 0, 1), k = 0..L-1, for predictions p clipped to [0, L]: (N,) -> (N, L)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, horizon)
    return np.clip(p[:, None] - np.arange(horizon)[None, :], 0.0, 1.0)


class GradientBoostingBaseline:
    """fit(train, val) then survival(windows) -> (N, L) float64."""

    def __init__(self, horizon: int, seed: int = 0) -> None:
        self.horizon, self.seed = horizon, seed

    def fit(self, train, val) -> GradientBoostingBaseline:
        y, ok = capped_target(train, self.horizon)
        y_val, ok_val = capped_target(val, self.horizon)
        self.model = HistGradientBoostingRegressor(
            max_iter=MAX_ITER,
            learning_rate=LEARNING_RATE,
            early_stopping=True,
            n_iter_no_change=PATIENCE,
            random_state=self.seed % 2**32,
        )
        self.model.fit(window_summaries(train)[ok], y[ok], X_val=window_summaries(val)[ok_val], y_val=y_val[ok_val])
        self.n_rows = int(ok.sum())
        return self

    def predict(self, windows) -> np.ndarray:
        """p (N,) in [0, L]: the predicted E[min(T, L)] in steps."""
        return np.clip(self.model.predict(window_summaries(windows)), 0.0, self.horizon)

    def survival(self, windows) -> np.ndarray:
        return step_survival(self.predict(windows), self.horizon)

    def details(self) -> dict:
        return {
            "iterations": int(self.model.n_iter_),
            "max_iter": MAX_ITER,
            "learning_rate": LEARNING_RATE,
            "training_rows": self.n_rows,
        }
