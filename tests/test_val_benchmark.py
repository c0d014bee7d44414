"""Selection that mimics the C-MAPSS benchmark: random truncations of the validation units."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ddrsa.metrics import (
    BENCHMARK_RUL_CAP,
    VAL_BENCHMARK_NASA_SCORE,
    VAL_BENCHMARK_RMSE,
    truncation_windows,
    val_benchmark_metrics,
)
from reports.benchmark import SELECTED_ON_VAL_BENCHMARK, benchmark_summary
from tests.conftest import run_cli


def _units(sizes):
    """Windows of units 0, 1, ... with `sizes[u]` windows each, interleaved (not sorted by unit)."""
    units = np.concatenate([np.full(n, u) for u, n in enumerate(sizes)])
    return np.random.default_rng(9).permutation(units)


def test_one_window_per_unit_per_draw_seeded_and_reproducible():
    units = _units([5, 40, 1, 17, 60])
    picks = truncation_windows(units, n_draws=200, seed=3)
    assert picks.shape == (200, 5)
    for j, u in enumerate(np.unique(units)):
        assert (units[picks[:, j]] == u).all()  # column j: windows of unit j only
        seen = np.unique(picks[:, j])
        # a uniform draw over the unit's windows reaches most of them in 200 draws
        assert len(seen) >= min(int((units == u).sum()), 30)
    assert np.array_equal(picks, truncation_windows(units, n_draws=200, seed=3))
    assert not np.array_equal(picks, truncation_windows(units, n_draws=200, seed=4))


def _survival(expected_times, horizon):
    """(N, horizon) survival curves with sum_k S(k) = t exactly (S = 1 then a fractional step)."""
    out = np.zeros((len(expected_times), horizon))
    for i, t in enumerate(expected_times):
        whole = int(math.floor(t))
        out[i, :whole] = 1.0
        if whole < horizon:
            out[i, whole] = t - whole
    return out


def test_metric_equals_brute_force_with_capped_truth():
    rng = np.random.default_rng(0)
    units = _units([30, 80, 12, 55])
    horizon = 130
    pred = rng.uniform(0, horizon, size=len(units))
    truth = rng.uniform(0, 300, size=len(units))  # many beyond the cap of 125
    got = val_benchmark_metrics(_survival(pred, horizon), truth, units, n_draws=7, seed=1)
    picks = truncation_windows(units, n_draws=7, seed=1)
    sq, scores = [], []
    for draw in picks:
        total = 0.0
        for i in draw:
            p, t = min(pred[i], 125.0), min(truth[i], 125.0)
            sq.append((p - t) ** 2)
            d = p - t
            total += math.exp(-d / 13) - 1 if d < 0 else math.exp(d / 10) - 1
        scores.append(total)
    assert got[VAL_BENCHMARK_RMSE] == pytest.approx(math.sqrt(sum(sq) / len(sq)), rel=1e-9)
    assert got[VAL_BENCHMARK_NASA_SCORE] == pytest.approx(sum(scores) / len(scores), rel=1e-9)
    # truth capped: a prediction at the cap is exact for every unit whose true RUL is beyond it
    far = np.full(len(units), 400.0)
    at_cap = val_benchmark_metrics(_survival(np.full(len(units), BENCHMARK_RUL_CAP), horizon), far, units)
    assert at_cap[VAL_BENCHMARK_RMSE] == pytest.approx(0.0, abs=1e-9)


def _record(lr, seed, bench, val_rmse, val_bench):
    metrics = {
        "rul_rmse": 9.0,
        "benchmark_rmse": bench,
        "benchmark_rmse_uncapped": bench,
        "benchmark_nasa_score": 1.0,
        "benchmark_n_units": 100,
        "benchmark_comparable": True,
        "val_rul_rmse": val_rmse,
        "val_rul_mae": 1.0,
        "val_concordance_index": 0.9,
        "val_nasa_score": 1.0,
        "val_loss": 1.0,
    }
    if val_bench is not None:
        metrics[VAL_BENCHMARK_RMSE] = val_bench
    return {
        "experiment_id": f"{lr}{seed}",
        "name": "x",
        "status": "completed",
        "dataset": "turbofan",
        "subset": "FD001",
        "model": "paper",
        "batch_size": 64,
        "learning_rate": lr,
        "lambda_param": 0.75,
        "nasa_weight": 0.0,
        "dropout": 0.1,
        "seed": seed,
        "num_epochs": 5,
        "test_split": "official",
        "metrics": metrics,
    }


def test_benchmark_summary_ranks_on_the_benchmark_like_validation_measure():
    # lr 0.01 wins on val_rul_rmse, lr 0.003 on val_benchmark_rmse: the latter must choose
    recs = [_record(0.01, s, 14.0, 10.0, 16.0) for s in range(3)] + [
        _record(0.003, s, 12.0, 20.0, 12.0) for s in range(3)
    ]
    r = benchmark_summary(recs).iloc[0]
    assert r["learning_rate"] == 0.003 and r["selected_on"] == SELECTED_ON_VAL_BENCHMARK
    assert r["selection_score"] == pytest.approx(12.0)
    # older records without it: validation RMSE as before
    old = [_record(0.01, s, 14.0, 10.0, None) for s in range(3)] + [
        _record(0.003, s, 12.0, 20.0, None) for s in range(3)
    ]
    r = benchmark_summary(old).iloc[0]
    assert r["learning_rate"] == 0.01 and r["selected_on"] == "validation"


def test_turbofan_run_writes_val_benchmark_metrics(tmp_path):
    out = tmp_path / "run"
    run_cli(
        [
            "-m",
            "ddrsa.train",
            "--dataset",
            "turbofan",
            "--model",
            "gru_basic",
            "--num-epochs",
            "1",
            "--data-source",
            "synthetic",
            "--max-units",
            "12",
            "--window-stride",
            "8",
            "--lookback-window",
            "16",
            "--pred-horizon",
            "16",
            "--output-dir",
            str(out),
        ],
        check=True,
    )
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics[VAL_BENCHMARK_RMSE] >= 0 and metrics[VAL_BENCHMARK_NASA_SCORE] >= 0
    assert metrics["nasa_loss_version"] == 2
