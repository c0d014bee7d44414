"""Status values, defined once: of a run (training_log.json `status`, `TrainResult.status`) and
of a result record (all_results.json `status`, docs/CONTRACTS.md)."""

from __future__ import annotations

from typing import Final, Literal, get_args

RunStatus = Literal["running", "paused", "completed", "diverged"]
Status = Literal["completed", "diverged", "failed", "paused", "stopped_early"]

RUNNING: Final = "running"  # training_log.json while epochs are being trained
COMPLETED: Final = "completed"  # trained to the end (or stopped early by patience), test metrics written
DIVERGED: Final = "diverged"  # a non-finite loss ended the run (never retried)
FAILED: Final = "failed"  # raised after its retries, timed out, or its worker died
PAUSED: Final = "paused"  # an adaptive search's rung reached (stop_after_epoch): a later call continues
STOPPED_EARLY: Final = "stopped_early"  # a paused run the search did not promote (never ranked)

STATUSES: tuple[str, ...] = get_args(Status)
FINISHED: tuple[Status, ...] = (COMPLETED, DIVERGED)  # records a re-run need not train again
