"""`train(config, run_dir) -> TrainResult`: one DDRSA training run, no orchestration inside.

Data stays on the training device and batches are sliced from tensors; the hot loop makes no
host-device synchronisation (losses are summed on the device and read once per epoch).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ddrsa.atomic import read_json, torch_save, write_json
from ddrsa.config import ExperimentConfig
from ddrsa.data import load_dataset
from ddrsa.errors import DDRSAError
from ddrsa.losses import DDRSALoss, check_labels
from ddrsa.metrics import benchmark_metrics, evaluate, survival_from_logits
from ddrsa.models import build_model, set_generator, uses_attention
from ddrsa.settings import Settings, get_settings
from ddrsa.sweep.results import RANKED_METRICS, VAL_LOSS, val_key

log = logging.getLogger("ddrsa.train")

EVAL_BATCH = 4096


@dataclass
class TrainResult:
    """What a run returns to its caller (the CLI or the sweep task); small and JSON-able."""

    status: str                      # completed | diverged | paused (stop_after_epoch reached)
    metrics: dict
    train_seconds: float
    epochs_trained: int
    best_epoch: int | None
    diverged_epoch: int | None
    device: str
    data_source: str
    data_version: str
    peak_rss_mb: float
    peak_gpu_mb: float | None
    resumed_from_epoch: int = 0
    best_val_loss: float | None = None  # lowest validation loss so far (what a search ranks on)
    predictions: dict | None = field(default=None, repr=False)  # only with return_predictions

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out.pop("predictions")
        return out


@dataclass
class _Split:
    """One split on the training device in flat storage: window i reads rows end[i]-K+1..end[i].

    Keeping `data` (R, F) instead of dense windows (N, K, F) saves a factor of about K in
    device memory, so many experiments fit on one GPU; a batch is one gather.
    """

    data: torch.Tensor         # float32 (R, F)
    valid: torch.Tensor        # bool (R,)
    end: torch.Tensor          # int64 (N,)
    offsets: torch.Tensor      # int64 (K,) = -K+1 .. 0
    event_index: torch.Tensor  # int64 (N,)
    censored: torch.Tensor     # bool (N,)

    @classmethod
    def from_windows(cls, windows, device: torch.device) -> "_Split":
        def put(array, dtype):
            return torch.tensor(np.asarray(array), dtype=dtype, device=device)

        k = windows.lookback
        return cls(put(windows.data, torch.float32), put(windows.valid, torch.bool),
                   put(windows.end, torch.long), torch.arange(-k + 1, 1, device=device),
                   put(windows.event_index, torch.long), put(windows.censored, torch.bool))

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (B, K, F), mask (B, K)) for window indices `idx` (tensor or slice)."""
        rows = self.end[idx].unsqueeze(-1) + self.offsets
        return self.data[rows], self.valid[rows]

    @property
    def n_features(self) -> int:
        return self.data.shape[-1]

    def __len__(self) -> int:
        return self.end.shape[0]


