"""Chart builders: data matches hand-computed aggregates, fixed hyperparameters are said, PNGs render."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis_fixtures import known_records, write_known_folder  # noqa: E402

from reports import charts as ch  # noqa: E402
from reports.history import append_history  # noqa: E402
from reports.report import PLOTS_DIR, run_analysis  # noqa: E402
from reports.tables import completed, records_frame  # noqa: E402
from reports.vega_page import BUNDLE_FILE, bundle_js, vl_version  # noqa: E402

# nasa_loss_impact is not drawn: the NASA weight is 0.1 in every run of the known folder (constant
# hyperparameters are one sentence in the notes, not a chart of placeholders)
ALL_CHARTS = {
    "rul_mae_vs_hyperparameters",
    "rul_rmse_vs_hyperparameters",
    "concordance_index_vs_hyperparameters",
    "model_comparison",
    "batch_size_analysis",
    "learning_rate_analysis",
    "hyperparameter_heatmap",
    "learning_curves",
    "parallel_coordinates",
    "gpu_utilization",
    "history_trend",
}


@pytest.fixture(scope="module")
def done():
    return completed(records_frame(known_records()))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The known folder plus GPU samples and a history line, analysed with every chart rendered."""
    root = tmp_path_factory.mktemp("charts")
    recs = write_known_folder(root)
    pd.DataFrame(
        {
            "timestamp": ["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"] * 2,
            "worker": ["gpu0"] * 4,
            "gpu_index": [0, 0, 1, 1],
            "utilization_pct": [10, 90, 50, 60],
            "memory_used_mb": [1000, 2000, 1500, 1600],
        }
    ).to_csv(root / "gpu_utilization.csv", index=False)
    append_history(root, recs, "older", timestamp="2025-12-31T02:00:00+00:00")
    return root, run_analysis(root, append_to_history=True, run_label="now")


def _datasets(chart) -> list[list[dict]]:
    spec = chart.to_dict()
    return list(spec.get("datasets", {}).values())


def _texts(chart) -> str:
    return json.dumps(chart.to_dict())


