"""The run state of one training run in its folder, shared by `ddrsa.trainer.train` and every member
of a fused group (ddrsa/fused): open (resume from checkpoint_last.pt), checkpoint, training log,
end of an epoch, finish (test metrics, TrainResult).

Run folder: config.json, checkpoint_last.pt, checkpoint_best.pt, training_log.json,
test_metrics.json, test_predictions.npz and the `.run.lock` flock (docs/CONTRACTS.md). Either trainer resumes the
other's folder: the checkpoint dict is this module's alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ddrsa.atomic import read_json, torch_save, write_json
from ddrsa.config import ExperimentConfig
from ddrsa.device import Split, peak_gpu_mb
from ddrsa.errors import DDRSAError
from ddrsa.evaluation import metrics_on_test, validation_loss, validation_metrics, validation_policy
from ddrsa.losses import NASA_LOSS_VERSION
from ddrsa.run_predictions import save_predictions
from ddrsa.schedule import steps_per_batch
from ddrsa.status import COMPLETED, DIVERGED, PAUSED, RUNNING, RunStatus


@dataclass
class TrainResult:
    """What a run returns to its caller (the CLI or the sweep task); small and JSON-able."""

    status: RunStatus  # completed | diverged | paused (stop_after_epoch reached)
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
    val_policy: dict | None = None  # paused: val_oti_* of the best checkpoint so far (search objective)
    predictions: dict | None = field(default=None, repr=False)  # only with return_predictions

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out.pop("predictions")
        return out


def check_run_dir(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse a folder whose config.json is another configuration's."""
    saved = read_json(run_dir / "config.json")
    if saved is not None and saved != config.model_dump(mode="json"):
        raise DDRSAError(f"{run_dir} holds a run of a different configuration; use another output folder or remove it")


def write_config(run_dir: Path, config: ExperimentConfig) -> None:
    write_json(run_dir / "config.json", config.model_dump(mode="json"))


@contextlib.contextmanager
def run_lock(run_dir: Path, timeout_s: float = 300.0):
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


@contextlib.contextmanager
def locked_run_dirs(configs: list[ExperimentConfig], run_dirs: list[Path]):
    """Check that no folder holds another configuration's run (before creating any), then create
    each folder and hold its `run_lock`, in sorted order (one order for every process: no
    lock-order deadlock between groups)."""
    for config, run_dir in zip(configs, run_dirs):
        if run_dir.exists():
            check_run_dir(run_dir, config)
    with contextlib.ExitStack() as stack:
        for run_dir in sorted(run_dirs):
            run_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(run_lock(run_dir))
        yield


