"""How a sweep looks to a Prefect operator: retry policy, run names, task-run logs.

- `retry_if_transient`: the task's `retry_condition_fn`. Only errors that can pass on another
  attempt are retried (I/O and connection errors, CUDA/host out of memory, injected faults);
  a configuration or data error (DDRSAError, ValueError, TypeError, ...) fails at once, and a
  timeout is not retried (a hung experiment would hang again). A worker death is Dask's business
  (the task is re-run elsewhere, see flows/grid.py `GridCollector`), not a Prefect retry.
- the final state (a Failed state with a readable summary for a sweep whose experiments failed) is
  flows/final_state.py.
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
