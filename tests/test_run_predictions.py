"""Per-window predictions (ddrsa/run_predictions.py) in every finished run folder: a DDRSA run, a
fused-group member, a baseline; stored small (float16 curves) and exact where it matters (the
expected time); the yardstick metrics of `evaluate` wired to their reference functions."""

from __future__ import annotations

import numpy as np
import pytest

from ddrsa.config import ExperimentConfig
from ddrsa.data import load_dataset
from ddrsa.fused import train_group
from ddrsa.metrics import (
    AUC_STEPS,
    BETWEEN_UNITS_C,
    YARDSTICK_METRICS,
    auc_key,
    concordance,
    concordance_between_units,
    dynamic_auc,
    evaluate,
    expected_time,
)
from ddrsa.run_predictions import (
    BENCHMARK_EXTRA_KEYS,
    BENCHMARK_KEYS,
    EXTRA_KEYS,
    FILE_NAME,
    KEYS,
    POLICY_KEYS,
    load_predictions,
    save_predictions,
)
from ddrsa.settings import Settings
from ddrsa.sweep.results import make_record
from ddrsa.trainer import train

SYNTHETIC = Settings(data_source="synthetic")
BASE = {
    "data_source": "synthetic",
    "max_units": 12,
    "window_stride": 8,
    "lookback_window": 32,
    "pred_horizon": 16,
    "batch_size": 64,
    "num_epochs": 1,
}
# a tiny run's file: 88 test windows + 30 benchmark windows of 16 steps (~2.4 KB of float16 curves)
SIZE_BOUND = 16_000


def _check_folder(run_dir, config) -> dict:
    data = load_dataset(config.data_config(), SYNTHETIC)
    path = run_dir / FILE_NAME
    assert path.is_file() and path.stat().st_size < SIZE_BOUND, path
    preds = load_predictions(run_dir)
    assert set(KEYS + EXTRA_KEYS + BENCHMARK_KEYS + BENCHMARK_EXTRA_KEYS + POLICY_KEYS) == set(preds)
    np.testing.assert_array_equal(preds["test_unit"], data.test.unit)
    np.testing.assert_array_equal(preds["test_event_index"], data.test.event_index)
    np.testing.assert_array_equal(preds["test_censored"], data.test.censored)
    np.testing.assert_array_equal(preds["test_window_end"], data.test.step)
    # held-out C-MAPSS units run to failure: window end + steps to the event = the unit's last step
    for u in np.unique(preds["test_unit"]):
        ends = preds["test_window_end"][preds["test_unit"] == u] + preds["test_event_index"][preds["test_unit"] == u]
        assert len(set(ends.tolist())) == 1 and ends[0] >= ends.size
    np.testing.assert_array_equal(preds["benchmark_unit"], data.benchmark.unit)
    np.testing.assert_array_equal(preds["benchmark_rul"], data.benchmark.rul)
    assert preds["test_survival"].shape == (len(data.test), config.pred_horizon)
    assert preds["test_survival"].dtype == np.float64  # float16 on disk, float64 once loaded
    return preds


def test_single_run_and_fused_members_write_their_predictions(tmp_path):
    config = ExperimentConfig(**BASE, model="paper", seed=1)
    result = train(config, tmp_path / "single", settings=SYNTHETIC, return_predictions=True)
    preds = _check_folder(tmp_path / "single", config)
    exact = result.predictions["test_survival"]
    assert np.abs(preds["test_survival"] - exact).max() <= 2.5e-4  # float16: half a spacing below 1
    # the expected time every metric used, exact to float32 (not rebuilt from the rounded curve)
    np.testing.assert_allclose(preds["test_expected_time"], expected_time(exact), rtol=1e-6)
    assert result.metrics["rul_rmse"] == pytest.approx(
        np.sqrt(np.mean((preds["test_expected_time"] - preds["test_event_index"])[~preds["test_censored"]] ** 2)),
        rel=1e-6,
    )
    members = [ExperimentConfig(**BASE, model="paper", seed=s, learning_rate=lr) for s, lr in ((1, 1e-3), (2, 3e-3))]
    dirs = [tmp_path / "m0", tmp_path / "m1"]
    train_group(members, dirs, settings=SYNTHETIC)
    for config, run_dir in zip(members, dirs):
        _check_folder(run_dir, config)


def test_baseline_writes_the_same_predictions(tmp_path):
    config = ExperimentConfig(**BASE, model="gbm")
    train(config, tmp_path / "gbm", settings=SYNTHETIC)
    preds = _check_folder(tmp_path / "gbm", config)
    # gbm's curve is a step at p: the stored expected time is p, the rounded curve sums to it within L * 2.5e-4
    assert np.abs(preds["test_survival"].sum(1) - preds["test_expected_time"]).max() < 16 * 2.5e-4


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    good = {
        "test_survival": np.full((3, 4), 0.5),
        "test_event_index": np.arange(3),
        "test_censored": np.zeros(3, bool),
        "test_unit": np.arange(3),
    }
    save_predictions(tmp_path, good)
    before = (tmp_path / FILE_NAME).read_bytes()
    with pytest.raises(TypeError):
        save_predictions(tmp_path, {**good, "test_window_end": object()})  # not storable
    assert (tmp_path / FILE_NAME).read_bytes() == before and not list(tmp_path.glob("*.tmp"))


def test_evaluate_stores_auc_at_clamped_steps_and_the_between_units_c():
    rng = np.random.default_rng(3)
    n, horizon = 120, 16
    survival = np.sort(rng.random((n, horizon)), axis=1)[:, ::-1]
    event_index = rng.integers(0, 24, n)
    censored = (event_index >= horizon) | (rng.random(n) < 0.2)
    units = rng.integers(0, 6, n)
    got = evaluate(survival, event_index, censored, units)
    steps = [min(k, horizon - 1) for k in AUC_STEPS]
    want_auc = dynamic_auc(survival, event_index, censored, steps)
    np.testing.assert_allclose([got[auc_key(k)] for k in AUC_STEPS], want_auc)
    times = np.where(censored, np.minimum(event_index, horizon), event_index)
    want = concordance_between_units(times, expected_time(survival), ~censored, units)
    assert got[BETWEEN_UNITS_C] == pytest.approx(want) and got[BETWEEN_UNITS_C] != got["concordance_index"]
    assert got["concordance_index"] == pytest.approx(concordance(times, expected_time(survival), ~censored))
    assert set(YARDSTICK_METRICS) <= set(got)


def test_records_mark_baselines():
    for model, flag in (("gbm", True), ("km", True), ("paper", False)):
        planned = {
            "experiment_id": "x",
            "index": 0,
            "name": "n",
            "run_dir": "r",
            "config": ExperimentConfig(model=model).model_dump(mode="json"),
        }
        assert make_record(planned, status="completed", result={})["is_baseline"] is flag
