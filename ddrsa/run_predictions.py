"""A run folder's test predictions, `test_predictions.npz` (written by `python -m ddrsa.train
--create-visualization`, read by `python -m reports.run_charts RUN_DIR`)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FILE_NAME = "test_predictions.npz"
# test_survival (N, L) S(k) per test window; test_event_index (N,) steps to the event or censoring;
# test_censored (N,) bool; test_unit (N,) unit/machine id of each window
KEYS = ("test_survival", "test_event_index", "test_censored", "test_unit")
# Optional, where the dataset has benchmark windows (C-MAPSS official test units: one window per unit):
# benchmark_survival (B, L) S(k); benchmark_rul (B,) true RUL (uncapped); benchmark_unit (B,) unit id
BENCHMARK_KEYS = ("benchmark_survival", "benchmark_rul", "benchmark_unit")


def save_predictions(run_dir: Path, predictions: dict) -> Path:
    """Write `predictions` (the KEYS arrays) into run_dir/test_predictions.npz, atomically."""
    path = Path(run_dir) / FILE_NAME
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{k: np.asarray(predictions[k]) for k in KEYS + BENCHMARK_KEYS  # type: ignore[arg-type]
                                   if k in predictions})
    os.replace(tmp, path)
    return path


def load_predictions(run_dir: Path) -> dict | None:
    """The arrays `save_predictions` wrote (KEYS, plus BENCHMARK_KEYS where present), or None when the
    run folder has none."""
    path = Path(run_dir) / FILE_NAME
    if not path.exists():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in KEYS + BENCHMARK_KEYS if k in data.files}
