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

from reports.tables import HYPERPARAMETERS, SELECTED_ON_VALIDATION, config_ids, ranking_metric, write_atomic

alt.data_transformers.disable_max_rows()

METRIC_LABELS = {
    "rul_mae": "RUL MAE (cycles or steps)",
    "rul_rmse": "RUL RMSE (cycles or steps)",
    "concordance_index": "C-index (unitless)",
    "nasa_score": "NASA score (unitless)",
    "train_seconds": "training time (s)",
}
METRIC_SHORT = {
    "rul_mae": "MAE",
    "rul_rmse": "RMSE",
    "concordance_index": "C-index",
    "nasa_score": "NASA score",
    "train_seconds": "training time",
}
HP_LABELS = {
    "batch_size": "batch size (log2 scale)",
    "learning_rate": "learning rate (log scale)",
    "lambda_param": "lambda (loss mixing weight)",
    "nasa_weight": "NASA loss weight",
    "dropout": "dropout rate",
}
LOG_BASE = {"batch_size": 2, "learning_rate": 10}
PANEL_W, PANEL_H = 190, 180


def _note(text: str, title: str = "", width: int = PANEL_W, height: int = PANEL_H) -> alt.Chart:
    """A panel that states something in words instead of drawing a meaningless mark."""
    return (
        alt.Chart(pd.DataFrame({"note": [text]}))
        .mark_text(fontSize=12, color="#555", lineBreak="\n")
        .encode(text="note:N")
        .properties(title=title, width=width, height=height)
    )


def fixed_note(hp: str, value: float) -> str:
    """'batch_size fixed at 128 in this sweep' (the text a single-valued panel shows)."""
    return f"{hp} fixed at {value:g} in this sweep"


CONFIG = alt.Config(
    axis=alt.AxisConfig(labelFontSize=11, titleFontSize=12),
    title=alt.TitleConfig(fontSize=16, subtitleFontSize=12, anchor="start"),
    legend=alt.LegendConfig(labelFontSize=11, titleFontSize=12),
)


def _set(chart, **props):
    """Set top-level properties in place (Altair's .properties() deep-copies the whole tree)."""
    for key, value in props.items():
        setattr(chart, key, value)
    return chart


def _finish(chart: alt.TopLevelMixin, title: str, subtitle: str | list[str] = "") -> alt.TopLevelMixin:
    title_obj = alt.Title(title, subtitle=subtitle) if subtitle else alt.Title(title)
    return _set(chart, title=title_obj, config=CONFIG)


def _resolve(**scales) -> alt.Resolve:
    return alt.Resolve(scale=alt.ScaleResolveMap(**scales))


PANELS_PER_ROW = 3  # panels wrap after three: a chart stays within a 1,280 px window


def _rows(df: pd.DataFrame, make_row, color: str = "shared") -> alt.TopLevelMixin:
    """One block of panels per dataset (wrapped at PANELS_PER_ROW), stacked; `color` scale resolution."""
    rows = [
        _set(
            alt.concat(*make_row(dataset, g), columns=PANELS_PER_ROW),
            resolve=_resolve(x="independent", y="independent", color=color),
        )
        for dataset, g in df.groupby("dataset", sort=True)
    ]
    return _set(alt.vconcat(*rows), resolve=_resolve(color=color))


def varying_hyperparameters(g: pd.DataFrame) -> list[str]:
    """The hyperparameters with more than one value in `g` (grid order)."""
    return [hp for hp in HYPERPARAMETERS if g[hp].dropna().nunique() > 1]


def fixed_sentences(df: pd.DataFrame) -> list[str]:
    """One sentence per dataset for the hyperparameters that do not vary: 'azure_pm: batch_size fixed
    at 64 in this sweep; dropout fixed at 0.1 in this sweep' ([] when all vary)."""
    parts = []
    for dataset, g in df.groupby("dataset", sort=True):
        fixed = [
            fixed_note(hp, float(g[hp].dropna().iloc[0]))
            for hp in HYPERPARAMETERS
            if hp not in varying_hyperparameters(g) and g[hp].notna().any()
        ]
        if fixed:
            parts.append(f"{dataset}: {'; '.join(fixed)}")
    return parts


