"""A run folder's per-window predictions, `test_predictions.npz` (docs/CONTRACTS.md).

Written at the end of every finished run (ddrsa/run_state.py `RunState.finish`: a DDRSA run and
every fused-group member; ddrsa/baselines: gbm, cox, km); read by `python -m reports.run_charts
RUN_DIR` and the analysis (bootstrap over test units). `predictions_of` builds the arrays of one
split, `save_predictions` writes them, `load_predictions` reads them back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ddrsa.metrics import expected_time

FILE_NAME = "test_predictions.npz"
# test_survival (N, L) S(k) per test window, stored float16 (|error| <= 2.5e-4, `load_predictions`
# returns float64); test_event_index (N,) steps to the event or censoring; test_censored (N,) bool;
# test_unit (N,) unit/machine id of each window
KEYS = ("test_survival", "test_event_index", "test_censored", "test_unit")
# test_expected_time (N,) float32 E[min(T, L)] = sum_k S(k) of the float64 curve (the RUL point
# estimate every metric used, exact to float32); test_window_end (N,) int32 step of the window's last
# observation within its unit (0 = the unit's first step; C-MAPSS: cycle - 1)
EXTRA_KEYS = ("test_expected_time", "test_window_end")
# Where the dataset has benchmark windows (C-MAPSS official test units: one window per unit):
# benchmark_survival (B, L) S(k) (float16 as above); benchmark_rul (B,) true RUL (uncapped, steps);
# benchmark_unit (B,) unit id; benchmark_expected_time (B,) float32; benchmark_window_end (B,) int32
BENCHMARK_KEYS = ("benchmark_survival", "benchmark_rul", "benchmark_unit")
# Optional (ddrsa/policy.py's per-unit walk, reports/policy_charts.py): test_rul (N,) true steps to the
# event (or record end) of each test window; test_end (N,) its row in the unit's storage (time order)
POLICY_KEYS = ("test_rul", "test_end")
BENCHMARK_EXTRA_KEYS = ("benchmark_expected_time", "benchmark_window_end")
ALL_KEYS = KEYS + EXTRA_KEYS + BENCHMARK_KEYS + BENCHMARK_EXTRA_KEYS + POLICY_KEYS
STORED_DTYPES = {
    "survival": np.float16,
    "expected_time": np.float32,
    "window_end": np.int32,
    "event_index": np.int32,
    "unit": np.int64,
    "censored": np.bool_,
    "rul": np.float32,
    "end": np.int64,
}


def predictions_of(survival: np.ndarray, windows, prefix: str = "test") -> dict:
    """The arrays of one split: `<prefix>_survival` (N, L) float64, `<prefix>_expected_time`,
    `<prefix>_unit`, `<prefix>_window_end` and, for `test`, `_event_index`/`_censored`, for
    `benchmark`, `_rul` (true RUL). `windows` is the split's SurvivalWindows."""
    survival = np.asarray(survival, dtype=np.float64)
    out = {
        f"{prefix}_survival": survival,
        f"{prefix}_expected_time": expected_time(survival),
        f"{prefix}_unit": np.asarray(windows.unit),
        f"{prefix}_window_end": np.asarray(windows.step),
    }
    if prefix == "benchmark":
        out["benchmark_rul"] = np.asarray(windows.rul)
    else:
        out.update(
            {
                f"{prefix}_event_index": np.asarray(windows.event_index),
                f"{prefix}_censored": np.asarray(windows.censored),
            }
        )
    return out


def _stored(key: str, value) -> np.ndarray:
    kind = key.split("_", 1)[1]
    return np.asarray(value).astype(STORED_DTYPES[kind], copy=False)


def save_predictions(run_dir: Path, predictions: dict) -> Path:
    """Write `predictions` (the KEYS arrays, plus any of EXTRA_KEYS and the benchmark keys) into
    run_dir/test_predictions.npz (compressed, dtypes of STORED_DTYPES), atomically."""
    path = Path(run_dir) / FILE_NAME
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            arrays = {k: _stored(k, predictions[k]) for k in ALL_KEYS if k in predictions}
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub: **kwds as bool
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_predictions(run_dir: Path) -> dict | None:
    """The arrays `save_predictions` wrote (KEYS, plus EXTRA_KEYS and BENCHMARK_KEYS where present;
    survival curves as float64), or None when the run folder has none."""
    path = Path(run_dir) / FILE_NAME
    if not path.exists():
        return None
    with np.load(path) as data:
        out = {k: data[k] for k in ALL_KEYS if k in data.files}
    for k in ("test_survival", "benchmark_survival"):
        if k in out:
            out[k] = out[k].astype(np.float64)
    return out
