"""A user's fleet table as a data set: unit split, scaling on training units, labels, windows.

Same steps as the built-in loaders (`cmapss`, `azure_pm`):
  - units split by `split_units` (test_fraction, val_fraction, split_seed); `max_units` keeps the
    first units in id order.
  - `FleetScaler` fitted on the TRAINING units only: imputation (last observed value of the unit,
    else the training units' median), covariates constant or all-missing on the training units
    dropped, min-max to [-1, 1] (validation/test may fall outside).
  - labels per step j (as Azure PM, `azure_labels`): l = f - j with f the unit's next failure step
    (0 on the failure step), censored when l >= pred_horizon; after the unit's last failure the unit
    is right-censored at its last step: l = rul = S - 1 - j, censored.
  - windows: `make_windows` over each unit's whole history (a window may reach back past an
    earlier failure, as Azure PM machines' do).
"""

from __future__ import annotations

import numpy as np

from ddrsa.errors import DataError

from .azure_pm import azure_labels
from .cmapss import split_units
from .fleet_table import FleetTable
from .windows import make_windows


class FleetScaler:
    """Imputation, dropped covariates and min-max scaling, fitted on training units' raw steps.
    `transform(steps (T, C)) -> float32 (T, F)`; `to_dict`/`from_dict` for a model package."""

    def fit(self, covariates: list[str], steps: list[np.ndarray]) -> FleetScaler:
        self.covariates = list(covariates)
        raw = np.concatenate(steps)
        observed = ~np.isnan(raw)
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(observed.any(0), raw, 0.0), axis=0)
        self.median = np.where(observed.any(0), med, 0.0)
        filled = np.concatenate([self._impute(s) for s in steps])
        self.keep = np.flatnonzero(observed.any(0) & (np.nanstd(np.where(observed, raw, np.nan), axis=0) > 0))
        if not len(self.keep):
            raise DataError("every covariate is constant or missing on the training units")
        self.lo, self.hi = filled[:, self.keep].min(0), filled[:, self.keep].max(0)
        return self

    def _impute(self, steps: np.ndarray) -> np.ndarray:
        """Last observed value of the unit (forward fill), else the training median."""
        x = np.array(steps, np.float64)
        nan = np.isnan(x)
        if nan.any():
            idx = np.where(~nan, np.arange(len(x))[:, None], 0)
            np.maximum.accumulate(idx, axis=0, out=idx)
            x = x[idx, np.arange(x.shape[1])]
            seen = np.maximum.accumulate(~nan, axis=0)
            x = np.where(seen, x, self.median)
        return x

    def transform(self, steps: np.ndarray) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return (2.0 * (self._impute(steps)[:, self.keep] - self.lo) / span - 1.0).astype(np.float32)

    @property
    def feature_names(self) -> list[str]:
        return [self.covariates[j] for j in self.keep]

    @property
    def dropped(self) -> list[str]:
        return [c for j, c in enumerate(self.covariates) if j not in set(self.keep.tolist())]

    def to_dict(self) -> dict:
        return {
            "covariates": self.covariates,
            "keep": self.keep.tolist(),
            "median": self.median.tolist(),
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FleetScaler:
        s = cls()
        s.covariates, s.keep = list(d["covariates"]), np.asarray(d["keep"], np.int64)
        s.median, s.lo, s.hi = (np.asarray(d[k], np.float64) for k in ("median", "lo", "hi"))
        return s


def split_fleet(
    table: FleetTable, split_seed: int, test_fraction: float, val_fraction: float, max_units: int | None = None
) -> dict:
    """{"train","val","test"} unit ids (int64 arrays); DataError when a split would be empty of units
    or the training units hold no failure."""
    ids = table.unit_ids if max_units is None else np.sort(table.unit_ids)[:max_units]
    if len(ids) < 3:
        raise DataError(f"{table.name}: {len(ids)} unit(s); a train/validation/test split needs at least 3")
    split = split_units(ids, test_fraction, val_fraction, split_seed)
    pos = {u: i for i, u in enumerate(table.unit_ids.tolist())}
    if not any(len(table.event_steps[pos[u]]) for u in split["train"].tolist()):
        raise DataError(
            f"{table.name}: no failure in the {len(split['train'])} training units "
            f"(split_seed {split_seed}); more units with failures are needed"
        )
    return split


def prepare_fleet(
    table: FleetTable,
    lookback: int,
    pred_horizon: int,
    split_seed: int,
    test_fraction: float,
    val_fraction: float,
    window_stride: int = 1,
    max_units: int | None = None,
) -> dict:
    """FleetTable -> dict of windows and metadata, like `prepare_cmapss`/`prepare_azure`, plus the
    fitted `scaler`."""
    split = split_fleet(table, split_seed, test_fraction, val_fraction, max_units)
    pos = {u: i for i, u in enumerate(table.unit_ids.tolist())}
    scaler = FleetScaler().fit(table.covariates, [table.steps[pos[u]] for u in split["train"].tolist()])
    names = scaler.feature_names
    out = {"feature_names": names, "split_units": split, "scaler": scaler, "benchmark": None}
    for part, us in split.items():
        idx = [pos[u] for u in us.tolist()]
        xs = [scaler.transform(table.steps[i]) for i in idx]
        labels = [azure_labels(len(table.steps[i]), table.event_steps[i], pred_horizon) for i in idx]
        out[part] = make_windows(
            list(us),
            xs,
            [a for a, _, _ in labels],
            [b for _, b, _ in labels],
            [c for _, _, c in labels],
            lookback,
            window_stride,
            feature_names=names,
        )
    return out