def hyperparameter_aggregate(df: pd.DataFrame, hp: str, metric: str) -> pd.DataFrame:
    """Per dataset, model and value of `hp`: mean, sd (ddof=1, 0 when n=1), n, lo/hi = mean ∓ sd."""
    g = df.dropna(subset=[hp, metric]).groupby(["dataset", "model", hp])[metric]
    agg = g.agg(mean="mean", sd="std", n="count").reset_index().rename(columns={hp: "value"})
    agg["sd"] = agg["sd"].fillna(0.0)
    agg["lo"], agg["hi"] = agg["mean"] - agg["sd"], agg["mean"] + agg["sd"]
    agg["hyperparameter"] = hp
    return agg


def _x(hp: str, values) -> alt.X:
    scale = (
        alt.Scale(type="log", base=LOG_BASE[hp], padding=14, nice=False)
        if hp in LOG_BASE
        else alt.Scale(zero=False, padding=14, nice=False)
    )
    return alt.X(
        "value:Q",
        title=HP_LABELS.get(hp, hp),
        scale=scale,
        axis=alt.Axis(values=sorted(values), format="~g", labelAngle=0),
    )


def _line_panel(agg: pd.DataFrame, hp: str, metric: str, title: str) -> alt.LayerChart:
    """Mean line per model with mean ± sd error bars."""
    x = _x(hp, agg["value"].unique().tolist())
    y = alt.Y("mean:Q", title=METRIC_LABELS[metric], scale=alt.Scale(zero=False))
    color = alt.Color("model:N", title="model")
    tip = [
        "model:N",
        alt.Tooltip("value:Q", title=hp),
        alt.Tooltip("mean:Q", format=".4g"),
        alt.Tooltip("sd:Q", format=".3g"),
        "n:Q",
    ]
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
    """One panel per hyperparameter that varies (wrapped) and dataset (blocks); a line per model,
    mean ± sd. The constant ones are one sentence in the subtitle, not a panel each."""

    def row(ds, g):
        hps = varying_hyperparameters(g)
        return [_hp_panel(g, ds, hp, metric, f"{ds}: {hp}") for hp in hps] or [
            _note("no hyperparameter varies for this dataset", ds, width=400, height=60)
        ]

    subtitle = ["mean over all completed runs at each value; error bars: ± 1 sd"]
    subtitle += [f"not drawn, constant: {line}" for line in fixed_sentences(df)]
    return _finish(_rows(df, row), f"{METRIC_SHORT[metric]} vs hyperparameters", subtitle)


def _sweep_chart(df: pd.DataFrame, hp: str, metrics, title: str) -> alt.TopLevelMixin:
    def row(ds, g):
        values = g[hp].dropna().unique()
        if len(values) == 1:  # one panel that says so instead of one per metric
            return [_note(fixed_note(hp, float(values[0])) + ": nothing to compare", f"{ds}", width=400, height=60)]
        return [_hp_panel(g, ds, hp, m, f"{ds}: {METRIC_SHORT[m]}") for m in metrics]

    chart = _rows(df, row)
    return _finish(chart, title, "a line per model: mean over runs at each value; bars: ± 1 sd")


def batch_size_analysis(df: pd.DataFrame) -> alt.TopLevelMixin:
    """MAE, RMSE, C-index and training time (s) vs batch size (log2 x), a line per model."""
    return _sweep_chart(
        df, "batch_size", ("rul_mae", "rul_rmse", "concordance_index", "train_seconds"), "Batch size analysis"
    )


def learning_rate_analysis(df: pd.DataFrame) -> alt.TopLevelMixin:
    """MAE, RMSE, C-index vs learning rate (log x), a line per model."""
    return _sweep_chart(df, "learning_rate", ("rul_mae", "rul_rmse", "concordance_index"), "Learning rate analysis")


def nasa_loss_impact(df: pd.DataFrame) -> alt.TopLevelMixin:
    """MAE, RMSE, C-index and NASA score vs the NASA loss weight, a line per model."""
    return _sweep_chart(
        df, "nasa_weight", ("rul_mae", "rul_rmse", "concordance_index", "nasa_score"), "Impact of the NASA loss weight"
    )


SMALL_N = 5  # fewer runs than this per model: draw each run as a point, not a box


