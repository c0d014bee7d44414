"""Result records -> pandas tables: summary statistics, best configurations, confidence intervals.

Pure functions (no Prefect, no plotting). Units: `rul_mae`/`rul_rmse` in steps (cycles for
C-MAPSS turbofan, down-sampled rows for Azure PM), `concordance_index` unitless in [0, 1],
`nasa_score` unitless (summed NASA scoring function), `train_seconds` in wall-clock seconds.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddrsa.atomic import write_data
from ddrsa.metrics import RANKED_METRICS, VAL_LOSS, val_key
from ddrsa.policy import (
    DEFAULT_MISS_RATE,
    INTERVENTION_COST,
    INTERVENTION_MISS_RATE,
    INTERVENTION_TTE,
    intervention_metrics,
)

# metric -> True when larger is better: the ranked metrics, plus the intervention criterion's mean time
# left at the validation-chosen operating point (derived per record from oti_* by `records_frame`)
LARGER_IS_BETTER = {**RANKED_METRICS, INTERVENTION_TTE: False}
METRICS = tuple(LARGER_IS_BETTER)  # test metrics (names from ddrsa.metrics, ddrsa.policy)
# columns shown beside the intervention criterion: the miss rates at the chosen C, and that C
INTERVENTION_EXTRA = (INTERVENTION_MISS_RATE, val_key(INTERVENTION_MISS_RATE), INTERVENTION_COST)
VAL_METRICS = tuple(val_key(m) for m in METRICS)  # the same metrics on the validation units
SUMMARY_COLUMNS = METRICS + ("train_seconds",)
STATS = ("mean", "std", "min", "max", "count")
HYPERPARAMETERS = ("batch_size", "learning_rate", "lambda_param", "nasa_weight", "dropout")
CONFIG_KEYS = ("dataset", "subset", "model") + HYPERPARAMETERS
# criterion label -> (metric, True when larger is better)
CRITERIA = {
    label: (m, LARGER_IS_BETTER[m])
    for label, m in (
        ("MAE", "rul_mae"),
        ("RMSE", "rul_rmse"),
        ("C-Index", "concordance_index"),
        ("NASA", "nasa_score"),
        ("Intervention", INTERVENTION_TTE),
    )
}
SELECTED_ON_VALIDATION = "validation"
SELECTED_ON_TEST = "test (no validation metrics in records)"
UNKNOWN_SOURCE = "unknown"
RESULTS_FILE = "all_results.json"
MANIFEST_FILE = "experiment_manifest.json"


def _read_json(path: Path) -> Any:
    """JSON content of `path`, or None when absent, empty or unreadable (a sweep mid-write)."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def load_records(output_dir: str | os.PathLike) -> list[dict]:
    """Result records from `OUTPUT_DIR/all_results.json`; [] when absent, empty or not a list."""
    data = _read_json(Path(output_dir) / RESULTS_FILE)
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def load_manifest(output_dir: str | os.PathLike) -> dict | None:
    """`OUTPUT_DIR/experiment_manifest.json` as a dict, or None when absent or unreadable."""
    data = _read_json(Path(output_dir) / MANIFEST_FILE)
    return data if isinstance(data, dict) else None


def manifest_miss_rate(manifest: dict | None) -> float:
    """The sweep's target miss rate alpha of the intervention criterion (`--miss-rate`, stored in the
    manifest's spec), DEFAULT_MISS_RATE when absent."""
    value = ((manifest or {}).get("spec") or {}).get("miss_rate")
    return float(value) if isinstance(value, (int, float)) else DEFAULT_MISS_RATE


