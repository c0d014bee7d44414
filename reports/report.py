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
from reports.benchmark import benchmark_lines, benchmark_summary, has_benchmark, write_benchmark_section
from reports.history import append_history, read_history
from reports.leaderboard import COLUMNS as LEADERBOARD_COLUMNS
from reports.leaderboard import CSS as LEADERBOARD_CSS
from reports.leaderboard import TOP_N, leaderboard_frame, leaderboard_html
from reports.policy_charts import intervention_headline, intervention_trade_off
from reports.tables import (
    HYPERPARAMETERS,
    METRICS,
    SELECTED_ON_TEST,
    SELECTED_ON_VALIDATION,
    UNKNOWN_SOURCE,
    best_configurations,
    completed,
    data_source_line,
    data_sources,
    is_generated,
    load_gpu_samples,
    load_learning_curves,
    load_manifest,
    load_records,
    manifest_miss_rate,
    records_frame,
    summary_statistics,
    sweep_counts,
    write_atomic,
    write_csv,
)
from reports.uncertainty import OVER_SEEDS, Interval
from reports.vega_page import PageCharts
from reports.winners import HP_LABELS, Answer, answers, config_label, interval_text
from reports.yardsticks import (
    PredictionCache,
    annotate_best,
    annotate_board,
    ensure_intervals,
    floor_sentence,
    headline_verdicts,
    is_baseline,
    unit_interval_text,
)

PLOTS_DIR = "analysis_plots"
NO_GPU_NOTE = "no GPU samples recorded (no GPU on the machine that ran the sweep)"
SELECTION_SENTENCE = (
    "Winners are chosen on the validation units (best mean validation value of the criterion "
    'across seeds; Welch\'s test on validation values for "indistinguishable"); the numbers '
    "shown are that configuration's test metrics (mean across seeds, with a 95% t-interval where 2 "
    "or more seeds ran), which played no part in choosing it."
)
# what each data_source means for the numbers (ddrsa.data.loader writes the value)
SOURCE_MEANING = {
    "real": "real data files",
    "real-no-telemetry": "REAL data WITHOUT telemetry: error counts, time since each component's maintenance, "
    "machine model and age only (no sensor channels)",
    "synthetic": "SYNTHETIC: generated data of the same schema, no real files; the numbers say nothing about "
    "real machines",
    "real+synthetic-telemetry": "PARTLY GENERATED: real event files with generated telemetry whose drifts were "
    "placed before the real failures; the numbers are circular, not evidence",
    UNKNOWN_SOURCE: "not recorded (results written before data_source was stored)",
}


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
    data_sources: dict[str, list[str]] = field(default_factory=dict)
    benchmark_html: str = ""  # "Benchmark vs literature" section; "" without C-MAPSS benchmark metrics
    benchmark: list[str] = field(default_factory=list)  # benchmark_lines(): one per subset on official test units
    specs: dict[str, dict] = field(default_factory=dict)  # chart name -> Vega-Lite spec (interactive in the report)
    leaderboard: pd.DataFrame | None = None  # every configuration, seeds pooled (reports.leaderboard)
    verdicts: dict = field(default_factory=dict)  # (dataset, subset) -> reports.yardsticks.GroupVerdict
    predictions: PredictionCache | None = None  # per-run predictions, intervals over test units


HP_CHARTS = {
    "batch_size": ("batch_size_analysis", ch.batch_size_analysis),
    "learning_rate": ("learning_rate_analysis", ch.learning_rate_analysis),
    "nasa_weight": ("nasa_loss_impact", ch.nasa_loss_impact),
}


def constant_note(done: pd.DataFrame) -> str:
    """One sentence for the hyperparameters constant over the whole sweep (no chart, no panel)."""
    fixed = [
        f"{HP_LABELS[hp]} {done[hp].dropna().iloc[0]:g}"
        for hp in HYPERPARAMETERS
        if hp in done and done[hp].nunique(dropna=True) == 1
    ]
    return f"Constant in this sweep, so not charted: {', '.join(fixed)}." if fixed else ""