def model_comparison(df: pd.DataFrame) -> alt.TopLevelMixin:
    """Box plots per model of MAE, RMSE and C-index (a row per dataset); a model with fewer than
    SMALL_N runs in a dataset is drawn as one point per run (a box of one run is a bare tick)."""
    cols = ["dataset", "model", "rul_mae", "rul_rmse", "concordance_index"]
    data = df[cols].assign(n_runs=df.groupby(["dataset", "model"])["model"].transform("size"))

    def row(ds, g):
        few = g[g["n_runs"] < SMALL_N]
        many = g[g["n_runs"] >= SMALL_N]
        out = []
        for m in ("rul_mae", "rul_rmse", "concordance_index"):
            x = alt.X("model:N", title="model", axis=alt.Axis(labelAngle=-35), sort=sorted(g["model"].unique()))
            y = alt.Y(f"{m}:Q", title=METRIC_LABELS[m], scale=alt.Scale(zero=False, padding=8))
            color = alt.Color("model:N", legend=None)
            layers = []
            if len(many):
                layers.append(alt.Chart(many).mark_boxplot(size=18).encode(x=x, y=y, color=color))
            if len(few):
                layers.append(
                    alt.Chart(few)
                    .mark_point(filled=True, size=60, opacity=0.8)
                    .encode(
                        x=x,
                        y=y,
                        color=color,
                        tooltip=[
                            "model:N",
                            alt.Tooltip(f"{m}:Q", format=".4g"),
                            alt.Tooltip("n_runs:Q", title="runs of this model"),
                        ],
                    )
                )
            out.append(
                _set(alt.layer(*layers), title=f"{ds}: {METRIC_SHORT[m]}", width=PANEL_W + 30, height=PANEL_H + 30)
            )
        return out

    return _finish(
        _rows(data, row),
        "Model comparison",
        f"distribution over all completed runs (box: quartiles, whiskers: 1.5 IQR); models with fewer "
        f"than {SMALL_N} runs: one point per run",
    )