def records_frame(records: list[dict], miss_rate: float = DEFAULT_MISS_RATE) -> pd.DataFrame:
    """One row per record: the record's fields plus its test and validation metrics (NaN where missing).

    The intervention columns (`ddrsa.policy.intervention_metrics` at target miss rate `miss_rate`):
    intervention_tte / val_intervention_tte, the mean time left (steps) at the OTI cost whose
    validation miss rate is closest to `miss_rate`, chosen per run on validation; the miss rates
    there (INTERVENTION_EXTRA) and the cost.

    Adds `constant_prediction` (bool), `collapsed` (completed and constant_prediction),
    `has_validation` (the record carries validation metrics: written after they were added) and
    `data_source` (the record's, else its metrics', else "unknown"), `benchmark_rmse` (NaN without
    one), `split_seed` (0 for records written before `--split-seeds`) and `test_split`.
    """
    rows = []
    for rec in records:
        row = {k: v for k, v in rec.items() if k != "metrics"}
        metrics = rec.get("metrics") or {}
        for m in METRICS + VAL_METRICS + (VAL_LOSS,):
            value = metrics.get(m)
            row[m] = float(value) if isinstance(value, (int, float)) and value is not None else math.nan
        row.update(intervention_metrics(metrics, miss_rate))
        row["has_validation"] = any(k in metrics for k in VAL_METRICS)
        row["data_source"] = str(rec.get("data_source") or metrics.get("data_source") or UNKNOWN_SOURCE)
        row["constant_prediction"] = bool(metrics.get("constant_prediction", False))
        value = metrics.get("benchmark_rmse")  # the yardsticks' floor sentence reads it (reports.yardsticks)
        row["benchmark_rmse"] = float(value) if isinstance(value, (int, float)) else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    for col, default in (
        ("status", "unknown"),
        ("subset", ""),
        ("seed", 0),
        ("num_epochs", 0),
        ("train_seconds", math.nan),
        ("error", None),
        ("diverged_epoch", None),
        ("run_dir", ""),
        ("name", ""),
        ("dataset", "?"),
        ("model", "?"),
        ("constant_prediction", False),
        ("has_validation", False),
        ("data_source", UNKNOWN_SOURCE),
        ("split_seed", 0),
        ("test_split", "held-out"),
    ):
        if col not in df.columns:
            df[col] = default
    for col in HYPERPARAMETERS + METRICS + VAL_METRICS + (VAL_LOSS,) + INTERVENTION_EXTRA:
        if col not in df.columns:
            df[col] = math.nan
    for col in METRICS + VAL_METRICS + (VAL_LOSS, "train_seconds") + HYPERPARAMETERS + INTERVENTION_EXTRA:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    # records written before --split-seeds existed: split seed 0 (the default); before test_split: held-out
    df["split_seed"] = pd.to_numeric(df["split_seed"], errors="coerce").fillna(0).astype(int)
    df["test_split"] = df["test_split"].fillna("held-out")
    # a C-MAPSS subset means nothing for other datasets (the sweep's config default still says FD001)
    df["subset"] = df["subset"].fillna("").where(df["dataset"] == "turbofan", "")
    df["collapsed"] = (df["status"] == "completed") & df["constant_prediction"]
    return df


def config_ids(df: pd.DataFrame) -> pd.Series:
    """Configuration number of each row (CONFIG_KEYS, seeds pooled): 0, 1, ... in sorted key order.

    The same numbering in the leaderboard, `best_configurations` and the charts (`cfg` columns),
    so a configuration selected in one can be found in the others."""
    return df.groupby(list(CONFIG_KEYS), sort=True, dropna=False).ngroup()


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """Only the completed experiments (failed and diverged ones are never ranked)."""
    return df[df["status"] == "completed"].copy() if len(df) else df


def sweep_counts(records: list[dict], manifest: dict | None) -> dict[str, int]:
    """Counts: total (manifest), completed, failed, diverged, collapsed, pending (no record yet)."""
    df = records_frame(records)
    status = df["status"] if len(df) else pd.Series(dtype=str)
    done_ids = {r.get("experiment_id") for r in records}
    experiments = (manifest or {}).get("experiments") or []
    pending = sum(1 for e in experiments if e.get("experiment_id") not in done_ids)
    total = (manifest or {}).get("n_experiments") or len(experiments) or len(records)
    return {
        "total": int(total),
        "completed": int((status == "completed").sum()),
        "failed": int((status == "failed").sum()),
        "diverged": int((status == "diverged").sum()),
        "collapsed": int(df["collapsed"].sum()) if len(df) else 0,
        "pending": int(pending),
        "records": len(records),
    }


def summary_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and model: mean, std (ddof=1), min, max, count of each metric and train_seconds.

    Columns: dataset, model, then `<metric>_<stat>`. Uses completed experiments only.
    """
    cols = ["dataset", "model"] + [f"{m}_{s}" for m in SUMMARY_COLUMNS for s in STATS]
    done = completed(df)
    if not len(done):
        return pd.DataFrame(columns=cols)
    agg = done.groupby(["dataset", "model"])[list(SUMMARY_COLUMNS)].agg(list(STATS))
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    return agg.reset_index()[cols]


def t_interval(values: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval mean ± t_{(1+c)/2, n-1} * sd / sqrt(n); NaN bounds if n < 2."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def _welch_same(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> bool:
    """True when Welch's t-test cannot tell the means apart (p >= alpha)."""
    from scipy import stats

    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    if p is None or math.isnan(p):  # both samples constant
        return bool(np.isclose(a.mean(), b.mean()))
    return bool(p >= alpha)


def fmt_float(value: float) -> str:
    """`repr` of a float: the shortest text that reads back as the same value."""
    return repr(float(value))