def build_charts(
    done: pd.DataFrame,
    output_dir: str | os.PathLike,
    history: pd.DataFrame | None = None,
    gpu: pd.DataFrame | None = None,
) -> dict:
    """name -> Altair chart for the completed runs `done` (non-empty); gpu/history when given."""
    charts = {
        f"{m}_vs_hyperparameters": ch.metric_vs_hyperparameters(done, m)
        for m in ("rul_mae", "rul_rmse", "concordance_index")
    }
    charts["model_comparison"] = ch.model_comparison(done)
    for hp, (name, draw) in HP_CHARTS.items():  # a chart of a constant hyperparameter says nothing
        if done[hp].nunique(dropna=True) > 1:
            charts[name] = draw(done)
    charts.update(
        hyperparameter_heatmap=ch.hyperparameter_heatmap(done),
        learning_curves=ch.learning_curves(load_learning_curves(output_dir, done)),
        parallel_coordinates=ch.parallel_coordinates(done),
    )
    if gpu is not None and len(gpu):
        charts["gpu_utilization"] = ch.gpu_utilization(gpu)
    if history is not None and len(history):
        charts["history_trend"] = ch.history_trend(history)
    return charts


def run_analysis(
    output_dir: str | os.PathLike, append_to_history: bool = False, run_label: str | None = None, charts: bool = True
) -> AnalysisResult:
    """Read the sweep folder, write CSVs, charts (html+png; skipped if not `charts`) and report.html."""
    out = Path(output_dir).resolve()
    records, manifest = load_records(out), load_manifest(out)
    df = records_frame(records, miss_rate=manifest_miss_rate(manifest))  # --miss-rate: intervention criterion
    done = completed(df).dropna(subset=list(METRICS), how="all")
    cache = PredictionCache(out)  # baselines, intervals over test units, paired comparisons (reports.yardsticks)
    verdicts = headline_verdicts(df, cache)
    res = AnalysisResult(
        out,
        sweep_counts(records, manifest),
        manifest,
        df,
        summary_statistics(df),
        annotate_best(best_configurations(df, str(output_dir)), df, cache, verdicts),
        data_sources=data_sources(df),
        verdicts=verdicts,
        predictions=cache,
    )
    if note := selection_note(res.best):
        res.notes.append(note)
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
        if note := constant_note(done):
            res.notes.append(note)
    if charts and not len(done) and len(history):
        done_charts["history_trend"] = ch.history_trend(history)
    from reports.search_charts import SEARCH_CHART, compute_sentence, rung_chart  # --search halving|tpe

    if sentence := compute_sentence(records, manifest):
        res.notes.insert(0, sentence)
    if charts and (rungs := rung_chart(records, out)) is not None:
        done_charts[SEARCH_CHART] = rungs
    if charts and (oti := intervention_trade_off(records, res.best)) is not None:  # reports/policy_charts.py
        done_charts["intervention_trade_off"] = oti
    for name, chart in done_charts.items():
        res.specs[name] = chart.to_dict()
        res.charts[name] = ch.save_chart(chart, out / PLOTS_DIR, name, spec=res.specs[name])
    ensure_intervals(df, cache, verdicts)
    res.leaderboard = annotate_board(leaderboard_frame(df), df, cache)
    res.benchmark_html = benchmark_section(records, out, charts, cache)
    res.benchmark = benchmark_lines(records, out)
    res.files["report"] = write_atomic(out / "report.html", render_report(res))
    return res


def benchmark_section(records: list[dict], out: Path, charts: bool = True, cache: PredictionCache | None = None) -> str:
    """ "Benchmark vs literature" for runs under the literature protocol only (official test units),
    baselines and intervals over test units included (`cache`: the run folders' predictions); one
    line says why runs on held-out units are left out."""
    official = [r for r in records if r.get("test_split") == "official"]
    held_out = has_benchmark([r for r in records if r.get("test_split") != "official"])
    summary = benchmark_summary(official, out, cache) if has_benchmark(official) else None
    html_text = write_benchmark_section(official, out, PLOTS_DIR, charts=charts, summary=summary)
    if not held_out:
        return html_text
    why = (
        "<p class='small' id='benchmark-left-out'>Runs scored on held-out training units are left out: the "
        "literature scores the official test units (RUL_FD00x.txt), so their numbers are not comparable."
        "</p>"
    )
    if not html_text:
        return f"<h2>Benchmark vs literature</h2>{why}<p>No run used the literature protocol (test_split official).</p>"
    return html_text.replace("<h2>Benchmark vs literature</h2>", f"<h2>Benchmark vs literature</h2>{why}", 1)


