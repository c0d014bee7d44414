"""Analysis tables, report, history, CLI and Prefect artifacts on a folder with KNOWN values."""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
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


CRITERIA = (
    ("MAE", "rul_mae", False),
    ("RMSE", "rul_rmse", False),
    ("C-Index", "concordance_index", True),
    ("NASA", "nasa_score", False),
)


def _expected_best(on: str = "val_", records: list[dict] | None = None):
    """(dataset, model, criterion) -> (config, per-seed {seed: metrics}, ranking key, larger, candidates),
    ranking each configuration on the mean of `on + metric` across its seeds (hand computation)."""
    configs = defaultdict(dict)
    for r in records or _completed():
        key = (r["dataset"], r["model"], r["batch_size"], r["learning_rate"])
        configs[key][r["seed"]] = r["metrics"]
    out = {}
    for crit, metric, larger in CRITERIA:
        for ds_model in {k[:2] for k in configs}:
            cands = {k: v for k, v in configs.items() if k[:2] == ds_model}
            score = {k: statistics.mean(m[on + metric] for m in v.values()) for k, v in cands.items()}
            best = (max if larger else min)(score, key=score.get)
            out[ds_model + (crit,)] = (best, cands[best], on + metric, larger, cands)
    return out


def test_best_configurations_per_criterion(known):
    root, res = known
    rows = {(r["dataset"], r["model"], r["criterion"]): r for r in _csv(root / "best_configurations.csv")}
    expected = _expected_best()
    assert set(rows) == set(expected)
    # the fixture's designed VALIDATION optima: MAE/RMSE/NASA at (64, 0.01), C-index at (128, 0.001)
    assert rows[("turbofan", "lstm_basic", "MAE")]["learning_rate"] == "0.01"
    assert rows[("turbofan", "lstm_basic", "C-Index")]["batch_size"] == "128"
    assert rows[("turbofan", "gru_basic", "NASA")]["batch_size"] == "64"
    for key, (cfg, seeds, rank_key, larger, _) in expected.items():
        row = rows[key]
        assert row["selected_on"] == "validation"
        assert (int(row["batch_size"]), float(row["learning_rate"])) == cfg[2:]
        assert int(row["n_seeds"]) == len(seeds)
        for m in METRICS:  # the chosen configuration's TEST metrics, and its validation means beside them
            assert _num(row[m]) == pytest.approx(statistics.mean(s[m] for s in seeds.values()))
            assert _num(row["val_" + m]) == pytest.approx(statistics.mean(s["val_" + m] for s in seeds.values()))
        assert _num(row["selection_score"]) == pytest.approx(statistics.mean(s[rank_key] for s in seeds.values()))
        best_seed = (max if larger else min)(seeds, key=lambda s: seeds[s][rank_key])
        assert int(row["seed"]) == best_seed
        assert row["data_source"] == {"turbofan": "real", "azure_pm": "real-no-telemetry"}[key[0]]
        cmd = row["retrain_command"]
        assert f"--seed {best_seed} " in cmd and "--num-epochs 20 " in cmd and "--create-visualization" in cmd
        assert (" --subset FD001 " in cmd) == (key[0] == "turbofan")
        assert f"{root}/retrain/" in cmd
    assert list(res.best.columns[:15]) == [
        "dataset",
        "model",
        "criterion",
        "selected_on",
        "batch_size",
        "learning_rate",
        "lambda_param",
        "nasa_weight",
        "dropout",
        *METRICS,
        "intervention_tte",
        "n_seeds",
    ]  # ddrsa/policy.py's criterion


