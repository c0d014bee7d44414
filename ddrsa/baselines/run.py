"""`fit_baseline(config, run_dir) -> TrainResult`: one baseline run (gbm, cox, km) in its run folder.

The same folder, files and record fields as a DDRSA run (docs/CONTRACTS.md): config.json,
training_log.json (no epochs; `baseline` holds the fit's details), test_metrics.json (test,
validation and benchmark metrics through ddrsa/evaluation.py `scores_on_test` /
`scores_on_validation`, the DDRSA run's code), test_predictions.npz; no checkpoint. `val_loss` is
null (there is no DDRSA objective). A finished folder is not refit: its files are read back.
"""

from __future__ import annotations

import contextlib
import resource
import time
from pathlib import Path

import numpy as np

from ddrsa.atomic import read_json, write_json
from ddrsa.config import ExperimentConfig, is_baseline
from ddrsa.data import load_dataset
from ddrsa.errors import DDRSAError
from ddrsa.evaluation import scores_on_test, scores_on_validation
from ddrsa.losses import check_labels
from ddrsa.metrics import VAL_LOSS
from ddrsa.run_predictions import FILE_NAME, load_predictions, save_predictions
from ddrsa.run_state import TrainResult, locked_run_dirs, write_config
from ddrsa.settings import Settings, get_settings
from ddrsa.status import RunStatus

from .base import Baseline
from .cox import CoxBaseline
from .gbm import GradientBoostingBaseline
from .km import KaplanMeierBaseline

BASELINES: dict[str, type[Baseline]] = {"gbm": GradientBoostingBaseline, "cox": CoxBaseline, "km": KaplanMeierBaseline}
LOG, METRICS = "training_log.json", "test_metrics.json"


def _threads(settings: Settings):
    """Limit scikit-learn's OpenMP/BLAS threads to DDRSA_TORCH_THREADS when set (workers share cores)."""
    if not settings.torch_threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(int(settings.torch_threads))


def _result(status: RunStatus, metrics: dict, seconds: float, data, predictions: dict | None = None) -> TrainResult:
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return TrainResult(
        status=status,
        metrics=metrics,
        train_seconds=seconds,
        epochs_trained=0,
        best_epoch=None,
        diverged_epoch=1 if status == "diverged" else None,
        device="cpu",
        data_source=data.data_source,
        data_version=data.data_version,
        peak_rss_mb=rss_mb,
        peak_gpu_mb=None,
        predictions=predictions,
    )


def finished(run_dir: Path, data, return_predictions: bool) -> TrainResult | None:
    """The TrainResult of a completed baseline folder (read back, not refit), None when not completed."""
    log, metrics = read_json(run_dir / LOG), read_json(run_dir / METRICS)
    if not (
        isinstance(log, dict)
        and log.get("status") == "completed"
        and isinstance(metrics, dict)
        and (run_dir / FILE_NAME).exists()
    ):
        return None
    preds = load_predictions(run_dir) if return_predictions else None
    return _result("completed", metrics, float(metrics.get("train_seconds") or 0.0), data, predictions=preds)


def fit_baseline(
    config: ExperimentConfig,
    run_dir: str | Path,
    settings: Settings | None = None,
    return_predictions: bool = False,
    inject_nan: bool = False,
) -> TrainResult:
    """Fit baseline `config.model` on the training units into `run_dir` and score it.

    Status `completed`, or `diverged` when a predicted curve is not finite (`inject_nan` poisons the
    test curves: the fault drill of flows/faults.py). train_seconds = the fit's wall time."""
    if not is_baseline(config.model):
        raise DDRSAError(f"{config.model} is not a baseline")
    settings = settings or get_settings()
    run_dir = Path(run_dir)
    data = load_dataset(config.data_config(), settings)  # before any folder is created
    with locked_run_dirs([config], [run_dir]):
        done = finished(run_dir, data, return_predictions)
        if done is not None:
            return done
        write_config(run_dir, config)
        for name, windows in (("training", data.train), ("validation", data.val)):
            check_labels(
                windows.event_index, windows.censored, config.pred_horizon, where=f"{config.dataset} {name} windows"
            )
        if len(data.train) == 0 or len(data.val) == 0:
            raise DDRSAError("no training or validation windows: too few units for the split")
        with _threads(settings):
            t0 = time.perf_counter()
            model = BASELINES[config.model](config.pred_horizon, config.seed).fit(data.train, data.val)
            seconds = time.perf_counter() - t0
            test = model.survival(data.test) * (np.nan if inject_nan else 1.0)
            bench = model.survival(data.benchmark) if data.benchmark is not None and len(data.benchmark) else None
            val = model.survival(data.val)
        log: dict = {
            "epochs": [],
            "best_epoch": None,
            "best_val_loss": None,
            "stopped_early": False,
            "diverged_epoch": None,
            "baseline": {"model": config.model, "fit_seconds": seconds, **model.details()},
        }
        if not all(np.isfinite(s).all() for s in (test, val) + ((bench,) if bench is not None else ())):
            write_json(run_dir / LOG, {**log, "status": "diverged", "diverged_epoch": 1})
            return _result("diverged", {}, seconds, data)
        metrics, predictions = scores_on_test(test, bench, data, run_to_failure=config.test_split == "held-out")
        metrics.update(scores_on_validation(val, data.val, benchmark_protocol=config.dataset == "turbofan"))
        metrics[VAL_LOSS] = None
        metrics["train_seconds"] = seconds
        save_predictions(run_dir, predictions)
        write_json(run_dir / METRICS, metrics)
        write_json(run_dir / LOG, {**log, "status": "completed"})
        return _result("completed", metrics, seconds, data, predictions=predictions if return_predictions else None)