# ---------------------------------------------------------------- selection and data source texts
def source_meaning(source: str) -> str:
    """What a data_source value means for the numbers, in words."""
    if source in SOURCE_MEANING:
        return SOURCE_MEANING[source]
    return "partly or fully GENERATED data" if is_generated(source) else source


def generated_sources(sources: dict[str, list[str]]) -> dict[str, list[str]]:
    """The datasets (and their values) whose data is synthetic or partly generated."""
    return {
        ds: [v for v in vals if is_generated(v)] for ds, vals in sources.items() if any(is_generated(v) for v in vals)
    }


def banner_title(sources: dict[str, list[str]]) -> str:
    """'SYNTHETIC DATA' or 'SYNTHETIC OR PARTLY GENERATED DATA'; '' when nothing is generated."""
    gen = {v for vals in generated_sources(sources).values() for v in vals}
    if not gen:
        return ""
    return "SYNTHETIC DATA" if gen == {"synthetic"} else "SYNTHETIC OR PARTLY GENERATED DATA"


def selection_note(best: pd.DataFrame) -> str:
    """'' when every winner was chosen on validation data, else a warning naming the fallback."""
    if not len(best):
        return ""
    fallback = best[best["selected_on"] != SELECTED_ON_VALIDATION]
    if not len(fallback):
        return ""
    reasons = "; ".join(sorted(set(fallback["selected_on"])))
    return (
        f"Ranking falls back to test metrics for {len(fallback)} of {len(best)} best-configuration rows "
        f"(selected_on: {reasons}): those winners were chosen on the test set, so their test numbers are "
        "optimistically biased. Records written by this version carry validation metrics; re-run those "
        "experiments to rank them on validation."
    )


def selection_sentences(best: pd.DataFrame) -> list[str]:
    """What chose the winners, in words: the validation sentence (when any row was chosen on
    validation) and the fallback warning (when any row was not)."""
    on_val = len(best) and (best["selected_on"] == SELECTED_ON_VALIDATION).any()
    return [t for t in ((SELECTION_SENTENCE if on_val else ""), selection_note(best)) if t]


def selection_summary(best: pd.DataFrame) -> str:
    """'validation', the fallback text, or 'validation and test (...)' for a mixed folder."""
    values = sorted(set(best["selected_on"])) if len(best) else []
    if not values:
        return "nothing to rank yet"
    return " and ".join(values)


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
    parts = [
        _table(
            ["total", "completed", "failed", "diverged", "collapsed", "pending"],
            [[_e(c[k]) for k in ("total", "completed", "failed", "diverged", "collapsed", "pending")]],
        )
    ]
    grid = m.get("grid") or {}
    if grid:
        parts.append(
            "<h3>Grid</h3>"
            + _table(
                ["flag", "values"],
                [[_e(k), _e(", ".join(map(str, v)) if isinstance(v, list) else v)] for k, v in grid.items()],
            )
        )
    parts.append(
        f"<p>Wall time: {_wall_time(res.manifest)}. Code version: {_e(m.get('code_version', 'unknown'))}."
        f" Manifest: {'present' if res.manifest else 'absent'}.</p>"
    )
    df = res.records
    bad = df[df["status"].isin(["failed", "diverged"])] if len(df) else df
    if len(bad):
        parts.append(
            "<h3>Failed and diverged experiments (excluded from rankings)</h3>"
            + _table(
                ["name", "status", "diverged epoch", "attempts", "error"],
                [
                    [
                        _e(r["name"]),
                        _e(r["status"]),
                        _e(r.get("diverged_epoch")),
                        _e(r.get("attempts")),
                        f"<pre>{_e(r.get('error'))}</pre>",
                    ]
                    for _, r in bad.iterrows()
                ],
            )
        )
    col = df[df["collapsed"]] if len(df) else df
    if len(col):
        parts.append(
            "<h3>Collapsed (constant prediction)</h3><p>Completed, but the model predicts one value "
            "for every window; ranked, but treat with suspicion.</p>"
            + _table(
                ["name", "RUL MAE", "RUL RMSE", "C-index"],
                [
                    [_e(r["name"]), _e(r["rul_mae"]), _e(r["rul_rmse"]), _e(r["concordance_index"])]
                    for _, r in col.iterrows()
                ],
            )
        )
    return "".join(parts)


