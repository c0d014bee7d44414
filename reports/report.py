"""Whole analysis of one sweep folder (no Prefect): CSVs, charts, report.html, headline text.

`run_analysis(output_dir)` is what the Prefect flow and the benchmark call. Units as in
`reports.tables`: RUL errors in steps (cycles or down-sampled rows), times in seconds.
"""
from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from reports import charts as ch
from reports.history import append_history, read_history
from reports.tables import (METRICS, best_configurations, completed, load_gpu_samples,
                            load_learning_curves, load_manifest, load_records, records_frame,
                            summary_statistics, sweep_counts, write_atomic, write_csv)

PLOTS_DIR = "analysis_plots"
NO_GPU_NOTE = "no GPU samples recorded (no GPU on the machine that ran the sweep)"


@dataclass
class AnalysisResult:
    """Everything one analysis produced; paths are absolute."""

    output_dir: Path
    counts: dict
    manifest: dict | None
    records: pd.DataFrame
    summary: pd.DataFrame
    best: pd.DataFrame
    charts: dict[str, dict[str, Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    history_lines_added: int = 0


def build_charts(done: pd.DataFrame, output_dir: str | os.PathLike,
                 history: pd.DataFrame | None = None, gpu: pd.DataFrame | None = None) -> dict:
    """name -> Altair chart for the completed runs `done` (non-empty); gpu/history when given."""
    charts = {f"{m}_vs_hyperparameters": ch.metric_vs_hyperparameters(done, m)
              for m in ("rul_mae", "rul_rmse", "concordance_index")}
    charts.update(model_comparison=ch.model_comparison(done),
                  batch_size_analysis=ch.batch_size_analysis(done),
                  learning_rate_analysis=ch.learning_rate_analysis(done),
                  nasa_loss_impact=ch.nasa_loss_impact(done),
                  hyperparameter_heatmap=ch.hyperparameter_heatmap(done),
                  learning_curves=ch.learning_curves(load_learning_curves(output_dir, done)),
                  parallel_coordinates=ch.parallel_coordinates(done))
    if gpu is not None and len(gpu):
        charts["gpu_utilization"] = ch.gpu_utilization(gpu)
    if history is not None and len(history):
        charts["history_trend"] = ch.history_trend(history)
    return charts


def run_analysis(output_dir: str | os.PathLike, append_to_history: bool = False,
                 run_label: str | None = None, charts: bool = True) -> AnalysisResult:
    """Read the sweep folder, write CSVs, charts (html+png; skipped if not `charts`) and report.html."""
    out = Path(output_dir).resolve()
    records, manifest = load_records(out), load_manifest(out)
    df = records_frame(records)
    done = completed(df).dropna(subset=list(METRICS), how="all")
    res = AnalysisResult(out, sweep_counts(records, manifest), manifest, df,
                         summary_statistics(df), best_configurations(df, str(output_dir)))
    res.files["summary_statistics"] = write_csv(res.summary, out / "summary_statistics.csv")
    res.files["best_configurations"] = write_csv(res.best, out / "best_configurations.csv")
    if append_to_history:
        res.history_lines_added = append_history(out, records, run_label)
    history, gpu = read_history(out), load_gpu_samples(out)
    if gpu is None:
        res.notes.append(NO_GPU_NOTE)
    done_charts = {}
    if not charts:
        res.notes.append("charts not drawn (disabled for this run)")
    elif not len(done):
        res.notes.append("no completed experiments yet: no metric charts drawn")
    else:
        done_charts = build_charts(done, out, history, gpu)
    if charts and not len(done) and len(history):
        done_charts["history_trend"] = ch.history_trend(history)
    for name, chart in done_charts.items():
        res.charts[name] = ch.save_chart(chart, out / PLOTS_DIR, name)
    res.files["report"] = write_atomic(out / "report.html", render_report(res))
    return res


# ---------------------------------------------------------------- HTML
def _e(value) -> str:
    """HTML-escaped text of any value (NaN/None -> '')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _wall_time(manifest: dict | None) -> str:
    m = manifest or {}
    try:
        start = datetime.fromisoformat(str(m["started_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return "unknown (no started_at in the manifest)"
    if not m.get("finished_at"):
        return f"started {_e(m['started_at'])}, not finished"
    try:
        end = datetime.fromisoformat(str(m["finished_at"]).replace("Z", "+00:00"))
        secs = (end - start).total_seconds()
    except (ValueError, TypeError):
        return "unknown (unreadable finished_at)"
    return f"{secs:.0f} s ({secs / 3600:.2f} h), {_e(m['started_at'])} to {_e(m['finished_at'])}"


def _with_ci(row: pd.Series, m: str) -> str:
    if isinstance(row[f"{m}_ci_low"], float) and not math.isnan(row[f"{m}_ci_low"]):
        return f"{_e(row[m])} [{_e(row[f'{m}_ci_low'])}, {_e(row[f'{m}_ci_high'])}]"
    return _e(row[m])


def _summary_section(res: AnalysisResult) -> str:
    c, m = res.counts, res.manifest or {}
    parts = [_table(["total", "completed", "failed", "diverged", "collapsed", "pending"],
                    [[_e(c[k]) for k in ("total", "completed", "failed", "diverged", "collapsed", "pending")]])]
    grid = m.get("grid") or {}
    if grid:
        parts.append("<h3>Grid</h3>" + _table(["flag", "values"], [[_e(k), _e(", ".join(map(str, v)) if
                                                                   isinstance(v, list) else v)] for k, v in grid.items()]))
    parts.append(f"<p>Wall time: {_wall_time(res.manifest)}. Code version: {_e(m.get('code_version', 'unknown'))}."
                 f" Manifest: {'present' if res.manifest else 'absent'}.</p>")
    df = res.records
    bad = df[df["status"].isin(["failed", "diverged"])] if len(df) else df
    if len(bad):
        parts.append("<h3>Failed and diverged experiments (excluded from rankings)</h3>" + _table(
            ["name", "status", "diverged epoch", "attempts", "error"],
            [[_e(r["name"]), _e(r["status"]), _e(r.get("diverged_epoch")), _e(r.get("attempts")),
              f"<pre>{_e(r.get('error'))}</pre>"] for _, r in bad.iterrows()]))
    col = df[df["collapsed"]] if len(df) else df
    if len(col):
        parts.append("<h3>Collapsed (constant prediction)</h3><p>Completed, but the model predicts one value "
                     "for every window; ranked, but treat with suspicion.</p>" + _table(
                         ["name", "RUL MAE", "RUL RMSE", "C-index"],
                         [[_e(r["name"]), _e(r["rul_mae"]), _e(r["rul_rmse"]), _e(r["concordance_index"])]
                          for _, r in col.iterrows()]))
    return "".join(parts)


def _best_section(best: pd.DataFrame) -> str:
    if not len(best):
        return "<p>No results yet.</p>"
    headers = ["dataset", "model", "criterion", "subset", "batch size", "learning rate", "lambda", "NASA weight",
               "dropout", "seeds", "RUL MAE (steps) [95% CI]", "RUL RMSE (steps) [95% CI]", "C-index [95% CI]",
               "NASA score [95% CI]", "indistinguishable configs", "retrain command"]
    rows = [[_e(r[k]) for k in ("dataset", "model", "criterion", "subset", "batch_size", "learning_rate",
                                "lambda_param", "nasa_weight", "dropout", "n_seeds")]
            + [_with_ci(r, m) for m in METRICS]
            + [_e(r["indistinguishable_configs"]), f"<code>{_e(r['retrain_command'])}</code>"]
            for _, r in best.iterrows()]
    return _table(headers, rows)


def _charts_section(res: AnalysisResult) -> str:
    parts = [f"<p>{_e(n)}</p>" for n in res.notes]
    for name, paths in res.charts.items():
        data = base64.b64encode(Path(paths["png"]).read_bytes()).decode("ascii")
        rel = f"{PLOTS_DIR}/{name}.html"
        parts.append(f'<h3>{_e(name.replace("_", " "))}</h3><p><a href="{_e(rel)}">interactive version</a></p>'
                     f'<img alt="{_e(name)}" src="data:image/png;base64,{data}">')
    return "".join(parts)


CSS = ("body{font-family:sans-serif;margin:2em;max-width:1600px}table{border-collapse:collapse;font-size:13px}"
       "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#eee}"
       "img{max-width:100%;border:1px solid #ddd}pre{white-space:pre-wrap;margin:0;max-width:60em}"
       "code{font-size:11px}")


def render_report(res: AnalysisResult) -> str:
    """The self-contained report.html text (PNG charts embedded as base64, data escaped)."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    no_results = "" if res.counts["records"] else "<p><strong>No results yet.</strong></p>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>DDRSA sweep report</title>"
            f"<style>{CSS}</style></head><body><h1>DDRSA sweep report</h1>"
            f"<p>Folder: <code>{_e(res.output_dir)}</code>; generated {_e(stamp)}.</p>{no_results}"
            f"<h2>Sweep summary</h2>{_summary_section(res)}"
            f"<h2>Best configurations</h2><p>Metric values are means across seeds; 95% t-interval in brackets "
            f"(none with one seed).</p>{_best_section(res.best)}"
            f"<h2>Charts</h2>{_charts_section(res)}</body></html>")


def headline_markdown(res: AnalysisResult) -> str:
    """Markdown headline: best model per dataset (lowest mean RMSE), counts, where the files are."""
    c = res.counts
    lines = ["# DDRSA sweep headline", "",
             f"{c['completed']} completed, {c['failed']} failed, {c['diverged']} diverged, "
             f"{c['pending']} pending (of {c['total']}); {c['collapsed']} collapsed (constant prediction).", ""]
    best = res.best[res.best["criterion"] == "RMSE"] if len(res.best) else res.best
    if not len(best):
        lines.append("No results yet.")
    for dataset, g in (best.groupby("dataset") if len(best) else []):
        r = g.loc[g["rul_rmse"].idxmin()]
        lines.append(f"- **{dataset}**: `{r['model']}` (bs {r['batch_size']:g}, lr {r['learning_rate']:g}, "
                     f"lambda {r['lambda_param']:g}, nasa {r['nasa_weight']:g}, dropout {r['dropout']:g}): "
                     f"RMSE {r['rul_rmse']:.3f}, MAE {r['rul_mae']:.3f} steps, C-index "
                     f"{r['concordance_index']:.3f}, NASA {r['nasa_score']:.4g} ({r['n_seeds']} seeds)")
    lines += ["", f"Report: `{res.files.get('report', '')}`", f"Charts: `{res.output_dir / PLOTS_DIR}`",
              f"Tables: `{res.files.get('summary_statistics', '')}`, `{res.files.get('best_configurations', '')}`"]
    return "\n".join(lines)