def test_validation_winner_is_reported_with_its_test_numbers(known):
    """The fixture's test winner and validation winner differ for every criterion; the
    validation winner is what the CSV, the headline and report.html show, with its TEST metrics."""
    from reports.report import SELECTION_SENTENCE, headline_markdown

    root, res = known
    on_val, on_test = _expected_best("val_"), _expected_best("")
    rows = {(r["dataset"], r["model"], r["criterion"]): r for r in _csv(root / "best_configurations.csv")}
    for key in on_val:
        if len(on_val[key][4]) > 1:  # azure_pm/gru_basic has one configuration only
            assert on_val[key][0] != on_test[key][0], key  # the fixture really separates them
        assert (int(rows[key]["batch_size"]), float(rows[key]["learning_rate"])) == on_val[key][0][2:]
    # headline: per dataset the model with the lowest mean VALIDATION RMSE, its test RMSE and CI
    head = headline_markdown(res)
    for dataset in ("turbofan", "azure_pm"):
        cands = {k: v for k, v in on_val.items() if k[0] == dataset and k[2] == "RMSE"}
        key = min(cands, key=lambda k: statistics.mean(s["val_rul_rmse"] for s in cands[k][1].values()))
        cfg, seeds = cands[key][:2]
        test_rmse = [s["rul_rmse"] for s in seeds.values()]
        mean = statistics.mean(test_rmse)
        half = T975[len(test_rmse)] * statistics.stdev(test_rmse) / math.sqrt(len(test_rmse))
        wrong = statistics.mean(s["rul_rmse"] for s in on_test[key][1].values())
        line = next(x for x in head.splitlines() if x.startswith(f"- **{dataset}"))
        assert f"`{key[1]}` (bs {cfg[2]:g}, lr {cfg[3]:g}," in line
        assert f"test RMSE {mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]" in line
        assert f"{wrong:.3f}" not in line and "selected on validation RMSE" in line
    assert SELECTION_SENTENCE in head
    # report.html: the sentence, the selected_on column and the validation winner's test numbers
    page = (root / "report.html").read_text()
    assert html.escape(SELECTION_SENTENCE) in page and "<th class=more>selected on</th>" in page
    cfg, seeds = on_val[("turbofan", "lstm_basic", "RMSE")][:2]
    chosen = f"{statistics.mean(s['rul_rmse'] for s in seeds.values()):.4g}"
    test_best = f"{statistics.mean(s['rul_rmse'] for s in on_test[('turbofan', 'lstm_basic', 'RMSE')][1].values()):.4g}"
    # the headline (first screen) and the best table show the validation winner; the leaderboard
    # lists every configuration, the test-best one included, so it is left out of this check
    first_screen = page.split("<h2>Leaderboard</h2>")[0]
    best_table = page.split("<h2>Best configurations per model and criterion</h2>")[1].split("<h2>")[0]
    chosen_mean = statistics.mean(s["rul_rmse"] for s in seeds.values())
    test_best_mean = statistics.mean(s["rul_rmse"] for s in on_test[("turbofan", "lstm_basic", "RMSE")][1].values())
    assert f"{chosen_mean:.3f}" in first_screen and f"{test_best_mean:.3f}" not in first_screen  # the cards: .3f
    assert chosen in best_table and test_best not in best_table
    assert "falls back to test metrics" not in page


def test_old_records_without_validation_metrics_fall_back_to_test_with_a_note(tmp_path):
    from reports.report import SELECTION_SENTENCE, headline_markdown

    recs = write_known_folder(tmp_path, with_validation=False)
    res = run_analysis(tmp_path, charts=False)
    rows = {(r["dataset"], r["model"], r["criterion"]): r for r in _csv(tmp_path / "best_configurations.csv")}
    expected = _expected_best("", [r for r in recs if r["status"] == "completed"])
    assert set(rows) == set(expected)
    for key, (cfg, seeds, rank_key, larger, _) in expected.items():
        assert rows[key]["selected_on"] == "test (no validation metrics in records)"
        assert (int(rows[key]["batch_size"]), float(rows[key]["learning_rate"])) == cfg[2:]
        assert rows[key]["val_rul_rmse"] == ""
    page = (tmp_path / "report.html").read_text()
    head = headline_markdown(res)
    for text in (page, head, " ".join(res.notes)):
        assert "Ranking falls back to test metrics for 16 of 16" in text and "optimistically biased" in text
    assert html.escape(SELECTION_SENTENCE) not in page and SELECTION_SENTENCE not in head


def test_mixed_old_and_new_records_fall_back_per_model(tmp_path):
    """One old record among a model's runs makes its ranking fall back (never a mix of test and
    validation values in one ranking); the other model still ranks on validation."""
    recs = known_records()
    old = next(r for r in recs if r["model"] == "gru_basic" and r["dataset"] == "turbofan")
    old["metrics"] = {k: v for k, v in old["metrics"].items() if not k.startswith("val_")}
    write_known_folder(tmp_path)
    (tmp_path / "all_results.json").write_text(json.dumps(recs))
    best = run_analysis(tmp_path, charts=False).best
    by_model = best[best["dataset"] == "turbofan"].groupby("model")["selected_on"].agg(set)
    assert by_model["gru_basic"] == {"test (no validation metrics in records)"}
    assert by_model["lstm_basic"] == {"validation"}