def _best_section(best: pd.DataFrame) -> str:
    """Best configuration per dataset, model and criterion: the hyperparameters that vary first and
    the test RMSE/C-index; the constant hyperparameters and the other columns behind the
    'show every column' toggle (class `more`)."""
    if not len(best):
        return "<p>No results yet.</p>"
    note = selection_note(best)
    intro = "".join(
        f"<p class='warn'>{_e(t)}</p>" if t == note else f"<p>{_e(t)}</p>" for t in selection_sentences(best)
    )
    varying = [hp for hp in HYPERPARAMETERS if best[hp].nunique(dropna=True) > 1]
    labels = {
        "batch_size": "batch size",
        "learning_rate": "learning rate",
        "lambda_param": "lambda",
        "nasa_weight": "NASA weight",
        "dropout": "dropout",
    }
    # (header, cell of a row, shown without the toggle)
    cols = (
        [
            ("dataset", lambda r: _e(r["dataset"]), True),
            ("model", lambda r: _e(f"{r['model']} (baseline)" if is_baseline(r["model"]) else r["model"]), True),
            ("criterion", lambda r: _e(r["criterion"]), True),
        ]
        + [(labels[hp], (lambda r, hp=hp: _e(r[hp])), True) for hp in varying]
        + [
            ("seeds", lambda r: _e(r["n_seeds"]), True),
            ("test RUL RMSE (steps) [95% CI]", lambda r: _with_ci(r, "rul_rmse"), True),
            ("test RUL RMSE: 95% over test units", lambda r: _e(_units(r)), True),
            (
                "paired comparison over the same test units (winner minus other)",
                lambda r: _e("; ".join(_comparisons(r))),
                True,
            ),
            ("test C-index [95% CI]", lambda r: _with_ci(r, "concordance_index"), True),
            ("test RUL MAE (steps) [95% CI]", lambda r: _with_ci(r, "rul_mae"), False),
            ("test NASA score [95% CI]", lambda r: _with_ci(r, "nasa_score"), False),
            ("selected on", lambda r: _e(r["selected_on"]), False),
            ("ranked on (mean)", lambda r: _e(r["selection_score"]), False),
            ("data source", lambda r: _e(r["data_source"]), False),
            ("subset", lambda r: _e(r["subset"]), False),
        ]
        + [(labels[hp], (lambda r, hp=hp: _e(r[hp])), False) for hp in HYPERPARAMETERS if hp not in varying]
        + [
            ("indistinguishable configs", lambda r: _e(r["indistinguishable_configs"]), False),
            (
                "retrain command",
                lambda r: f"<details><summary>command</summary><code>{_e(r['retrain_command'])}</code></details>",
                False,
            ),
        ]
    )
    head = "".join(f"<th{'' if shown else ' class=more'}>{_e(h)}</th>" for h, _, shown in cols)
    body = "".join(
        "<tr>" + "".join(f"<td{'' if shown else ' class=more'}>{cell(r)}</td>" for _, cell, shown in cols) + "</tr>"
        for _, r in best.iterrows()
    )
    return intro + f"<table id='best-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _units(r: pd.Series) -> str:
    """`[lo, hi] over test units`: the test RMSE's interval over test units of a best_configurations
    row, or `over test units: unavailable (...)`."""
    low = r.get("rul_rmse_units_low", math.nan)
    return unit_interval_text(
        None if pd.isna(low) else Interval(math.nan, low, r["rul_rmse_units_high"], 0, 0, 0, 0), ".4g"
    )


def _comparisons(r: pd.Series) -> list[str]:
    """The paired comparisons a best_configurations row carries (the headline winner's RMSE row)."""
    return [r[c] for c in ("vs_best_baseline_text", "vs_runner_up_text") if isinstance(r.get(c), str) and r[c]]