def heatmap_data(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, batch size and learning rate: mean MAE and mean C-index over all other settings."""
    agg = df.groupby(["dataset", "batch_size", "learning_rate"])[["rul_mae", "concordance_index"]]
    return agg.mean().reset_index()


def _dark_cells(values: pd.Series, reverse: bool) -> pd.Series:
    """True where a viridis cell is dark (white text reads better); per panel min-max position."""
    lo, hi = values.min(), values.max()
    t = (values - lo) / (hi - lo) if hi > lo else values * 0 + 0.5
    return t > 0.5 if reverse else t < 0.5


def single_cell_note(cell: pd.Series) -> str:
    """What a heatmap of one cell says instead of drawing one square."""
    return (
        f"single cell: every run used batch size {cell['batch_size']:g} and learning rate "
        f"{cell['learning_rate']:g}\n(mean MAE {cell['rul_mae']:.4g} steps, mean C-index "
        f"{cell['concordance_index']:.3f}): nothing to map"
    )


def hyperparameter_heatmap(df: pd.DataFrame) -> alt.TopLevelMixin:
    """Batch size × learning rate cells; left mean MAE (steps), right mean C-index."""

    def row(ds, g):
        lr_order = [f"{v:g}" for v in sorted(g["learning_rate"].unique())]
        bs_order = [f"{v:g}" for v in sorted(g["batch_size"].unique(), reverse=True)]
        g = g.assign(lr=g["learning_rate"].map(lambda v: f"{v:g}"), bs=g["batch_size"].map(lambda v: f"{v:g}"))
        raw = df[df["dataset"] == ds]
        fixed = [
            fixed_note(hp, float(v[0]))
            for hp in ("batch_size", "learning_rate")
            if len(v := raw[hp].dropna().unique()) == 1
        ]
        if len(g) == 1:  # one square would say nothing: state the one cell in words
            c = g.iloc[0]
            return [_note(single_cell_note(c), f"{ds}: batch size × learning rate", width=420, height=80)]
        out = []
        for m, rev in (("rul_mae", True), ("concordance_index", False)):
            g = g.assign(dark=_dark_cells(g[m], rev))
            base = alt.Chart(g).encode(
                x=alt.X("lr:O", title="learning rate", sort=lr_order, axis=alt.Axis(labelAngle=0)),
                y=alt.Y("bs:O", title="batch size", sort=bs_order),
            )
            rect = base.mark_rect().encode(
                color=alt.Color(
                    f"{m}:Q",
                    title=[f"mean {METRIC_SHORT[m]}", "(lower better)" if rev else "(higher better)"],
                    scale=alt.Scale(scheme="viridis", reverse=rev),
                )
            )
            text = base.mark_text(fontSize=12).encode(
                text=alt.Text(f"{m}:Q", format=".3g"),
                color=alt.condition("datum.dark", alt.value("white"), alt.value("black")),
            )
            out.append(
                _set(
                    alt.layer(rect, text),
                    title=alt.Title(f"{ds}: mean {METRIC_SHORT[m]}", subtitle="; ".join(fixed) or METRIC_LABELS[m]),
                    width=max(200, 60 * len(lr_order)),
                    height=max(70, 36 * len(bs_order)),
                )
            )
        return out

    chart = _rows(heatmap_data(df), row, color="independent")
    return _finish(chart, "Batch size × learning rate", "cell: mean over models and all other hyperparameters")


def epoch_ticks(epochs: pd.Series, most: int = 12) -> list[int]:
    """Integer epoch tick values, each once, at most `most` of them (1, then every k-th epoch).

    Vega's own ticks on a short axis fall between epochs, and the integer format then prints
    '1, 2, 2'."""
    first, last = int(epochs.min()), int(epochs.max())
    step = max(1, math.ceil((last - first + 1) / most))
    if step > 1:  # round steps (5, 10, ...) from the first epoch on
        step = next(s for s in (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, step) if s >= step)
        return sorted({first, *range(step * math.ceil(first / step) or step, last + 1, step)})
    return list(range(first, last + 1))


def learning_curves(curves: pd.DataFrame) -> alt.TopLevelMixin:
    """Validation loss per epoch (columns dataset, model, epoch, val_loss) of each best run."""
    if not len(curves):
        return _finish(_note("no training logs found for the best runs", width=400), "Learning curves")

    def row(ds, g):
        return [
            alt.Chart(g)
            .mark_line(point=alt.OverlayMarkDef(size=15))
            .encode(
                x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(values=epoch_ticks(g["epoch"]), format="d")),
                y=alt.Y("val_loss:Q", title="validation loss (DDRSA objective, unitless)", scale=alt.Scale(zero=False)),
                color=alt.Color("model:N", title="model"),
                tooltip=["model:N", "epoch:Q", alt.Tooltip("val_loss:Q", format=".4g")],
            )
            .properties(title=f"{ds}: best run (lowest validation RMSE) per model", width=420, height=220)
        ]

    return _finish(
        _rows(curves.drop(columns=["name"], errors="ignore"), row),
        "Learning curves",
        "validation loss of the best run per dataset/model (test RMSE for runs without validation metrics)",
    )


PARALLEL_METRICS = ("rul_mae", "rul_rmse", "concordance_index", "nasa_score")
SELECTED_PARAM = "selected_cfg"  # Vega signal: the configuration (cfg) the leaderboard selected; -1 none


def parallel_axes(g: pd.DataFrame) -> tuple[list[str], dict[str, float]]:
    """(axes drawn, {hyperparameter left out: its one value}) for one dataset's runs: the model
    axis, every hyperparameter that took more than one value, then the test metrics."""
    left_out = {hp: float(v[0]) for hp in HYPERPARAMETERS if len(v := g[hp].dropna().unique()) == 1}
    varying = [hp for hp in HYPERPARAMETERS if hp not in left_out and g[hp].notna().any()]
    return ["model", *varying, *PARALLEL_METRICS], left_out


def parallel_data(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (wide): dataset, run, cfg (configuration id, `tables.config_ids`), model,
    the raw hyperparameters and test metrics, `n_<axis>` = that axis normalised to [0, 1] per
    dataset (min-max; learning rate and batch size on a log scale; models evenly spaced in sorted
    order; 0.5 if constant; NaN for axes the dataset leaves out, see `parallel_axes`), and `rank`:
    the value runs are ranked (coloured) on: validation RMSE, or test RMSE where the records carry
    no validation metrics (`rank_on` says which, per dataset)."""
    runs = df.reset_index(drop=True).assign(run=lambda d: range(len(d)), cfg=lambda d: config_ids(d))
    parts = []
    for _dataset, g in runs.groupby("dataset", sort=True):
        rank_col, selected_on = ranking_metric(g, "rul_rmse")
        axes, _ = parallel_axes(g)
        out = g[["dataset", "run", "cfg", "model", *HYPERPARAMETERS, *PARALLEL_METRICS]].copy()
        out["rank"], out["rank_on"] = g[rank_col], selected_on
        for axis in axes:
            if axis == "model":
                models = sorted(g["model"].unique())
                pos = {m: (i / (len(models) - 1) if len(models) > 1 else 0.5) for i, m in enumerate(models)}
                out["n_model"] = g["model"].map(pos)
                continue
            raw = g[axis].astype(float)
            v = raw.map(lambda x: math.log10(x) if x > 0 else math.nan) if axis in LOG_BASE else raw
            lo, hi = v.min(), v.max()
            out[f"n_{axis}"] = ((v - lo) / (hi - lo) if hi > lo else v * 0 + 0.5).round(3)
        parts.append(out)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _parallel_labels(g: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Text marks for one dataset: each model name at its place on the model axis, and the raw
    minimum and maximum at the bottom and top of every other axis (`xi`: the axis' position)."""
    rows = []
    for xi, axis in enumerate(axes):
        if axis == "model":
            rows += [{"xi": xi, "norm": float(n), "label": m} for m, n in g.groupby("model")["n_model"].first().items()]
            continue
        lo, hi = g[axis].min(), g[axis].max()
        rows += [
            {"xi": xi, "norm": float(g.loc[g[axis] == v, f"n_{axis}"].iloc[0]), "label": f"{v:.4g}"}
            for v in ({lo, hi} if lo != hi else {lo})
            if not pd.isna(v)
        ]
    return pd.DataFrame(rows)


def parallel_coordinates(df: pd.DataFrame) -> alt.TopLevelMixin:
    """Every completed run as a line across the model, hyperparameter and (test) metric axes,
    coloured by the ranking value: validation RMSE (test RMSE for records without validation
    metrics). Hyperparameters that took one value in a dataset are left out and named in its
    subtitle. The configuration whose `cfg` equals the signal `selected_cfg` (set by the report's
    leaderboard) is drawn on top in black.

    Each line is drawn as one rule per pair of neighbouring axes (a Vega-Lite line per run would
    make one sub-dataflow per run: seconds in a browser for ~1,000 runs). Opaque thin strokes
    (translucent ones take minutes to rasterise); the worst runs first so the best lie on top.
    """
    data = parallel_data(df).sort_values("rank", ascending=False, kind="stable")
    width = 1.0 if df["dataset"].value_counts().max() < 200 else 0.6

    def row(ds, g):
        axes, left_out = parallel_axes(df[df["dataset"] == ds])
        on_val = (g["rank_on"] == SELECTED_ON_VALIDATION).all()
        g = g[["run", "cfg", "model", *[a for a in axes if a != "model"], "rank", *[f"n_{a}" for a in axes]]]
        legend = [ds, "validation RMSE (steps)"] if on_val else [ds, "TEST RMSE (steps;", "no validation metrics)"]
        names = script_literal(axes)
        x = alt.X(
            "xi:Q",
            title=None,
            scale=alt.Scale(domain=[0, len(axes) - 1], nice=False),
            axis=alt.Axis(
                values=list(range(len(axes))),
                labelExpr=f"{names}[datum.value]",
                labelAngle=-25,
                grid=True,
                labelAlign="right",
            ),
        )
        y = alt.Y("norm:Q", title="normalised value (0 = min, 1 = max)", scale=alt.Scale(domain=[0, 1]))

        def segments(chart):
            return (
                chart.transform_fold([f"n_{a}" for a in axes], as_=["key", "norm"])
                .transform_calculate(axis="slice(datum.key, 2)", xi=f"indexof({names}, slice(datum.key, 2))")
                .transform_calculate(value="datum[datum.axis]")
                .transform_window(
                    norm2="lead(norm)", xi2="lead(xi)", groupby=["run"], sort=[alt.SortField("xi")], frame=[None, None]
                )
                .transform_filter("isValid(datum.norm2)")
            )

        tip = [
            "model:N",
            alt.Tooltip("cfg:Q", title="configuration"),
            "axis:N",
            alt.Tooltip("value:N", title="value"),
            alt.Tooltip("rank:Q", title="ranking value", format=".4g"),
        ]
        lines = (
            segments(alt.Chart())
            .mark_rule(strokeWidth=width)
            .encode(
                x=x,
                x2="xi2:Q",
                y=y,
                y2="norm2:Q",
                tooltip=tip,
                color=alt.Color("rank:Q", title=legend, scale=alt.Scale(scheme="viridis", reverse=True)),
            )
        )
        chosen = (
            segments(alt.Chart().transform_filter(f"datum.cfg === {SELECTED_PARAM}"))
            .mark_rule(strokeWidth=3, color="black")
            .encode(x=x, x2="xi2:Q", y=y, y2="norm2:Q", tooltip=tip)
        )
        labels = (
            alt.Chart(_parallel_labels(g, axes))
            .mark_text(align="left", dx=4, fontSize=10, color="#333")
            .encode(x=x, y=y, text="label:N")
        )
        said = (
            "left out (one value in this sweep): " + ", ".join(f"{hp} {v:g}" for hp, v in left_out.items())
            if left_out
            else "every hyperparameter varied in this sweep"
        )
        return [
            _set(
                alt.layer(alt.layer(lines, chosen, data=g), labels),
                title=alt.Title(f"{ds}: all completed runs", subtitle=said),
                width=560,
                height=230,
            )
        ]

    chart = _rows(data, row, color="independent")
    chart = _finish(
        chart,
        "Parallel coordinates",
        [
            "each line one run, test metrics on the axes, coloured by the ranking value (validation RMSE);",
            "learning rate and batch size normalised on a log scale; black: the configuration selected in the leaderboard",
        ],
    )
    return _set(chart, params=[alt.param(name=SELECTED_PARAM, value=-1).param])


def script_literal(values: list[str]) -> str:
    """A Vega expression array literal of strings: ['model','batch_size']."""
    return "[" + ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values) + "]"


def gpu_utilization(samples: pd.DataFrame) -> alt.TopLevelMixin:
    """GPU utilisation (%) and memory (MB) over time, a line per worker/GPU."""
    data = samples.assign(
        gpu=samples["worker"].astype(str) + " / GPU " + samples["gpu_index"].astype(str),
        timestamp=pd.to_datetime(samples["timestamp"], utc=True, errors="coerce"),
    )
    base = alt.Chart(data).encode(
        x=alt.X("timestamp:T", title="time (UTC)"), color=alt.Color("gpu:N", title="worker / GPU")
    )
    util = (
        base.mark_line()
        .encode(y=alt.Y("utilization_pct:Q", title="GPU utilisation (%)", scale=alt.Scale(domain=[0, 100])))
        .properties(width=420, height=200)
    )
    mem = (
        base.mark_line()
        .encode(y=alt.Y("memory_used_mb:Q", title="GPU memory used (MB)"))
        .properties(width=420, height=200)
    )
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
        rows.append(
            {
                "dataset": dataset,
                "timestamp": stamp,
                "run_label": label,
                "best_rul_rmse": rmse.loc[rmse["_rmse_key"].idxmin(), "best_rul_rmse"] if len(rmse) else None,
                "best_concordance_index": (
                    cidx.loc[cidx["_c_key"].idxmax(), "best_concordance_index"] if len(cidx) else None
                ),
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "timestamp", "run_label", "best_rul_rmse", "best_concordance_index"])


def history_trend(history: pd.DataFrame) -> alt.TopLevelMixin:
    """Best RMSE and best C-index per dataset across nightly runs over time."""

    def row(ds, g):
        return [
            alt.Chart(g)
            .mark_line(point=True)
            .encode(
                x=alt.X("timestamp:T", title="run time (UTC)"),
                y=alt.Y(f"{m}:Q", title=f"best {METRIC_LABELS[m.removeprefix('best_')]}", scale=alt.Scale(zero=False)),
                tooltip=["run_label:N", "timestamp:T", alt.Tooltip(f"{m}:Q", format=".4g")],
            )
            .properties(title=f"{ds}: best {METRIC_SHORT[m.removeprefix('best_')]}", width=360, height=180)
            for m in ("best_rul_rmse", "best_concordance_index")
        ]

    return _finish(_rows(history_data(history), row), "Sweep history", "best over all models, per run")


def save_chart(
    chart: alt.TopLevelMixin, directory: str | os.PathLike, name: str, spec: dict | None = None
) -> dict[str, Path]:
    """Write `name.html` and `name.png` (scale 2) into `directory`; returns their paths.

    The HTML holds the spec and its data and loads Vega from `vega-bundle.js`, written once per
    folder (`reports.vega_page`), so it opens offline next to that file; the PNG comes from
    vl-convert. `spec` (= `chart.to_dict()`) may be passed when the caller already has it.
    Every file is written atomically.
    """
    import vl_convert as vlc

    from reports.vega_page import chart_html, vl_version, write_bundle

    directory = Path(directory)
    spec = spec if spec is not None else chart.to_dict()
    write_bundle(directory)
    html = write_atomic(directory / f"{name}.html", chart_html(spec, name.replace("_", " ")))
    png = write_atomic(directory / f"{name}.png", vlc.vegalite_to_png(spec, vl_version=vl_version(), scale=2))
    return {"html": html, "png": png}
