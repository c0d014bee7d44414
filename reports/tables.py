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

METRICS = ("rul_mae", "rul_rmse", "concordance_index", "nasa_score")
SUMMARY_COLUMNS = METRICS + ("train_seconds",)
STATS = ("mean", "std", "min", "max", "count")
HYPERPARAMETERS = ("batch_size", "learning_rate", "lambda_param", "nasa_weight", "dropout")
CONFIG_KEYS = ("dataset", "subset", "model") + HYPERPARAMETERS
# criterion label -> (metric, True when larger is better)
CRITERIA = {"MAE": ("rul_mae", False), "RMSE": ("rul_rmse", False),
            "C-Index": ("concordance_index", True), "NASA": ("nasa_score", False)}
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


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: the record's fields plus its metrics (NaN where missing).

    Adds `constant_prediction` (bool) and `collapsed` (completed and constant_prediction).
    """
    rows = []
    for rec in records:
        row = {k: v for k, v in rec.items() if k != "metrics"}
        metrics = rec.get("metrics") or {}
        for m in METRICS:
            value = metrics.get(m)
            row[m] = float(value) if isinstance(value, (int, float)) and value is not None else math.nan
        row["constant_prediction"] = bool(metrics.get("constant_prediction", False))
        rows.append(row)
    df = pd.DataFrame(rows)
    for col, default in (("status", "unknown"), ("subset", ""), ("seed", 0), ("num_epochs", 0),
                         ("train_seconds", math.nan), ("error", None), ("diverged_epoch", None),
                         ("run_dir", ""), ("name", ""), ("dataset", "?"), ("model", "?"),
                         ("constant_prediction", False)):
        if col not in df.columns:
            df[col] = default
    for col in HYPERPARAMETERS + METRICS:
        if col not in df.columns:
            df[col] = math.nan
    for col in METRICS + ("train_seconds",) + HYPERPARAMETERS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["subset"] = df["subset"].fillna("")
    df["collapsed"] = (df["status"] == "completed") & df["constant_prediction"]
    return df


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
    return {"total": int(total), "completed": int((status == "completed").sum()),
            "failed": int((status == "failed").sum()), "diverged": int((status == "diverged").sum()),
            "collapsed": int(df["collapsed"].sum()) if len(df) else 0, "pending": int(pending),
            "records": len(records)}


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


def _fmt_float(value: float) -> str:
    return repr(float(value))


def retrain_command(row: dict, output_dir: str, name: str) -> str:
    """`python -m ddrsa.train ...` reproducing one run (`row` holds the config, seed, num_epochs)."""
    parts = ["python", "-m", "ddrsa.train", "--dataset", str(row["dataset"])]
    if row["dataset"] == "turbofan" and row.get("subset"):
        parts += ["--subset", str(row["subset"])]
    parts += ["--model", str(row["model"]), "--batch-size", str(int(row["batch_size"])),
              "--learning-rate", _fmt_float(row["learning_rate"]),
              "--lambda-param", _fmt_float(row["lambda_param"]),
              "--nasa-weight", _fmt_float(row["nasa_weight"]), "--dropout", _fmt_float(row["dropout"]),
              "--num-epochs", str(int(row["num_epochs"])), "--seed", str(int(row["seed"])),
              "--output-dir", f"{output_dir.rstrip('/')}/retrain/{name}", "--create-visualization"]
    return " ".join(shlex.quote(p) for p in parts)


def best_configurations(df: pd.DataFrame, output_dir: str = "OUTPUT_DIR") -> pd.DataFrame:
    """Best configuration per dataset, model and criterion (MAE/RMSE/NASA min, C-Index max).

    A configuration is CONFIG_KEYS; its repeats (seeds) are averaged. Metric columns hold means
    across seeds, `<metric>_ci_low/_ci_high` the 95% t-interval (NaN with one seed),
    `indistinguishable_configs` the number of other configurations whose per-seed values a Welch
    t-test cannot tell from the best (p >= 0.05; "n/a" when the best has one seed; configurations
    with one seed are not tested), plus `subset`, `seed` (best repeat) and `retrain_command`.
    """
    base = ["dataset", "model", "criterion", *HYPERPARAMETERS, *METRICS, "n_seeds"]
    ci = [f"{m}_{b}" for m in METRICS for b in ("ci_low", "ci_high")]
    cols = base + ci + ["indistinguishable_configs", "subset", "seed", "retrain_command"]
    done = completed(df).reset_index(drop=True)
    if not len(done):
        return pd.DataFrame(columns=cols)
    done["_cfg"] = done.groupby(list(CONFIG_KEYS), sort=True, dropna=False).ngroup()
    means = done.groupby("_cfg")[list(METRICS)].mean()
    info = done.groupby("_cfg")[list(CONFIG_KEYS)].first()
    samples: dict[str, dict] = {}  # metric -> {config id: per-seed values}, built on first need
    rows: list[dict] = []
    for (dataset, model), sub in info.groupby(["dataset", "model"], sort=True):
        for criterion, (metric, larger) in CRITERIA.items():
            scores = means.loc[sub.index, metric].dropna()
            if not len(scores):
                continue
            best_id = scores.idxmax() if larger else scores.idxmin()
            best = done[done["_cfg"] == best_id]
            row = {k: info.at[best_id, k] for k in CONFIG_KEYS}
            row.update(criterion=criterion, n_seeds=int(len(best)))
            for m in METRICS:
                mean, low, high = t_interval(best[m].tolist())
                row.update({m: mean, f"{m}_ci_low": low, f"{m}_ci_high": high})
            a = best[metric].dropna().to_numpy(float)
            if len(a) < 2:
                row["indistinguishable_configs"] = "n/a"
            else:
                if metric not in samples:
                    samples[metric] = {k: g.dropna().to_numpy(float) for k, g in done.groupby("_cfg")[metric]}
                others = [samples[metric][k] for k in sub.index if k != best_id]
                row["indistinguishable_configs"] = sum(_welch_same(a, b) for b in others if len(b) >= 2)
            rep = best.loc[best[metric].idxmax() if larger else best[metric].idxmin()]
            row.update(seed=int(rep["seed"]), num_epochs=int(rep["num_epochs"]))
            name = f"{dataset}_{model}_{criterion.lower().replace('-', '')}"
            row["retrain_command"] = retrain_command(row, str(output_dir), name)
            rows.append(row)
    return pd.DataFrame(rows)[cols]


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
    """Validation loss per epoch of the best run (lowest rul_rmse) per dataset/model.

    Reads `OUTPUT_DIR/<run_dir>/training_log.json`; runs without a readable log are skipped.
    Columns: dataset, model, name, epoch, val_loss (DDRSA objective, unitless).
    """
    rows = []
    done = completed(df).dropna(subset=["rul_rmse"])
    for (dataset, model), g in done.groupby(["dataset", "model"], sort=True):
        best = g.loc[g["rul_rmse"].idxmin()]
        log = _read_json(Path(output_dir) / str(best.get("run_dir") or "") / "training_log.json")
        epochs = log.get("epochs") if isinstance(log, dict) else None
        for e in epochs or []:
            if isinstance(e, dict) and isinstance(e.get("val_loss"), (int, float)):
                rows.append({"dataset": dataset, "model": model, "name": best.get("name"),
                             "epoch": int(e.get("epoch", len(rows))), "val_loss": float(e["val_loss"])})
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