def _banner(sources: dict[str, list[str]]) -> str:
    """A loud banner when anything is synthetic or partly generated; '' otherwise."""
    if not (title := banner_title(sources)):
        return ""
    gen = generated_sources(sources)
    items = "".join(
        f"<li><b>{_e(ds)}</b>: {_e(' + '.join(v))} ({_e('; '.join(map(source_meaning, v)))})</li>"
        for ds, v in gen.items()
    )
    return (
        f"<div class='banner'><h2>WARNING: {_e(title)}</h2><ul>{items}</ul><p>Every number for "
        "these datasets comes from generated data, not from real machines.</p></div>"
    )


def _data_header(sources: dict[str, list[str]]) -> str:
    """What each dataset ran on (dataset, data source, what it means)."""
    if not sources:
        return ""
    rows = [[f"<b>{_e(ds)}</b>", _e(" + ".join(v)), _e("; ".join(map(source_meaning, v)))] for ds, v in sources.items()]
    return "<h2>Data</h2>" + _table(["dataset", "data source", "what it means"], rows)


def _badge(source: str) -> str:
    """A coloured data-source badge: green real, amber real without telemetry/unknown, red generated."""
    kind = "gen" if is_generated(source) else "real" if source == "real" else "part"
    return f"<span class='badge badge-{kind}' title='{_e(source_meaning(source))}'>data: {_e(source)}</span>"


def _metric_cell(label: str, row: pd.Series, m: str) -> str:
    return f"<div class='metric'><span>test {_e(label)}</span><b>{_e(interval_text(row, m))}</b></div>"


def _card(a: Answer, yardstick_lines: list[str] = ()) -> str:
    """One dataset's answer: the winner with its varying hyperparameters, test metrics with what
    each interval covers, runner-up and margin, best baseline; or 'no model beats the floor'.
    `yardstick_lines`: the interval over test units, the paired comparisons and the age-only floor."""
    w = a.winner
    if w is None:
        return f"<div class='card'><h3>{_e(a.where)}</h3><p>{_e('; '.join(a.notes))}</p></div>"
    hps = ", ".join(f"{HP_LABELS[hp]} {w[hp]:g}" for hp in HYPERPARAMETERS)
    on = (
        f"chosen on validation RMSE {w['rank_value']:.4g}"
        if w["selected_on"] == SELECTED_ON_VALIDATION
        else f"chosen on {w['selected_on']}"
    )
    metrics = "".join(
        _metric_cell(label, w, m) for label, m in (("RMSE (steps)", "rul_rmse"), ("C-index", "concordance_index"))
    )
    if a.floor:
        verdict = (
            f"<p class='floor'><b>No model beats the floor</b>: {_e(a.floor)}. Best DDRSA configuration "
            f"{_e(config_label(w, a.varying))}, not a winner.</p>"
        )
    else:
        verdict = f"<p class='winner'>Winner: <b>{_e(config_label(w, a.varying))}</b></p>"
    runner = (
        f"<p class='small'>Runner-up: {_e(config_label(a.runner_up, a.varying))}, test RMSE "
        f"{_e(interval_text(a.runner_up, 'rul_rmse'))}. Margin: {_e(a.margin)}.</p>"
        if a.runner_up is not None
        else f"<p class='small'>{_e(a.margin)}.</p>"
    )
    base = (
        f"<p class='small'>Best baseline: {_e(a.baseline['model'])}, test RMSE "
        f"{_e(interval_text(a.baseline, 'rul_rmse'))}.</p>"
        if a.baseline is not None
        else ""
    )
    extra = "".join(f"<p class='small'>{_e(t)}</p>" for t in yardstick_lines if t)
    return (
        f"<div class='card'><h3>{_e(a.where)} {_badge(w['data_source'])}</h3>{verdict}"
        f"<p class='small'>{_e(w['model'])}: {_e(hps)}; {_e(_seeds(w['n_seeds']))}; {_e(on)}</p>"
        f"<div class='metrics'>{metrics}</div>{runner}{base}{extra}</div>"
    )


def _yardstick_lines(res: AnalysisResult, dataset: str, subset) -> list[str]:
    """The best RMSE row's interval over test units and paired comparisons (reports.yardsticks), and the
    age-only floor sentence, for one dataset (and subset)."""
    best = res.best
    rows = best[(best["dataset"] == dataset) & ((best["subset"] == subset) | pd.isna(subset))] if len(best) else best
    with_pairs = [r for _, r in rows.iterrows() if _comparisons(r)]
    lines = [f"test RMSE {_units(r)}" for r in with_pairs[:1]] + (_comparisons(with_pairs[0]) if with_pairs else [])
    return lines + [floor_sentence(res.records, dataset, subset)]


