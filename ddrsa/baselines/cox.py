"""`cox`: a penalised proportional-hazards model (lifelines `CoxPHFitter`) on window summaries.

One row per training window (ddrsa/baselines/features.py `window_summaries`), its time axis the
lag from the window's last step: duration l + 1 with event = not censored, so lifelines'
survival at time k + 1 is P(l > k) = S(k); a censored window (alive through lag c) is censored at
min(c, L - 1) + 1 (beyond the horizon nothing is read). Summary columns constant on the training
windows are dropped. lifelines standardises the columns; the ridge penalty is PENALIZER. The curve
of a window is `predict_survival_function` at times 1..L: a real survival curve over the horizon.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter

from .features import window_summaries

PENALIZER = 0.1
PREDICT_CHUNK = 8192


class CoxBaseline:
    """fit(train, val) then survival(windows) -> (N, L) float64."""

    def __init__(self, horizon: int, seed: int = 0) -> None:
        self.horizon = horizon

    def frame(self, windows, summaries: np.ndarray | None = None) -> pd.DataFrame:
        """The kept summary columns of `windows` as lifelines reads them (x0, x1, ...)."""
        x = (window_summaries(windows) if summaries is None else summaries)[:, self.columns]
        return pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])

    def fit(self, train, val) -> CoxBaseline:
        x = window_summaries(train)
        self.columns = np.flatnonzero(x.std(axis=0) > 1e-9)
        df = self.frame(train, x)
        l = np.asarray(train.event_index, dtype=np.int64)
        cens = np.asarray(train.censored, dtype=bool)
        df["duration"] = np.where(cens, np.minimum(l, self.horizon - 1), l) + 1
        df["event"] = (~cens).astype(int)
        self.model = CoxPHFitter(penalizer=PENALIZER).fit(df, duration_col="duration", event_col="event")
        self.n_rows = len(df)
        return self

    def survival(self, windows) -> np.ndarray:
        times = np.arange(1, self.horizon + 1, dtype=np.float64)
        df = self.frame(windows)
        parts = [
            self.model.predict_survival_function(df.iloc[s : s + PREDICT_CHUNK], times=times).to_numpy().T
            for s in range(0, len(df), PREDICT_CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.horizon))

    def details(self) -> dict:
        return {
            "penalizer": PENALIZER,
            "columns": len(self.columns),
            "training_rows": self.n_rows,
            "log_likelihood": float(self.model.log_likelihood_),
        }