def retrain_command(row: dict, output_dir: str, name: str) -> str:
    """`python -m ddrsa.train ... && python -m reports.run_charts DIR` reproducing one run (`row` holds the config, seed, num_epochs)."""
    run_dir = f"{output_dir.rstrip('/')}/retrain/{name}"
    parts = ["python", "-m", "ddrsa.train", "--dataset", str(row["dataset"])]
    if row["dataset"] == "turbofan" and row.get("subset"):
        parts += ["--subset", str(row["subset"])]
    parts += ["--model", str(row["model"])]
    for hp in HYPERPARAMETERS:  # a baseline's record may leave the DDRSA-only ones empty: not given
        if row.get(hp) is not None and not (isinstance(row[hp], float) and math.isnan(row[hp])):
            parts += [f"--{hp.replace('_', '-')}", str(int(row[hp])) if hp == "batch_size" else fmt_float(row[hp])]
    parts += [
        "--num-epochs",
        str(int(row["num_epochs"])),
        "--seed",
        str(int(row["seed"])),
        "--output-dir",
        run_dir,
        "--create-visualization",
    ]
    # the charts are a reports entry point over the run folder (ddrsa/ never imports reports/)
    charts = ["python", "-m", "reports.run_charts", run_dir]
    return " ".join(shlex.quote(p) for p in parts) + " && " + " ".join(shlex.quote(p) for p in charts)


def ranking_metric(runs: pd.DataFrame, metric: str) -> tuple[str, str]:
    """(column to rank `runs` on, `selected_on` text) for the test metric `metric` of a criterion.

    Winners are chosen on validation values: `val_<metric>` when every run in `runs` carries
    validation metrics and at least one value is defined. Otherwise (records written before
    validation metrics existed, or a validation metric undefined everywhere) the test column,
    with the reason in the text, so the fallback is never silent.
    """
    if not len(runs) or not runs["has_validation"].all():
        return metric, SELECTED_ON_TEST
    if runs[val_key(metric)].notna().any():
        return val_key(metric), SELECTED_ON_VALIDATION
    return metric, f"test (validation {metric} undefined in every run)"


def best_configurations(df: pd.DataFrame, output_dir: str = "OUTPUT_DIR") -> pd.DataFrame:
    """Best configuration per dataset, subset, model and criterion (MAE/RMSE/NASA/Intervention min,
    C-Index max; Intervention = mean time left at the validation-chosen OTI cost, `records_frame`).

    A configuration is CONFIG_KEYS; its repeats (seeds) are averaged. The winner is chosen on
    the mean VALIDATION value of the criterion (`ranking_metric`; `selected_on` says which data
    chose it, `selection_score` is the mean it was ranked on); the metric columns report its
    TEST metrics: means across seeds, `<metric>_ci_low/_ci_high` the 95% t-interval (NaN with one
    seed); `val_<metric>` its validation means. `indistinguishable_configs` counts the other
    configurations whose per-seed ranking values a Welch t-test cannot tell from the winner's
    (p >= 0.05; "n/a" when the winner has one seed; configurations with one seed are not tested).
    Plus `data_source` (of the winner's runs), `subset`, `seed` (its best repeat on the ranking
    value) and `retrain_command`.
    """
    base = ["dataset", "model", "criterion", "selected_on", *HYPERPARAMETERS, *METRICS, "n_seeds"]
    ci = [f"{m}_{b}" for m in METRICS for b in ("ci_low", "ci_high")]
    cols = (
        base
        + ci
        + [
            "selection_score",
            *VAL_METRICS,
            *INTERVENTION_EXTRA,
            "indistinguishable_configs",
            "data_source",
            "subset",
            "seed",
            "retrain_command",
        ]
    )
    done = completed(df).reset_index(drop=True)
    if not len(done):
        return pd.DataFrame(columns=cols)
    done["_cfg"] = config_ids(done)
    means = done.groupby("_cfg")[list(METRICS + VAL_METRICS + INTERVENTION_EXTRA)].mean()
    info = done.groupby("_cfg")[list(CONFIG_KEYS)].first()
    samples: dict[str, dict] = {}  # ranking column -> {config id: per-seed values}, built on first need
    rows: list[dict] = []
    for (dataset, subset, model), sub in info.groupby(["dataset", "subset", "model"], sort=True):
        runs = done[done["_cfg"].isin(sub.index)]
        for criterion, (metric, larger) in CRITERIA.items():
            rank_col, selected_on = ranking_metric(runs, metric)
            scores = means.loc[sub.index, rank_col].dropna()
            if not len(scores):
                continue
            best_id = scores.idxmax() if larger else scores.idxmin()
            best = done[done["_cfg"] == best_id]
            row = {k: info.at[best_id, k] for k in CONFIG_KEYS}
            row.update(
                criterion=criterion,
                selected_on=selected_on,
                n_seeds=int(len(best)),
                selection_score=float(scores[best_id]),
            )
            for m in METRICS:
                mean, low, high = t_interval(best[m].tolist())
                row.update({m: mean, f"{m}_ci_low": low, f"{m}_ci_high": high})
            row.update({v: float(means.at[best_id, v]) for v in VAL_METRICS + INTERVENTION_EXTRA})
            a = best[rank_col].dropna().to_numpy(float)
            if len(a) < 2:
                row["indistinguishable_configs"] = "n/a"
            else:
                if rank_col not in samples:
                    samples[rank_col] = {k: g.dropna().to_numpy(float) for k, g in done.groupby("_cfg")[rank_col]}
                others = [samples[rank_col][k] for k in sub.index if k != best_id]
                row["indistinguishable_configs"] = sum(_welch_same(a, b) for b in others if len(b) >= 2)
            rep = best.loc[best[rank_col].idxmax() if larger else best[rank_col].idxmin()]
            row.update(
                seed=int(rep["seed"]),
                num_epochs=int(rep["num_epochs"]),
                data_source=" + ".join(sorted(set(best["data_source"]))),
            )
            where = f"{dataset}_{subset}" if dataset == "turbofan" and subset else dataset
            name = f"{where}_{model}_{criterion.lower().replace('-', '')}"
            row["retrain_command"] = retrain_command(row, str(output_dir), name)
            rows.append(row)
    return pd.DataFrame(rows)[cols]


