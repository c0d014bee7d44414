"""Refit, model package and `python -m ddrsa.score` on a generated fleet table."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from ddrsa.cli import run_cli
from ddrsa.config import ExperimentConfig
from ddrsa.data import load_dataset
from ddrsa.package import load_package
from ddrsa.refit import fit_epochs, join_windows, refit_run
from ddrsa.score import PROG, main, score
from ddrsa.settings import get_settings
from ddrsa.trainer import train
from tests.fleet_fixtures import make_fleet

SMALL = dict(
    model="gru_basic", lookback_window=8, pred_horizon=16, batch_size=64, learning_rate=1e-3, deterministic=True, seed=3
)


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory):
    """A 3-epoch run on a generated table and its package (module-scoped: trained once)."""
    root = tmp_path_factory.mktemp("fleet")
    df, _ = make_fleet(12, 80, seed=5)
    path = root / "pumps.csv"
    df.to_csv(path, index=False)
    config = ExperimentConfig(dataset=str(path), num_epochs=3, **SMALL)
    result = train(config, root / "run")
    assert result.status == "completed"
    pkg = refit_run(root, "run", root / "packages" / "pumps")
    return root, path, df, config, result, pkg


def test_refit_loop_equals_the_trainer_on_the_same_windows(fleet_run):
    """The refit's training loop on the training windows alone, with the run's logged learning rates,
    gives the trainer's weights after the same epochs (checkpoint_last.pt)."""
    root, _, _, config, _, _ = fleet_run
    data = load_dataset(config.data_config())
    log = json.loads((root / "run" / "training_log.json").read_text())
    model = fit_epochs(config, data.train, 3, torch.device("cpu"), [e["learning_rate"] for e in log["epochs"]])
    last = torch.load(root / "run" / "checkpoint_last.pt", map_location="cpu", weights_only=True)["model"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, last[name], atol=1e-6, rtol=0, msg=name)


def test_join_windows_keeps_every_window(fleet_run):
    _, _, _, config, _, _ = fleet_run
    data = load_dataset(config.data_config())
    both = join_windows(data.train, data.val)
    assert len(both) == len(data.train) + len(data.val)
    np.testing.assert_array_equal(both.x[len(data.train) :], data.val.x)
    np.testing.assert_array_equal(both.x[: len(data.train)], data.train.x)


def test_package_holds_the_contract_and_loads_with_weights_only(fleet_run):
    _, _, _, config, result, pkg = fleet_run
    meta = json.loads((pkg / "package.json").read_text())
    for key in (
        "config",
        "feature_names",
        "covariates",
        "categories",
        "scaler",
        "columns",
        "data_version",
        "code_version",
        "validation_metrics",
        "refit",
        "intervention",
    ):
        assert key in meta, key
    assert meta["refit"]["epochs"] == result.best_epoch and meta["dataset"] == "pumps"
    data = load_dataset(config.data_config())
    assert meta["data_version"] == data.data_version and meta["feature_names"] == data.feature_names
    assert sorted(meta["refit"]["units"]["train"] + meta["refit"]["units"]["val"]) == sorted(
        data.info["split_units"]["train"] + data.info["split_units"]["val"]
    )
    assert meta["validation_metrics"]["val_loss"] == pytest.approx(result.metrics["val_loss"])
    torch.load(pkg / "weights.pt", weights_only=True)  # plain tensors only
    loaded = load_package(pkg)
    assert loaded.config == config


def test_scores_match_a_brute_force_reading_of_the_hazards(fleet_run):
    _, path, df, _, _, pkg = fleet_run
    package = load_package(pkg)
    out = score(package, path, ks=[1, 4, 16], window=4, threshold=0.5)
    assert len(out) == df.unit.nunique()
    risk = out["p_fail_within_4"].to_numpy()
    assert (np.diff(risk) <= 1e-12).all()  # riskiest first
    data = load_dataset(package.config.data_config())
    # independent path: each unit's last window from the prepared windows, hazards multiplied out
    x_all = {}
    for w in (data.train, data.val, data.test):
        for u in np.unique(w.unit):
            i = np.flatnonzero(w.unit == u)[-1]
            x_all[int(u)] = w.batch([i])
    for _, row in out.iterrows():
        x, mask = x_all[int(row["unit"])]
        with torch.no_grad():
            h = torch.sigmoid(package.model(torch.from_numpy(x), torch.from_numpy(mask))).numpy()[0].astype(float)
        surv, s = [], 1.0
        for hk in h:
            s *= 1 - hk
            surv.append(s)
        assert row["expected_time_to_failure"] == pytest.approx(sum(surv), rel=1e-5)
        for k in (1, 4, 16):
            assert row[f"p_fail_within_{k}"] == pytest.approx(1 - surv[k - 1], abs=1e-6)
        q50 = next((k for k in range(16) if 1 - surv[k] >= 0.5), None)
        assert (np.isnan(row["time_q50"]) and q50 is None) or row["time_q50"] == q50
        assert row["intervene_now"] == (1 - surv[3] >= 0.5)


def test_score_cli_writes_csv_and_one_summary_line(fleet_run, tmp_path, capsys):
    _, path, df, _, _, pkg = fleet_run
    out = tmp_path / "scores.csv"
    assert run_cli(PROG, main, ["--model", str(pkg), "--data", str(path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"scored {df.unit.nunique()} units of pumps.csv")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("unit,last_time,steps_observed,expected_time_to_failure,p_fail_within_1")
    assert len(lines) == df.unit.nunique() + 1


@pytest.mark.parametrize("change", ["drop temp", "add column", "rename wear", "new category"])
def test_score_refuses_a_table_whose_covariates_do_not_match(change, fleet_run, tmp_path, capsys):
    _, _, df, _, _, pkg = fleet_run
    d = df.copy()
    if change == "drop temp":
        d = d.drop(columns="temp")
    elif change == "add column":
        d["humidity"] = 1.0 + d.index % 3
    elif change == "rename wear":
        d = d.rename(columns={"wear": "Wear"})
    else:
        d["site"] = [f"s{i % 25}" for i in range(len(d))]
    data = tmp_path / "later.csv"
    d.to_csv(data, index=False)
    out = tmp_path / "scores.csv"
    with pytest.raises(SystemExit) as exc:
        run_cli(PROG, main, ["--model", str(pkg), "--data", str(data), "--output", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "covariates do not match the package" in err or "one-hot" in err, err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["later.csv"]


def test_score_refuses_a_folder_that_is_not_a_package(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(PROG, main, ["--model", str(tmp_path), "--data", str(tmp_path / "x.csv")])
    assert exc.value.code == 2 and "is not a model package" in capsys.readouterr().err
    assert get_settings() is not None