def _headline_section(res: AnalysisResult) -> str:
    """The answer per dataset (and C-MAPSS subset): `reports.winners.answers` over the leaderboard
    (ranked on validation RMSE, yardsticks never the winner), one card each."""
    board = res.leaderboard if res.leaderboard is not None else leaderboard_frame(res.records)
    items = answers(board)
    if not items:
        return "<p>No results yet.</p>"
    note = selection_note(res.best)
    intro = "".join(
        f"<p class='warn'>{_e(t)}</p>" if t == note else f"<p>{_e(t)}</p>" for t in selection_sentences(res.best)
    )
    cards = "".join(_card(a, _yardstick_lines(res, a.dataset, a.subset)) for a in items)
    return (
        intro + f"<div class='cards'>{cards}</div><p class='small'>Each interval says what it covers "
        "(a t-interval over seeds needs 2 or more seeds; with 1 seed there is none). RUL errors in "
        "steps (cycles for C-MAPSS). A winner must beat the age-only floor (km baseline, when run) and "
        "chance (C-index 0.5).</p>"
    )


LEADERBOARD_MORE = ("subset", "rul_mae", "nasa_score", "data_source")  # behind the toggle, with constant columns


def leaderboard_hidden(board: pd.DataFrame) -> list[str]:
    """Leaderboard fields shown only with 'show every column': the constant hyperparameters, the
    kind when no baseline ran, the interval over test units when no run stored predictions, and
    LEADERBOARD_MORE (a column that varies stays, the subset when several ran)."""
    hidden = [hp for hp in HYPERPARAMETERS if hp in board and board[hp].nunique(dropna=True) <= 1]
    if "kind" in board and board["kind"].nunique() <= 1:  # no baseline ran: every row is DDRSA
        hidden.append("kind")
    if "rul_rmse_units_low" in board and board["rul_rmse_units_low"].isna().all():  # no predictions stored
        hidden.append("rul_rmse_units_low")
    return hidden + [f for f in LEADERBOARD_MORE if not (f == "subset" and board[f].nunique() > 1)]


def _hide_columns_css(fields: list[str]) -> str:
    """CSS hiding the leaderboard's columns `fields` (by position in reports.leaderboard.COLUMNS)
    until the 'show every column' toggle is on."""
    positions = [i + 1 for i, (f, _, _) in enumerate(LEADERBOARD_COLUMNS) if f in fields]
    rules = ",".join(f"body:not(.all-cols) #leaderboard tr>:nth-child({k})" for k in positions)
    return f"<style>{rules}{{display:none}}</style>" if rules else ""


TOGGLE = (
    "<label class='toggle'><input type='checkbox' onchange=\"document.body.classList.toggle('all-cols', "
    "this.checked); document.querySelectorAll('.toggle input').forEach(i => i.checked = this.checked)\"> "
    "show every column (constant hyperparameters, MAE, NASA score, data "
    "source)</label>"
)


def _leaderboard_section(res: AnalysisResult) -> str:
    board = res.leaderboard if res.leaderboard is not None else leaderboard_frame(res.records)
    if not len(board):
        return "<p>No completed configurations yet.</p>"
    return (
        "<p>Every configuration (its seeds pooled), ranked within its dataset on validation RMSE; test metrics "
        f"shown. Top {TOP_N} by default.</p>"
        + TOGGLE
        + _hide_columns_css(leaderboard_hidden(board))
        + leaderboard_html(board, str(res.output_dir))
    )


