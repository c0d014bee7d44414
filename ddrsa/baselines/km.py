"""`km`: the population lifetime distribution conditioned on age, the floor any model must clear.

Kaplan-Meier (lifelines `KaplanMeierFitter`) on the training units' lifetimes (ddrsa/baselines/
features.py `lifetimes`); a window of age a (`window_ages`) gets
    S(k | a) = S_KM(a + k) / S_KM(a - 1),  k = 0..L-1,  S_KM(t) = P(D > t), S_KM(0) = 1,
the probability of outliving lag k given alive at the window's last step, where the event may fall
at lag 0 (D = a). Where S_KM(a - 1) = 0 (the window is older than every training life ended by an
event) the curve is 0: failure expected now. No sensor is read.
"""

from __future__ import annotations

import numpy as np
from lifelines import KaplanMeierFitter

from .features import lifetimes, window_ages


class KaplanMeierBaseline:
    """fit(train, val) then survival(windows) -> (N, L) float64."""

    def __init__(self, horizon: int, seed: int = 0) -> None:
        self.horizon = horizon

    def fit(self, train, val) -> KaplanMeierBaseline:
        durations, observed = lifetimes(train)
        self.n_lifetimes, self.n_events = int(len(durations)), int(observed.sum())
        self.kmf = KaplanMeierFitter().fit(durations, event_observed=observed)
        return self

    def survival_at(self, t: np.ndarray) -> np.ndarray:
        """S_KM(t) = P(D > t) (right-continuous: a death at t counts), 1 for t < 0."""
        t = np.asarray(t)
        out = np.asarray(self.kmf.survival_function_at_times(np.maximum(t, 0)).to_numpy(), dtype=np.float64)
        return np.where(t < 0, 1.0, out).reshape(t.shape)

    def survival(self, windows) -> np.ndarray:
        age = window_ages(windows)
        grid = self.survival_at(np.arange(int(age.max(initial=1)) + self.horizon))  # S_KM(0..)
        ahead = grid[age[:, None] + np.arange(self.horizon)[None, :]]  # S_KM(a + k)
        alive = grid[age - 1][:, None]  # S_KM(a - 1)
        return np.divide(ahead, alive, out=np.zeros_like(ahead), where=alive > 0)

    def details(self) -> dict:
        return {
            "lifetimes": self.n_lifetimes,
            "events": self.n_events,
            "median_lifetime": float(self.kmf.median_survival_time_),
        }