def test_confidence_intervals_and_welch(known):
    from scipy import stats

    root, _ = known
    rows = {(r["dataset"], r["model"], r["criterion"]): r for r in _csv(root / "best_configurations.csv")}
    for key, (cfg, seeds, rank_key, larger, cands) in _expected_best().items():
        row, n = rows[key], len(seeds)
        metric = rank_key.removeprefix("val_")
        test_vals = [s[metric] for s in seeds.values()]
        if n == 1:
            assert math.isnan(_num(row[f"{metric}_ci_low"])) and row["indistinguishable_configs"] == "n/a"
            continue
        for m in METRICS:  # CIs of the TEST metrics of the validation winner
            vals = [s[m] for s in seeds.values()]
            half = T975[n] * statistics.stdev(vals) / math.sqrt(n)
            assert _num(row[f"{m}_ci_low"]) == pytest.approx(statistics.mean(vals) - half)
            assert _num(row[f"{m}_ci_high"]) == pytest.approx(statistics.mean(vals) + half)
        assert _num(row[metric]) == pytest.approx(statistics.mean(test_vals))
        # "indistinguishable": Welch's test on the per-seed VALIDATION values of the criterion
        vals = [s[rank_key] for s in seeds.values()]
        same = sum(
            stats.ttest_ind(vals, [s[rank_key] for s in other.values()], equal_var=False).pvalue >= 0.05
            for k, other in cands.items()
            if k != cfg and len(other) >= 2
        )
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


def test_cmapss_subsets_are_ranked_separately(tmp_path):
    """A grid over FD001 and FD002: each subset gets its own winner (RMSEs of different subsets
    are not comparable), its own test numbers and its own retrain folder."""
    recs = [
        r
        for r in known_records()
        if r["status"] == "completed" and r["dataset"] == "turbofan" and r["model"] == "lstm_basic"
    ]
    fd002 = []
    for r in recs:
        c = json.loads(json.dumps(r))
        c.update(subset="FD002", experiment_id=f"{r['index'] + 500:012x}", index=r["index"] + 500)
        c["metrics"] = {k: v + 50 if k.endswith(("rul_mae", "rul_rmse")) else v for k, v in c["metrics"].items()}
        fd002.append(c)
    write_known_folder(tmp_path)
    (tmp_path / "all_results.json").write_text(json.dumps(recs + fd002))
    best = run_analysis(tmp_path, charts=False).best
    rmse = best[best["criterion"] == "RMSE"].set_index("subset")
    assert sorted(rmse.index) == ["FD001", "FD002"] and set(rmse["n_seeds"]) == {3}
    for subset, runs in (("FD001", recs), ("FD002", fd002)):
        chosen = [r for r in runs if (r["batch_size"], r["learning_rate"]) == (64, 0.01)]  # validation winner
        assert rmse.at[subset, "rul_rmse"] == pytest.approx(statistics.mean(r["metrics"]["rul_rmse"] for r in chosen))
        assert f"/retrain/turbofan_{subset}_lstm_basic_rmse " in rmse.at[subset, "retrain_command"]


