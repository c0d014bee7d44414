"""Analysis tables, report, history, CLI and Prefect artifacts on a folder with KNOWN values."""
from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis_fixtures import known_records, write_known_folder  # noqa: E402

from reports.history import append_history, read_history  # noqa: E402
from reports.report import NO_GPU_NOTE, run_analysis  # noqa: E402
from reports.tables import t_interval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("rul_mae", "rul_rmse", "concordance_index", "nasa_score")
T975 = {2: 12.706204736, 3: 4.302652730, 4: 3.182446305}  # t_{0.975, n-1} from tables


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    root = tmp_path_factory.mktemp("known")
    write_known_folder(root)
    return root, run_analysis(root, charts=False)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(text: str) -> float:
    return float(text) if text != "" else math.nan


def _completed() -> list[dict]:
    return [r for r in known_records() if r["status"] == "completed"]


def test_summary_statistics_match_hand_computation(known):
    root, _ = known
    rows = {(r["dataset"], r["model"]): r for r in _csv(root / "summary_statistics.csv")}
    groups = defaultdict(list)
    for rec in _completed():
        groups[(rec["dataset"], rec["model"])].append(rec)
    assert set(rows) == set(groups)
    for key, recs in groups.items():
        for m in METRICS + ("train_seconds",):
            vals = [r["train_seconds"] if m == "train_seconds" else r["metrics"][m] for r in recs]
            row = rows[key]
            assert _num(row[f"{m}_mean"]) == pytest.approx(statistics.mean(vals))
            assert _num(row[f"{m}_min"]) == pytest.approx(min(vals))
            assert _num(row[f"{m}_max"]) == pytest.approx(max(vals))
            assert int(float(row[f"{m}_count"])) == len(vals)
            if len(vals) > 1:
                assert _num(row[f"{m}_std"]) == pytest.approx(statistics.stdev(vals))
            else:
                assert math.isnan(_num(row[f"{m}_std"]))
    assert list(_csv(root / "summary_statistics.csv")[0])[:3] == ["dataset", "model", "rul_mae_mean"]


def _expected_best():
    """(dataset, model, criterion) -> (config values, per-seed {seed: metric})."""
    configs = defaultdict(dict)
    for r in _completed():
        key = (r["dataset"], r["model"], r["batch_size"], r["learning_rate"])
        configs[key][r["seed"]] = r["metrics"]
    out = {}
    for crit, metric, larger in (("MAE", "rul_mae", False), ("RMSE", "rul_rmse", False),
                                 ("C-Index", "concordance_index", True), ("NASA", "nasa_score", False)):
        for ds_model in {k[:2] for k in configs}:
            cands = {k: v for k, v in configs.items() if k[:2] == ds_model}
            score = {k: statistics.mean(m[metric] for m in v.values()) for k, v in cands.items()}
            best = (max if larger else min)(score, key=score.get)
            out[ds_model + (crit,)] = (best, cands[best], metric, larger, cands)
    return out


def test_best_configurations_per_criterion(known):
    root, res = known
    rows = {(r["dataset"], r["model"], r["criterion"]): r for r in _csv(root / "best_configurations.csv")}
    expected = _expected_best()
    assert set(rows) == set(expected)
    # the fixture's designed optima: MAE/RMSE at (64, 0.001), C-index at (64, 0.01), NASA at (128, 0.001)
    assert rows[("turbofan", "lstm_basic", "MAE")]["learning_rate"] == "0.001"
    assert rows[("turbofan", "lstm_basic", "C-Index")]["learning_rate"] == "0.01"
    assert rows[("turbofan", "gru_basic", "NASA")]["batch_size"] == "128"
    for key, (cfg, seeds, metric, larger, _) in expected.items():
        row = rows[key]
        assert (int(row["batch_size"]), float(row["learning_rate"])) == cfg[2:]
        assert int(row["n_seeds"]) == len(seeds)
        for m in METRICS:
            assert _num(row[m]) == pytest.approx(statistics.mean(s[m] for s in seeds.values()))
        best_seed = (max if larger else min)(seeds, key=lambda s: seeds[s][metric])
        assert int(row["seed"]) == best_seed
        cmd = row["retrain_command"]
        assert f"--seed {best_seed} " in cmd and "--num-epochs 20 " in cmd and "--create-visualization" in cmd
        assert (" --subset FD001 " in cmd) == (key[0] == "turbofan")
        assert f"{root}/retrain/" in cmd
    assert list(res.best.columns[:13]) == ["dataset", "model", "criterion", "batch_size", "learning_rate",
                                           "lambda_param", "nasa_weight", "dropout", *METRICS, "n_seeds"]


def test_confidence_intervals_and_welch(known):
    from scipy import stats

    root, _ = known
    rows = {(r["dataset"], r["model"], r["criterion"]): r for r in _csv(root / "best_configurations.csv")}
    for key, (cfg, seeds, metric, larger, cands) in _expected_best().items():
        row, n = rows[key], len(seeds)
        vals = [s[metric] for s in seeds.values()]
        if n == 1:
            assert math.isnan(_num(row[f"{metric}_ci_low"])) and row["indistinguishable_configs"] == "n/a"
            continue
        half = T975[n] * statistics.stdev(vals) / math.sqrt(n)
        assert _num(row[f"{metric}_ci_low"]) == pytest.approx(statistics.mean(vals) - half)
        assert _num(row[f"{metric}_ci_high"]) == pytest.approx(statistics.mean(vals) + half)
        same = sum(stats.ttest_ind(vals, [s[metric] for s in other.values()], equal_var=False).pvalue >= 0.05
                   for k, other in cands.items() if k != cfg and len(other) >= 2)
        assert int(row["indistinguishable_configs"]) == same


