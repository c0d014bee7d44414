"""What every baseline model offers `fit_baseline` (ddrsa/baselines/run.py)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Baseline(Protocol):
    """Built with (horizon L, seed); `fit(train, val)` on SurvivalWindows returns itself;
    `survival(windows)` -> float64 (N, L) S(k); `details()` -> JSON-able facts of the fit."""

    def __init__(self, horizon: int, seed: int = 0) -> None: ...

    def fit(self, train, val) -> Baseline: ...

    def survival(self, windows) -> np.ndarray: ...

    def details(self) -> dict: ...
