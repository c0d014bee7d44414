"""Generated fleet tables (docs/DATA.md) for the fleet tests.

`make_fleet`: units whose `wear` grows at a unit-specific rate; the hazard of a failure at each step
is a logistic function of the wear, so a unit with more wear is more likely to fail soon. A failure
resets the wear (a repair) and starts a new segment; each unit ends censored or failed.
`temp` is noise, `site` a categorical covariate, `const` a constant one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def hazard(wear: np.ndarray) -> np.ndarray:
    """True per-step failure probability of the generator."""
    return 1.0 / (1.0 + np.exp(-(wear - 6.0) * 1.5))


def make_fleet(n_units: int = 12, n_steps: int = 120, seed: int = 0, end_steps: dict | None = None):
    """(DataFrame, {unit: (wear, rate)} after each unit's last row). `end_steps` {unit: steps} cuts
    units. The first rows of a unit do not depend on n_steps (a later snapshot extends them)."""
    rows, last_wear = [], {}
    for u in range(1, n_units + 1):
        rng = np.random.default_rng([seed, u])  # per unit: a longer snapshot extends the same history
        rate = rng.uniform(0.05, 0.25)
        wear, steps = 0.0, (end_steps or {}).get(u, n_steps)
        for t in range(steps):
            wear += rate * rng.uniform(0.5, 1.5)
            fail = rng.random() < hazard(np.array(wear))
            rows.append((u, t, int(fail), wear + rng.normal(0, 0.2), rng.normal(20, 2), "ab"[u % 2], 1.0))
            if fail:
                wear = 0.0
        last_wear[u] = (wear, rate)
    df = pd.DataFrame(rows, columns=["unit", "time", "event", "wear", "temp", "site", "const"])
    return df, last_wear


def true_risk(state: dict, window: int) -> dict:
    """{unit: P(failure within the next `window` steps)} from the generator's state, with the wear
    growing at its mean rate: 1 - prod_i (1 - hazard(wear + rate * i)), i = 1..window."""
    return {u: float(1 - np.prod(1 - hazard(w + r * np.arange(1, window + 1)))) for u, (w, r) in state.items()}
