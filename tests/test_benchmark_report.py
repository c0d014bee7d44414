"""C-MAPSS benchmark protocol: official test split, capped/uncapped RMSE, seed aggregation,
selection on validation, the literature file, the report section and the preset."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ddrsa.config import DataConfig, ExperimentConfig
from ddrsa.data import load_dataset, synthetic
from ddrsa.metrics import benchmark_metrics
from ddrsa.settings import Settings
from ddrsa.sweep.spec import expand
from deployments.presets import preset_spec
from reports.benchmark import (
    BENCHMARK_METRICS,
    PUBLISHED,
    THIS_PROJECT,
    benchmark_chart,
    benchmark_summary,
    comparison_frame,
    has_benchmark,
    load_literature,
    section_html,
)


# ------------------------------------------------------------------------------ metrics
def _survival_with_expected_time(times: list[float], horizon: int) -> np.ndarray:
    """S (N, L) whose sum is exactly `times` (S = 1 for floor(t) steps, then the fraction, then 0)."""
    s = np.zeros((len(times), horizon))
    for i, t in enumerate(times):
        whole = int(t)
        s[i, :whole] = 1.0
        if whole < horizon:
            s[i, whole] = t - whole
    return s


def test_benchmark_rmse_capped_and_uncapped_by_hand():
    # predictions 100, 125 (capped by the horizon), 50; truth 110, 200, 40
    surv = _survival_with_expected_time([100.0, 125.0, 50.0], horizon=125)
    m = benchmark_metrics(surv, np.array([110.0, 200.0, 40.0]))
    # capped truth 110, 125, 40: errors -10, 0, 10 -> sqrt(200/3)
    assert m["benchmark_rmse"] == pytest.approx(math.sqrt(200 / 3))
    # raw truth: errors -10, -75, 10 -> sqrt((100 + 5625 + 100) / 3)
    assert m["benchmark_rmse_uncapped"] == pytest.approx(math.sqrt(5825 / 3))
    # NASA on capped truth: early 10 -> e^(10/13)-1, exact 0, late 10 -> e^1-1
    assert m["benchmark_nasa_score"] == pytest.approx(math.expm1(10 / 13) + math.expm1(1.0))
    assert m["benchmark_n_units"] == 3 and m["benchmark_comparable"] is True


# ------------------------------------------------------------------------------ official split
def test_official_split_uses_every_training_unit_and_labels_test_units_from_rul(tmp_path):
    folder = tmp_path / "cmapss"
    synthetic.write_synthetic_cmapss(folder, "FD001", n_units=12, seed=5)
    s = Settings(data_dir=tmp_path, data_source="real")
    d = load_dataset(DataConfig(lookback_window=8, pred_horizon=20, test_split="official"), s)
    train_ids = set(np.loadtxt(folder / "train_FD001.txt")[:, 0].astype(int))
    assert set(d.train.unit) | set(d.val.unit) == train_ids  # no training unit held out
    assert not set(d.train.unit) & set(d.val.unit)
    test_rows = np.loadtxt(folder / "test_FD001.txt")
    rul = np.loadtxt(folder / "RUL_FD001.txt")
    assert d.n_units["test"] == len(rul) and len(d.test) == len(test_rows)
    for i, u in enumerate(np.unique(test_rows[:, 0]).astype(int)):  # brute force per unit and cycle
        cycles = test_rows[test_rows[:, 0] == u, 1]
        want = rul[i] + (cycles.max() - cycles)
        sel = d.test.unit == u
        np.testing.assert_array_equal(d.test.event_index[sel], want)
        np.testing.assert_array_equal(d.test.censored[sel], want >= 20)
    np.testing.assert_array_equal(d.benchmark.rul, rul)
    # held-out default: a test set carved from the training units
    h = load_dataset(DataConfig(lookback_window=8, pred_horizon=20), s)
    assert set(h.test.unit) <= train_ids and len(h.test.unit)


def test_official_split_scaler_ignores_validation_and_test_units(tmp_path):
    folder = tmp_path / "cmapss"
    synthetic.write_synthetic_cmapss(folder, "FD001", n_units=10, seed=2)
    s = Settings(data_dir=tmp_path, data_source="real")
    cfg = DataConfig(lookback_window=8, pred_horizon=20, test_split="official")
    d1 = load_dataset(cfg, s)
    rows = np.loadtxt(folder / "test_FD001.txt")
    rows[:, 5:] *= 3.0
    synthetic.write_cmapss_text(pd.DataFrame(rows), folder / "test_FD001.txt")
    d2 = load_dataset(cfg, s)
    np.testing.assert_array_equal(d1.train.data, d2.train.data)
    assert not np.array_equal(d1.test.data, d2.test.data)


def test_official_split_is_cmapss_only():
    with pytest.raises(ValueError, match="official"):
        ExperimentConfig(dataset="azure_pm", test_split="official")
    # the default split keeps the experiment ids of older runs
    cfg = ExperimentConfig()
    older = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("test_split", "age_input")}
    assert cfg.experiment_id() == hashlib.sha256(json.dumps(older, sort_keys=True).encode()).hexdigest()[:12]
    assert ExperimentConfig(test_split="official").experiment_id() != ExperimentConfig().experiment_id()


def test_preset_runs_every_subset_with_the_literature_protocol():
    spec = preset_spec("cmapss-benchmark")
    planned = expand(spec)
    assert len(planned) == spec.size()
    cfgs = [p.config for p in planned]
    assert {c.subset for c in cfgs} == {"FD001", "FD002", "FD003", "FD004"}
    assert all(c.test_split == "official" and c.lookback_window == 30 and c.pred_horizon == 125 for c in cfgs)
    assert len({c.seed for c in cfgs}) >= 5
    assert len({p.name for p in planned}) == len(planned)  # subsets named apart
    only = expand(preset_spec("cmapss-benchmark", {"subset": "FD002"}))
    assert {p.config.subset for p in only} == {"FD002"} and len(only) == len(planned) // 4


# ------------------------------------------------------------------------------ aggregation
def _record(subset, lr, seed, bench, val, split="official", val_metrics=True):
    metrics = {
        "rul_rmse": 9.0,
        "benchmark_rmse": bench,
        "benchmark_rmse_uncapped": bench + 5,
        "benchmark_nasa_score": 10 * bench,
        "benchmark_n_units": 100,
        "benchmark_comparable": True,
    }
    if val_metrics:
        metrics.update(val_rul_rmse=val, val_rul_mae=val, val_concordance_index=0.9, val_nasa_score=1.0, val_loss=1.0)
    return {
        "experiment_id": f"{subset}{lr}{seed}",
        "name": "x",
        "status": "completed",
        "dataset": "turbofan",
        "subset": subset,
        "model": "paper",
        "batch_size": 64,
        "learning_rate": lr,
        "lambda_param": 0.75,
        "nasa_weight": 0.1,
        "dropout": 0.1,
        "seed": seed,
        "num_epochs": 5,
        "test_split": split,
        "metrics": metrics,
    }


def _records():
    # lr 0.01 is best on validation, lr 0.003 best on the benchmark (test): validation must win
    recs = [
        _record("FD001", 0.01, s, b, v) for s, b, v in zip(range(5), [13, 14, 15, 13.5, 14.5], [10, 11, 10, 11, 10])
    ]
    recs += [_record("FD001", 0.003, s, 11.0 + 0.1 * s, 20.0) for s in range(5)]
    recs += [_record("FD002", 0.01, s, 20.0 + s, 15.0) for s in range(3)]
    recs.append({"experiment_id": "f", "status": "failed", "dataset": "turbofan", "subset": "FD001", "metrics": {}})
    return recs


def test_summary_chooses_on_validation_and_reports_seed_statistics():
    summary = benchmark_summary(_records()).set_index("subset")
    r = summary.loc["FD001"]
    assert r["learning_rate"] == 0.01 and r["selected_on"] == "validation" and r["n_configs"] == 2
    values = np.array([13, 14, 15, 13.5, 14.5])
    half = stats.t.ppf(0.975, 4) * values.std(ddof=1) / math.sqrt(5)
    assert r["benchmark_rmse_mean"] == pytest.approx(14.0)
    assert r["benchmark_rmse_sd"] == pytest.approx(values.std(ddof=1))
    assert (r["benchmark_rmse_ci_low"], r["benchmark_rmse_ci_high"]) == pytest.approx((14 - half, 14 + half))
    assert r["benchmark_rmse_uncapped_mean"] == pytest.approx(19.0)
    assert r["n_seeds"] == 5 and r["seeds"] == "0 1 2 3 4" and bool(r["comparable"])
    assert summary.loc["FD002", "benchmark_nasa_score_mean"] == pytest.approx(210.0)

    from reports.report import benchmark_lines

    fd001 = next(line for line in benchmark_lines(_records()) if line.startswith("benchmark FD001"))
    assert fd001.startswith(
        f"benchmark FD001 (official test units, 100): RMSE 14.00 ± {values.std(ddof=1):.2f} "
        f"[{14 - half:.2f}, {14 + half:.2f}] over seeds, over test units: unavailable"
    )
    assert "(truth capped at 125)" in fd001
    assert "paper lr 0.01," in fd001 and "5 seeds, chosen on validation among 2 configuration(s)" in fd001
    assert fd001.endswith(
        "vs runner-up paper (learning_rate 0.003): unavailable (no per-window predictions in the run folders)"
    )  # records without predictions files still analyse
    assert benchmark_lines([{**r, "metrics": {"rul_rmse": 9.0}} for r in _records()]) == []
    assert benchmark_lines([{**r, "test_split": "held-out"} for r in _records()]) == []  # not the literature's


def test_summary_without_validation_metrics_says_it_chose_on_test():
    recs = [
        _record("FD001", lr, s, b, 0, val_metrics=False) for lr, b in ((0.01, 14.0), (0.003, 12.0)) for s in range(2)
    ]
    r = benchmark_summary(recs).iloc[0]
    assert r["learning_rate"] == 0.003 and r["selected_on"].startswith("test")


def test_held_out_split_is_kept_apart_and_labelled():
    recs = _records() + [_record("FD001", 0.01, s, 30.0, 1.0, split="held-out") for s in range(2)]
    summary = benchmark_summary(recs)
    assert sorted(summary[summary["subset"] == "FD001"]["test_split"]) == ["held-out", "official"]
    html = section_html(summary, load_literature())
    assert "NOT the literature protocol" in html
    comp = comparison_frame(summary, load_literature())
    ours = comp[comp["kind"] == THIS_PROJECT]
    assert len(ours) == 2 and set(ours["subset"]) == {"FD001", "FD002"}  # official rows only


# ------------------------------------------------------------------------------ literature and report
def test_literature_file_matches_the_science_notes():
    lit = load_literature()
    assert lit["source"].str.len().min() > 10
    got = lit.set_index(["method", "subset"])
    expect = {
        ("Deep LSTM (Zheng et al.)", "FD001"): (16.14, 338),
        ("AGCNN", "FD004"): (21.50, 3392),
        ("MS-DCNN", "FD002"): (19.35, 3747),
        ("MTSTAN", "FD003"): (10.90, 188.2),
        ("FFVE", "FD001"): (12.31, 280.2),
        ("CNN (Babu et al.)", "FD001"): (18.45, 1299),
    }
    for key, (rmse, score) in expect.items():
        assert (got.loc[key, "rmse"], got.loc[key, "score"]) == (rmse, score)
    assert lit.groupby("method").size().eq(4).all() and len(lit) == 24


def test_section_and_chart():
    recs = _records()
    assert has_benchmark(recs) and not has_benchmark([_record("FD001", 0.01, 0, 1, 1) | {"metrics": {}}])
    summary = benchmark_summary(recs)
    comp = comparison_frame(summary, load_literature())
    assert (comp["kind"] == PUBLISHED).sum() == 12  # 6 methods x FD001, FD002
    spec = benchmark_chart(comp).to_dict()
    assert spec["facet"]["column"]["field"] == "subset"
    html = section_html(summary, load_literature(), png=b"\x89PNG")
    assert "Benchmark vs literature" in html and "14.00 ± 0.79" in html and "Zheng" in html
    assert "data:image/png;base64" in html
    assert set(BENCHMARK_METRICS) <= {c.rsplit("_", 1)[0] for c in summary.columns if c.endswith("_mean")}


def test_report_has_the_section_only_with_benchmark_records(tmp_path):
    from reports.report import run_analysis

    with_bench, without = tmp_path / "with", tmp_path / "without"
    for folder, recs in (
        (with_bench, _records()),
        (without, [r | {"metrics": {"rul_rmse": 9.0}} for r in _records()[:3]]),
    ):
        folder.mkdir()
        (folder / "all_results.json").write_text(json.dumps(recs))
        run_analysis(folder, charts=False)
    text = (with_bench / "report.html").read_text()
    assert "Benchmark vs literature" in text and "Zheng" in text
    assert pd.read_csv(with_bench / "benchmark_summary.csv")["subset"].tolist() == ["FD001", "FD002"]
    assert "Benchmark vs literature" not in (without / "report.html").read_text()
    assert not (without / "benchmark_summary.csv").exists()
