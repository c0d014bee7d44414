"""A sweep's final state as a Prefect operator sees it.

- `sweep_state(summary, ...)`: the flow's return value, a `Failed` state when any experiment failed
  (message: how many and why; `data`: the summary), else `Completed` with a one-line message; the
  summary is the run's last log line, and a designed failure (`SweepFailed`) shows no engine traceback
  (`readable_failures`), while a real crash keeps its traceback.
- `state_summary(state)`: the summary back from the final state (re-raises what a crashed flow raised).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ddrsa.status import FAILED

# ------------------------------------------------------------------------------------ final state
MAX_REASONS = 3


def _short(error: str | None) -> str:
    """First line of a record's error, without Prefect's 'Task run encountered an exception' preamble."""
    line = (error or "failed").strip().splitlines()[0] if (error or "").strip() else "failed"
    return line.removeprefix("Task run encountered an exception ")[:300]


def failure_reasons(output_dir: str | Path, experiment_ids: set[str] | None = None) -> list[str]:
    """`name: error` of each failed record in OUTPUT_DIR/all_results.json (of `experiment_ids` when given)."""
    from ddrsa.atomic import read_json

    records = read_json(Path(output_dir) / "all_results.json") or []
    return [
        f"{r.get('name')}: {_short(r.get('error'))}"
        for r in records
        if isinstance(r, dict)
        and r.get("status") == FAILED
        and (experiment_ids is None or r.get("experiment_id") in experiment_ids)
    ]


def sweep_message(summary: dict, reasons: list[str]) -> str:
    """One line: counts, then up to MAX_REASONS failures with their error."""
    n = summary.get("n_experiments", 0)
    counts = (
        f"{summary.get('completed', 0)} completed ({summary.get('cached', 0)} cached), "
        f"{summary.get('failed', 0)} failed, {summary.get('diverged', 0)} diverged of {n}"
    )
    if not summary.get("failed"):
        return counts
    shown = "; ".join(reasons[:MAX_REASONS])
    more = f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else ""
    why = f": {shown}{more}" if shown else ""
    return f"{summary['failed']} of {n} experiments failed{why} ({counts}; all in {summary.get('output_dir')})"


class SweepFailed(Exception):
    """Data of a Failed sweep state: what calling the flow in Python raises. `.summary`: the
    summary dict a completed sweep returns (counts, output_dir, analysis)."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary

    def __reduce__(self):
        return (SweepFailed, (str(self), self.summary))


def _log_last(line: str) -> None:
    """ERROR `line` on the run's logger (the flow run's last log line), else on `flows.run_ops`."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        get_run_logger().error(line)
    except MissingContextError:
        logging.getLogger(__name__).error(line)


def sweep_state(summary: dict, experiment_ids: set[str] | None = None):
    """The sweep flow's final state: Failed when any experiment failed (diverged runs are results
    of their hyperparameters, not failures), else Completed. The data is the summary (Completed)
    or a SweepFailed carrying it (Failed; `flow(..., return_state=True).result(raise_on_failure=False)`
    returns it, a plain call raises it)."""
    from prefect.states import Completed, Failed

    if summary.get("failed"):
        reasons = failure_reasons(summary["output_dir"], experiment_ids) if summary.get("output_dir") else []
        message = sweep_message(summary, reasons)
        _log_last(f"sweep ended Failed: {message}")
        return Failed(message=message, data=SweepFailed(message, summary))
    return Completed(message=sweep_message(summary, []), data=summary)


ENGINE_EXIT = "Engine execution exited with unexpected exception"  # prefect.flow_engine's closing log record


class DesignedFailureLog(logging.Filter):
    """On Prefect's flow-run logger: a sweep that ends Failed by design returns `sweep_state`'s
    Failed state, and Prefect's engine (a deployment run: worker or serve) still raises the state's
    exception and logs `Engine execution exited with unexpected exception` with ~40 lines of its own
    traceback as the run's last log entry. This filter drops that record when its exception is a
    SweepFailed: the run's last line stays the one `sweep_state` logged (`sweep ended Failed: 1 of 2
    experiments failed: ...`). Any other exception (a real crash) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # sweep_state already logged the summary as the run's last line: drop the engine's copy
        return not (record.msg == ENGINE_EXIT and isinstance(exc, SweepFailed))


def readable_failures(logger_name: str = "prefect.flow_runs") -> None:
    """Install DesignedFailureLog on Prefect's flow-run logger once per process (flows/sweep.py at
    import: the engine that runs the flow from a deployment runs in the same process)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, DesignedFailureLog) for f in logger.filters):
        logger.addFilter(DesignedFailureLog())


def state_summary(state) -> dict:
    """The sweep's summary from its final state; re-raises what the flow raised otherwise
    (a folder held by another sweep, bad parameters, ...)."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, SweepFailed):
        return result.summary
    if isinstance(result, BaseException):
        raise result
    return result


readable_failures()  # on import: flows/sweep.py imports this module in the process that runs the flow
