"""Engine age as an optional input channel (`age_input`): C-MAPSS cycle index, Azure PM record steps."""

from __future__ import annotations

import numpy as np
import pytest

from ddrsa.config import ExperimentConfig
from ddrsa.data.azure_pm import prepare_azure
from ddrsa.data.cmapss import prepare_cmapss
from ddrsa.data.synthetic import make_synthetic_azure, make_synthetic_cmapss

ARGS = dict(subset="FD001", lookback=8, pred_horizon=16, split_seed=0, test_fraction=0.3, val_fraction=0.3)


@pytest.fixture(scope="module")
def cmapss_raw():
    train, test, rul = make_synthetic_cmapss("FD001", n_units=12, seed=1)
    train = train.to_numpy(float)
    # make one unit live far longer than the others, so a scaler fitted on every unit would differ
    last = train[train[:, 0] == train[:, 0].max()]
    longer = np.concatenate([last, last[-200:]])
    longer[:, 1] = np.arange(1, len(longer) + 1)
    train = np.concatenate([train[train[:, 0] != train[:, 0].max()], longer])
    return train, test.to_numpy(float), rul["rul"].to_numpy(float)


def test_cmapss_age_channel_is_the_cycle_index_scaled_on_training_units(cmapss_raw):
    train, test, rul = cmapss_raw
    plain = prepare_cmapss(train, test, rul, **ARGS)
    aged = prepare_cmapss(train, test, rul, **ARGS, age_input=True)
    assert aged["feature_names"] == plain["feature_names"] + ["cycle"]
    split = aged["split_units"]
    assert train[:, 0].max() not in split["train"], "the long-lived unit must not train for this test"
    train_cycles = train[np.isin(train[:, 0], split["train"]), 1]
    lo, hi = train_cycles.min(), train_cycles.max()
    last_cycle = {int(u): train[train[:, 0] == u, 1].max() for u in np.unique(train[:, 0])}
    for part in ("train", "val", "test"):
        w, p = aged[part], plain[part]
        assert w.x.shape[-1] == p.x.shape[-1] + 1
        np.testing.assert_array_equal(w.x[..., :-1], p.x)  # the sensors are unchanged
        cycle = np.array([last_cycle[int(u)] for u in w.unit]) - w.rul  # rul = T - t on these units
        np.testing.assert_allclose(w.x[:, -1, -1], 2 * (cycle - lo) / (hi - lo) - 1, atol=1e-5)
    assert aged["train"].x[:, -1, -1].max() == pytest.approx(1.0, abs=1e-6)
    assert aged["val"].x[:, -1, -1].max() > 1.0 or aged["test"].x[:, -1, -1].max() > 1.0  # the long unit


def test_azure_age_channel_is_the_step_since_record_start():
    tables = make_synthetic_azure(n_machines=6, seed=0)
    args = dict(lookback=4, pred_horizon=16, split_seed=0, test_fraction=0.3, val_fraction=0.3)
    plain = prepare_azure(tables, **args)
    aged = prepare_azure(tables, **args, age_input=True)
    assert aged["feature_names"] == plain["feature_names"] + ["record_steps"]
    w = aged["train"]
    assert w.x.shape[-1] == plain["train"].x.shape[-1] + 1
    step = np.concatenate([np.arange((w.unit == u).sum()) for u in np.unique(w.unit)])  # one window per step
    order = np.argsort(w.unit, kind="stable")
    got = w.x[order, -1, -1]
    np.testing.assert_allclose(got, 2 * (step - step.min()) / (step.max() - step.min()) - 1, atol=1e-5)


def test_age_input_flag_and_ids():
    cfg = ExperimentConfig()
    assert cfg.age_input is False
    assert ExperimentConfig(age_input=True).experiment_id() != cfg.experiment_id()
    # runs without age input keep the ids they had before the field existed
    import hashlib
    import json

    fields = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("age_input", "test_split")}
    assert cfg.experiment_id() == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def test_benchmark_line_says_with_age_input():
    from reports.report import benchmark_lines

    def rec(seed, age):
        metrics = {
            "rul_rmse": 9.0,
            "benchmark_rmse": 12.0,
            "benchmark_rmse_uncapped": 12.0,
            "benchmark_nasa_score": 1.0,
            "benchmark_n_units": 100,
            "benchmark_comparable": True,
            "val_rul_rmse": 1.0,
            "val_loss": 1.0,
        }
        return {
            "experiment_id": f"{seed}{age}",
            "name": "x",
            "status": "completed",
            "dataset": "turbofan",
            "subset": "FD001",
            "model": "paper",
            "batch_size": 64,
            "learning_rate": 0.01,
            "lambda_param": 0.75,
            "nasa_weight": 0.0,
            "dropout": 0.1,
            "seed": seed,
            "num_epochs": 5,
            "test_split": "official",
            "age_input": age,
            "metrics": metrics,
        }

    lines = benchmark_lines([rec(s, a) for s in range(2) for a in (False, True)])
    assert len(lines) == 2
    assert sum("with age input" in line for line in lines) == 1
    old = dict(rec(0, False))
    del old["age_input"]  # records written before the field existed
    assert "with age input" not in benchmark_lines([old])[0]
