"""How a sweep looks to a Prefect operator: retry policy, final state, run names, task-run logs.

- `retry_if_transient`: the task's `retry_condition_fn`. Only errors that can pass on another
  attempt are retried (I/O and connection errors, CUDA/host out of memory, injected faults);
  a configuration or data error (DDRSAError, ValueError, TypeError, ...) fails at once, and a
  timeout is not retried (a hung experiment would hang again). A worker death is Dask's business
  (the task is re-run elsewhere, see flows/sweep.py `_collect`), not a Prefect retry.
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
            if isinstance(r, dict) and r.get("status") == "failed"
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


# ------------------------------------------------------------------------------------ progress
def duration_text(seconds: float) -> str:
    """`45 s`, `12 min`, `3.4 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def progress_description(counts: dict, total: int, elapsed_s: float) -> str:
    """The progress artifact's description: done (completed, failed, diverged; cached among them),
    remaining, and the time left at the rate so far (experiments trained in this run per second of
    `elapsed_s`, cached ones excluded: they cost nothing). E.g. `12 of 60 done: 10 completed (2
    cached), 1 failed, 1 diverged; 48 remaining, about 24 min left (31 s per experiment so far)`."""
    completed, failed, diverged = (int(counts.get(k, 0)) for k in ("completed", "failed", "diverged"))
    cached = int(counts.get("cached", 0))
    done = completed + failed + diverged
    remaining = max(total - done, 0)
    text = (f"{done} of {total} done: {completed} completed ({cached} cached), {failed} failed, {diverged} diverged; "
            f"{remaining} remaining")
    if not remaining:
        return text.replace("; 0 remaining", "; finished")
    trained = done - cached
    if trained <= 0 or elapsed_s <= 0:
        return text + ", time left not known yet (no experiment finished in this run)"
    per = elapsed_s / trained
    return text + f", about {duration_text(per * remaining)} left ({per:.0f} s per experiment so far)"


# ------------------------------------------------------------------------------------ result lines
def attempts_seconds(this_attempt_s: float) -> float:
    """Seconds spent on every attempt of the current task run: Prefect's `total_run_time` of the
    attempts before this one (the task engine keeps it on TaskRunContext, on any Dask worker) plus
    `this_attempt_s`. Outside a task run: `this_attempt_s`."""
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    earlier = ctx.task_run.total_run_time.total_seconds() if ctx and ctx.task_run else 0.0
    return earlier + float(this_attempt_s or 0.0)


def metrics_text(record: dict) -> str:
    """What the numbers of a finished record are: `test RMSE 22.03 (val RMSE 22.11) test C-index
    0.612`, plus `benchmark RMSE 12.82 (official test units, truth capped at 125)` for C-MAPSS scored
    on the official test units only (on held-out units there is no literature number: nothing is
    called benchmark). A failed or diverged record: its error."""
    if record.get("status") != "completed":
        return (record.get("error") or f"diverged at epoch {record.get('diverged_epoch')}")[:200]
    metrics = record.get("metrics") or {}
    rmse, val, cindex = (metrics.get(k) for k in ("rul_rmse", "val_rul_rmse", "concordance_index"))
    parts = [f"test RMSE {rmse:.2f}" if rmse is not None else "test RMSE n/a"]
    if val is not None:
        parts[0] += f" (val RMSE {val:.2f})"
    parts.append(f"test C-index {cindex:.3f}" if cindex is not None else "test C-index n/a")
    bench = metrics.get("benchmark_rmse")
    if bench is not None and record.get("test_split") == "official":
        parts.append(f"benchmark RMSE {bench:.2f} (official test units, truth capped at 125)")
    return ", ".join(parts)


def time_text(record: dict) -> str:
    """`12 s`, `14 s over 3 attempts` (every attempt counted: `attempts_seconds` when the record has
    it), or `3 attempts` when no time was recorded (a failure) - never a false `0 s`."""
    attempts = int(record.get("attempts") or 1)
    seconds, last = record.get("attempts_seconds"), record.get("train_seconds")
    if seconds is not None:
        return duration_text(float(seconds)) + (f" over {attempts} attempts" if attempts > 1 else "")
    if last and attempts > 1:
        return f"{duration_text(float(last))} in the last of {attempts} attempts"
    if last or (last == 0 and record.get("status") != "failed" and attempts == 1):
        return duration_text(float(last))
    return f"{attempts} attempt" + ("s" if attempts > 1 else "") + ", time not recorded"


def result_line(record: dict, cached: bool = False, how: str = "") -> str:
    """One terminal/log line for a recorded experiment, after its `[n/N]` counter:
    `completed turbofan/paper/bs64_... (fused, 12 s) test RMSE 22.03 (val RMSE 22.11), test C-index 0.612`."""
    return (f"{record['status']}{' (cached)' if cached else ''} {record.get('name')} ({how}{time_text(record)}) "
            f"{metrics_text(record)}")


# ------------------------------------------------------------------------------------ run names
def slug(text: str) -> str:
    """Lowercase letters, digits and dashes (Prefect artifact keys; readable run names)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in cleaned.split("-") if part)


def run_name(parameters: dict, now: datetime | None = None) -> str:
    """`<preset>-<N>exp-<output folder>-<MMDD-HHMM UTC>` for a sweep with these flow parameters;
    without a preset `sweep-...`; the count is left out when the grid cannot be expanded."""
    from flows.sweep_cli import SPEC_FIELDS, build_spec

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


readable_failures()  # on import: flows/sweep.py imports this module in the process that runs the flow