def _charts_section(res: AnalysisResult, page: PageCharts) -> str:
    """Each chart interactive (its spec through `page`; a PNG for charts without a spec), with
    links to its own HTML and PNG in analysis_plots/."""
    parts = [f"<p>{_e(n)}</p>" for n in res.notes]
    for name, paths in res.charts.items():
        rel = f"{PLOTS_DIR}/{name}"
        links = (
            f'<p class="small">files: <a href="{_e(rel)}.html">{_e(name)}.html</a>, <a href="{_e(rel)}.png">PNG</a></p>'
        )
        if name in res.specs:
            body = page.add(name, res.specs[name])
        else:
            data = base64.b64encode(Path(paths["png"]).read_bytes()).decode("ascii")
            body = f'<img alt="{_e(name)}" src="data:image/png;base64,{data}">'
        parts.append(f'<h3 id="{_e(name)}">{_e(name.replace("_", " "))}</h3>{links}{body}')
    return "".join(parts)


CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1600px}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#eee}"
    "img{max-width:100%;border:1px solid #ddd}pre{white-space:pre-wrap;margin:0;max-width:60em}"
    "code{font-size:11px}.banner{background:#b00020;color:#fff;padding:0.6em 1.2em;border:4px solid #600;"
    "margin:1em 0}.banner h2{margin:0.2em 0}.warn{background:#fff3cd;border:2px solid #b8860b;padding:0.5em}"
    ".cards{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #bbb;border-radius:6px;padding:0.6em 1em;"
    "min-width:22em;max-width:34em;background:#fcfcff;box-sizing:border-box}.card h3{margin:0.2em 0}.metrics{display:flex;gap:1.2em;"
    "flex-wrap:wrap}.metric span{display:block;font-size:11px;color:#555}.small{font-size:12px;color:#444}"
    ".badge{font-size:12px;font-weight:normal;padding:1px 7px;border-radius:9px;vertical-align:middle}"
    ".badge-real{background:#d7f5dc;color:#0b5d1e}.badge-part{background:#fff0c2;color:#7a5200}"
    ".badge-gen{background:#b00020;color:#fff}.vchart{margin:0.3em 0 1.5em 0;min-height:40px}"
    "td{overflow-wrap:anywhere}body:not(.all-cols) .more{display:none}.toggle{display:block;margin:0.4em 0;"
    "font-size:13px}.floor{background:#fff3cd;border:2px solid #b8860b;padding:0.3em}.winner{margin:0.3em 0}"
    + LEADERBOARD_CSS
)


