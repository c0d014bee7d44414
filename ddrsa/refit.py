"""Refit a chosen configuration on training + validation units and write a model package.

`refit(config, epochs, package_dir)`: train `config` from scratch on the windows of the training AND
validation units for exactly `epochs` epochs (the best epoch its validation run chose; nothing is
left to early-stop on) and write the final weights as a package (ddrsa/package.py). The scaler stays
the one fitted on the training units (the windows the validation run saw are unchanged). The same
seeding, model, optimiser, loss, gradient clipping and autocast as ddrsa/trainer.py; the learning
rate follows the validation run: its logged per-epoch rate for the RNNs' plateau schedule (which
needs a validation loss the refit no longer has), the warm-up + cosine schedule of
`make_scheduler` per step for attention models.

`refit_winners(output_dir)`: after a sweep's analysis, the winner of each data set in
OUTPUT_DIR/best_configurations.csv (criterion RMSE, lowest selection score = validation RMSE: the
headline winner) is refitted into OUTPUT_DIR/packages/<dataset name>/ from its run folder.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ddrsa.atomic import read_json
from ddrsa.config import BASELINE_MODELS, ExperimentConfig, dataset_name
from ddrsa.data import SurvivalWindows, load_dataset
from ddrsa.device import Split, resolve_device
from ddrsa.errors import DDRSAError
from ddrsa.losses import DDRSALoss, check_labels
from ddrsa.metrics import VALIDATION_KEYS
from ddrsa.models import build_model, set_generator
from ddrsa.package import write_package
from ddrsa.schedule import make_scheduler, steps_per_batch
from ddrsa.settings import Settings, get_settings
from ddrsa.trainer import experiment_generators, seed_everything, train_epoch
from ddrsa.version import code_version

log = logging.getLogger("ddrsa.refit")
PACKAGES = "packages"


def join_windows(a: SurvivalWindows, b: SurvivalWindows) -> SurvivalWindows:
    """The windows of `a` then `b` in one flat storage (same lookback and features)."""
    if a.lookback != b.lookback or a.n_features != b.n_features:
        raise ValueError("windows of different lookback or features cannot be joined")
    cat = np.concatenate
    return SurvivalWindows(
        event_index=cat([a.event_index, b.event_index]),
        censored=cat([a.censored, b.censored]),
        rul=cat([a.rul, b.rul]),
        unit=cat([a.unit, b.unit]),
        data=cat([a.data, b.data]),
        valid=cat([a.valid, b.valid]),
        end=cat([a.end, b.end + len(a.data)]),
        lookback=a.lookback,
        feature_names=a.feature_names,
    )


def fit_epochs(
    config: ExperimentConfig,
    windows: SurvivalWindows,
    epochs: int,
    device: torch.device,
    learning_rates: list[float] | None = None,
) -> torch.nn.Module:
    """A fresh model of `config` trained on all `windows` for `epochs` epochs (no validation, no early
    stop). `learning_rates[e-1]` sets epoch e's rate for per-epoch schedules (None: constant)."""
    seed_everything(config.seed, config.deterministic)
    gens = experiment_generators(config.seed, device)
    model = build_model(
        config.model,
        n_features=windows.n_features,
        pred_horizon=config.pred_horizon,
        dropout=config.dropout,
        lookback_window=config.lookback_window,
        generator=gens.init,
    ).to(device)
    set_generator(model, gens.dropout)
    split = Split.from_windows(windows, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = make_scheduler(config, optimizer, math.ceil(len(split) / config.batch_size))
    per_step = steps_per_batch(scheduler)
    loss_fn = DDRSALoss(config.lambda_param, config.nasa_weight)
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    for epoch in range(1, epochs + 1):
        if not per_step and learning_rates and epoch <= len(learning_rates):
            for group in optimizer.param_groups:
                group["lr"] = learning_rates[epoch - 1]
        train_loss = train_epoch(
            model, model, split, optimizer, scheduler, loss_fn, scaler, gens, config, epoch, device
        )
        if not math.isfinite(train_loss):
            raise DDRSAError(f"refit of {config.display_name()} diverged at epoch {epoch}")
        log.info("refit %s epoch %d/%d train %.4f", config.display_name(), epoch, epochs, train_loss)
    return model.eval()


def refit(
    config: ExperimentConfig,
    epochs: int,
    package_dir,
    *,
    settings: Settings | None = None,
    validation_metrics: dict | None = None,
    learning_rates: list[float] | None = None,
    include_validation: bool = True,
    source: str | None = None,
) -> Path:
    """Retrain `config` on training (+ validation) units for `epochs` epochs; write the package."""
    if epochs < 1:
        raise DDRSAError(f"refit needs at least 1 epoch, got {epochs}")
    settings = settings or get_settings()
    data = load_dataset(config.data_config(), settings)
    windows = join_windows(data.train, data.val) if include_validation else data.train
    check_labels(windows.event_index, windows.censored, config.pred_horizon, where=f"{config.dataset} refit windows")
    device = resolve_device(settings)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    model = fit_epochs(config, windows, epochs, device, learning_rates)
    units = data.info.get("split_units", {})
    refit_info = {
        "epochs": int(epochs),
        "units": {k: units.get(k, []) for k in (("train", "val") if include_validation else ("train",))},
        "n_windows": len(windows),
        "source_run": source,
    }
    fleet_info = data.info if "scaler" in data.info else None
    return write_package(
        package_dir,
        model,
        config,
        feature_names=data.feature_names,
        data_version=data.data_version,
        code_version=code_version(),
        validation_metrics=validation_metrics or {},
        refit=refit_info,
        data_info=fleet_info,
    )


def refit_run(output_dir, run_dir: str, package_dir, settings: Settings | None = None) -> Path:
    """Refit the run in OUTPUT_DIR/run_dir (a sweep's or `python -m ddrsa.train`'s: config.json,
    training_log.json's best epoch and per-epoch learning rates, the validation metrics in
    test_metrics.json) into `package_dir`."""
    out = Path(output_dir)
    folder = out / run_dir
    config = ExperimentConfig.model_validate(read_json(folder / "config.json", {}) or {})
    log_ = read_json(folder / "training_log.json", {}) or {}
    best = log_.get("best_epoch")
    if not best:
        raise DDRSAError(f"{folder}: no best epoch in training_log.json; the run did not finish")
    rates = [e["learning_rate"] for e in log_.get("epochs", [])]
    metrics = read_json(folder / "test_metrics.json", {}) or {}
    val = {k: metrics[k] for k in VALIDATION_KEYS if k in metrics}
    return refit(
        config,
        int(best),
        package_dir,
        settings=settings,
        validation_metrics=val,
        learning_rates=rates,
        source=str(run_dir),
    )


def _same(a, b) -> bool:
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0))
    return str(a) == str(b)


