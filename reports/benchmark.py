"""C-MAPSS benchmark vs the literature: pure functions of result records (+ one writer).

The benchmark metrics come from `ddrsa.metrics.benchmark_metrics` (one window per official test
unit, prediction capped at 125 cycles): `benchmark_rmse` (truth capped at 125, the literature's
protocol), `benchmark_rmse_uncapped` (raw RUL_FD00x.txt truth) and `benchmark_nasa_score` (sum of
the PHM08 score over the test units, truth capped at 125). Units: cycles for RMSE, unitless score.

Per subset (and test split), the configuration (model + hyperparameters, seeds pooled) is chosen on
its mean `val_benchmark_rmse` across seeds when every run carries it (the benchmark protocol on the
validation units: random truncations, truth capped at 125), else on its mean VALIDATION RMSE (`reports.tables.ranking_metric`, which falls back to the test
metric, and says so, for records without validation metrics); its benchmark metrics are reported as
mean, sample sd and 95% t-interval across seeds ("over seeds"), and the capped RMSE also with its 95%
bootstrap interval over the official test units ("over test units", `reports.uncertainty`; the
metric of each resample averaged over the seeds). Baselines (`ddrsa.config.BASELINE_MODELS`) never
compete: the chosen configuration is the best DDRSA one, each baseline model's best configuration
is a row of its own (`role` "baseline"), and the chosen row carries the paired comparisons against
the best baseline and the runner-up (`reports.yardsticks`). Published numbers are in
`literature_cmapss.csv` next to this file (method, year, subset, rmse, score, source, note).
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path

import altair as alt
import pandas as pd

from ddrsa.metrics import VAL_BENCHMARK_NASA_SCORE, VAL_BENCHMARK_RMSE
from reports.tables import HYPERPARAMETERS, completed, records_frame, t_interval
from reports.uncertainty import BENCHMARK_RMSE, OVER_SEEDS, OVER_UNITS
from reports.yardsticks import PredictionCache, by_config, group_verdict, unit_interval_text

LITERATURE_FILE = Path(__file__).with_name("literature_cmapss.csv")
BENCHMARK_METRICS = ("benchmark_rmse", "benchmark_rmse_uncapped", "benchmark_nasa_score")
SELECTION_METRIC = "rul_rmse"  # fallback: lowest mean val_rul_rmse across seeds
# the winner per subset: lowest mean val_benchmark_rmse across seeds (random truncations of the
# validation units, truth capped at 125: ddrsa.metrics.val_benchmark_metrics) when every run has it
SELECTED_ON_VAL_BENCHMARK = "validation (benchmark protocol)"
THIS_PROJECT = "this project"
PUBLISHED = "published"
BASELINE_KIND = "baseline (this project)"
CHOSEN, BASELINE = "chosen", "baseline"
COMPARISONS = ("vs_best_baseline", "vs_runner_up")
COMPARISON_FIELDS = ("model", "metric", "diff", "low", "high", "share_better", "text")
OFFICIAL = "official"
SPLIT_MEANING = {
    OFFICIAL: "official protocol: every training unit trains or validates",
    "held-out": "NOT the literature protocol: part of the training units was held out as a test set, so the "
    "model trained on fewer units",
}
SUMMARY_COLUMNS = (
    [
        "subset",
        "test_split",
        "age_input",
        "role",
        "selected_on",
        "model",
        *HYPERPARAMETERS,
        "n_seeds",
        "n_configs",
        "selection_score",
    ]
    + [f"{m}_{s}" for m in BENCHMARK_METRICS for s in ("mean", "sd", "ci_low", "ci_high")]
    + ["benchmark_rmse_units_low", "benchmark_rmse_units_high", "benchmark_n_units", "comparable", "seeds"]
    + [f"{c}_{f}" for c in COMPARISONS for f in COMPARISON_FIELDS]
)
COMPARISON_COLUMNS = [
    "subset",
    "method",
    "kind",
    "rmse",
    "rmse_low",
    "rmse_high",
    "rmse_unit_low",
    "rmse_unit_high",
    "score",
    "source",
]


def load_literature(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Published C-MAPSS results: method, year, subset, rmse (cycles, truth capped at 125), score, source."""
    lit = pd.read_csv(path or LITERATURE_FILE, dtype={"year": "Int64"})
    lit["note"] = lit["note"].fillna("")
    return lit