class RunState:
    """One run's model, optimizer, scheduler, random streams and loss, and its bookkeeping.

    `epoch` is the last finished epoch (0 before the first); `history` the training log's epoch
    entries (seconds per epoch); `seconds` this session's training time (sum of the epochs'
    seconds); `best_val` the lowest validation loss so far (inf before the first epoch).
    """

    def __init__(self, config: ExperimentConfig, run_dir: Path, model, optimizer, scheduler, gens, loss_fn) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.model, self.optimizer, self.scheduler, self.gens, self.loss_fn = model, optimizer, scheduler, gens, loss_fn
        self.history: list[dict] = []
        self.epoch = 0
        self.best_val = math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.status: RunStatus = RUNNING
        self.diverged_epoch: int | None = None
        self.resumed_from = 0
        self.prior_seconds = 0.0
        self.seconds = 0.0

    @classmethod
    def open(cls, config: ExperimentConfig, run_dir: Path, model, optimizer, scheduler, gens, loss_fn) -> RunState:
        """The run state of `run_dir`: resumed from its checkpoint_last.pt (weights, optimizer,
        scheduler, counters, dropout generator state, the training log up to that epoch) when
        present, fresh otherwise."""
        run = cls(config, run_dir, model, optimizer, scheduler, gens, loss_fn)
        path = run.run_dir / "checkpoint_last.pt"
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            run.epoch = run.resumed_from = int(state["epoch"])
            run.best_val, run.best_epoch = float(state["best_score"]), state.get("best_epoch")
            run.bad_epochs = int(state.get("bad_epochs", 0))
            run.history = list((read_json(run.run_dir / "training_log.json") or {}).get("epochs", []))[: run.epoch]
            if "dropout_rng" in state:  # dropout draws continue where the interrupted run stopped
                gens.dropout.set_state(state["dropout_rng"])
        run.prior_seconds = sum(e["seconds"] for e in run.history)
        return run

    def wants(self, epoch: int) -> bool:
        """Whether `epoch` is this run's next epoch to train (running, not stopped early, within num_epochs)."""
        return (
            self.status == RUNNING
            and self.epoch == epoch - 1
            and epoch <= self.config.num_epochs
            and self.bad_epochs < self.config.patience
        )

    def checkpoint(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_score": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "dropout_rng": self.gens.dropout.get_state(),
            "config": self.config.model_dump(mode="json"),
        }

    def write_log(self, status: RunStatus) -> None:
        write_json(
            self.run_dir / "training_log.json",
            {
                "epochs": self.history,
                "best_epoch": self.best_epoch,
                "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
                "stopped_early": status == COMPLETED and len(self.history) < self.config.num_epochs,
                "status": status,
                "diverged_epoch": self.diverged_epoch,
            },
        )

    def end_epoch(
        self, epoch: int, train_loss: float, val_split: Split, device: torch.device, train_seconds: float
    ) -> None:
        """The end of training epoch `epoch` (train_loss: mean per window; train_seconds: its
        training time): validation loss, the per-epoch (plateau) scheduler step, history entry,
        divergence (status `diverged` on a non-finite loss), early-stopping counters,
        checkpoint_best.pt / checkpoint_last.pt and training_log.json."""
        t1 = time.perf_counter()
        val_loss = validation_loss(self.model, self.loss_fn, val_split, device, self.config.amp)
        lr = self.optimizer.param_groups[0]["lr"]
        if not steps_per_batch(self.scheduler) and math.isfinite(val_loss):
            self.scheduler.step(val_loss)
        seconds = train_seconds + (time.perf_counter() - t1)
        self.seconds += seconds
        self.history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "learning_rate": lr, "seconds": seconds}
        )
        self.epoch = epoch
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self.status, self.diverged_epoch = DIVERGED, epoch
            self.write_log("running")
            return
        if val_loss < self.best_val - 1e-6:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            torch_save(self.checkpoint(), self.run_dir / "checkpoint_best.pt")
        else:
            self.bad_epochs += 1
        # log first: a kill between the two leaves the log one epoch ahead (cut on resume), never
        # behind the checkpoint (the resumed log would lack that epoch)
        self.write_log("running")
        torch_save(self.checkpoint(), self.run_dir / "checkpoint_last.pt")

    def paused_policy(self, data, val_split: Split, device: torch.device) -> dict | None:
        """val_oti_* of checkpoint_best.pt (None without one); loads it into the model, which a paused
        session no longer trains (the next session resumes from checkpoint_last.pt)."""
        path = self.run_dir / "checkpoint_best.pt"
        if not path.exists():
            return None
        self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        return validation_policy(self.model, val_split, data.val, device, self.config)

    def finish(
        self,
        data,
        val_split: Split,
        device: torch.device,
        session_seconds: float | None = None,
        gpu_share: int = 1,
        return_predictions: bool = False,
    ) -> TrainResult:
        """The end of this session: status `paused` when the run would go on (checkpoint_last.pt
        holds it), else `completed` (unless diverged) with the best checkpoint's test and
        validation metrics in test_metrics.json and its per-window predictions in test_predictions.npz
        (ddrsa/run_predictions.py); the final training_log.json; the TrainResult.
        `session_seconds` defaults to the epochs' seconds; peak_gpu_mb is the process's peak /
        `gpu_share` (a fused group's even share per member)."""
        config = self.config
        train_seconds = self.prior_seconds + (self.seconds if session_seconds is None else session_seconds)
        metrics: dict = {}
        predictions = val_policy = None
        if self.status != DIVERGED and self.bad_epochs < config.patience and self.epoch < config.num_epochs:
            self.status = PAUSED  # stop_after_epoch reached
            val_policy = self.paused_policy(data, val_split, device)
        elif self.status != DIVERGED:
            self.status = COMPLETED
            if (self.run_dir / "checkpoint_best.pt").exists():
                best = torch.load(self.run_dir / "checkpoint_best.pt", map_location="cpu", weights_only=True)
                self.model.load_state_dict(best["model"])
            metrics, predictions = metrics_on_test(self.model, data, device, config)
            metrics.update(validation_metrics(self.model, self.loss_fn, val_split, data.val, device, config))
            metrics["train_seconds"] = train_seconds
            save_predictions(self.run_dir, predictions)  # before the metrics: their presence means done
            metrics["nasa_loss_version"] = NASA_LOSS_VERSION  # val_loss's NASA term (absent: version 1)
            write_json(self.run_dir / "test_metrics.json", metrics)
        self.write_log(self.status)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gpu = peak_gpu_mb(device)
        return TrainResult(
            status=self.status,
            metrics=metrics,
            train_seconds=train_seconds,
            epochs_trained=len(self.history),
            best_epoch=self.best_epoch,
            diverged_epoch=self.diverged_epoch,
            device=str(device),
            data_source=data.data_source,
            data_version=data.data_version,
            peak_rss_mb=rss_mb,
            peak_gpu_mb=None if gpu is None else gpu / gpu_share,
            resumed_from_epoch=self.resumed_from,
            best_val_loss=self.best_val if math.isfinite(self.best_val) else None,
            val_policy=val_policy,
            predictions=predictions if return_predictions else None,
        )