def test_every_chart_renders_png_and_html(rendered):
    root, res = rendered
    assert set(res.charts) == ALL_CHARTS
    bundle = (root / PLOTS_DIR / BUNDLE_FILE).read_text()
    assert bundle == bundle_js() and "window.vegaEmbed=" in bundle
    for name in ALL_CHARTS:
        png = (root / PLOTS_DIR / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1024, name
        html = (root / PLOTS_DIR / f"{name}.html").read_text()
        # the chart file loads the folder's one bundle instead of carrying its own copy
        assert f'<script src="{BUNDLE_FILE}"></script>' in html and "window.vegaEmbed=" not in html
        assert len(html) < 100_000 and '"$schema"' in html
    page = (root / "report.html").read_text()
    assert page.count("window.vegaEmbed=") == 1  # Vega inlined once for every chart
    assert page.count('class="ddrsa-spec"') == len(ALL_CHARTS) and "data:image/png;base64," not in page
    assert f'href="{PLOTS_DIR}/model_comparison.html"' in page and "no GPU samples" not in page
    assert "<script src=" not in page  # nothing from outside the file: it opens offline
    assert not list((root / PLOTS_DIR).glob("*.tmp"))


def test_hyperparameter_aggregate_matches_hand_computation(done):
    chart = ch.metric_vs_hyperparameters(done, "rul_mae")
    rows = [r for d in _datasets(chart) for r in d if r.get("hyperparameter") == "learning_rate"]
    groups = defaultdict(list)
    for rec in known_records():
        if rec["status"] == "completed":
            groups[(rec["dataset"], rec["model"], rec["learning_rate"])].append(rec["metrics"]["rul_mae"])
    got = {(r["dataset"], r["model"], r["value"]): r for r in rows}
    for key, vals in groups.items():
        if key[0] == "turbofan":  # azure_pm gru_basic has one value of lr only in... still drawn
            assert got[key]["mean"] == pytest.approx(statistics.mean(vals))
            assert got[key]["sd"] == pytest.approx(statistics.stdev(vals))
            assert got[key]["n"] == len(vals)
            assert got[key]["hi"] == pytest.approx(statistics.mean(vals) + statistics.stdev(vals))


def test_fixed_hyperparameters_are_said(done):
    for metric in ("rul_mae", "rul_rmse", "concordance_index"):
        text = _texts(ch.metric_vs_hyperparameters(done, metric))
        for note in (
            "dropout fixed at 0.1 in this sweep",
            "lambda_param fixed at 0.75 in this sweep",
            "nasa_weight fixed at 0.1 in this sweep",
            "batch_size fixed at 64 in this sweep",
        ):
            assert note in text
    assert "nasa_weight fixed at 0.1" in _texts(ch.nasa_loss_impact(done))
    assert "batch_size fixed at 64" in _texts(ch.batch_size_analysis(done))  # azure_pm has one batch size
    assert "batch_size fixed at 64" in _texts(ch.hyperparameter_heatmap(done))


def test_heatmap_and_box_data(done):
    cells = {
        (r["dataset"], r["batch_size"], r["learning_rate"]): r
        for d in _datasets(ch.hyperparameter_heatmap(done))
        for r in d
        if "rul_mae" in r
    }
    recs = [
        r
        for r in known_records()
        if r["status"] == "completed"
        and r["dataset"] == "turbofan"
        and r["batch_size"] == 128
        and r["learning_rate"] == 0.01
    ]
    cell = cells[("turbofan", 128, 0.01)]
    assert cell["rul_mae"] == pytest.approx(statistics.mean(r["metrics"]["rul_mae"] for r in recs))
    assert cell["concordance_index"] == pytest.approx(statistics.mean(r["metrics"]["concordance_index"] for r in recs))
    box = [r for d in _datasets(ch.model_comparison(done)) for r in d]
    assert len(box) == len(done) and {r["model"] for r in box} == {"lstm_basic", "gru_basic"}


def test_learning_curves_and_parallel(done, rendered):
    from reports.tables import load_learning_curves

    root, _ = rendered
    curves = load_learning_curves(root, done)
    assert set(map(tuple, curves[["dataset", "model"]].drop_duplicates().values)) == {
        ("turbofan", "lstm_basic"),
        ("turbofan", "gru_basic"),
        ("azure_pm", "lstm_basic"),
        ("azure_pm", "gru_basic"),
    }
    best = curves[(curves.dataset == "turbofan") & (curves.model == "lstm_basic")]["name"].iloc[0]
    runs = [
        r
        for r in known_records()
        if r["status"] == "completed" and r["model"] == "lstm_basic" and r["dataset"] == "turbofan"
    ]
    assert best == min(runs, key=lambda r: r["metrics"]["val_rul_rmse"])["name"]  # lowest VALIDATION RMSE
    assert best == "turbofan/lstm_basic/bs64_lr0.01_lam0.75_nasa0.1_drop0.1_s2"
    assert curves["val_loss"].iloc[0] == pytest.approx(3.0)
    par = ch.parallel_data(done)
    assert len(par) == len(done)  # one row per run
    t = par[par.dataset == "turbofan"]
    assert t["n_rul_mae"].min() == 0 and t["n_rul_mae"].max() == 1
    norms = par[[c for c in par if c.startswith("n_")]]
    assert ((norms >= 0) & (norms <= 1) | norms.isna()).all().all()
    # the highlight (colour, drawing order) is the validation RMSE; the axes keep the test RMSE
    merged = par.merge(done.reset_index(drop=True).assign(run=range(len(done))), on="run", suffixes=("", "_rec"))
    assert (merged["rank"] == merged["val_rul_rmse"]).all() and (merged["rul_rmse"] == merged["rul_rmse_rec"]).all()
    assert "validation RMSE (steps)" in _texts(ch.parallel_coordinates(done))


def test_parallel_coordinates_model_axis_and_one_valued_hyperparameters_left_out(done):
    """Issue 17: a model axis; hyperparameters that took one value are not drawn (no flat line at
    0.5) and the subtitle names them."""
    axes, left_out = ch.parallel_axes(done[done.dataset == "turbofan"])
    assert axes == ["model", "batch_size", "learning_rate", "rul_mae", "rul_rmse", "concordance_index", "nasa_score"]
    assert left_out == {"lambda_param": 0.75, "nasa_weight": 0.1, "dropout": 0.1}
    axes, left_out = ch.parallel_axes(done[done.dataset == "azure_pm"])
    assert "batch_size" not in axes and left_out["batch_size"] == 64
    par = ch.parallel_data(done)
    assert "n_dropout" not in par and "n_lambda_param" not in par  # never a constant 0.5 line
    t = par[par.dataset == "turbofan"]
    assert dict(zip(t["model"], t["n_model"])) == {"gru_basic": 0.0, "lstm_basic": 1.0}  # sorted, evenly spaced
    text = _texts(ch.parallel_coordinates(done))
    assert "left out (one value in this sweep): lambda_param 0.75, nasa_weight 0.1, dropout 0.1" in text
    assert "left out (one value in this sweep): batch_size 64, lambda_param 0.75" in text
    assert '"name": "selected_cfg"' in text  # the leaderboard's selection signal


def _axis_labels(spec: dict) -> list[list[str]]:
    """Texts of every axis' labels, per axis, in the chart as Vega renders it (vl-convert scenegraph)."""
    import vl_convert as vlc

    out = []

    def walk(node, role=None):
        if isinstance(node, dict):
            role = node.get("role", role)
            if role == "axis-label" and "items" in node:
                out.append([str(it.get("text")) for it in node["items"]])
            for v in node.values():
                walk(v, role)
        elif isinstance(node, list):
            for v in node:
                walk(v, role)

    walk(vlc.vegalite_to_scenegraph(spec, vl_version=vl_version()))
    return out


@pytest.mark.parametrize("n_epochs", [2, 3, 50])
def test_learning_curve_epoch_labels_never_repeat(n_epochs):
    """Issue 17: a short run's epoch axis read '1, 2, 2' (ticks between epochs, integer format)."""
    curves = pd.DataFrame(
        [
            {"dataset": "turbofan", "model": m, "name": "x", "epoch": e, "val_loss": 1.0 / e}
            for m in ("a", "b")
            for e in range(1, n_epochs + 1)
        ]
    )
    epoch_axis = _axis_labels(ch.learning_curves(curves).to_dict())[0]
    assert len(epoch_axis) == len(set(epoch_axis)) >= 2 and all(t.isdigit() for t in epoch_axis)
    assert epoch_axis[0] == "1" and int(epoch_axis[-1]) <= n_epochs


def test_model_comparison_draws_points_when_few_runs(done):
    """Issue 17: azure_pm has 4 lstm_basic runs and 1 gru_basic run: points, no box of one run;
    turbofan has 12 runs per model: boxes."""
    spec = ch.model_comparison(done).to_dict()
    for row in spec["vconcat"]:
        ds = row["concat"][0]["title"].split(":")[0]
        marks = {layer["mark"]["type"] for panel in row["concat"] for layer in panel["layer"]}
        assert marks == ({"point"} if ds == "azure_pm" else {"boxplot"}), ds
    assert "fewer than 5 runs: one point per run" in json.dumps(spec)


def test_single_cell_heatmap_says_so(done):
    """Issue 17: one batch size and one learning rate make one cell: a sentence, not one square."""
    one = done[(done.dataset == "azure_pm") & (done.learning_rate == 0.001)]
    spec = ch.hyperparameter_heatmap(pd.concat([done[done.dataset == "turbofan"], one])).to_dict()
    rows = {
        r["concat"][0]["title"]["text"] if isinstance(r["concat"][0]["title"], dict) else r["concat"][0]["title"]: r
        for r in spec["vconcat"]
    }
    azure = next(r for t, r in rows.items() if t.startswith("azure_pm"))
    assert len(azure["concat"]) == 1 and azure["concat"][0]["mark"]["type"] == "text"
    assert "single cell: every run used batch size 64 and learning rate 0.001" in json.dumps(spec["datasets"])
    turbofan = next(r for t, r in rows.items() if t.startswith("turbofan"))
    assert "rect" in json.dumps(turbofan) and "single cell" not in json.dumps(turbofan)


def test_old_records_highlight_test_rmse_and_say_so():
    old = completed(records_frame(known_records(with_validation=False)))
    par = ch.parallel_data(old)
    assert (par["rank"] == par["rul_rmse"]).all() and set(par["rank_on"]) == {"test (no validation metrics in records)"}
    assert "TEST RMSE (steps;" in _texts(ch.parallel_coordinates(old))


def test_history_trend_best_per_run():
    hist = pd.DataFrame(
        [
            {
                "timestamp": "2026-01-01T02:00:00+00:00",
                "run_label": "a",
                "dataset": "turbofan",
                "model": "m1",
                "best_rul_rmse": 20.0,
                "best_concordance_index": 0.7,
                "n_completed": 3,
            },
            {
                "timestamp": "2026-01-01T02:00:00+00:00",
                "run_label": "a",
                "dataset": "turbofan",
                "model": "m2",
                "best_rul_rmse": 15.0,
                "best_concordance_index": 0.8,
                "n_completed": 3,
            },
        ]
    )
    data = ch.history_data(hist)
    assert len(data) == 1 and data["best_rul_rmse"].iloc[0] == 15.0 and data["best_concordance_index"].iloc[0] == 0.8
    assert ch.history_trend(hist).to_dict()


def test_history_trend_picks_models_on_validation_not_test():
    """m2 has the lower TEST RMSE but m1 the lower validation RMSE: the trend shows m1's test value."""
    stamp = "2026-01-02T02:00:00+00:00"
    hist = pd.DataFrame(
        [
            {
                "timestamp": stamp,
                "run_label": "b",
                "dataset": "turbofan",
                "model": "m1",
                "best_rul_rmse": 20.0,
                "best_concordance_index": 0.7,
                "selection_rul_rmse": 10.0,
                "selection_concordance_index": 0.9,
            },
            {
                "timestamp": stamp,
                "run_label": "b",
                "dataset": "turbofan",
                "model": "m2",
                "best_rul_rmse": 15.0,
                "best_concordance_index": 0.8,
                "selection_rul_rmse": 12.0,
                "selection_concordance_index": 0.6,
            },
        ]
    )
    data = ch.history_data(hist)
    assert data["best_rul_rmse"].tolist() == [20.0] and data["best_concordance_index"].tolist() == [0.7]