def resolve_device(settings: Settings) -> torch.device:
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            raise DDRSAError("DDRSA_DEVICE=cuda but torch sees no CUDA device")
        return torch.device("cuda")
    if settings.device == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


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
    return ExperimentGenerators(init=torch.Generator().manual_seed(seed),
                                shuffle=torch.Generator().manual_seed(seed),
                                dropout=torch.Generator(device=device).manual_seed(
                                    (seed + DROPOUT_STREAM) % 2**63))


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def steps_per_batch(scheduler) -> bool:
    """True for the attention models' warm-up + cosine schedule (stepped after every training
    step), False for the RNNs' ReduceLROnPlateau (stepped once per epoch on validation loss)."""
    return not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _make_scheduler(config: ExperimentConfig, optimizer, steps_per_epoch: int):
    """Plateau for RNNs (stepped on validation loss), warm-up + cosine for attention (per step)."""
    if not uses_attention(config.model):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    total = max(config.num_epochs * steps_per_epoch, 1)
    warmup = max(min(total // 20, 5 * steps_per_epoch), 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.inference_mode()
def predict_logits(model, split: _Split, device: torch.device, amp: bool) -> torch.Tensor:
    """Logits (N, L) in float32 on the device, in large batches."""
    model.eval()
    out = []
    with _autocast(device, amp):
        for start in range(0, len(split), EVAL_BATCH):
            x, mask = split.batch(slice(start, start + EVAL_BATCH))
            out.append(model(x, mask).float())
    return torch.cat(out)


def _validation_loss(model, loss_fn, split: _Split, device, amp) -> float:
    logits = predict_logits(model, split, device, amp)
    return float(loss_fn(logits, split.event_index, split.censored))


def _check_run_dir(run_dir: Path, config: ExperimentConfig) -> None:
    saved = read_json(run_dir / "config.json")
    if saved is not None and saved != config.model_dump(mode="json"):
        raise DDRSAError(f"{run_dir} holds a run of a different configuration; "
                         "use another output folder or remove it")


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> dict | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def _peak_gpu_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


@contextlib.contextmanager
def _run_lock(run_dir: Path, timeout_s: float = 300.0):
    """Exclusive flock on run_dir/.run.lock: a half-dead worker of a killed sweep may still be
    training this run; wait for it to die (the kernel drops its lock) before resuming."""
    with open(run_dir / ".run.lock", "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DDRSAError(f"{run_dir} is locked by another training process") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train(config: ExperimentConfig, run_dir: str | Path, settings: Settings | None = None,
          return_predictions: bool = False, inject_nan: bool = False,
          stop_after_epoch: int | None = None) -> TrainResult:
    """Train one configuration into `run_dir`, resuming from `checkpoint_last.pt` when present.

    `stop_after_epoch` trains only up to epoch min(num_epochs, stop_after_epoch) and returns status
    `paused` (no test metrics) if the run would go on; a later call with a larger value resumes,
    and the end result equals one uninterrupted run (num_epochs stays the maximum: same schedule).

    Data problems raise `DataError` before `run_dir` is created. A non-finite training or
    validation loss ends the run with status `diverged` (not an exception: retrying won't help).
    `inject_nan` poisons the first epoch's loss (fault drills, see flows/faults.py).
    """
    settings = settings or get_settings()
    run_dir = Path(run_dir)
    data = load_dataset(config.data_config(), settings)  # before any folder is created
    if run_dir.exists():
        _check_run_dir(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_lock(run_dir):
        return _train_locked(config, run_dir, settings, data, return_predictions, inject_nan,
                             stop_after_epoch)


def _train_locked(config: ExperimentConfig, run_dir: Path, settings: Settings, data,
                  return_predictions: bool, inject_nan: bool,
                  stop_after_epoch: int | None = None) -> TrainResult:
    device = resolve_device(settings)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    write_json(run_dir / "config.json", config.model_dump(mode="json"))

    seed_everything(config.seed, config.deterministic)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for name, windows in (("training", data.train), ("validation", data.val)):
        check_labels(windows.event_index, windows.censored, config.pred_horizon,  # once, on the host
                     where=f"{config.dataset} {name} windows")
    train_split = _Split.from_windows(data.train, device)
    val_split = _Split.from_windows(data.val, device)
    if len(train_split) == 0 or len(val_split) == 0:
        raise DDRSAError("no training or validation windows: too few units for the split")

    gens = experiment_generators(config.seed, device)
    model = build_model(config.model, n_features=train_split.n_features,
                        pred_horizon=config.pred_horizon, dropout=config.dropout,
                        lookback_window=config.lookback_window, generator=gens.init).to(device)
    set_generator(model, gens.dropout)
    step_model = torch.compile(model) if config.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    scheduler = _make_scheduler(config, optimizer, steps_per_epoch)
    per_step_schedule = steps_per_batch(scheduler)
    loss_fn = DDRSALoss(config.lambda_param, config.nasa_weight)
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    history: list[dict] = []
    start_epoch, best_val, best_epoch, bad_epochs = 0, math.inf, None, 0
    state = _load_checkpoint(run_dir / "checkpoint_last.pt", model, optimizer, scheduler)
    if state is not None:
        start_epoch, best_val = int(state["epoch"]), float(state["best_score"])
        best_epoch, bad_epochs = state.get("best_epoch"), int(state.get("bad_epochs", 0))
        history = list((read_json(run_dir / "training_log.json") or {}).get("epochs", []))[:start_epoch]
        if "dropout_rng" in state:  # dropout draws continue where the interrupted run stopped
            gens.dropout.set_state(state["dropout_rng"])
        log.info("resuming %s from epoch %d", run_dir, start_epoch)
    resumed_from = start_epoch
    prior_seconds = sum(e["seconds"] for e in history)
    status, diverged_epoch = "running", None
    t_start = time.perf_counter()

    def checkpoint(epoch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "best_score": best_val,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "dropout_rng": gens.dropout.get_state(),
                "config": config.model_dump(mode="json")}

    def write_log(final_status: str) -> None:
        write_json(run_dir / "training_log.json", {
            "epochs": history, "best_epoch": best_epoch,
            "best_val_loss": best_val if math.isfinite(best_val) else None,
            "stopped_early": final_status == "completed" and len(history) < config.num_epochs,
            "status": final_status, "diverged_epoch": diverged_epoch})

    last_epoch = config.num_epochs if stop_after_epoch is None else min(config.num_epochs, stop_after_epoch)
    for epoch in range(start_epoch + 1, last_epoch + 1):
        if bad_epochs >= config.patience:
            break
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_split), generator=gens.reseed_shuffle(config.seed, epoch)).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            x, mask = train_split.batch(idx)
            with _autocast(device, config.amp):
                logits = step_model(x, mask)
            loss = loss_fn(logits.float(), train_split.event_index[idx], train_split.censored[idx])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if per_step_schedule:
                scheduler.step()
            total += loss.detach() * len(idx)
        if inject_nan and epoch == start_epoch + 1:
            total = total * float("nan")
        train_loss = float(total) / len(train_split)
        val_loss = _validation_loss(model, loss_fn, val_split, device, config.amp)
        lr = optimizer.param_groups[0]["lr"]
        if not per_step_schedule and math.isfinite(val_loss):
            scheduler.step(val_loss)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "learning_rate": lr, "seconds": time.perf_counter() - t0})
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            status, diverged_epoch = "diverged", epoch
            log.warning("%s diverged at epoch %d (train %s, val %s)", config.display_name(),
                        epoch, train_loss, val_loss)
            break
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            torch_save(checkpoint(epoch), run_dir / "checkpoint_best.pt")
        else:
            bad_epochs += 1
        # log first: a kill between the two leaves the log one epoch ahead (cut on resume), never
        # behind the checkpoint (the resumed log would lack that epoch)
        write_log("running")
        torch_save(checkpoint(epoch), run_dir / "checkpoint_last.pt")
        log.info("%s epoch %d/%d train %.4f val %.4f lr %.2e %.1fs", config.display_name(), epoch,
                 config.num_epochs, train_loss, val_loss, lr, history[-1]["seconds"])

    train_seconds = prior_seconds + (time.perf_counter() - t_start)
    metrics: dict = {}
    predictions = None
    epochs_done = history[-1]["epoch"] if history else start_epoch
    if status != "diverged" and bad_epochs < config.patience and epochs_done < config.num_epochs:
        status = "paused"  # stop_after_epoch reached: checkpoint_last.pt holds the run
    elif status != "diverged":
        status = "completed"
        if (run_dir / "checkpoint_best.pt").exists():
            best = torch.load(run_dir / "checkpoint_best.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(best["model"])
        metrics, predictions = _test_metrics(model, data, device, config)
        metrics.update(_validation_metrics(model, loss_fn, val_split, data.val, device, config))
        metrics["train_seconds"] = train_seconds
        write_json(run_dir / "test_metrics.json", metrics)
    write_log(status)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return TrainResult(status=status, metrics=metrics, train_seconds=train_seconds,
                       epochs_trained=len(history), best_epoch=best_epoch,
                       diverged_epoch=diverged_epoch, device=str(device),
                       data_source=data.data_source, data_version=data.data_version,
                       peak_rss_mb=rss_mb, peak_gpu_mb=_peak_gpu_mb(device),
                       resumed_from_epoch=resumed_from,
                       best_val_loss=best_val if math.isfinite(best_val) else None,
                       predictions=predictions if return_predictions else None)


def _validation_metrics(model, loss_fn, split: _Split, windows, device, config: ExperimentConfig) -> dict:
    """Validation metrics of the loaded (best) checkpoint, through the same `evaluate` as the test
    metrics: `val_loss` (the training objective) and `val_<name>` for each ranked metric
    (steps for RUL errors, unitless otherwise). The analysis ranks configurations on these."""
    logits = predict_logits(model, split, device, config.amp)
    out = {VAL_LOSS: float(loss_fn(logits, split.event_index, split.censored))}
    scores = evaluate(survival_from_logits(logits.cpu().numpy()), windows.event_index, windows.censored,
                      windows.unit)
    out.update({val_key(m): scores[m] for m in RANKED_METRICS})
    return out


def _test_metrics(model, data, device, config: ExperimentConfig) -> tuple[dict, dict]:
    test = _Split.from_windows(data.test, device)
    survival = survival_from_logits(predict_logits(model, test, device, config.amp).cpu().numpy())
    metrics = evaluate(survival, data.test.event_index, data.test.censored, data.test.unit)
    metrics["data_source"] = data.data_source
    metrics["data_version"] = data.data_version
    predictions = {"test_survival": survival, "test_event_index": np.asarray(data.test.event_index),
                   "test_censored": np.asarray(data.test.censored), "test_unit": np.asarray(data.test.unit)}
    if data.benchmark is not None and len(data.benchmark):
        bench = _Split.from_windows(data.benchmark, device)
        bench_surv = survival_from_logits(predict_logits(model, bench, device, config.amp).cpu().numpy())
        metrics.update(benchmark_metrics(bench_surv, data.benchmark.rul))
    return metrics, predictions