def winner_runs(output_dir) -> dict[str, str]:
    """{package name: run_dir} of each data set's headline winner (see the module docstring)."""
    out = Path(output_dir)
    path = out / "best_configurations.csv"
    if not path.is_file():
        raise DDRSAError(f"{path} not found: run the analysis before refitting")
    best = pd.read_csv(path, keep_default_na=False, na_values=[""])
    best = best[(best["criterion"] == "RMSE") & ~best["model"].isin(BASELINE_MODELS)]
    best = best.dropna(subset=["selection_score"])
    records = [r for r in read_json(out / "all_results.json", []) or [] if r.get("status") == "completed"]
    keys = ("dataset", "model", "batch_size", "learning_rate", "lambda_param", "nasa_weight", "dropout", "seed")
    chosen = {}
    for (dataset, subset), g in best.groupby(["dataset", "subset"], dropna=False):
        row = g.loc[g["selection_score"].idxmin()]
        name = dataset_name(dataset) + (f"-{subset}" if dataset == "turbofan" and subset else "")
        match = [
            r
            for r in records
            if all(_same(r.get(k), row[k]) for k in keys) and (dataset != "turbofan" or r.get("subset") == subset)
        ]
        if not match:
            raise DDRSAError(
                f"no completed run of the {name} winner ({row['model']}, seed {row['seed']}) in "
                f"{out / 'all_results.json'}"
            )
        chosen[name] = match[0]["run_dir"]
    return chosen


def refit_winners(output_dir, settings: Settings | None = None) -> dict[str, str]:
    """Refit each data set's winner into OUTPUT_DIR/packages/<name>/; {name: package folder}."""
    out = Path(output_dir)
    done = {}
    for name, run_dir in winner_runs(out).items():
        done[name] = str(refit_run(out, run_dir, out / PACKAGES / name, settings))
        log.info("refitted %s (%s) -> %s", name, run_dir, done[name])
    return done