def data_sources(df: pd.DataFrame) -> dict[str, list[str]]:
    """dataset -> sorted `data_source` values of its completed runs (of all runs when none completed)."""
    runs = completed(df) if len(df) and (df["status"] == "completed").any() else df
    if not len(runs):
        return {}
    return {str(ds): sorted(set(g["data_source"])) for ds, g in runs.groupby("dataset", sort=True)}


def is_generated(source: str) -> bool:
    """True for data that is synthetic or partly generated ('synthetic', 'real+synthetic-telemetry', ...)."""
    return "synthetic" in str(source).lower()


def data_source_line(sources: dict[str, list[str]], warn: bool = True) -> str:
    """One line for terminals and headlines: 'turbofan: real; azure_pm: real-no-telemetry', with
    'WARNING: SYNTHETIC OR PARTLY GENERATED DATA' around it when any value is generated (and `warn`)."""
    line = "; ".join(f"{ds}: {' + '.join(v)}" for ds, v in sources.items()) or "no results yet"
    generated = any(is_generated(v) for vals in sources.values() for v in vals)
    return f"WARNING: SYNTHETIC OR PARTLY GENERATED DATA ({line})" if generated and warn else line


def folder_data_sources(output_dir: str | os.PathLike) -> str:
    """`data_source_line` of the records in a sweep folder (the sweep's terminal summary)."""
    return data_source_line(data_sources(records_frame(load_records(output_dir))))


def nan_to_none(records: list[dict]) -> list[dict]:
    """Replace NaN/inf floats (and numpy scalars) by JSON-safe Python values (None for NaN)."""
    out = []
    for rec in records:
        clean = {}
        for k, v in rec.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[k] = v
        out.append(clean)
    return out


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and os.replace."""
    return write_data(Path(path), data)


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Atomic CSV write (no index)."""
    return write_atomic(path, df.to_csv(index=False))


def load_learning_curves(output_dir: str | os.PathLike, df: pd.DataFrame) -> pd.DataFrame:
    """Validation loss per epoch of the best run per dataset/model (lowest validation RMSE; lowest
    test RMSE for records without validation metrics, see `ranking_metric`).

    Reads `OUTPUT_DIR/<run_dir>/training_log.json`; runs without a readable log are skipped.
    Columns: dataset, model, name, epoch, val_loss (DDRSA objective, unitless).
    """
    rows = []
    for (dataset, model), g in completed(df).groupby(["dataset", "model"], sort=True):
        col = ranking_metric(g, "rul_rmse")[0]
        if not g[col].notna().any():
            continue
        best = g.loc[g[col].idxmin()]
        log = _read_json(Path(output_dir) / str(best.get("run_dir") or "") / "training_log.json")
        epochs = log.get("epochs") if isinstance(log, dict) else None
        for e in epochs or []:
            if isinstance(e, dict) and isinstance(e.get("val_loss"), (int, float)):
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "name": best.get("name"),
                        "epoch": int(e.get("epoch", len(rows))),
                        "val_loss": float(e["val_loss"]),
                    }
                )
    return pd.DataFrame(rows, columns=["dataset", "model", "name", "epoch", "val_loss"])


GPU_COLUMNS = ("timestamp", "worker", "gpu_index", "utilization_pct", "memory_used_mb")


def load_gpu_samples(output_dir: str | os.PathLike) -> pd.DataFrame | None:
    """`OUTPUT_DIR/gpu_utilization.csv` (utilisation in %, memory in MB), or None if absent/empty."""
    path = Path(output_dir) / "gpu_utilization.csv"
    try:
        samples = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    if not len(samples) or not set(GPU_COLUMNS) <= set(samples.columns):
        return None
    return samples