@pytest.mark.parametrize(
    "sources,banner",
    [
        ({"turbofan": "real", "azure_pm": "real-no-telemetry"}, None),
        ({"turbofan": "synthetic", "azure_pm": "real-no-telemetry"}, "SYNTHETIC DATA"),
        ({"turbofan": "real", "azure_pm": "real+synthetic-telemetry"}, "SYNTHETIC OR PARTLY GENERATED DATA"),
    ],
)
def test_data_source_shown_wherever_a_number_is(tmp_path, sources, banner):
    from reports.report import headline_markdown
    from reports.tables import folder_data_sources

    write_known_folder(tmp_path, sources=sources)
    res = run_analysis(tmp_path, charts=False)
    rows = _csv(tmp_path / "best_configurations.csv")
    assert {(r["dataset"], r["data_source"]) for r in rows} == set(sources.items())
    page, head, line = (tmp_path / "report.html").read_text(), headline_markdown(res), folder_data_sources(tmp_path)
    header = page.split("<h2>Sweep summary</h2>")[0]
    for ds, src in sources.items():
        assert f"<td><b>{ds}</b></td><td>{html.escape(src)}</td>" in header
        where = "turbofan FD001" if ds == "turbofan" else ds  # C-MAPSS headline lines name the subset
        assert f"- **{where}** (data: {src}):" in head and f"{ds}: {src}" in line
    if banner is None:
        assert "class='banner'" not in page and "WARNING" not in head and "WARNING" not in line
    else:
        assert f"<div class='banner'><h2>WARNING: {banner}</h2>" in header
        assert head.splitlines()[2].startswith(f"> **WARNING: {banner}**")
        assert line.startswith("WARNING: SYNTHETIC OR PARTLY GENERATED DATA")
    if "real-no-telemetry" in sources.values():  # real, but said to be without telemetry
        assert "REAL data WITHOUT telemetry" in header and "REAL data WITHOUT telemetry" in head


def test_counts_and_report_lists_failures(known):
    root, res = known
    assert res.counts == {
        "total": 33,
        "completed": 29,
        "failed": 1,
        "diverged": 1,
        "collapsed": 1,
        "pending": 2,
        "records": 31,
    }
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
        assert charts
        for name, chart in charts.items():  # valid Vega-Lite specs (to_dict validates) holding the records' rows
            spec = chart.to_dict(validate=True)
            assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/"), name
            assert spec.get("datasets") and all(len(rows) > 0 for rows in spec["datasets"].values()), name
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
    assert len(lines) == 5 and set(lines[0]) == {
        "timestamp",
        "run_label",
        "dataset",
        "model",
        "best_rul_rmse",
        "best_concordance_index",
        "n_completed",
        "selected_on",
        "selection_rul_rmse",
        "selection_concordance_index",
    }
    tl = [r for r in _completed() if r["dataset"] == "turbofan" and r["model"] == "lstm_basic"]
    row = next(
        x for x in lines if x["run_label"] == "night-1" and x["model"] == "lstm_basic" and x["dataset"] == "turbofan"
    )

    # brute force: the configuration with the best mean VALIDATION value, reported by its mean TEST value
    def chosen_test_mean(metric: str, larger: bool) -> float:
        by_cfg: dict = {}
        for r in tl:
            by_cfg.setdefault((r["batch_size"], r["learning_rate"]), []).append(r["metrics"])
        mean = lambda ms, k: sum(m[k] for m in ms) / len(ms)  # noqa: E731
        pick = (max if larger else min)(by_cfg.values(), key=lambda ms: mean(ms, "val_" + metric))
        return mean(pick, metric)

    assert row["best_rul_rmse"] == pytest.approx(chosen_test_mean("rul_rmse", False))
    assert row["best_concordance_index"] == pytest.approx(chosen_test_mean("concordance_index", True))
    # the fixture's test-best differs from the validation-best: the history must not hold the test minimum
    assert row["best_rul_rmse"] > min(r["metrics"]["rul_rmse"] for r in tl)
    assert row["selected_on"] == "validation" and row["n_completed"] == 12
    assert len(read_history(tmp_path)) == 5
    assert append_history(tmp_path, [], "empty") == 0


