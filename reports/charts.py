"""Altair chart builders: DataFrames of completed experiments in, `alt` charts out; `save_chart`.

Inputs are `reports.tables.records_frame` rows (completed only). Units: RUL errors in steps
(cycles for turbofan, down-sampled rows for Azure PM), C-index and NASA score unitless,
training time in seconds, GPU utilisation in percent and GPU memory in MB.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import altair as alt
import pandas as pd

from reports.tables import HYPERPARAMETERS, SELECTED_ON_VALIDATION, ranking_metric, write_atomic

alt.data_transformers.disable_max_rows()

METRIC_LABELS = {
    "rul_mae": "RUL MAE (cycles or steps)", "rul_rmse": "RUL RMSE (cycles or steps)",
    "concordance_index": "C-index (unitless)", "nasa_score": "NASA score (unitless)", "train_seconds": "training time (s)",
}
METRIC_SHORT = {"rul_mae": "MAE", "rul_rmse": "RMSE", "concordance_index": "C-index",
                "nasa_score": "NASA score", "train_seconds": "training time"}
HP_LABELS = {"batch_size": "batch size (log2 scale)", "learning_rate": "learning rate (log scale)",
             "lambda_param": "lambda (loss mixing weight)", "nasa_weight": "NASA loss weight",
             "dropout": "dropout rate"}
LOG_BASE = {"batch_size": 2, "learning_rate": 10}
PANEL_W, PANEL_H = 190, 180


def _note(text: str, title: str = "", width: int = PANEL_W, height: int = PANEL_H) -> alt.Chart:
    """A panel that states something in words instead of drawing a meaningless mark."""
    return alt.Chart(pd.DataFrame({"note": [text]})).mark_text(
        fontSize=12, color="#555", lineBreak="\n").encode(text="note:N").properties(
        title=title, width=width, height=height)


def fixed_note(hp: str, value: float) -> str:
    """'batch_size fixed at 128 in this sweep' (the text a single-valued panel shows)."""
    return f"{hp} fixed at {value:g} in this sweep"


CONFIG = alt.Config(axis=alt.AxisConfig(labelFontSize=11, titleFontSize=12),
                    title=alt.TitleConfig(fontSize=16, subtitleFontSize=12, anchor="start"),
                    legend=alt.LegendConfig(labelFontSize=11, titleFontSize=12))


def _set(chart, **props):
    """Set top-level properties in place (Altair's .properties() deep-copies the whole tree)."""
    for key, value in props.items():
        setattr(chart, key, value)
    return chart


def _finish(chart: alt.TopLevelMixin, title: str, subtitle: str = "") -> alt.TopLevelMixin:
    title_obj = alt.Title(title, subtitle=subtitle) if subtitle else alt.Title(title)
    return _set(chart, title=title_obj, config=CONFIG)


def _resolve(**scales) -> alt.Resolve:
    return alt.Resolve(scale=alt.ScaleResolveMap(**scales))


def _rows(df: pd.DataFrame, make_row, color: str = "shared") -> alt.TopLevelMixin:
    """One row of panels per dataset (vconcat of hconcats); `color` scale resolution."""
    rows = [_set(alt.hconcat(*make_row(dataset, g)), resolve=_resolve(x="independent", y="independent", color=color))
            for dataset, g in df.groupby("dataset", sort=True)]
    return _set(alt.vconcat(*rows), resolve=_resolve(color=color))


def hyperparameter_aggregate(df: pd.DataFrame, hp: str, metric: str) -> pd.DataFrame:
    """Per dataset, model and value of `hp`: mean, sd (ddof=1, 0 when n=1), n, lo/hi = mean ∓ sd."""
    g = df.dropna(subset=[hp, metric]).groupby(["dataset", "model", hp])[metric]
    agg = g.agg(mean="mean", sd="std", n="count").reset_index().rename(columns={hp: "value"})
    agg["sd"] = agg["sd"].fillna(0.0)
    agg["lo"], agg["hi"] = agg["mean"] - agg["sd"], agg["mean"] + agg["sd"]
    agg["hyperparameter"] = hp
    return agg


def _x(hp: str, values) -> alt.X:
    scale = (alt.Scale(type="log", base=LOG_BASE[hp], padding=14, nice=False) if hp in LOG_BASE
             else alt.Scale(zero=False, padding=14, nice=False))
    return alt.X("value:Q", title=HP_LABELS.get(hp, hp), scale=scale,
                 axis=alt.Axis(values=sorted(values), format="~g", labelAngle=0))


def _line_panel(agg: pd.DataFrame, hp: str, metric: str, title: str) -> alt.LayerChart:
    """Mean line per model with mean ± sd error bars."""
    x = _x(hp, agg["value"].unique().tolist())
    y = alt.Y("mean:Q", title=METRIC_LABELS[metric], scale=alt.Scale(zero=False))
    color = alt.Color("model:N", title="model")
    tip = ["model:N", alt.Tooltip("value:Q", title=hp), alt.Tooltip("mean:Q", format=".4g"),
           alt.Tooltip("sd:Q", format=".3g"), "n:Q"]
    line = alt.Chart().mark_line(point=True).encode(x=x, y=y, color=color, tooltip=tip)
    bars = alt.Chart().mark_rule(opacity=0.6).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    return _set(alt.layer(bars, line, data=agg), title=title, width=PANEL_W, height=PANEL_H)


def _hp_panel(g: pd.DataFrame, dataset: str, hp: str, metric: str, title: str):
    values = g[hp].dropna().unique()
    if len(values) == 0:
        return _note(f"no {hp} values recorded", title)
    if len(values) == 1:
        return _note(fixed_note(hp, float(values[0])), title)
    return _line_panel(hyperparameter_aggregate(g, hp, metric), hp, metric, title)


def metric_vs_hyperparameters(df: pd.DataFrame, metric: str) -> alt.TopLevelMixin:
    """One panel per hyperparameter (columns) and dataset (rows); a line per model, mean ± sd."""
    chart = _rows(df, lambda ds, g: [_hp_panel(g, ds, hp, metric, f"{ds}: {hp}")
                                     for hp in HYPERPARAMETERS])
    return _finish(chart, f"{METRIC_SHORT[metric]} vs hyperparameters",
                   "mean over all completed runs at each value; error bars: ± 1 sd")


def _sweep_chart(df: pd.DataFrame, hp: str, metrics, title: str) -> alt.TopLevelMixin:
    def row(ds, g):
        values = g[hp].dropna().unique()
        if len(values) == 1:  # one panel that says so instead of one per metric
            return [_note(fixed_note(hp, float(values[0])) + ": nothing to compare", f"{ds}", width=400)]
        return [_hp_panel(g, ds, hp, m, f"{ds}: {METRIC_SHORT[m]}") for m in metrics]
    chart = _rows(df, row)
    return _finish(chart, title, "a line per model: mean over runs at each value; bars: ± 1 sd")


def batch_size_analysis(df: pd.DataFrame) -> alt.TopLevelMixin:
    """MAE, RMSE, C-index and training time (s) vs batch size (log2 x), a line per model."""
    return _sweep_chart(df, "batch_size", ("rul_mae", "rul_rmse", "concordance_index", "train_seconds"),
                        "Batch size analysis")


def learning_rate_analysis(df: pd.DataFrame) -> alt.TopLevelMixin:
    """MAE, RMSE, C-index vs learning rate (log x), a line per model."""
    return _sweep_chart(df, "learning_rate", ("rul_mae", "rul_rmse", "concordance_index"),
                        "Learning rate analysis")


def nasa_loss_impact(df: pd.DataFrame) -> alt.TopLevelMixin:
    """MAE, RMSE, C-index and NASA score vs the NASA loss weight, a line per model."""
    return _sweep_chart(df, "nasa_weight", ("rul_mae", "rul_rmse", "concordance_index", "nasa_score"),
                        "Impact of the NASA loss weight")


def model_comparison(df: pd.DataFrame) -> alt.TopLevelMixin:
    """Box plots per model of MAE, RMSE and C-index (a row per dataset)."""
    def row(ds, g):
        return [alt.Chart(g).mark_boxplot(size=18).encode(
            x=alt.X("model:N", title="model", axis=alt.Axis(labelAngle=-35)),
            y=alt.Y(f"{m}:Q", title=METRIC_LABELS[m], scale=alt.Scale(zero=False)),
            color=alt.Color("model:N", legend=None)).properties(
            title=f"{ds}: {METRIC_SHORT[m]}", width=PANEL_W + 30, height=PANEL_H + 30)
            for m in ("rul_mae", "rul_rmse", "concordance_index")]
    cols = ["dataset", "model", "rul_mae", "rul_rmse", "concordance_index"]
    return _finish(_rows(df[cols], row), "Model comparison",
                   "distribution over all completed runs (box: quartiles, whiskers: 1.5 IQR)")


def heatmap_data(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, batch size and learning rate: mean MAE and mean C-index over all other settings."""
    agg = df.groupby(["dataset", "batch_size", "learning_rate"])[["rul_mae", "concordance_index"]]
    return agg.mean().reset_index()


def _dark_cells(values: pd.Series, reverse: bool) -> pd.Series:
    """True where a viridis cell is dark (white text reads better); per panel min-max position."""
    lo, hi = values.min(), values.max()
    t = (values - lo) / (hi - lo) if hi > lo else values * 0 + 0.5
    return t > 0.5 if reverse else t < 0.5


def hyperparameter_heatmap(df: pd.DataFrame) -> alt.TopLevelMixin:
    """Batch size × learning rate cells; left mean MAE (steps), right mean C-index."""
    def row(ds, g):
        lr_order = [f"{v:g}" for v in sorted(g["learning_rate"].unique())]
        bs_order = [f"{v:g}" for v in sorted(g["batch_size"].unique(), reverse=True)]
        g = g.assign(lr=g["learning_rate"].map(lambda v: f"{v:g}"), bs=g["batch_size"].map(lambda v: f"{v:g}"))
        raw = df[df["dataset"] == ds]
        fixed = [fixed_note(hp, float(v[0])) for hp in ("batch_size", "learning_rate")
                 if len(v := raw[hp].dropna().unique()) == 1]
        out = []
        for m, rev in (("rul_mae", True), ("concordance_index", False)):
            g = g.assign(dark=_dark_cells(g[m], rev))
            base = alt.Chart(g).encode(
                x=alt.X("lr:O", title="learning rate", sort=lr_order, axis=alt.Axis(labelAngle=0)),
                y=alt.Y("bs:O", title="batch size", sort=bs_order))
            rect = base.mark_rect().encode(color=alt.Color(
                f"{m}:Q", title=[f"mean {METRIC_SHORT[m]}", "(lower better)" if rev else "(higher better)"],
                scale=alt.Scale(scheme="viridis", reverse=rev)))
            text = base.mark_text(fontSize=12).encode(
                text=alt.Text(f"{m}:Q", format=".3g"),
                color=alt.condition("datum.dark", alt.value("white"), alt.value("black")))
            out.append(_set(alt.layer(rect, text),
                title=alt.Title(f"{ds}: mean {METRIC_SHORT[m]}", subtitle="; ".join(fixed) or METRIC_LABELS[m]),
                width=max(200, 60 * len(lr_order)), height=max(70, 36 * len(bs_order))))
        return out
    chart = _rows(heatmap_data(df), row, color="independent")
    return _finish(chart, "Batch size × learning rate", "cell: mean over models and all other hyperparameters")


def learning_curves(curves: pd.DataFrame) -> alt.TopLevelMixin:
    """Validation loss per epoch (columns dataset, model, epoch, val_loss) of each best run."""
    if not len(curves):
        return _finish(_note("no training logs found for the best runs", width=400), "Learning curves")
    def row(ds, g):
        return [alt.Chart(g).mark_line(point=alt.OverlayMarkDef(size=15)).encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("val_loss:Q", title="validation loss (DDRSA objective, unitless)",
                    scale=alt.Scale(zero=False)),
            color=alt.Color("model:N", title="model"),
            tooltip=["model:N", "epoch:Q", alt.Tooltip("val_loss:Q", format=".4g")]).properties(
            title=f"{ds}: best run (lowest validation RMSE) per model", width=420, height=220)]
    return _finish(_rows(curves, row), "Learning curves",
                   "validation loss of the best run per dataset/model (test RMSE for runs without validation metrics)")


def parallel_data(df: pd.DataFrame) -> pd.DataFrame:
    """Long table for parallel coordinates: each axis min-max normalised per dataset (0.5 if constant;
    learning rate and batch size on log scale). Axes show TEST metrics; `rank` is the value runs are
    ranked (coloured) on: validation RMSE, or test RMSE where the records carry no validation
    metrics (`rank_on` says which, per dataset)."""
    axes = list(HYPERPARAMETERS) + ["rul_mae", "rul_rmse", "concordance_index", "nasa_score"]
    parts = []
    for ds, g in df.reset_index(drop=True).assign(run=lambda d: range(len(d))).groupby("dataset"):
        rank_col, selected_on = ranking_metric(g, "rul_rmse")
        for axis in axes:
            raw = g[axis].astype(float)
            v = raw.map(lambda x: math.log10(x) if x > 0 else math.nan) if axis in LOG_BASE else raw
            lo, hi = v.min(), v.max()
            norm = (v - lo) / (hi - lo) if hi > lo else v * 0 + 0.5
            parts.append(pd.DataFrame({"dataset": ds, "run": g["run"], "model": g["model"],
                                       "axis": axis, "raw": raw, "norm": norm, "rank": g[rank_col],
                                       "rank_on": selected_on}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def parallel_coordinates(df: pd.DataFrame) -> alt.TopLevelMixin:
    """Every completed run as a line across hyperparameter and (test) metric axes, coloured by the
    ranking value: validation RMSE (test RMSE for records without validation metrics).

    Lines are opaque and thin (translucent strokes take minutes to rasterise for ~1,000 runs);
    the worst runs are drawn first so the best ones lie on top.
    """
    order = list(HYPERPARAMETERS) + ["rul_mae", "rul_rmse", "concordance_index", "nasa_score"]
    data = parallel_data(df).sort_values("rank", ascending=False, kind="stable")
    width = 1.0 if df["dataset"].value_counts().max() < 200 else 0.6
    def row(ds, g):
        on_val = (g["rank_on"] == SELECTED_ON_VALIDATION).all()
        legend = f"{ds} validation RMSE (steps)" if on_val else f"{ds} TEST RMSE (steps; no validation metrics)"
        return [alt.Chart(g).mark_line(strokeWidth=width).encode(
            x=alt.X("axis:N", sort=order, title=None, axis=alt.Axis(labelAngle=-25, grid=True)),
            y=alt.Y("norm:Q", title="normalised value (0 = min, 1 = max)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("rank:Q", title=legend, scale=alt.Scale(scheme="viridis", reverse=True)),
            detail="run:N", tooltip=["model:N", "axis:N", alt.Tooltip("raw:Q", format=".4g")]).properties(
            title=f"{ds}: all completed runs", width=620, height=230)]
    chart = _rows(data, row, color="independent")
    return _finish(chart, "Parallel coordinates", "each line one run, test metrics on the axes, coloured by the "
                   "ranking value (validation RMSE); learning rate and batch size normalised on a log scale")


def gpu_utilization(samples: pd.DataFrame) -> alt.TopLevelMixin:
    """GPU utilisation (%) and memory (MB) over time, a line per worker/GPU."""
    data = samples.assign(gpu=samples["worker"].astype(str) + " / GPU " + samples["gpu_index"].astype(str),
                          timestamp=pd.to_datetime(samples["timestamp"], utc=True, errors="coerce"))
    base = alt.Chart(data).encode(x=alt.X("timestamp:T", title="time (UTC)"),
                                  color=alt.Color("gpu:N", title="worker / GPU"))
    util = base.mark_line().encode(y=alt.Y("utilization_pct:Q", title="GPU utilisation (%)",
                                           scale=alt.Scale(domain=[0, 100]))).properties(width=420, height=200)
    mem = base.mark_line().encode(y=alt.Y("memory_used_mb:Q", title="GPU memory used (MB)")).properties(
        width=420, height=200)
    return _finish(alt.hconcat(util, mem), "GPU utilisation during the sweep")


def history_data(history: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and run: the test RMSE / C-index of the model whose winner has the best
    SELECTION value (validation; lines written before selection values existed fall back to the
    test value itself), so the trend never picks across models on test data."""
    h = history.assign(timestamp=pd.to_datetime(history["timestamp"], utc=True, errors="coerce"))
    for col in ("selection_rul_rmse", "selection_concordance_index"):
        if col not in h:
            h[col] = float("nan")
    h["_rmse_key"] = h["selection_rul_rmse"].fillna(h["best_rul_rmse"])
    h["_c_key"] = h["selection_concordance_index"].fillna(h["best_concordance_index"])
    rows = []
    for (dataset, stamp, label), g in h.groupby(["dataset", "timestamp", "run_label"]):
        rmse = g.dropna(subset=["_rmse_key"])
        cidx = g.dropna(subset=["_c_key"])
        rows.append({"dataset": dataset, "timestamp": stamp, "run_label": label,
                     "best_rul_rmse": rmse.loc[rmse["_rmse_key"].idxmin(), "best_rul_rmse"] if len(rmse) else None,
                     "best_concordance_index": (cidx.loc[cidx["_c_key"].idxmax(), "best_concordance_index"]
                                                if len(cidx) else None)})
    return pd.DataFrame(rows, columns=["dataset", "timestamp", "run_label", "best_rul_rmse",
                                       "best_concordance_index"])


def history_trend(history: pd.DataFrame) -> alt.TopLevelMixin:
    """Best RMSE and best C-index per dataset across nightly runs over time."""
    def row(ds, g):
        return [alt.Chart(g).mark_line(point=True).encode(
            x=alt.X("timestamp:T", title="run time (UTC)"),
            y=alt.Y(f"{m}:Q", title=f"best {METRIC_LABELS[m.removeprefix('best_')]}", scale=alt.Scale(zero=False)),
            tooltip=["run_label:N", "timestamp:T", alt.Tooltip(f"{m}:Q", format=".4g")]).properties(
            title=f"{ds}: best {METRIC_SHORT[m.removeprefix('best_')]}", width=360, height=180)
            for m in ("best_rul_rmse", "best_concordance_index")]
    return _finish(_rows(history_data(history), row), "Sweep history", "best over all models, per run")


def _vl_version() -> str | None:
    """vl-convert's name for the Vega-Lite version Altair targets ('v6_4'), None = its latest."""
    import vl_convert as vlc

    name = "v" + "_".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return name if name in vlc.get_vegalite_versions() else None


def save_chart(chart: alt.TopLevelMixin, directory: str | os.PathLike, name: str) -> dict[str, Path]:
    """Write `name.html` (self-contained: Vega JS bundled, opens offline) and `name.png` (scale 2).

    Both through vl-convert from one validated spec, each written atomically. Returns the paths.
    """
    import vl_convert as vlc

    directory, spec, version = Path(directory), chart.to_dict(), _vl_version()
    html = write_atomic(directory / f"{name}.html", vlc.vegalite_to_html(spec, vl_version=version, bundle=True))
    png = write_atomic(directory / f"{name}.png", vlc.vegalite_to_png(spec, vl_version=version, scale=2))
    return {"html": html, "png": png}
