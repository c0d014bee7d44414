"""What the sweep tells its user about each experiment and about the whole: the `[n/N]` result line
(each number named: test RMSE, val RMSE, benchmark RMSE only on official C-MAPSS test units) and the
progress artifact's description (done, remaining, time left)."""

from __future__ import annotations

from ddrsa.status import COMPLETED, FAILED


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
    text = (
        f"{done} of {total} done: {completed} completed ({cached} cached), {failed} failed, {diverged} diverged; "
        f"{remaining} remaining"
    )
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
    if record.get("status") != COMPLETED:
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
    if last or (last == 0 and record.get("status") != FAILED and attempts == 1):
        return duration_text(float(last))
    return f"{attempts} attempt" + ("s" if attempts > 1 else "") + ", time not recorded"


def result_line(record: dict, cached: bool = False, how: str = "") -> str:
    """One terminal/log line for a recorded experiment, after its `[n/N]` counter:
    `completed turbofan/paper/bs64_... (fused, 12 s) test RMSE 22.03 (val RMSE 22.11), test C-index 0.612`."""
    return (
        f"{record['status']}{' (cached)' if cached else ''} {record.get('name')} ({how}{time_text(record)}) "
        f"{metrics_text(record)}"
    )
