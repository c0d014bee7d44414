"""How a sweep looks to a Prefect operator: retry policy, final state, run names, task-run logs.

- `retry_if_transient`: the task's `retry_condition_fn`. Only errors that can pass on another
  attempt are retried (I/O and connection errors, CUDA/host out of memory, injected faults);
  a configuration or data error (DDRSAError, ValueError, TypeError, ...) fails at once, and a
  timeout is not retried (a hung experiment would hang again). A worker death is Dask's business
  (the task is re-run elsewhere, see flows/grid.py `GridCollector`), not a Prefect retry.
- `sweep_state(summary, ...)`: the flow's return value, a `Failed` state when any experiment failed
  (message: how many and why; `data`: the summary), else `Completed` with a one-line message.
- `sweep_run_name()`: the flow's `flow_run_name`, e.g. `batch-study-60exp-parallel-experiments-1129-1905`;
  `analysis_run_name()` the analysis flow's, e.g. `analysis-fd001-1129-2224`.
- `ddrsa_logs_to_prefect()`: around one experiment, the `ddrsa` loggers' records (one INFO line
  per epoch from ddrsa.trainer) go to Prefect's API as logs of the current task run, on any
  Dask worker (nothing to configure on the workers).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

from ddrsa.errors import DDRSAError
from ddrsa.status import FAILED

# ------------------------------------------------------------------------------------ retries
TRANSIENT_NAMES = {"KilledWorker", "CommClosedError", "OutOfMemoryError"}  # distributed / torch classes


def transient_error(exc: object) -> bool:
    """True for an exception another attempt may not meet: OSError (I/O, connections), CUDA or host
    out of memory, a worker lost under the task, an injected fault (flows/faults.py `raise`).
    False for a timeout and for every configuration or data error (DDRSAError, ValueError, ...)."""
    from flows.faults import InjectedFault

    if not isinstance(exc, BaseException) or isinstance(exc, (TimeoutError, DDRSAError)):
        return False
    if isinstance(exc, (OSError, MemoryError, InjectedFault)) or type(exc).__name__ in TRANSIENT_NAMES:
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def retry_if_transient(_task, _task_run, state) -> bool:
    """Prefect `retry_condition_fn`: `state.data` is the exception the attempt raised."""
    return transient_error(state.data)


def failed_attempts(state, allowed: int) -> int:
    """Attempts a task run that ended in the failed `state` made: `allowed` when its error was
    retried, else 1 (read from the exception the state holds)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # result not readable: assume the retries ran
        return allowed
    return allowed if transient_error(exc) else 1


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
    return [f"{r.get('name')}: {_short(r.get('error'))}" for r in records
            if isinstance(r, dict) and r.get("status") == FAILED
            and (experiment_ids is None or r.get("experiment_id") in experiment_ids)]


def sweep_message(summary: dict, reasons: list[str]) -> str:
    """One line: counts, then up to MAX_REASONS failures with their error."""
    n = summary.get("n_experiments", 0)
    counts = (f"{summary.get('completed', 0)} completed ({summary.get('cached', 0)} cached), "
              f"{summary.get('failed', 0)} failed, {summary.get('diverged', 0)} diverged of {n}")
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


def sweep_state(summary: dict, experiment_ids: set[str] | None = None):
    """The sweep flow's final state: Failed when any experiment failed (diverged runs are results
    of their hyperparameters, not failures), else Completed. The data is the summary (Completed)
    or a SweepFailed carrying it (Failed; `flow(..., return_state=True).result(raise_on_failure=False)`
    returns it, a plain call raises it)."""
    from prefect.states import Completed, Failed

    if summary.get("failed"):
        reasons = failure_reasons(summary["output_dir"], experiment_ids) if summary.get("output_dir") else []
        message = sweep_message(summary, reasons)
        return Failed(message=message, data=SweepFailed(message, summary))
    return Completed(message=sweep_message(summary, []), data=summary)


def state_summary(state) -> dict:
    """The sweep's summary from its final state; re-raises what the flow raised otherwise
    (a folder held by another sweep, bad parameters, ...)."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, SweepFailed):
        return result.summary
    if isinstance(result, BaseException):
        raise result
    return result


# ------------------------------------------------------------------------------------ run names
def slug(text: str) -> str:
    """Lowercase letters, digits and dashes (Prefect artifact keys; readable run names)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in cleaned.split("-") if part)


def run_name(parameters: dict, now: datetime | None = None) -> str:
    """`<preset>-<N>exp-<output folder>-<MMDD-HHMM UTC>` for a sweep with these flow parameters;
    without a preset `sweep-...`; the count is left out when the grid cannot be expanded."""
    from flows.options import SPEC_FIELDS, build_spec

    preset = parameters.get("preset")
    folder = Path(str(parameters.get("output_dir") or "parallel_experiments")).name
    try:
        from ddrsa.sweep.spec import expand

        spec = build_spec(preset, {k: parameters.get(k) for k in SPEC_FIELDS})
        count = f"{len(expand(spec))}exp"
    except Exception:  # a bad parameter fails the run itself, with its own message
        count = ""
    stamp = (now or datetime.now(timezone.utc)).strftime("%m%d-%H%M")
    return slug("-".join(p for p in (preset or "sweep", count, folder, stamp) if p))


def sweep_run_name() -> str:
    """`flow_run_name` of the sweep flow (reads the run's parameters from prefect.runtime)."""
    from prefect.runtime import flow_run

    return run_name(dict(flow_run.parameters or {}))


def analysis_run_name() -> str:
    """`flow_run_name` of the analysis flow: `analysis-<run label or output folder>-<MMDD-HHMM UTC>`."""
    from prefect.runtime import flow_run

    parameters = dict(flow_run.parameters or {})
    what = parameters.get("run_label") or Path(str(parameters.get("output_dir") or "parallel_experiments")).name
    return slug(f"analysis-{what}-{datetime.now(timezone.utc):%m%d-%H%M}")


# ------------------------------------------------------------------------------------ task-run logs
def _in_task_run(_record: logging.LogRecord) -> bool:
    from prefect.context import TaskRunContext

    return TaskRunContext.get() is not None


class _ToRoot(logging.Handler):
    """Hands WARNING and worse to the root logger's handlers (what propagation did before)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


_lock = threading.Lock()
_users = 0
_installed: list[logging.Handler] = []
_saved: tuple[int, bool] = (logging.NOTSET, True)


@contextlib.contextmanager
def ddrsa_logs_to_prefect(name: str = "ddrsa"):
    """While any experiment of this process runs inside it: INFO records of logger `name` (and its
    children) go to Prefect's API as logs of the task run that emitted them (other threads' runs
    get their own: the run is looked up per record); WARNING and worse still reach the console.
    Reference-counted: concurrent experiments on one worker share one installation, the last one
    out restores the logger. Records emitted outside a task run are not sent."""
    from prefect.logging.handlers import APILogHandler

    global _users, _saved
    logger = logging.getLogger(name)
    with _lock:
        if _users == 0:
            _saved = (logger.level, logger.propagate)
            _installed[:] = [_ToRoot(logging.WARNING)]
            if not any(isinstance(h, APILogHandler) for h in logger.handlers):  # PREFECT_LOGGING_EXTRA_LOGGERS=ddrsa
                api = APILogHandler(level=logging.INFO)
                api.addFilter(_in_task_run)
                _installed.append(api)
            for handler in _installed:
                logger.addHandler(handler)
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.propagate = False
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for handler in _installed:
                    logger.removeHandler(handler)
                _installed.clear()
                logger.setLevel(_saved[0])
                logger.propagate = _saved[1]