def benchmark_runs(records: list[dict]) -> pd.DataFrame:
    """Completed records that carry benchmark metrics: `records_frame` columns plus the
    BENCHMARK_METRICS, `benchmark_n_units`, `benchmark_comparable` and `test_split`."""
    df = records_frame(records)
    if not len(df):
        return df
    extra = {
        m: []
        for m in BENCHMARK_METRICS
        + ("benchmark_n_units", "benchmark_comparable", VAL_BENCHMARK_RMSE, VAL_BENCHMARK_NASA_SCORE)
    }
    for rec in records:
        metrics = rec.get("metrics") or {}
        for m in extra:
            value = metrics.get(m)
            extra[m].append(value if isinstance(value, (int, float)) and value is not None else math.nan)
    for m, values in extra.items():
        df[m] = pd.to_numeric(pd.Series(values, index=df.index), errors="coerce")
    df["test_split"] = df["test_split"].fillna("held-out") if "test_split" in df else "held-out"
    # runs with the unit's age as an input are chosen and reported apart (the literature omits it)
    df["age_input"] = df["age_input"].fillna(False).astype(bool) if "age_input" in df else False
    done = completed(df)
    return done[done["benchmark_rmse"].notna()].reset_index(drop=True) if len(done) else done


def has_benchmark(records: list[dict]) -> bool:
    """True when at least one completed record carries `benchmark_rmse`."""
    return any(
        r.get("status") == "completed" and isinstance((r.get("metrics") or {}).get("benchmark_rmse"), (int, float))
        for r in records
    )


def benchmark_summary(
    records: list[dict], output_dir: str | os.PathLike | None = None, cache: PredictionCache | None = None
) -> pd.DataFrame:
    """Per (subset, test_split, age_input): a `role` "chosen" row, the DDRSA configuration chosen on validation
    (val_benchmark_rmse when every run carries it, else validation RMSE), then one "baseline" row per baseline model (its configuration chosen the same way), each
    with its benchmark metrics across seeds (`<metric>_mean/_sd/_ci_low/_ci_high`, over seeds; sd
    and CI NaN with one seed) and `benchmark_rmse_units_low/_high` (95% over test units, NaN when
    the run folders under `output_dir` hold no predictions). `selected_on` says which data chose
    it, `selection_score` the mean it was ranked on, `n_configs` how many DDRSA configurations
    competed, `comparable` whether every seed's horizon reached the 125-cycle cap. The chosen row
    carries `vs_best_baseline_*` and `vs_runner_up_*` (`reports.yardsticks.Comparison.columns`)."""
    runs = benchmark_runs(records)
    rows = []
    if not len(runs):
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    cache = cache or PredictionCache(output_dir)
    for (subset, split, age), sub in runs.groupby(["subset", "test_split", "age_input"], sort=True):
        verdict = group_verdict(sub, cache, prefer=(VAL_BENCHMARK_RMSE, SELECTED_ON_VAL_BENCHMARK))
        configs, rank_col = by_config(sub), verdict.rank_col
        chosen = [(CHOSEN, verdict.winner)] if verdict.winner else []
        for role, key in chosen + [(BASELINE, k) for k in verdict.baselines]:
            best = configs.runs(key)
            row = _summary_row(
                best, subset, split, role, verdict.selected_on, verdict.n_configs, float(best[rank_col].mean())
            )
            row["age_input"] = bool(age)
            iv = cache.interval(best, BENCHMARK_RMSE)
            row["benchmark_rmse_units_low"], row["benchmark_rmse_units_high"] = (
                (iv.low, iv.high) if iv else (math.nan, math.nan)
            )
            if role == CHOSEN:
                for prefix, comp in zip(COMPARISONS, (verdict.vs_baseline, verdict.vs_runner_up)):
                    if comp is not None:
                        row.update(comp.columns(prefix))
            rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _summary_row(
    best: pd.DataFrame, subset: str, split: str, role: str, selected_on: str, n_configs: int, score: float
) -> dict:
    """A benchmark_summary row of one configuration's runs `best` (its seeds)."""
    first = best.iloc[0]
    row = {
        "subset": subset,
        "test_split": split,
        "role": role,
        "selected_on": selected_on,
        "model": first["model"],
        **{hp: first[hp] for hp in HYPERPARAMETERS},
        "n_seeds": len(best),
        "n_configs": n_configs,
        "selection_score": score,
    }
    for m in BENCHMARK_METRICS:
        values = best[m].dropna().tolist()
        mean, low, high = t_interval(values)
        sd = float(pd.Series(values).std(ddof=1)) if len(values) > 1 else math.nan
        row.update({f"{m}_mean": mean, f"{m}_sd": sd, f"{m}_ci_low": low, f"{m}_ci_high": high})
    row["benchmark_n_units"] = int(best["benchmark_n_units"].max())
    row["comparable"] = bool((best["benchmark_comparable"] == 1).all())
    row["seeds"] = " ".join(str(int(s)) for s in sorted(best["seed"]))
    return row


