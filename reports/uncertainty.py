"""Bootstrap over test UNITS (engines, machines) of an RMSE, and the paired bootstrap of two models.

Pure numpy. The unit of evidence is a test unit: a resample draws the test units with replacement
and every window of a drawn unit comes along (drawn twice: counted twice). The metrics are the ones
`ddrsa.metrics` defines, rebuilt per unit from a run's stored predictions (`ddrsa.run_predictions`):

- `rul_rmse` (TEST_RMSE): `ddrsa.metrics.evaluate`'s test RMSE, the expected time
  E[min(T, L)] = `expected_time(S)` against the event index over the windows whose event falls in
  the horizon (uncensored); steps.
- `benchmark_rmse` (BENCHMARK_RMSE): `ddrsa.metrics.benchmark_metrics`' capped RMSE, one window per
  official test unit, prediction and truth capped at `BENCHMARK_RUL_CAP` (125 cycles); cycles.

An RMSE over the drawn units is sqrt(sum_u c_u SSE_u / sum_u c_u n_u) with c_u how often unit u was
drawn, SSE_u its windows' summed squared errors and n_u their number (`UnitSums`); on the full
sample (every c_u = 1) it equals the run's recorded metric (tests/test_uncertainty.py pins it to
`ddrsa.metrics`).

Seeds: a configuration's repeats (seeds) each keep their own predictions. The metric of a resample
is computed for every seed's run on the SAME drawn units and then averaged over the seeds, so the
point value (no resampling) is the mean over seeds that the tables show next to it, and the interval
answers "which test units happened to be drawn", given the seeds. With several split seeds
(`--split-seeds`) the held-out units differ between splits: units are drawn within each split
(stratified; ascending split seed order), and the average runs over every (seed, split) run.

Random draws (a contract the tests replicate): `rng = numpy.random.default_rng(seed)`; for each
split group in ascending order, with its U sorted unit ids, `rng.integers(0, U, size=(B, U))` are
the B resamples' drawn positions. A paired comparison draws once for both models (same units in
every resample). Intervals are percentile intervals (`numpy.quantile`, linear) of the resample
values; resamples in which the metric is undefined (no scored window drawn) are left out and
counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ddrsa.metrics import BENCHMARK_RUL_CAP, expected_time

TEST_RMSE = "rul_rmse"
BENCHMARK_RMSE = "benchmark_rmse"
UNIT_METRICS = (TEST_RMSE, BENCHMARK_RMSE)
N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
# what the intervals are, in the words the tables and lines use
OVER_SEEDS = "over seeds"
OVER_UNITS = "over test units"


@dataclass(frozen=True)
class UnitSums:
    """One run's metric, per test unit: sorted unit ids (U,), summed squared errors SSE_u (U,) of
    the unit's scored windows (steps^2), and their number n_u (U,) (0 for a unit without one)."""

    units: np.ndarray
    sse: np.ndarray
    n: np.ndarray

    def rmse(self) -> float:
        """The run's RMSE on the full sample (the recorded metric)."""
        total = self.n.sum()
        return float(np.sqrt(self.sse.sum() / total)) if total else math.nan


def _point_estimate(predictions: dict, prefix: str) -> np.ndarray:
    """E[min(T, L)] per window: the stored `<prefix>_expected_time` (computed from the full-precision
    curve, the value the run's metrics used) where the file has it, else rebuilt from the curve."""
    stored = predictions.get(f"{prefix}_expected_time")
    if stored is not None:
        return np.asarray(stored, dtype=np.float64)
    return expected_time(predictions[f"{prefix}_survival"])


def window_errors(predictions: dict, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(unit ids (N,), squared errors (N,), scored (N,) bool) per window of a run's predictions
    (`ddrsa.run_predictions` keys) for `metric` in UNIT_METRICS; None when the predictions do not
    hold what the metric needs (no benchmark windows)."""
    if metric == TEST_RMSE:
        predicted = _point_estimate(predictions, "test")  # E[min(T, L)], steps
        truth = np.asarray(predictions["test_event_index"], dtype=np.float64)
        scored = ~np.asarray(predictions["test_censored"], dtype=bool)  # event in the horizon
        units = np.asarray(predictions["test_unit"])
    elif metric == BENCHMARK_RMSE:
        if "benchmark_survival" not in predictions:
            return None
        predicted = np.minimum(_point_estimate(predictions, "benchmark"), BENCHMARK_RUL_CAP)
        truth = np.minimum(np.asarray(predictions["benchmark_rul"], dtype=np.float64), BENCHMARK_RUL_CAP)
        scored = np.ones(len(truth), dtype=bool)
        units = np.asarray(predictions["benchmark_unit"])
    else:
        raise ValueError(f"unknown unit metric {metric!r}; choose from {', '.join(UNIT_METRICS)}")
    err2 = np.where(scored, (predicted - truth) ** 2, 0.0)
    return units, err2, scored


def unit_sums(predictions: dict, metric: str, level: str = "unit") -> UnitSums | None:
    """Per-unit sums of a run's predictions for `metric`. level "window" makes every window its own
    resampling unit (positions 0..N-1: the naive window bootstrap, for comparison only)."""
    got = window_errors(predictions, metric)
    if got is None:
        return None
    units, err2, scored = got
    if level == "window":
        return UnitSums(np.arange(len(err2)), err2, scored.astype(np.int64))
    if level != "unit":
        raise ValueError(f"level must be 'unit' or 'window' (got {level!r})")
    ids, inverse = np.unique(units, return_inverse=True)
    return UnitSums(
        ids,
        np.bincount(inverse, weights=err2, minlength=len(ids)),
        np.bincount(inverse, weights=scored, minlength=len(ids)).astype(np.int64),
    )


def _stack(runs: list[UnitSums], units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(SSE (U, R), n (U, R)) of the runs on the given sorted unit ids (each run holds them all)."""
    sse = np.empty((len(units), len(runs)))
    n = np.empty((len(units), len(runs)))
    for r, run in enumerate(runs):
        pos = np.searchsorted(run.units, units)
        sse[:, r], n[:, r] = run.sse[pos], run.n[pos]
    return sse, n


def common_units(runs: list[UnitSums]) -> np.ndarray:
    """Sorted unit ids present in every run (the same test units, normally all of them)."""
    units = runs[0].units
    for run in runs[1:]:
        units = np.intersect1d(units, run.units)
    return units


def draw_counts(rng: np.random.Generator, n_units: int, n_resamples: int) -> np.ndarray:
    """(B, U) how often each unit is drawn in each resample (draws: `rng.integers(0, U, (B, U))`)."""
    idx = rng.integers(0, n_units, size=(n_resamples, n_units))
    flat = idx + n_units * np.arange(n_resamples)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n_units).reshape(n_resamples, n_units)