def test_t_interval_known_sample():
    mean, low, high = t_interval([1, 2, 3, 4])
    half = 3.182446305 * statistics.stdev([1, 2, 3, 4]) / 2
    assert mean == 2.5 and low == pytest.approx(2.5 - half) and high == pytest.approx(2.5 + half)
    assert low == pytest.approx(2.5 - 3.182 * 1.291 / 2, abs=1e-3)
    assert math.isnan(t_interval([7.0])[1])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=12))
def test_t_interval_is_symmetric_around_mean(xs):
    mean, low, high = t_interval(xs)
    assert low <= mean + 1e-9 and mean <= high + 1e-9
    assert (mean - low) == pytest.approx(high - mean, abs=1e-6)


def test_counts_and_report_lists_failures(known):
    root, res = known
    assert res.counts == {"total": 33, "completed": 29, "failed": 1, "diverged": 1, "collapsed": 1,
                          "pending": 2, "records": 31}
    page = (root / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "loss became NaN at epoch 3" in page and "Collapsed (constant prediction)" in page
    assert NO_GPU_NOTE in page and "10800 s" in page  # wall time from started_at/finished_at


@pytest.mark.parametrize("kind", ["partial", "missing", "empty"])
def test_partial_and_crashed_folders(tmp_path, kind):
    written = write_known_folder(tmp_path, results=kind)
    res = run_analysis(tmp_path, charts=False)
    assert res.counts["pending"] == 33 - len(written)
    page = (tmp_path / "report.html").read_text()
    assert (tmp_path / "summary_statistics.csv").exists() and (tmp_path / "best_configurations.csv").exists()
    if kind == "partial":
        from reports.report import build_charts
        from reports.tables import completed

        charts = build_charts(completed(res.records), tmp_path)
        assert all(c.to_dict() for c in charts.values())  # valid Vega-Lite specs
        assert len(res.best) == 4  # turbofan/lstm_basic, one row per criterion
    else:
        assert "No results yet" in page and len(res.best) == 0


def test_folder_without_manifest(tmp_path):
    write_known_folder(tmp_path)
    (tmp_path / "experiment_manifest.json").unlink()
    res = run_analysis(tmp_path, charts=False)
    assert res.counts["pending"] == 0 and res.counts["completed"] == 29
    assert "no started_at" in (tmp_path / "report.html").read_text()


def test_history_append_and_read(tmp_path):
    recs = known_records()
    assert append_history(tmp_path, recs, "night-1", timestamp="2026-01-01T02:00:00+00:00") == 4
    assert append_history(tmp_path, recs[:6], "night-2", timestamp="2026-01-02T02:00:00+00:00") == 1
    lines = [json.loads(x) for x in (tmp_path / "sweep_history.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and set(lines[0]) == {"timestamp", "run_label", "dataset", "model", "best_rul_rmse",
                                                 "best_concordance_index", "n_completed"}
    tl = [r for r in _completed() if r["dataset"] == "turbofan" and r["model"] == "lstm_basic"]
    row = next(x for x in lines if x["run_label"] == "night-1" and x["model"] == "lstm_basic"
               and x["dataset"] == "turbofan")
    assert row["best_rul_rmse"] == pytest.approx(min(r["metrics"]["rul_rmse"] for r in tl))
    assert row["best_concordance_index"] == pytest.approx(max(r["metrics"]["concordance_index"] for r in tl))
    assert row["n_completed"] == 12
    assert len(read_history(tmp_path)) == 5
    assert append_history(tmp_path, [], "empty") == 0


@pytest.mark.parametrize("target", ["file", "missing"])
def test_cli_rejects_bad_output_dir(tmp_path, target):
    path = tmp_path / "a_file.txt"
    if target == "file":
        path.write_text("x")
    proc = subprocess.run([sys.executable, "flows/analysis.py", "--output-dir", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert str(path) in proc.stderr


# ------------------------------------------------------------------ Prefect (real ephemeral server)
@pytest.fixture(scope="module")
def harness(prefect_server, tmp_path_factory):
    """The session's real Prefect server (tests/conftest.py) with result storage in a temp folder."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(tmp_path_factory.mktemp("storage"))}):
        yield


@pytest.mark.slow
def test_flow_creates_artifacts(harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.analysis import analysis_flow

    write_known_folder(tmp_path)
    summary = analysis_flow(str(tmp_path), append_to_history=True, run_label="test-run")
    assert summary["counts"]["completed"] == 29 and summary["history_lines_added"] == 4
    assert Path(summary["report"]).exists() and "history_trend" in summary["charts"]
    keys = ["ddrsa-best-configurations", "ddrsa-summary-statistics", "ddrsa-sweep-headline", "ddrsa-report",
            "ddrsa-chart-model-comparison", "ddrsa-chart-rul-mae-vs-hyperparameters"]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    by_key = {a.key: a for a in arts}
    assert set(keys) <= set(by_key)
    table = by_key["ddrsa-best-configurations"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert len(table) == 16 and "NaN" not in json.dumps(table)
    assert "(file://" in by_key["ddrsa-chart-model-comparison"].data  # stored as [text](url)
    assert "turbofan" in by_key["ddrsa-sweep-headline"].data
