"""Proof that a fleet table goes through the same split, scaling, windows and training as a built-in
data set: C-MAPSS FD001 written by benchmarks/cmapss_to_fleet.py gives the turbofan loader's windows
and, for one seed, its metrics (1e-6)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ddrsa.config import DataConfig, ExperimentConfig
from ddrsa.data import load_dataset
from ddrsa.metrics import RANKED_METRICS, VALIDATION_KEYS
from ddrsa.settings import Settings
from tests.conftest import REAL_DATA_DIR, ROOT

pytestmark = pytest.mark.realdata
DATA = dict(lookback_window=16, pred_horizon=32, window_stride=8)


@pytest.fixture(scope="module")
def fd001_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet") / "fd001.parquet"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cmapss_to_fleet.py"), "--subset", "FD001", "--output", str(out)],
        check=True,
        cwd=ROOT,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT), DDRSA_DATA_DIR=str(REAL_DATA_DIR)),
    )
    return out


def test_fd001_table_gives_the_turbofan_windows(fd001_table):
    settings = Settings(data_dir=REAL_DATA_DIR, data_source="real")
    ref = load_dataset(DataConfig(dataset="turbofan", subset="FD001", **DATA), settings)
    got = load_dataset(DataConfig(dataset=str(fd001_table), **DATA), settings)
    assert got.feature_names == ref.feature_names and got.n_units == ref.n_units
    assert got.info["split_units"] == ref.info["split_units"]
    for part in ("train", "val", "test"):
        a, b = getattr(ref, part), getattr(got, part)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(b.x, a.x, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(b.mask, a.mask)
        for name in ("event_index", "censored", "rul", "unit"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=f"{part} {name}")


def test_fd001_table_gives_the_turbofan_metrics_for_one_seed(fd001_table, tmp_path, monkeypatch):
    from ddrsa.trainer import train

    monkeypatch.setenv("DDRSA_DATA_DIR", str(REAL_DATA_DIR))
    settings = Settings(data_dir=REAL_DATA_DIR, data_source="real")
    common = dict(
        model="gru_basic", num_epochs=2, batch_size=256, learning_rate=1e-3, seed=7, deterministic=True, **DATA
    )
    ref = train(ExperimentConfig(dataset="turbofan", data_source="real", **common), tmp_path / "ref", settings)
    got = train(ExperimentConfig(dataset=str(fd001_table), **common), tmp_path / "fleet", settings)
    assert ref.status == got.status == "completed"
    shared = [
        k
        for k, v in ref.metrics.items()
        if isinstance(v, float) and k in got.metrics and not k.endswith(("seconds", "_bytes", "_mb", "_gb"))
    ]  # timings are not results
    assert set(RANKED_METRICS) | set(VALIDATION_KEYS) <= set(shared), shared
    for k in shared:
        assert got.metrics[k] == pytest.approx(ref.metrics[k], abs=1e-6, rel=0), k
    assert got.metrics["data_version"] != ref.metrics["data_version"]