def render_report(res: AnalysisResult) -> str:
    """The self-contained report.html text: headline and leaderboard first, charts interactive
    (Vega bundle and chart data inlined once, `reports.vega_page`), data escaped."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    no_results = "" if res.counts["records"] else "<p><strong>No results yet.</strong></p>"
    page = PageCharts()
    charts = _charts_section(res, page)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>DDRSA sweep report</title>"
        f"<style>{CSS}</style></head><body><h1>DDRSA sweep report</h1>"
        f"<p>Folder: <code>{_e(res.output_dir)}</code>; generated {_e(stamp)}.</p>{no_results}"
        f"{_banner(res.data_sources)}"
        f"<h2>Best configuration per dataset</h2>{_headline_section(res)}"
        f"<h2>Leaderboard</h2>{_leaderboard_section(res)}"
        f"{_data_header(res.data_sources)}"
        f"<h2>Sweep summary</h2>{_summary_section(res)}"
        f"<h2>Best configurations per model and criterion</h2><p>Metric values are means across seeds; 95% "
        f"t-interval over seeds in brackets where 2 or more seeds ran (none with 1 seed).</p>{TOGGLE}"
        f"{_best_section(res.best)}"
        f"{res.benchmark_html}<h2>Charts</h2>{charts}{page.scripts()}</body></html>"
    )


def _headline_winner(g: pd.DataFrame) -> tuple[pd.Series | None, str]:
    """The RMSE-criterion row to headline among a dataset's models, and what chose it.

    Models are compared on their validation RMSE when every row was selected on validation;
    otherwise (old records) on test RMSE, and the text says so. Baselines are never the winner."""
    if (~g["model"].map(is_baseline)).any():
        g = g[~g["model"].map(is_baseline)]
    chosen_on = set(g["selected_on"])
    if chosen_on == {SELECTED_ON_VALIDATION}:
        return g.loc[g["selection_score"].idxmin()], SELECTED_ON_VALIDATION
    reason = chosen_on.pop() if len(chosen_on) == 1 else SELECTED_ON_TEST
    return g.loc[g["rul_rmse"].idxmin()], reason


def _ci_text(r: pd.Series, m: str, fmt: str) -> str:
    low, high = r[f"{m}_ci_low"], r[f"{m}_ci_high"]
    if isinstance(low, float) and not math.isnan(low):
        return f"{r[m]:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
    return f"{r[m]:{fmt}}"


def _seeds(n) -> str:
    return f"{int(n)} seed" + ("" if int(n) == 1 else "s")


def winner_lines(res: AnalysisResult, markdown: bool = False) -> list[str]:
    """One line per dataset (and C-MAPSS subset): the best model (RMSE criterion, chosen on
    validation RMSE; never a baseline) with its hyperparameters and test metrics (mean [95% CI]
    over seeds), its test RMSE's interval over test units and its paired comparisons with the best
    baseline and the runner-up (`reports.yardsticks`)."""
    best = res.best[res.best["criterion"] == "RMSE"] if len(res.best) else res.best
    lines = []
    for (dataset, subset), g in best.groupby(["dataset", "subset"]) if len(best) else []:
        r, chosen_on = _headline_winner(g)
        if r is None:
            continue
        where = f"{dataset} {subset}" if dataset == "turbofan" and subset else dataset
        on = (
            f"selected on validation RMSE {r['selection_score']:.3f}"
            if chosen_on == SELECTED_ON_VALIDATION
            else f"selected on {chosen_on}"
        )
        name, model = (f"**{where}**", f"`{r['model']}`") if markdown else (where, r["model"])
        lines.append(
            f"{name} (data: {r['data_source']}): {model} (bs {r['batch_size']:g}, "
            f"lr {r['learning_rate']:g}, lambda {r['lambda_param']:g}, nasa {r['nasa_weight']:g}, "
            f"dropout {r['dropout']:g}): test RMSE {_ci_text(r, 'rul_rmse', '.3f')}, "
            f"MAE {_ci_text(r, 'rul_mae', '.3f')} steps, C-index {_ci_text(r, 'concordance_index', '.3f')}, "
            f"NASA {r['nasa_score']:.4g} ({_seeds(r['n_seeds'])}; intervals {OVER_SEEDS}); {on}; "
            f"test RMSE {_units(r)}" + "".join(f"; {t}" for t in _comparisons(r))
        )
    return lines


def headline_markdown(res: AnalysisResult) -> str:
    """Markdown headline: data sources (a warning when generated), the best model per dataset (and
    C-MAPSS subset; RMSE criterion, chosen on validation RMSE) with its test metrics, counts, files."""
    c = res.counts
    lines = ["# DDRSA sweep headline", ""]
    if title := banner_title(res.data_sources):
        gen = generated_sources(res.data_sources)
        lines += [
            f"> **WARNING: {title}**: "
            + "; ".join(f"{ds}: {' + '.join(v)}" for ds, v in gen.items())
            + ". These numbers come from generated data, not from real machines.",
            "",
        ]
    lines += [f"Data: {data_source_line(res.data_sources, warn=False)}."]
    lines += [
        f"- {ds}: {' + '.join(v)} = {'; '.join(map(source_meaning, v))}"
        for ds, v in res.data_sources.items()
        if any(x != "real" for x in v)
    ]
    lines += [""]
    note = selection_note(res.best)
    for text in selection_sentences(res.best):
        lines += [f"> **Note**: {text}" if text == note else text, ""]
    lines += [
        f"{c['completed']} completed, {c['failed']} failed, {c['diverged']} diverged, "
        f"{c['pending']} pending (of {c['total']}); {c['collapsed']} collapsed (constant prediction).",
        "",
    ]
    winners = winner_lines(res, markdown=True)
    lines += [f"- {w}" for w in winners] or ["No results yet."]
    lines += [f"- {w}" for w in intervention_headline(res.best, manifest_miss_rate(res.manifest))]
    floors = [floor_sentence(res.records, ds, sub) for ds, sub in res.verdicts]
    lines += [""] + [f for f in floors if f] if any(floors) else []
    lines += [
        "",
        f"Report: `{res.files.get('report', '')}`",
        f"Charts: `{res.output_dir / PLOTS_DIR}`",
        f"Tables: `{res.files.get('summary_statistics', '')}`, `{res.files.get('best_configurations', '')}`",
    ]
    return "\n".join(lines)
