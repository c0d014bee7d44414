"""The baselines (ddrsa/baselines: gbm, cox, km), each against an independent reference, and end to end:
`python -m ddrsa.train --model km`, a tiny sweep `--models paper gbm`, resume without refitting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ddrsa.baselines.cox import CoxBaseline
from ddrsa.baselines.features import lifetimes, window_ages, window_summaries
from ddrsa.baselines.gbm import GradientBoostingBaseline, capped_target
from ddrsa.baselines.km import KaplanMeierBaseline
from ddrsa.config import ExperimentConfig
from ddrsa.data import load_dataset
from ddrsa.data.azure_pm import azure_labels
from ddrsa.data.windows import make_windows, run_to_failure_labels
from ddrsa.run_predictions import FILE_NAME, load_predictions
from ddrsa.settings import Settings
from ddrsa.sweep.spec import SweepSpec, expand
from tests.conftest import TINY, read_results, run_cli

HORIZON = 8


def _windows(units: dict, lookback: int = 4, stride: int = 1):
    """units: id -> (n_steps, event steps or None for run-to-failure). Labels from the loaders' own
    label functions; covariates: a noisy wear signal (so the summaries have something to fit)."""
    rng = np.random.default_rng(0)
    ids, feats, ev, ce, ru = [], [], [], [], []
    for uid, (n, events) in units.items():
        if events is None:
            e, c, r = run_to_failure_labels(n, HORIZON)
        else:
            e, c, r = azure_labels(n, np.asarray(events, dtype=np.int64), HORIZON)
        ids.append(uid)
        feats.append(np.column_stack([-e.clip(0, 20) + rng.normal(0, 0.5, n), rng.normal(0, 1, n)]).astype(np.float32))
        ev.append(e), ce.append(c), ru.append(r)
    return make_windows(ids, feats, ev, ce, ru, lookback, stride)


def _km_brute(durations, observed):
    """Product-limit S(t) = P(D > t) at t = 0..max, by a plain loop."""
    top = int(max(durations)) + 1
    s, out = 1.0, []
    for t in range(top + 1):
        at_risk = sum(1 for d in durations if d >= t)
        deaths = sum(1 for d, o in zip(durations, observed) if o and d == t)
        if at_risk:
            s *= 1 - deaths / at_risk
        out.append(s)
    return np.array(out)


def test_km_conditional_curve_equals_brute_force_from_the_lifetimes():
    # run-to-failure units (C-MAPSS-like: age = step + 1) and a machine with two failures and a censored end
    units = {1: (9, None), 2: (12, None), 3: (15, None), 4: (20, [5, 12])}
    train = _windows(units)
    # the lives, written out by hand: 9, 12, 15; machine 4: steps 0-5 (D 6), 6-12 (D 7), 13-19 (alive at age 7)
    durations, observed = [9, 12, 15, 6, 7, 7], [True, True, True, True, True, False]
    got_d, got_o = lifetimes(train)
    assert sorted(zip(got_d.tolist(), got_o.tolist())) == sorted(zip(durations, observed))
    ages_by_hand = np.concatenate(
        [np.arange(1, 10), np.arange(1, 13), np.arange(1, 16), np.r_[np.arange(1, 7), np.arange(1, 8), np.arange(1, 8)]]
    )
    np.testing.assert_array_equal(window_ages(train), ages_by_hand)

    km = KaplanMeierBaseline(HORIZON).fit(train, train)
    s = _km_brute(durations, observed)

    def s_at(t: int) -> float:
        return 1.0 if t < 0 else (s[t] if t < len(s) else s[-1])

    curves = km.survival(train)
    for i, a in enumerate(ages_by_hand):
        denom = s_at(a - 1)
        want = [s_at(a + k) / denom if denom > 0 else 0.0 for k in range(HORIZON)]
        np.testing.assert_allclose(curves[i], want, atol=1e-12, err_msg=f"window {i}, age {a}")
    assert curves[0, 0] == 1.0  # a new unit outlives lag 0 (no life ended at age 1)


def test_window_summaries_equal_a_per_window_loop():
    w = _windows({1: (9, None), 2: (14, [6])}, lookback=5)
    got = window_summaries(w)
    x, mask = w.x, w.mask
    for i in range(len(w)):
        rows = x[i][mask[i]].astype(np.float64)
        t = np.flatnonzero(mask[i]).astype(float)
        slope = np.polyfit(t, rows, 1)[0] if len(rows) > 1 else np.zeros(rows.shape[1])
        want = np.concatenate([rows.mean(0), rows[-1], slope, [len(rows)]])
        np.testing.assert_allclose(got[i], want, atol=1e-9)


@pytest.fixture(scope="module")
def tiny_data():
    config = ExperimentConfig(
        model="gbm", data_source="synthetic", max_units=12, window_stride=4, lookback_window=16, pred_horizon=16
    )
    return config, load_dataset(config.data_config(), Settings())


def test_gbm_curve_is_the_step_at_its_prediction(tiny_data):
    config, data = tiny_data
    gbm = GradientBoostingBaseline(config.pred_horizon, seed=0).fit(data.train, data.val)
    p = gbm.predict(data.test)
    curve = gbm.survival(data.test)
    np.testing.assert_allclose(curve.sum(axis=1), p, atol=1e-12)  # sum_k S(k) = p exactly
    assert ((curve >= 0) & (curve <= 1)).all() and (np.diff(curve, axis=1) <= 0).all()
    assert np.std(p) > 1.0  # it learned something
    y, ok = capped_target(data.train, config.pred_horizon)
    assert y[ok].max() <= config.pred_horizon and (~ok).sum() == 0  # C-MAPSS: every window usable


def test_cox_curve_equals_lifelines_fitted_independently(tiny_data):
    from lifelines import CoxPHFitter

    config, data = tiny_data
    horizon = config.pred_horizon
    cox = CoxBaseline(horizon).fit(data.train, data.val)

    # an independent fit: summaries by a per-window loop, durations l + 1 (censored: min(c, L-1) + 1)
    def summaries(w):
        out = []
        for xi, mi in zip(w.x, w.mask):
            rows, t = xi[mi].astype(float), np.flatnonzero(mi).astype(float)
            slope = np.polyfit(t, rows, 1)[0] if len(rows) > 1 else np.zeros(rows.shape[1])
            out.append(np.concatenate([rows.mean(0), rows[-1], slope, [len(rows)]]))
        return np.array(out)

    xs = summaries(data.train)
    keep = xs.std(axis=0) > 1e-9
    df = pd.DataFrame(xs[:, keep], columns=[f"c{i}" for i in range(keep.sum())])
    l, cens = data.train.event_index, data.train.censored
    df["T"] = np.where(cens, np.minimum(l, horizon - 1), l) + 1
    df["E"] = (~cens).astype(int)
    ref = CoxPHFitter(penalizer=0.1).fit(df, duration_col="T", event_col="E")
    test_x = pd.DataFrame(summaries(data.test)[:, keep], columns=[f"c{i}" for i in range(keep.sum())])
    want = ref.predict_survival_function(test_x, times=np.arange(1, horizon + 1)).to_numpy().T
    np.testing.assert_allclose(cox.survival(data.test), want, rtol=1e-6, atol=1e-9)


def test_baseline_config_ignores_training_fields_and_the_grid_does_not_multiply_it():
    c = ExperimentConfig(model="gbm", learning_rate=0.5, batch_size=7, dropout=0.3, num_epochs=3)
    assert (c.learning_rate, c.batch_size, c.dropout, c.num_epochs) == (1e-3, 128, 0.1, 100)
    assert c.short_name() == "s42" and c.display_name() == "turbofan/gbm/s42"
    spec = SweepSpec(
        datasets=["turbofan"],
        models=["paper", "gbm", "km"],
        learning_rates=[1e-3, 1e-2],
        dropout_rates=[0.1, 0.2],
        batch_sizes=[32, 64],
        seeds=[1, 2],
        num_epochs=2,
    )
    planned = expand(spec)
    models = [p.config.model for p in planned]
    assert models.count("paper") == 16 and models.count("gbm") == 2 and models.count("km") == 2
    assert spec.size() == len(planned) == 20
    assert [p.index for p in planned] == list(range(20))
    assert len({p.run_dir for p in planned}) == 20


def test_km_on_the_command_line_writes_a_run_folder_and_is_not_refit(tmp_path):
    out = tmp_path / "km"
    args = ["-m", "ddrsa.train", "--model", "km", *TINY, "--output-dir", str(out), "--quiet"]
    proc = run_cli(args, check=True)
    printed = json.loads(proc.stdout)
    assert printed["status"] == "completed"
    metrics = json.loads((out / "test_metrics.json").read_text())
    for key in (
        "rul_rmse",
        "concordance_index",
        "integrated_brier_score",
        "auc_10",
        "auc_30",
        "auc_60",
        "concordance_between_units",
        "val_rul_rmse",
        "val_auc_10",
        "val_concordance_between_units",
        "benchmark_rmse",
        "train_seconds",
    ):
        assert isinstance(metrics[key], float), key
    assert metrics["val_loss"] is None
    log = json.loads((out / "training_log.json").read_text())
    assert log["status"] == "completed" and log["baseline"]["model"] == "km"
    preds = load_predictions(out)
    assert len(preds["test_unit"]) == metrics["n_test_windows"] and "benchmark_survival" in preds
    from reports.run_charts import write_run_charts

    charts = write_run_charts(out)  # no epochs: no loss curves
    names = [p.name for p in charts]
    assert names[:2] == [
        "predicted_vs_true.png",
        "hazard_survival.png",
    ]  # then the OTI charts (reports/policy_charts.py)
    assert "loss_curves.png" not in names
    assert all(p.is_file() for p in charts)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_cli(args, check=True)  # finished: read back, not refit
    assert json.loads(again.stdout)["rul_rmse"] == printed["rul_rmse"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.slow
def test_tiny_sweep_runs_one_baseline_per_seed_with_predictions_everywhere(tmp_path, prefect_server):
    out = tmp_path / "sweep"
    grid = [
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "gbm",
        "--learning-rates",
        "0.001",
        "0.002",
        "--seeds",
        "1",
        "2",
        *TINY,
        "--num-epochs",
        "1",
    ]
    dry = run_cli(["flows/sweep.py", *grid, "--dry-run", "--output-dir", str(out)], check=True)
    assert dry.stdout.strip().splitlines()[-1] == "6 experiments"
    assert "turbofan/gbm/s1" in dry.stdout and "turbofan/gbm/s2" in dry.stdout
    run_cli(["flows/sweep.py", *grid, "--output-dir", str(out)], check=True)
    records = read_results(out)
    assert sorted((r["model"], r["seed"]) for r in records if r["model"] == "gbm") == [("gbm", 1), ("gbm", 2)]
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)
    assert {r["is_baseline"] for r in records if r["model"] == "gbm"} == {True}
    assert {r["is_baseline"] for r in records if r["model"] == "paper"} == {False}
    for r in records:
        path = out / r["run_dir"] / FILE_NAME
        assert path.is_file() and path.stat().st_size < 64_000, r["name"]
        assert load_predictions(out / r["run_dir"])["test_survival"].shape[1] == 16


def test_baselines_are_never_fused_or_searched():
    from ddrsa.errors import DDRSAError
    from ddrsa.fused.groups import describe, plan_groups
    from ddrsa.sweep.tpe import check_search

    spec = SweepSpec(datasets=["turbofan"], models=["paper", "cox"], learning_rates=[1e-3, 1e-2], seeds=[1, 2])
    items = [p.as_dict() for p in expand(spec)]
    groups, singles = plan_groups(items, "on", "cuda")
    assert all(m["config"]["model"] == "paper" for g in groups for m in g["members"])
    assert sorted(s["config"]["model"] for s in singles) == ["cox", "cox"]
    assert any(line.startswith("  baselines: 2 experiment(s) of cox") for line in describe(groups, singles))
    with pytest.raises(DDRSAError, match="baselines"):
        check_search(spec, "halving", None, 3, None)


@pytest.mark.realdata
@pytest.mark.slow
def test_fd001_official_baselines_match_their_measured_values(tmp_path):
    """gbm/cox/km on real FD001, official split, K 30, L 125 (docs/CONTRACTS.md, Baselines; measured
    2026-12-08: benchmark RMSE 13.12 / 16.71 / 31.23, C-index 0.872 / 0.818 / 0.817)."""
    from ddrsa.trainer import train
    from tests.conftest import REAL_DATA_DIR

    settings = Settings(data_dir=str(REAL_DATA_DIR), data_source="real", torch_threads=1)
    got = {}
    for model in ("gbm", "cox", "km"):
        config = ExperimentConfig(
            model=model, subset="FD001", test_split="official", lookback_window=30, pred_horizon=125, seed=0
        )
        got[model] = train(config, tmp_path / model, settings=settings).metrics
    assert got["gbm"]["benchmark_rmse"] == pytest.approx(13.12, abs=0.3)
    assert got["cox"]["benchmark_rmse"] == pytest.approx(16.71, abs=0.3)
    assert got["km"]["benchmark_rmse"] == pytest.approx(31.23, abs=0.05)  # deterministic, no sensor
    assert 0.80 < got["km"]["concordance_index"] < 0.83  # the age-only floor
    assert got["gbm"]["concordance_index"] > got["km"]["concordance_index"] + 0.03
    assert got["km"]["benchmark_n_units"] == 100
