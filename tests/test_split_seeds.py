"""`--split-seeds`: the sweep repeats the held-out split; the analysis pools the splits as repeats of a
configuration and draws test units within each split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ddrsa.config import ExperimentConfig
from ddrsa.metrics import expected_time
from ddrsa.run_predictions import save_predictions
from ddrsa.sweep.results import make_record
from ddrsa.sweep.spec import SweepSpec, expand
from deployments.presets import preset_spec
from flows.sweep_cli import build_parser
from reports.report import run_analysis
from reports.uncertainty import TEST_RMSE, bootstrap_interval, unit_sums


def test_split_seeds_repeat_the_grid_per_split():
    base = SweepSpec(datasets=["turbofan"], models=["lstm_basic"], seeds=[1, 2])
    spec = SweepSpec(datasets=["turbofan"], models=["lstm_basic"], seeds=[1, 2], split_seeds=[0, 1, 2])
    planned = expand(spec)
    assert len(planned) == spec.size() == 3 * len(expand(base)) == 6
    assert [p.config.split_seed for p in planned] == [0, 0, 1, 1, 2, 2]
    assert len({p.name for p in planned}) == 6 and planned[2].name.endswith("_s1_split1")
    assert len({p.experiment_id for p in planned}) == 6
    # the default keeps one split, and the ids of earlier sweeps
    assert [p.experiment_id for p in expand(base)] == [p.experiment_id for p in planned[:2]]
    assert (
        expand(base)[0].experiment_id
        == ExperimentConfig(dataset="turbofan", model="lstm_basic", seed=1, batch_size=128).experiment_id()
    )
    assert "split_seeds" not in base.grid() and spec.grid()["split_seeds"] == [0, 1, 2]
    with pytest.raises(ValueError):
        SweepSpec(split_seeds=[])


def test_split_seeds_flag_and_the_benchmark_preset():
    args = build_parser().parse_args(["--split-seeds", "0", "1", "2"])
    assert args.split_seeds == [0, 1, 2]
    bench = preset_spec("cmapss-benchmark")
    assert bench.split_seeds == [0]
    from deployments.presets import PRESETS

    assert "One split (split seed 0): the official test units are fixed" in PRESETS["cmapss-benchmark"]["description"]


def test_record_carries_the_split_seed():
    planned = expand(SweepSpec(datasets=["azure_pm"], models=["gru_basic"], split_seeds=[3]))[0].as_dict()
    assert make_record(planned, status="failed")["split_seed"] == 3


def _pred(rng, units, noise):
    n = len(units)
    ev = rng.integers(0, 15, n)
    target = np.clip(ev + rng.normal(0, noise, n), 0.5, 19.5)
    surv = 1.0 / (1.0 + np.exp(np.arange(20)[None, :] - target[:, None]))
    # as every run writes it: the curve (stored float16) and its E[min(T, L)] from the float64 curve
    return {
        "test_survival": surv,
        "test_expected_time": expected_time(surv),
        "test_event_index": ev,
        "test_censored": np.zeros(n, bool),
        "test_unit": units,
    }


def test_analysis_pools_splits_and_draws_units_within_each(tmp_path):
    """Two split seeds x two seeds of one configuration: one leaderboard row with 4 runs; the
    interval over test units draws from both splits' units (stratified)."""
    rng = np.random.default_rng(0)
    recs, sums = [], {}
    for split in (0, 1):
        units = np.repeat(np.arange(10) + 100 * split, 5)  # different held-out units per split
        for seed in (0, 1):
            i = len(recs)
            pred = _pred(rng, units, 3.0)
            run = f"logs/azure_pm/gru_basic/r{i}"
            (tmp_path / run).mkdir(parents=True)
            save_predictions(tmp_path / run, pred)
            sums.setdefault(("held-out", split), []).append(unit_sums(pred, TEST_RMSE))
            rmse = unit_sums(pred, TEST_RMSE).rmse()
            recs.append(
                {
                    "experiment_id": f"{i:012x}",
                    "index": i,
                    "name": f"n{i}",
                    "dataset": "azure_pm",
                    "subset": "FD001",
                    "model": "gru_basic",
                    "batch_size": 128,
                    "learning_rate": 0.001,
                    "lambda_param": 0.75,
                    "nasa_weight": 0.1,
                    "dropout": 0.1,
                    "seed": seed,
                    "split_seed": split,
                    "num_epochs": 1,
                    "status": "completed",
                    "run_dir": run,
                    "test_split": "held-out",
                    "metrics": {
                        "rul_rmse": rmse,
                        "rul_mae": rmse,
                        "concordance_index": 0.8,
                        "nasa_score": 1.0,
                        "val_rul_rmse": 1.0,
                        "val_rul_mae": 1.0,
                        "val_concordance_index": 0.8,
                        "val_nasa_score": 1.0,
                        "val_loss": 1.0,
                    },
                }
            )
    (tmp_path / "all_results.json").write_text(json.dumps(recs))
    res = run_analysis(tmp_path, charts=False)
    assert len(res.leaderboard) == 1 and res.leaderboard.iloc[0]["n_seeds"] == 4
    row = res.best[res.best["criterion"] == "RMSE"].iloc[0]
    want = bootstrap_interval(sums)
    assert want.n_units == 20 and want.n_runs == 4
    assert (row["rul_rmse_units_low"], row["rul_rmse_units_high"]) == pytest.approx((want.low, want.high))
    assert row["rul_rmse"] == pytest.approx(want.value)
