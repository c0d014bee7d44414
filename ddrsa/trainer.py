"""`train(config, run_dir) -> TrainResult`: one DDRSA training run, no orchestration inside.

Data stays on the training device and batches are sliced from tensors; the hot loop makes no
host-device synchronisation (losses are summed on the device and read once per epoch). The run's
bookkeeping (resume, checkpoints, training log, end of epoch, finish) is ddrsa/run_state.py's
RunState, shared with every member of a fused group (ddrsa/fused).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddrsa.config import ExperimentConfig, is_baseline
from ddrsa.data import load_dataset
from ddrsa.device import Split, autocast, resolve_device
from ddrsa.errors import DDRSAError
from ddrsa.losses import DDRSALoss, check_labels
from ddrsa.models import build_model, set_generator
from ddrsa.run_state import RunState, TrainResult, locked_run_dirs, write_config
from ddrsa.schedule import make_scheduler, steps_per_batch
from ddrsa.settings import Settings, get_settings
from ddrsa.status import DIVERGED

log = logging.getLogger("ddrsa.train")

__all__ = [
    "DROPOUT_STREAM",
    "ExperimentGenerators",
    "TrainResult",
    "experiment_generators",
    "new_run_state",
    "resolve_device",
    "seed_everything",
    "train",
]


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


DROPOUT_STREAM = 0x5EED_D80F  # offsets the dropout generator's seed from the init generator's


@dataclass
class ExperimentGenerators:
    """The random streams of one experiment, all derived from `config.seed` alone.

    init: parameter initialisation (CPU; `build_model(generator=...)`). shuffle: batch order, reseeded
    every epoch with seed * 100_003 + epoch (CPU). dropout: every dropout mask (and ProbSparse key
    sampling), on the training device; its state goes into every checkpoint, so a resumed run draws
    the masks an uninterrupted one would. The fused engine (ddrsa/fused) uses the same three per member.
    """

    init: torch.Generator
    shuffle: torch.Generator
    dropout: torch.Generator

    def reseed_shuffle(self, seed: int, epoch: int) -> torch.Generator:
        return self.shuffle.manual_seed(seed * 100_003 + epoch)


def experiment_generators(seed: int, device: torch.device) -> ExperimentGenerators:
    return ExperimentGenerators(
        init=torch.Generator().manual_seed(seed),
        shuffle=torch.Generator().manual_seed(seed),
        dropout=torch.Generator(device=device).manual_seed((seed + DROPOUT_STREAM) % 2**63),
    )


def new_run_state(
    config: ExperimentConfig, run_dir: Path, n_features: int, steps_per_epoch: int, device: torch.device
) -> RunState:
    """The run's model (initialised from its own generator, on `device`), Adam, learning-rate
    schedule, random streams and DDRSALoss, resumed from `run_dir`'s checkpoint_last.pt if any."""
    gens = experiment_generators(config.seed, device)
    model = build_model(
        config.model,
        n_features=n_features,
        pred_horizon=config.pred_horizon,
        dropout=config.dropout,
        lookback_window=config.lookback_window,
        generator=gens.init,
    ).to(device)
    set_generator(model, gens.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = make_scheduler(config, optimizer, steps_per_epoch)
    return RunState.open(
        config, run_dir, model, optimizer, scheduler, gens, DDRSALoss(config.lambda_param, config.nasa_weight)
    )


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    settings: Settings | None = None,
    return_predictions: bool = False,
    inject_nan: bool = False,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Train one configuration into `run_dir`, resuming from `checkpoint_last.pt` when present.

    `stop_after_epoch` trains only up to epoch min(num_epochs, stop_after_epoch) and returns status
    `paused` (no test metrics) if the run would go on; a later call with a larger value resumes,
    and the end result equals one uninterrupted run (num_epochs stays the maximum: same schedule).

    Data problems raise `DataError` before `run_dir` is created. A non-finite training or
    validation loss ends the run with status `diverged` (not an exception: retrying won't help).
    `inject_nan` poisons the first epoch's loss (fault drills, see flows/faults.py).

    A baseline (gbm, cox, km) is fitted instead (ddrsa/baselines `fit_baseline`: same folder, files
    and result; `stop_after_epoch` does not apply).
    """
    if is_baseline(config.model):
        from ddrsa.baselines import fit_baseline

        return fit_baseline(config, run_dir, settings, return_predictions=return_predictions, inject_nan=inject_nan)
    settings = settings or get_settings()
    run_dir = Path(run_dir)
    data = load_dataset(config.data_config(), settings)  # before any folder is created
    with locked_run_dirs([config], [run_dir]):
        return _train_locked(config, run_dir, settings, data, return_predictions, inject_nan, stop_after_epoch)


def _train_locked(
    config: ExperimentConfig,
    run_dir: Path,
    settings: Settings,
    data,
    return_predictions: bool,
    inject_nan: bool,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    device = resolve_device(settings)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    write_config(run_dir, config)

    seed_everything(config.seed, config.deterministic)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for name, windows in (("training", data.train), ("validation", data.val)):
        check_labels(
            windows.event_index,
            windows.censored,
            config.pred_horizon,  # once, on the host
            where=f"{config.dataset} {name} windows",
        )
    train_split = Split.from_windows(data.train, device)
    val_split = Split.from_windows(data.val, device)
    if len(train_split) == 0 or len(val_split) == 0:
        raise DDRSAError("no training or validation windows: too few units for the split")

    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    run = new_run_state(config, run_dir, train_split.n_features, steps_per_epoch, device)
    model, optimizer, scheduler, loss_fn, gens = run.model, run.optimizer, run.scheduler, run.loss_fn, run.gens
    step_model = torch.compile(model) if config.compile else model
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    if run.resumed_from:
        log.info("resuming %s from epoch %d", run_dir, run.resumed_from)
    t_start = time.perf_counter()

    last_epoch = config.num_epochs if stop_after_epoch is None else min(config.num_epochs, stop_after_epoch)
    for epoch in range(run.epoch + 1, last_epoch + 1):
        if not run.wants(epoch):
            break
        t0 = time.perf_counter()
        train_loss = train_epoch(
            step_model, model, train_split, optimizer, scheduler, loss_fn, scaler, gens, config, epoch, device
        )
        if inject_nan and epoch == run.resumed_from + 1:
            train_loss = float("nan")
        run.end_epoch(epoch, train_loss, val_split, device, time.perf_counter() - t0)
        entry = run.history[-1]
        if run.status == DIVERGED:
            log.warning(
                "%s diverged at epoch %d (train %s, val %s)",
                config.display_name(),
                epoch,
                train_loss,
                entry["val_loss"],
            )
            break
        log.info(
            "%s epoch %d/%d train %.4f val %.4f lr %.2e %.1fs",
            config.display_name(),
            epoch,
            config.num_epochs,
            train_loss,
            entry["val_loss"],
            entry["learning_rate"],
            entry["seconds"],
        )
    return run.finish(
        data, val_split, device, session_seconds=time.perf_counter() - t_start, return_predictions=return_predictions
    )


def train_epoch(
    step_model,
    model,
    split: Split,
    optimizer,
    scheduler,
    loss_fn,
    scaler,
    gens,
    config: ExperimentConfig,
    epoch: int,
    device: torch.device,
) -> float:
    """One epoch over `split` in the experiment's seeded shuffle order (the one training step of the
    trainer and of a refit): forward through `step_model` (the model, or its torch.compile), the
    DDRSA loss, clipped backward, optimizer (and per-step scheduler) step. Returns the mean loss per
    window."""
    per_step_schedule = steps_per_batch(scheduler)
    model.train()
    order = torch.randperm(len(split), generator=gens.reseed_shuffle(config.seed, epoch)).to(device)
    total = torch.zeros((), device=device)
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        x, mask = split.batch(idx)
        with autocast(device, config.amp):
            logits = step_model(x, mask)
        loss = loss_fn(logits.float(), split.event_index[idx], split.censored[idx])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if per_step_schedule:
            scheduler.step()
        total += loss.detach() * len(idx)
    return float(total) / len(split)