@pytest.mark.parametrize("target", ["file", "missing"])
def test_cli_rejects_bad_output_dir(tmp_path, target):
    path = tmp_path / "a_file.txt"
    if target == "file":
        path.write_text("x")
    proc = subprocess.run(
        [sys.executable, "flows/analysis.py", "--output-dir", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
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
def test_flow_creates_artifacts(harness, tmp_path, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.analysis import main

    write_known_folder(tmp_path)
    assert main(["--output-dir", str(tmp_path), "--append-to-history", "--run-label", "test-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("29 completed, 1 failed, 1 diverged, 2 pending;"))
    out, winners = lines[at], lines[at + 1 :]  # the terminal summary line, then one winner per dataset
    assert [w.split(" (data: ")[0] for w in winners] == ["  azure_pm", "  turbofan FD001"], winners
    assert all("; selected on validation RMSE" in w for w in winners)
    assert "winners ranked on validation, test metrics reported" in out
    assert "data: azure_pm: real-no-telemetry; turbofan: real;" in out
    assert len((tmp_path / "sweep_history.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "report.html").exists() and (tmp_path / "analysis_plots" / "history_trend.html").exists()
    from flows.analysis import artifact_scope

    scope = artifact_scope("test-run", tmp_path)  # the label and the folder
    assert scope.startswith("test-run-")
    keys = [
        f"{k}-{scope}"
        for k in (
            "ddrsa-best-configurations",
            "ddrsa-summary-statistics",
            "ddrsa-sweep-headline",
            "ddrsa-report",
            "ddrsa-chart-model-comparison",
            "ddrsa-chart-rul-mae-vs-hyperparameters",
            "ddrsa-sweep-overview",
        )
    ]  # scoped by the label
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    by_key = {a.key: a for a in arts}
    assert set(keys) <= set(by_key)
    table = by_key[f"ddrsa-best-configurations-{scope}"].data
    table = json.loads(table) if isinstance(table, str) else table
    # one row per dataset (and subset): the winner chosen on validation (lstm_basic bs64 lr0.01 by the
    # fixture's formulas), the varying hyperparameters, test metrics with their interval, runner-up, margin
    assert [row["dataset"] for row in table] == ["azure_pm", "turbofan FD001"] and "NaN" not in json.dumps(table)
    turbofan = table[1]
    assert (turbofan["winner"], turbofan["batch size"], turbofan["learning rate"]) == ("lstm_basic", 64, 0.01)
    assert "lambda" not in turbofan  # constant in this grid: not a column
    assert turbofan["verdict"] == "winner" and "(95% t-interval over 3 seeds)" in turbofan["test RMSE (steps)"]
    assert turbofan["runner-up"] == "gru_basic (batch size 64, learning rate 0.01)"
    assert turbofan["margin"].startswith("-1.300 test RMSE (plain difference of means, not paired")
    assert turbofan["chosen on"] == "validation RMSE" and turbofan["data source"] == "real"
    assert "(file://" in by_key[f"ddrsa-chart-model-comparison-{scope}"].data  # stored as [text](url)
    assert "turbofan" in by_key[f"ddrsa-sweep-headline-{scope}"].data
    overview = by_key[f"ddrsa-sweep-overview-{scope}"]  # on this (top-level) flow run: chart inline, best table
    assert overview.type == "markdown" and overview.flow_run_id == by_key[f"ddrsa-sweep-headline-{scope}"].flow_run_id
    png = (tmp_path / "analysis_plots" / "model_comparison.png").read_bytes()
    [inline] = re.findall(r'<img alt="model_comparison" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', overview.data)
    assert base64.b64decode(inline)[16:24] == png[16:24]  # the chart's PNG (same width, height), compressed
    assert len(inline) < len(png)
    assert '<img alt="batch_size_analysis"' in overview.data  # the chart of a hyperparameter that varies
    assert overview.data.count("\n| turbofan FD001 ") + overview.data.count("\n| azure_pm ") == 2  # one row each


@pytest.mark.slow
def test_subflow_artifacts_land_on_the_sweeps_run(harness, tmp_path):
    """Run as a subflow (as the sweep runs it), the analysis puts every artifact on the PARENT flow
    run: its Artifacts tab holds the best-configurations table, the summary, the overview, the links."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.runtime import flow_run

    from flows.analysis import analysis_flow, artifact_scope

    write_known_folder(tmp_path)

    @flow(name="fake-sweep")
    def parent() -> str:
        analysis_flow(str(tmp_path), run_label="nightly")
        return flow_run.id

    parent_id = parent()
    scope = artifact_scope("nightly", tmp_path)
    with get_client(sync_client=True) as client:
        arts = {
            a.key: a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[parent_id]))
            )
        }
    for name in (
        "best-configurations",
        "summary-statistics",
        "sweep-overview",
        "sweep-headline",
        "report",
        "chart-model-comparison",
    ):
        assert f"ddrsa-{name}-{scope}" in arts, (name, sorted(arts))
    table = json.loads(arts[f"ddrsa-best-configurations-{scope}"].data)
    assert [row["winner"] for row in table] == ["lstm_basic", "lstm_basic"]
    assert arts[f"ddrsa-best-configurations-{scope}"].type == "table"


# ------------------------------------------------------------------ leaderboard and report layout
def test_leaderboard_pools_seeds_and_ranks_on_validation(known):
    """Brute force over the fixture: one row per configuration, test means and t-intervals across
    its seeds, ranked within each dataset on mean VALIDATION RMSE."""
    from reports.leaderboard import decoded_rows, fill_template, payload
    from reports.tables import retrain_command

    root, res = known
    board = res.leaderboard
    configs = defaultdict(list)
    for r in _completed():
        configs[(r["dataset"], r["model"], r["batch_size"], r["learning_rate"])].append(r)
    assert len(board) == len(configs)
    for ds in ("turbofan", "azure_pm"):
        mine = {k: v for k, v in configs.items() if k[0] == ds}
        score = {k: statistics.mean(r["metrics"]["val_rul_rmse"] for r in v) for k, v in mine.items()}
        rows = board[board["dataset"] == ds]
        assert len(rows) == len(mine)
        for r in rows.itertuples():  # rank = 1 + configurations with a lower mean validation RMSE (ties share)
            key = (r.dataset, r.model, r.batch_size, r.learning_rate)
            assert r.rank == 1 + sum(x < score[key] - 1e-9 for x in score.values()), key
            runs = mine[(r.dataset, r.model, r.batch_size, r.learning_rate)]
            vals = [x["metrics"]["rul_rmse"] for x in runs]
            assert r.n_seeds == len(runs) and r.rul_rmse == pytest.approx(statistics.mean(vals))
            assert r.rank_value == pytest.approx(statistics.mean(x["metrics"]["val_rul_rmse"] for x in runs))
            if len(vals) > 1:
                half = T975[len(vals)] * statistics.stdev(vals) / math.sqrt(len(vals))
                assert r.rul_rmse_ci_low == pytest.approx(statistics.mean(vals) - half)
            assert r.selected_on == "validation" and r.subset == ("FD001" if ds == "turbofan" else "")
    # the page's retrain command (templates filled in) is exactly tables.retrain_command of that row
    data = payload(board, str(root))
    for row in decoded_rows(data):
        assert fill_template(data["templates"], row) == retrain_command(
            {
                **row,
                "batch_size": int(row["batch_size"]),
                "learning_rate": float(row["learning_rate"]),
                "lambda_param": float(row["lambda_param"]),
                "nasa_weight": float(row["nasa_weight"]),
                "dropout": float(row["dropout"]),
            },
            str(root),
            f"{row['dataset']}{'_' + row['subset'] if row['subset'] else ''}_{row['model']}_cfg{row['cfg']}",
        )


def test_report_first_screen_is_headline_then_leaderboard(known):
    root, res = known
    page = (root / "report.html").read_text()
    order = [
        page.index(t)
        for t in (
            "<h2>Best configuration per dataset</h2>",
            "<h2>Leaderboard</h2>",
            "<h2>Sweep summary</h2>",
            "<h2>Best configurations per model and criterion</h2>",
        )
    ]
    assert order == sorted(order)
    head = page.split("<h2>Leaderboard</h2>")[0]
    assert head.count("class='card'") == 2  # turbofan FD001 and azure_pm
    assert "data: real</span>" in head and "data: real-no-telemetry</span>" in head
    assert "id='leaderboard'" in page and "ddrsa-leaderboard-data" in page
    # retrain commands are collapsed in the best table, never inline in a cell
    assert "<details><summary>command</summary><code>python -m ddrsa.train" in page
    assert "<td><code>python -m ddrsa.train" not in page


def test_azure_rows_carry_no_cmapss_subset(known):
    """The sweep records subset FD001 (its config default) for azure_pm too: reports drop it."""
    root, res = known
    rows = _csv(root / "best_configurations.csv")
    assert {r["subset"] for r in rows if r["dataset"] == "azure_pm"} == {""}
    assert {r["subset"] for r in rows if r["dataset"] == "turbofan"} == {"FD001"}
    assert all(" --subset " not in r["retrain_command"] for r in rows if r["dataset"] == "azure_pm")
    assert set(res.leaderboard.loc[res.leaderboard["dataset"] == "azure_pm", "subset"]) == {""}
    page = (root / "report.html").read_text()
    assert "azure_pm FD001" not in page and "<h3>azure_pm <span" in page