def comparison_frame(summary: pd.DataFrame, literature: pd.DataFrame) -> pd.DataFrame:
    """Long table for the chart: this project's chosen configuration per subset and its baselines
    (official test split only; mean RMSE with its 95% interval over seeds, `rmse_low/_high`, and
    over test units, `rmse_unit_low/_high`) next to every published value for the same subsets."""
    # the literature comparison uses runs without age input (the literature rarely feeds it)
    ours = summary[(summary["test_split"] == OFFICIAL) & ~summary["age_input"].astype(bool)]
    rows = [
        {
            "subset": r["subset"],
            "method": (f"{THIS_PROJECT}: {r['model']}" if r["role"] == CHOSEN else f"baseline: {r['model']}"),
            "kind": THIS_PROJECT if r["role"] == CHOSEN else BASELINE_KIND,
            "rmse": r["benchmark_rmse_mean"],
            "rmse_low": r["benchmark_rmse_ci_low"],
            "rmse_high": r["benchmark_rmse_ci_high"],
            "rmse_unit_low": r["benchmark_rmse_units_low"],
            "rmse_unit_high": r["benchmark_rmse_units_high"],
            "score": r["benchmark_nasa_score_mean"],
            "source": f"{r['n_seeds']} seeds, chosen on {r['selected_on']}",
        }
        for _, r in ours.iterrows()
    ]
    lit = literature[literature["subset"].isin(set(ours["subset"]))]
    rows += [
        {
            "subset": r["subset"],
            "method": r["method"],
            "kind": PUBLISHED,
            "rmse": r["rmse"],
            "rmse_low": math.nan,
            "rmse_high": math.nan,
            "rmse_unit_low": math.nan,
            "rmse_unit_high": math.nan,
            "score": r["score"],
            "source": r["source"],
        }
        for _, r in lit.iterrows()
    ]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def benchmark_chart(comparison: pd.DataFrame) -> alt.TopLevelMixin:
    """Capped RMSE per method, one panel per subset: this project's chosen configuration and its
    baselines as means with a thick bar (95% over seeds) and a thin bar (95% over test units),
    published values as points (lower is better)."""
    base = alt.Chart(comparison)
    y = alt.Y("method:N", title=None, sort=alt.EncodingSortField("rmse", op="mean"))
    color = alt.Color(
        "kind:N",
        title=None,
        scale=alt.Scale(domain=[THIS_PROJECT, BASELINE_KIND, PUBLISHED], range=["#d62728", "#1f77b4", "#7f7f7f"]),
    )
    points = base.mark_point(filled=True, size=80).encode(
        x=alt.X("rmse:Q", title="RMSE (cycles, truth capped at 125)", scale=alt.Scale(zero=False)),
        y=y,
        color=color,
        tooltip=[
            "subset",
            "method",
            alt.Tooltip("rmse:Q", format=".2f"),
            alt.Tooltip("score:Q", format=".0f"),
            "source",
        ],
    )
    bars = (
        base.transform_filter("isValid(datum.rmse_low)")
        .mark_rule(strokeWidth=4)
        .encode(x="rmse_low:Q", x2="rmse_high:Q", y=y, color=color)
    )
    unit_bars = (
        base.transform_filter("isValid(datum.rmse_unit_low)")
        .mark_rule(strokeWidth=1)
        .encode(x="rmse_unit_low:Q", x2="rmse_unit_high:Q", y=y, color=color)
    )
    return (
        alt.layer(unit_bars, bars, points)
        .properties(width=260, height=180)
        .facet(column=alt.Column("subset:N", title=None))
        .resolve_scale(x="independent", y="independent")
        .properties(
            title=alt.TitleParams(
                "C-MAPSS benchmark vs literature",
                subtitle="this project: mean over seeds, thick bar 95% over seeds, "
                "thin bar 95% over test units; published: one number",
            )
        )
    )


