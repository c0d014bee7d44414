"""Time the whole analysis on 1,296 synthetic result records (seconds, wall clock).

    python benchmarks/bench_analysis.py [--with-flow] [--keep DIR] [--no-browser] [--browser-runs N]
                                        [--no-predictions]

6 models x 2 datasets x 108 grid combinations (batch 32/64/128/256 x lr 1e-4/1e-3/1e-2 x
lambda 0.5/0.75/0.9 x nasa 0/0.1/0.5, dropout 0.1), seed 42 => 1,296 records, plus the three
baselines (gbm, cox, km) once per dataset; training logs for every 10th record. Every completed
run folder gets a predictions file (`ddrsa.run_predictions`: 30 test units x 20 windows x horizon
64, float32; turbofan also 100 benchmark windows, whose metrics the record carries), so the
analysis runs its bootstrap over test units and paired comparisons (`--no-predictions`: as an old
sweep without them). Targets: < 30 s for CSVs + all charts (html + png) + report, bootstrap
included; report.html < 1.5 MB, rendered (load event and every chart drawn) by headless Chromium in < 3 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("lstm_basic", "lstm_deep", "gru_basic", "gru_deep", "transformer_basic", "transformer_deep")
BASELINES = ("gbm", "cox", "km")
HORIZON, TEST_UNITS, WINDOWS_PER_UNIT, BENCHMARK_UNITS = 64, 30, 20, 100
GRID = dict(
    batch_size=(32, 64, 128, 256),
    learning_rate=(1e-4, 1e-3, 1e-2),
    lambda_param=(0.5, 0.75, 0.9),
    nasa_weight=(0.0, 0.1, 0.5),
)


def validation(mae: float, rng: random.Random) -> dict:
    """Validation metrics near the test ones (records written since validation metrics exist)."""
    vmae = mae * rng.uniform(0.9, 1.1)
    return {
        "val_loss": 2 + vmae / 100,
        "val_rul_mae": vmae,
        "val_rul_rmse": vmae * rng.uniform(1.2, 1.5),
        "val_concordance_index": rng.uniform(0.6, 0.9),
        "val_nasa_score": vmae * rng.uniform(20, 80),
    }


def test_sets(seed: int = 0) -> dict:
    """Per dataset, the truth of its test units (the same for every run, as in a sweep)."""
    import numpy as np

    g = np.random.default_rng(seed)
    out = {}
    for ds in ("turbofan", "azure_pm"):
        n = TEST_UNITS * WINDOWS_PER_UNIT
        ev = g.integers(0, 2 * HORIZON, n)
        out[ds] = {
            "test_event_index": np.minimum(ev, HORIZON - 1),
            "test_censored": ev >= HORIZON,
            "test_unit": np.repeat(np.arange(TEST_UNITS), WINDOWS_PER_UNIT),
            "_target": np.minimum(ev, HORIZON),
        }
        if ds == "turbofan":
            out[ds].update(
                benchmark_rul=g.integers(5, 200, BENCHMARK_UNITS).astype(float),
                benchmark_unit=np.arange(BENCHMARK_UNITS),
            )
    return out


def write_predictions(run: Path, truth: dict, error: float, seed: int) -> dict:
    """A predictions file for one run (survival curves whose expected time misses the truth by
    about `error` steps); returns the benchmark metrics of its benchmark windows ({} without)."""
    import numpy as np

    from ddrsa.metrics import benchmark_metrics
    from ddrsa.run_predictions import save_predictions

    g = np.random.default_rng(seed)
    k = np.arange(HORIZON, dtype=np.float32)[None, :]

    def curves(target):
        t = np.clip(target + g.normal(0, error, len(target)), 0.5, HORIZON - 0.5).astype(np.float32)
        return (1.0 / (1.0 + np.exp(k - t[:, None]))).astype(np.float32)

    pred = {key: v for key, v in truth.items() if key.startswith("test_")}
    pred["test_survival"] = curves(truth["_target"])
    metrics = {}
    if "benchmark_rul" in truth:
        pred.update(
            benchmark_survival=curves(np.minimum(truth["benchmark_rul"], HORIZON)),
            benchmark_rul=truth["benchmark_rul"],
            benchmark_unit=truth["benchmark_unit"],
        )
        metrics = benchmark_metrics(pred["benchmark_survival"], truth["benchmark_rul"])
    run.mkdir(parents=True, exist_ok=True)
    save_predictions(run, pred)
    return metrics


def synthetic_records(root: Path, rng: random.Random, predictions: bool = True) -> list[dict]:
    """Plausible records (RUL errors in steps, seconds of training), a few failed/diverged; with
    `predictions`, a predictions file in every completed run folder."""
    records = []
    truths = test_sets() if predictions else {}
    combos = list(itertools.product(("turbofan", "azure_pm"), MODELS, *GRID.values()))
    combos += [(ds, model, 128, 1e-3, 0.75, 0.1) for ds in ("turbofan", "azure_pm") for model in BASELINES]
    for i, (ds, model, bs, lr, lam, nasa) in enumerate(combos):
        base = 15 if ds == "turbofan" else 40
        offset = 0.05 * (MODELS + BASELINES).index(model) / 5
        mae = base * (1 + 0.3 * abs(rng.gauss(0, 1)) + 0.1 * (lr == 1e-2) + offset)
        status = "completed" if rng.random() > 0.02 else rng.choice(["failed", "diverged"])
        leaf = f"bs{bs}_lr{lr:g}_lam{lam:g}_nasa{nasa:g}_drop0.1_id{i}"
        rec = {
            "experiment_id": f"{i:012x}",
            "index": i,
            "name": f"{ds}/{model}/{leaf}",
            "dataset": ds,
            "subset": "FD001",
            "model": model,
            "batch_size": bs,
            "learning_rate": lr,
            "lambda_param": lam,
            "nasa_weight": nasa,
            "dropout": 0.1,
            "seed": 42,
            "num_epochs": 50,
            "status": status,
            "metrics": {
                "rul_mae": mae,
                "rul_rmse": mae * rng.uniform(1.2, 1.5),
                "concordance_index": rng.uniform(0.6, 0.9),
                "nasa_score": mae * rng.uniform(20, 80),
                "constant_prediction": rng.random() < 0.01,
                **validation(mae, rng),
                "data_source": "real" if ds == "turbofan" else "real-no-telemetry",
            }
            if status == "completed"
            else {},
            "train_seconds": 2000 / bs * rng.uniform(0.8, 1.2),
            "epochs_trained": 50,
            "best_epoch": 40,
            "diverged_epoch": 7 if status == "diverged" else None,
            "worker": "gpu0",
            "device": "cuda:0",
            "attempts": 1,
            "error": None if status == "completed" else "synthetic failure",
            "run_dir": f"logs/{ds}/{model}/{leaf}",
            "peak_rss_mb": 900.0,
            "peak_gpu_mb": 1500.0,
            "finished_at": "2026-01-01T00:00:00+00:00",
        }
        records.append(rec)
        if predictions and status == "completed":
            rec["metrics"].update(write_predictions(root / rec["run_dir"], truths[ds], mae, i))
        if i % 10 == 0 or mae < base * 1.05:
            run = root / rec["run_dir"]
            run.mkdir(parents=True, exist_ok=True)
            epochs = [
                {
                    "epoch": e,
                    "train_loss": 5 / e,
                    "val_loss": 4 / e + rng.uniform(0, 0.2),
                    "learning_rate": lr,
                    "seconds": 3.0,
                }
                for e in range(1, 51)
            ]
            (run / "training_log.json").write_text(json.dumps({"epochs": epochs}))
    (root / "all_results.json").write_text(json.dumps(records))
    return records


WAIT_CHARTS = (
    "new Promise(r => { if (window.ddrsaChartsDone) r(1); "
    "else document.addEventListener('ddrsa-charts-done', () => r(1)); })"
)


def browser_times(report: Path, runs: int) -> None:
    """Load report.html `runs` times in one headless Chromium (tests/chromium_cdp.py); print, per
    load, ms from navigation start to the load event (first screen: headline, leaderboard) and to
    every chart drawn (all forced at once right after the load event), and the median of the latter."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from chromium_cdp import Chromium, find_chromium

    if not find_chromium():
        print("browser: no Chromium (install the Debian package chromium), not timed")
        return
    done = []
    with Chromium() as browser:
        for i in range(runs):
            browser.open(report.as_uri())
            load = browser.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            browser.evaluate("window.ddrsaRenderAll()")  # charts below the first screen draw on scroll
            browser.evaluate(WAIT_CHARTS, await_promise=True)
            charts = browser.evaluate("window.ddrsaChartsMs")
            done.append(max(load, charts))
            print(
                f"browser load {i + 1}: first screen (load event) {load:.0f} ms, all 10 charts drawn {charts:.0f} ms"
                f" (chart errors {browser.evaluate('window.ddrsaChartErrors.length')}, console errors "
                f"{len(browser.errors)})"
            )
    print(
        f"rendered by headless Chromium (every chart drawn) in {sorted(done)[len(done) // 2] / 1000:.2f} s"
        f" (median of {runs}; target < 3 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-flow", action="store_true", help="also time the Prefect flow (temporary server)")
    parser.add_argument("--keep", default=None, help="write into this folder instead of a temporary one")
    parser.add_argument("--no-browser", action="store_true", help="skip timing report.html in headless Chromium")
    parser.add_argument("--browser-runs", type=int, default=3, help="page loads to time (default 3)")
    parser.add_argument(
        "--no-predictions",
        action="store_true",
        help="write no predictions files (an old sweep: intervals over test units unavailable)",
    )
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_analysis_"))
    root.mkdir(parents=True, exist_ok=True)
    import os

    t0 = time.perf_counter()
    records = synthetic_records(root, random.Random(0), predictions=not args.no_predictions)
    npz = list(root.glob("logs/*/*/*/test_predictions.npz"))
    print(
        f"wrote {len(records)} records, {len(npz)} predictions files "
        f"({sum(f.stat().st_size for f in npz) / max(len(npz), 1) / 1e3:.0f} kB each) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    from reports.report import run_analysis  # import outside the timed region

    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_analysis(root)
    pure, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"records: {len(records)}  completed: {res.counts['completed']}  charts: {len(res.charts)}")
    print(
        f"pure analysis (CSVs + {len(res.charts)} charts html+png + report, bootstrap over test units "
        f"{'off: no predictions' if args.no_predictions else 'on'}): {pure:.1f} s wall, {cpu:.1f} s CPU  "
        f"(load 1 min {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after) -> {root}"
    )
    for line in res.benchmark:
        print(f"  {line}")
    report = root / "report.html"
    plots = sum(f.stat().st_size for f in (root / "analysis_plots").iterdir())
    print(f"report.html: {report.stat().st_size / 1e6:.2f} MB (target < 1.5 MB); analysis_plots/: {plots / 1e6:.1f} MB")
    if not args.no_browser:
        browser_times(report, args.browser_runs)
    if args.with_flow:
        from flows.analysis import analysis_flow

        t0 = time.perf_counter()
        analysis_flow(str(root))
        print(f"flow (incl. temporary Prefect server start): {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