def _rmse(counts: np.ndarray, sse: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(B, R) RMSE of each run on each resample (NaN where no scored window was drawn)."""
    num, den = counts @ sse, counts @ n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sqrt(num / np.where(den > 0, den, 1.0)), np.nan)


def _groups(models: list[dict[object, list[UnitSums]]]) -> list:
    """Split keys every model has runs for, ascending."""
    keys = set(models[0])
    for m in models[1:]:
        keys &= set(m)
    return sorted(keys)


def resample_values(
    models: list[dict[object, list[UnitSums]]], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per model, the metric on the full sample and on each resample, drawn once for all models.

    models: one dict per model, {split key: [UnitSums of each seed's run on that split]}; only the
    split keys every model has are used. Returns (point (M,), values (M, B), n_units): a model's
    value is the mean over its runs (seeds x splits) of the run's RMSE on the drawn units of its
    split; n_units the units drawn from, summed over splits."""
    keys = _groups(models)
    if not keys:
        raise ValueError("no split shared by every model: nothing to resample")
    rng = np.random.default_rng(seed)
    totals = np.zeros((len(models), n_resamples))
    points = np.zeros(len(models))
    n_runs = np.zeros(len(models))
    n_units = 0
    for key in keys:
        units = common_units([run for m in models for run in m[key]])
        n_units += len(units)
        counts = draw_counts(rng, len(units), n_resamples)
        ones = np.ones((1, len(units)))
        for i, m in enumerate(models):
            sse, n = _stack(m[key], units)
            totals[i] += _rmse(counts, sse, n).sum(axis=1)
            points[i] += _rmse(ones, sse, n).sum()
            n_runs[i] += len(m[key])
    return points / n_runs, totals / n_runs[:, None], n_units


@dataclass(frozen=True)
class Interval:
    """A metric's value (mean over seeds) and its 95% percentile interval over test units."""

    value: float
    low: float
    high: float
    n_units: int
    n_runs: int
    n_resamples: int
    n_undefined: int  # resamples left out: no scored window drawn


def bootstrap_interval(
    runs: dict[object, list[UnitSums]], n_resamples: int = N_RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> Interval:
    """Percentile interval of one configuration's metric over resamples of its test units.

    runs: {split key: [UnitSums of each seed's run]} (one key when the split was not repeated)."""
    point, values, n_units = resample_values([runs], n_resamples, seed)
    v = values[0][np.isfinite(values[0])]
    tail = (1 - confidence) / 2
    low, high = np.quantile(v, [tail, 1 - tail]) if len(v) else (math.nan, math.nan)
    return Interval(
        float(point[0]),
        float(low),
        float(high),
        n_units,
        sum(len(r) for r in runs.values()),
        n_resamples,
        int(n_resamples - len(v)),
    )


@dataclass(frozen=True)
class Paired:
    """Winner minus other on the same drawn test units (lower RMSE is better, so a negative
    difference favours the winner)."""

    difference: float  # on the full sample: winner's mean over seeds minus the other's
    low: float  # 95% percentile interval of the resampled differences
    high: float
    share_better: float  # share of resamples in which the winner's RMSE is lower
    mean_resampled: float  # mean of the resampled differences
    n_units: int
    n_resamples: int
    n_undefined: int


def paired_bootstrap(
    winner: dict[object, list[UnitSums]],
    other: dict[object, list[UnitSums]],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Paired:
    """Paired bootstrap over the test units both models were scored on (their shared splits):
    each resample draws units once and scores both models on them."""
    point, values, n_units = resample_values([winner, other], n_resamples, seed)
    diff = values[0] - values[1]
    diff = diff[np.isfinite(diff)]
    tail = (1 - confidence) / 2
    if len(diff):
        low, high = np.quantile(diff, [tail, 1 - tail])
        share, mean = float((diff < 0).mean()), float(diff.mean())
    else:
        low = high = share = mean = math.nan
    return Paired(
        float(point[0] - point[1]),
        float(low),
        float(high),
        share,
        mean,
        n_units,
        n_resamples,
        int(n_resamples - len(diff)),
    )