def _batch(value) -> str:
    return "" if pd.isna(value) else str(int(value))


def _e(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def mean_sd_ci(r: pd.Series, m: str, fmt: str, label: bool = False) -> str:
    """`mean ± sd [ci_low, ci_high]` of metric `m` in a benchmark_summary row (the mean alone with
    one seed); `label` adds ' over seeds' after the interval."""
    mean, sd, low, high = (r[f"{m}_{s}"] for s in ("mean", "sd", "ci_low", "ci_high"))
    if math.isnan(sd):
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(sd, fmt)} [{format(low, fmt)}, {format(high, fmt)}]" + (
        f" {OVER_SEEDS}" if label else ""
    )


def units_text(r: pd.Series) -> str:
    """The capped RMSE's 95% interval over test units of a benchmark_summary row, or 'unavailable'."""
    low, high = r["benchmark_rmse_units_low"], r["benchmark_rmse_units_high"]
    if pd.isna(low):
        return unit_interval_text(None)
    return f"[{low:.2f}, {high:.2f}] {OVER_UNITS}"


def comparison_texts(r: pd.Series) -> list[str]:
    """The chosen row's paired comparisons (`vs best baseline ...`, `vs runner-up ...`), as written."""
    return [r[f"{c}_text"] for c in COMPARISONS if isinstance(r.get(f"{c}_text"), str) and r[f"{c}_text"]]


def benchmark_lines(
    records: list[dict], output_dir: str | os.PathLike | None = None, summary: pd.DataFrame | None = None
) -> list[str]:
    """The terminal's benchmark lines: one per C-MAPSS subset scored on its official test units,
    the literature's numbers (last window per unit, truth capped at 125) of the DDRSA configuration
    chosen on validation, its capped RMSE over seeds and over test units, and its paired comparisons
    with the best baseline and the runner-up. Held-out splits (not the literature's protocol) are
    left to the report's benchmark section."""
    if not has_benchmark(records):
        return []
    lines = []
    summary = benchmark_summary(records, output_dir) if summary is None else summary
    for _, r in summary.iterrows():
        if r["test_split"] != OFFICIAL or r["role"] != CHOSEN:
            continue
        age = ", with age input" if r["age_input"] else ""
        lines.append(
            f"benchmark {r['subset']} ({r['test_split']} test units, {r['benchmark_n_units']}{age}): "
            f"RMSE {mean_sd_ci(r, 'benchmark_rmse', '.2f', label=True)}, {units_text(r)} "
            f"(truth capped at 125), uncapped {mean_sd_ci(r, 'benchmark_rmse_uncapped', '.2f')}, NASA score "
            f"{mean_sd_ci(r, 'benchmark_nasa_score', '.0f')}; "
            f"{r['model']} lr {r['learning_rate']:g}, nasa {r['nasa_weight']:g}, dropout {r['dropout']:g}, "
            f"{int(r['n_seeds'])} seed{'' if int(r['n_seeds']) == 1 else 's'}, chosen on {r['selected_on']} "
            f"among {r['n_configs']} configuration(s)" + "".join(f"; {t}" for t in comparison_texts(r))
        )
    return lines


def section_html(
    summary: pd.DataFrame, literature: pd.DataFrame, png: bytes | None = None, chart_link: str | None = None
) -> str:
    """The report's "Benchmark vs literature" section: our chosen configuration per subset, the
    published numbers for the same subsets, and the chart (PNG bytes embedded when given)."""
    head = [
        "subset",
        "test split",
        "role",
        "chosen on",
        "model",
        "batch",
        "lr",
        "lambda",
        "NASA w",
        "dropout",
        "seeds",
        "configs",
        "RMSE capped: mean ± sd [95% over seeds]",
        "RMSE capped: 95% over test units",
        "RMSE uncapped",
        "NASA score",
        "paired comparison over the same test units (winner minus other)",
    ]
    body = []
    for _, r in summary.iterrows():
        model = r["model"] if r["role"] == CHOSEN else f"{r['model']} (baseline)"
        cells = [
            r["subset"],
            r["test_split"],
            r["role"],
            r["selected_on"],
            model,
            _batch(r["batch_size"]),
            r["learning_rate"],
            r["lambda_param"],
            r["nasa_weight"],
            r["dropout"],
            r["n_seeds"],
            r["n_configs"],
            mean_sd_ci(r, "benchmark_rmse", ".2f"),
            units_text(r),
            mean_sd_ci(r, "benchmark_rmse_uncapped", ".2f"),
            mean_sd_ci(r, "benchmark_nasa_score", ".0f"),
            "; ".join(comparison_texts(r)),
        ]
        style = "" if r["role"] == CHOSEN else " style='background:#f3f3f3;font-style:italic'"
        body.append(f"<tr{style}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    ours = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(body) + "</table>"
    subsets = sorted(set(summary["subset"]))
    lit = literature[literature["subset"].isin(subsets)]
    pivot = lit.pivot_table(index="method", columns="subset", values=["rmse", "score"], aggfunc="first")
    lit_rows = []
    for method in lit.drop_duplicates("method")["method"]:
        cells = [
            f"{pivot.at[method, ('rmse', s)]:.2f} / {pivot.at[method, ('score', s)]:.0f}"
            if ("rmse", s) in pivot.columns and not pd.isna(pivot.at[method, ("rmse", s)])
            else ""
            for s in subsets
        ]
        src = lit[lit["method"] == method].iloc[0]
        note = f" ({src['note']})" if src["note"] else ""
        lit_rows.append(
            f"<tr><td>{_e(method)}</td>"
            + "".join(f"<td>{_e(c)}</td>" for c in cells)
            + f"<td>{_e(src['source'] + note)}</td></tr>"
        )
    published = (
        "<table><tr><th>published method</th>"
        + "".join(f"<th>{_e(s)} RMSE / score</th>" for s in subsets)
        + "<th>source</th></tr>"
        + "".join(lit_rows)
        + "</table>"
    )
    notes = [f"{_e(split)}: {_e(SPLIT_MEANING.get(split, split))}." for split in sorted(set(summary["test_split"]))]
    if not summary["comparable"].all():
        notes.append(
            "Some runs had a horizon below the 125-cycle cap: their predictions cannot reach the cap "
            "and are not comparable with the literature."
        )
    text = (
        "<p>Protocol: the last window of every official test unit against RUL_FD00x.txt; RMSE and NASA "
        "score with the truth capped at 125 cycles (the literature's convention), RMSE also against the "
        "uncapped truth. Per subset the DDRSA configuration is chosen on its mean validation RMSE across seeds; "
        "the benchmark numbers played no part in choosing it. Baselines (gbm, cox, km: same data, same "
        "units, same scoring) are rows of their own, never chosen. Two intervals: over seeds (t-interval: "
        "training noise) and over test units (bootstrap of the official test units, 2,000 resamples, each "
        "resample's RMSE averaged over the seeds: which engines happened to be tested). The comparisons "
        "are paired bootstraps over the same test units; their share is of resamples in which the chosen "
        "configuration's capped RMSE is lower. " + " ".join(notes) + "</p>"
    )
    chart = ""
    if png is not None:
        link = f'<p><a href="{_e(chart_link)}">interactive version</a></p>' if chart_link else ""
        chart = (
            f'{link}<img alt="benchmark vs literature" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        )
    return f"<h2>Benchmark vs literature</h2>{text}{ours}<h3>Published</h3>{published}{chart}"


def write_benchmark_section(
    records: list[dict],
    output_dir: str | os.PathLike,
    plots_dir: str = "analysis_plots",
    charts: bool = True,
    summary: pd.DataFrame | None = None,
) -> str:
    """Write OUTPUT_DIR/benchmark_summary.csv and the chart (html + png); return the section HTML,
    or '' when no record carries benchmark metrics. `summary`: benchmark_summary(records, output_dir)
    when the caller has it."""
    from reports.charts import save_chart
    from reports.tables import write_csv

    if not has_benchmark(records):
        return ""
    out = Path(output_dir)
    summary = benchmark_summary(records, out) if summary is None else summary
    literature = load_literature()
    write_csv(summary, out / "benchmark_summary.csv")
    comparison = comparison_frame(summary, literature)
    png = link = None
    if charts and len(comparison):
        paths = save_chart(benchmark_chart(comparison), out / plots_dir, "benchmark_vs_literature")
        png, link = Path(paths["png"]).read_bytes(), f"{plots_dir}/benchmark_vs_literature.html"
    return section_html(summary, literature, png, link)
