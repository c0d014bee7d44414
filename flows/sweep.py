"""`ddrsa-sweep`: train every grid point on a Dask cluster, resumably, then analyse.

    python flows/sweep.py                      # small default sweep (see --help)
    python flows/sweep.py --preset batch-study --num-epochs 20
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python flows/sweep.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":  # check the command line before the slow imports below
    from ddrsa.cli import run_cli
    from flows.sweep_cli import preflight

    PARAMS = run_cli("python flows/sweep.py", preflight, sys.argv[1:], passthrough=True)
    if PARAMS is None:
        sys.exit(0)
    # Prefect's console log (tracebacks included) on stdout: stderr holds only this command's
    # one-line error (disk full, Ctrl-C, ...). Read when prefect is imported below.
    import os

    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", "ext://sys.stdout")

import collections
import contextlib
import hashlib
import os
import shutil
import time

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # worker start-up chatter off the terminal

import dask
import distributed
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.filesystems import LocalFileSystem

from ddrsa.config import ExperimentConfig
from ddrsa.sweep.results import (JOURNAL, ResultsStore, SweepLock, check_output_dir, make_record, now_iso,
                                 safe_run_dir, write_manifest)
from ddrsa.trainer import train
from ddrsa.version import code_version
from flows.cluster import plan_cluster
from flows.faults import injected_faults
from flows.fused_run import finished_member, group_records, submit_groups  # fusion groups (--fuse)
from flows.gpu_limits import gpu_slot
from flows.gpu_monitor import GpuMonitor
from flows.prepare import data_key, prepare
from flows.run_ops import (ddrsa_logs_to_prefect, failed_attempts, retry_if_transient, state_summary, sweep_run_name,
                           sweep_state)
from flows.sweep_cli import FLOW_FIELDS, SPEC_FIELDS, build_spec, flow_docstring, flow_signature

RESULTS_CACHE = ".prefect-results"
RETRIES, RETRY_DELAY_S = 2, 5  # an experiment that raises runs up to 3 times, 5 s apart


def cache_key(_context, parameters: dict) -> str:
    """Experiment config + code version + data version + output folder; never the flow run."""
    folder = hashlib.sha256(str(parameters["output_dir"]).encode()).hexdigest()[:8]
    stop = parameters.get("stop_after_epoch")  # a search's rung: its own result (same run folder)
    rung = f"-e{stop}" if stop is not None and stop < parameters["planned"]["config"]["num_epochs"] else ""
    return (f"ddrsa-{parameters['planned']['experiment_id']}-{parameters['code_version']}"
            f"-{parameters['data_version']}-{folder}{rung}")


FINISHED = ("completed", "diverged")  # returned records, so Prefect caches them (a failure raises)


def finished_under_key(record: dict | None, key: str, out: Path) -> bool:
    """True when `record` (from all_results.json) is a finished result that Prefect holds under cache
    key `key` (`cache_key` of this run's parameters) in OUTPUT_DIR/.prefect-results: submitted
    again it would only come back Cached, after ~0.2 s of orchestration (4.5 min for a finished
    full grid), so the sweep counts it as cached without submitting it. --fresh (records
    emptied), new code or new data (another key) still train."""
    return (record is not None and record.get("status") in FINISHED and record.get("cache_key") == key
            and (out / RESULTS_CACHE / key).is_file())


def result_storage(out: Path) -> LocalFileSystem:
    """Cached task results live in OUTPUT_DIR/.prefect-results on every worker (a saved block:
    workers in other processes resolve storage by block id, not from this process's settings)."""
    fs = LocalFileSystem(basepath=str(out / RESULTS_CACHE))
    name = "ddrsa-results-" + hashlib.sha256(str(out).encode()).hexdigest()[:12]
    fs.save(name, overwrite=True)
    return fs


def _worker_name() -> str | None:
    try:
        return str(distributed.get_worker().name)
    except ValueError:  # not inside a Dask worker
        return None


VERSIONS_FILE = ".versions.json"


def start_over_if_stale(run_dir: Path, code_version: str, data_version: str) -> None:
    """A cache miss caused by new code or data must retrain, not resume the old checkpoint: a run
    folder stamped with other versions (or none) is emptied; then it is stamped with these."""
    from ddrsa.atomic import read_json, write_json

    stamp = {"code_version": code_version, "data_version": data_version}
    if run_dir.exists() and read_json(run_dir / VERSIONS_FILE) != stamp:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / VERSIONS_FILE, stamp)


@task(name="train-experiment", task_run_name="{name}", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S,
      retry_condition_fn=retry_if_transient, cache_key_fn=cache_key, persist_result=True)
def train_experiment(name: str, planned: dict, output_dir: str, code_version: str,
                     data_version: str, gpus_per_experiment: float = 1.0,
                     stop_after_epoch: int | None = None) -> dict:
    """Train one experiment (resuming its checkpoint) and return its result record.

    `stop_after_epoch` (adaptive search, flows/search.py): train up to that epoch only; the record
    then has status `paused` and `best_val_loss`, and a later call continues the run.

    On a GPU it first takes its share of the GPU's global concurrency limit (flows/gpu_limits.py),
    so concurrent sweeps never oversubscribe a device. Errors that can pass (I/O, out of memory:
    flows/run_ops.py `transient_error`) are retried by Prefect; a configuration or data error or a
    timeout fails at once; a diverged run returns status `diverged` (no retry). Its `ddrsa` log
    lines (one per epoch) are this task run's logs in Prefect.
    """
    from prefect.runtime import task_run

    attempt = task_run.run_count or 1
    config = ExperimentConfig(**planned["config"])
    run_dir = safe_run_dir(Path(output_dir), planned["run_dir"])
    with ddrsa_logs_to_prefect(), gpu_slot(gpus_per_experiment, get_run_logger()):
        start_over_if_stale(run_dir, code_version, data_version)
        started = now_iso()
        with injected_faults(name, attempt, run_dir) as fault:
            result = train(config, run_dir, inject_nan=fault == "nan", stop_after_epoch=stop_after_epoch)
        record = make_record(planned, status=result.status, result=result.to_dict(), worker=_worker_name(),
                             attempts=attempt, started_at=started)
        if stop_after_epoch is not None:
            record["best_val_loss"] = result.best_val_loss
            if result.val_policy:  # a paused run's val_oti_*: the search's intervention objective
                record["val_policy"] = result.val_policy
        return record


SUBMIT_WINDOW = 64  # experiments submitted but not yet recorded, at most (each submit costs ~0.1-0.2 s)


def _collect(submit, todo: list[dict], store: ResultsStore, total: int, progress_id, logger, loop,
             resubmit_alone=None, *, counts: dict | None = None, key_of=None, window: int = SUBMIT_WINDOW,
             groups: dict | None = None) -> dict:
    """Submit the experiments `todo` (`submit(planned)` -> Prefect future) at most `window` in
    flight, and record each as it finishes; a failure never stops the others. Submission and
    recording interleave, so progress moves from the first finished experiment on instead of after
    the last submission. `counts` holds what was counted before (experiments not submitted);
    `key_of(planned)`: the cache key a completed record is stamped with (`cache_key`).

    `groups` ({Dask future: fused group}, flows/fused_run.py `submit_groups`) are already running:
    they are recorded member by member as they finish, side by side with the experiments of
    `todo`; a failed group's members join the queue and train one by one. `total` counts every
    experiment, grouped or not.

    An experiment whose worker died too often (KilledWorker) may only have shared the worker
    (or its queue) with the experiment that kills it. Once nothing else is in flight, each such
    experiment runs once more, one at a time and holding a whole worker
    (`resubmit_alone(planned)`); only a second KilledWorker (then it is the killer) records it
    as failed.
    """
    counts = dict(counts or {"completed": 0, "failed": 0, "diverged": 0, "cached": 0})
    groups = dict(groups or {})
    done = total - len(todo) - sum(len(g["members"]) for g in groups.values())  # counted before: not submitted
    attempts_allowed = 1 + (train_experiment.retries or 0)
    queue = collections.deque(todo)
    wrapped: dict = dict(groups)  # Dask future -> planned (or group), submitted and not yet recorded
    alone: set[str] = set()  # experiment ids already re-run on a worker of their own
    suspects: list[dict] = []  # KilledWorker once: to re-run alone when nothing else runs
    pending = distributed.as_completed(list(groups), loop=loop)

    def fill() -> None:
        """Submit up to `window` in flight; stop early when one has finished (record it first)."""
        while len(wrapped) < window and queue:
            planned = queue.popleft()
            future = submit(planned).wrapped_future
            wrapped[future] = planned
            pending.add(future)
            if pending.has_ready():
                return

    def record_one(record: dict, cached: bool, how: str = "") -> None:
        nonlocal done
        store.upsert(record)
        counts[record["status"]] = counts.get(record["status"], 0) + 1
        counts["cached"] += cached
        done += 1
        logger.info("[%d/%d] %s%s %s (%s%.0f s) %s", done, total, record["status"], " (cached)" if cached else "",
                    record["name"], how, record.get("train_seconds") or 0.0, _detail(record))

    def show_progress() -> None:
        if progress_id is not None:
            update_progress_artifact(progress_id, 100.0 * done / total,
                                     description=f"{counts['completed']} completed, {counts['failed']} failed, "
                                                 f"{counts['diverged']} diverged of {total}")

    def outcome_of(dask_future, planned: dict) -> tuple[dict, bool] | None:
        """(record, cached) of a finished single experiment; None when it goes back to run alone."""
        try:
            state = dask_future.result()
        except Exception as exc:  # KilledWorker and friends: this experiment only
            if (type(exc).__name__ == "KilledWorker" and resubmit_alone is not None
                    and planned["experiment_id"] not in alone):
                alone.add(planned["experiment_id"])
                logger.warning("%s: its worker died (%s); it runs again alone once nothing else runs",
                               planned["name"], type(exc).__name__)
                suspects.append(planned)
                return None
            note = " (also when run alone on a worker)" if planned["experiment_id"] in alone else ""
            return make_record(planned, status="failed", error=f"{type(exc).__name__}: {exc}{note}"), False
        if state.is_completed():
            record = state.result(raise_on_failure=False)
            if key_of is not None:  # what it is cached under: a re-run need not submit it
                record = {**record, "cache_key": key_of(planned)}
            return record, state.name == "Cached"
        if state.name == "TimedOut":
            return make_record(planned, status="failed", error=f"timed out: {state.message}"[:2000]), False
        return make_record(planned, status="failed", attempts=failed_attempts(state, attempts_allowed),
                           error=(state.message or state.name)[:2000]), False

    fill()
    while wrapped:
        dask_future = next(pending)
        planned = wrapped.pop(dask_future)
        if dask_future in groups:  # a fused group: one record per member, or its members one by one
            records = group_records(dask_future, groups.pop(dask_future), logger)
            if records is None:
                queue.extend(planned["members"])
            outcomes = [(record, False, "fused, ") for record in records or ()]
        else:
            outcome = outcome_of(dask_future, planned)
            outcomes = [] if outcome is None else [(*outcome, "")]
        # forget it on the cluster: a worker that dies later must not make Dask recompute it
        dask_future.release()
        for record, cached, how in outcomes:
            record_one(record, cached, how)
        if outcomes:
            show_progress()
        fill()  # after the lines and the artifact: they never wait for submissions
        _next_alone(wrapped, suspects, pending, resubmit_alone)
    return counts


def _next_alone(wrapped: dict, suspects: list, pending, resubmit_alone) -> None:
    """With nothing in flight (and nothing left to submit), submit the next suspect of killing its
    worker, alone."""
    if suspects and not wrapped:
        planned = suspects.pop(0)
        again = resubmit_alone(planned).wrapped_future
        wrapped[again] = planned
        pending.add(again)


def _detail(record: dict) -> str:
    if record["status"] != "completed":
        return (record.get("error") or f"diverged at epoch {record.get('diverged_epoch')}")[:200]
    metrics = record.get("metrics") or {}
    rmse, cindex = metrics.get("rul_rmse"), metrics.get("concordance_index")
    # validation (what winners are chosen on) and, on official test units, the literature's number
    also = [f"{label} {metrics[key]:.2f}" for label, key in (("val", "val_rul_rmse"), ("benchmark", "benchmark_rmse"))
            if metrics.get(key) is not None]
    return (f"rmse {rmse:.2f}" if rmse is not None else "rmse n/a") + (f" ({', '.join(also)})" if also else "") + (
        f" c-index {cindex:.3f}" if cindex is not None else " c-index n/a")


FLOW_SUMMARY = "Expand the grid (preset + overrides), train every experiment on Dask, write results, analyse."


def ddrsa_sweep(**params) -> dict:
    """The flow's body. Its parameters are the fields of SweepSpec (what to train; None = the
    preset's value) and SweepOptions (where and how), both in flows/sweep_cli.py / ddrsa/sweep/spec.py:
    the signature below is derived from them, so Prefect validates runs and its UI form shows
    each field's type, constraints and description."""
    logger = get_run_logger()
    spec = build_spec(params["preset"], {k: params[k] for k in SPEC_FIELDS})
    planned, data_versions = prepare(spec)
    out = check_output_dir(Path(params["output_dir"])).resolve()
    options = {k: params[k] for k in FLOW_FIELDS if k != "output_dir"}  # each one a keyword of _run
    with SweepLock(out):
        return sweep_state(_run(spec, planned, data_versions, out, logger, **options),
                           {p.experiment_id for p in planned})


ddrsa_sweep.__signature__ = flow_signature()
ddrsa_sweep.__doc__ = flow_docstring(FLOW_SUMMARY)
ddrsa_sweep = flow(name="ddrsa-sweep", log_prints=True, description=FLOW_SUMMARY,
                   flow_run_name=sweep_run_name)(ddrsa_sweep)


CLUSTER_START_ATTEMPTS = 3


@contextlib.contextmanager
def _started_runner(plan, make_plan, logger, attempts: int = CLUSTER_START_ATTEMPTS):
    """Enter the plan's task runner (this starts the local Dask cluster). A worker process that
    dies while the cluster starts (OOM killer, a stray kill) makes Nanny start-up fail for the
    whole cluster; `make_plan()` builds a fresh one, up to `attempts` times. `make_plan` is None
    for an existing cluster (--scheduler-address): its start-up is not ours to retry."""
    for attempt in range(1, attempts + 1):
        stack = contextlib.ExitStack()
        try:
            runner = stack.enter_context(plan.task_runner)
            runner.client  # prefect-dask starts the cluster lazily, on first use of its client
        except Exception as exc:  # distributed raises RuntimeError/OSError/TimeoutError here
            stack.close()
            if attempt == attempts or make_plan is None:
                raise
            logger.warning("the Dask cluster failed to start (%s: %s); starting a fresh one (%d of %d)",
                           type(exc).__name__, exc, attempt + 1, attempts)
            plan = make_plan()
            continue
        with stack:
            yield runner
        return


def progress_key(preset: str | None, out: Path) -> str:
    """`ddrsa-sweep-progress-<preset or output folder name>` (flows/analysis.py `artifact_scope`)."""
    from flows.analysis import artifact_scope, scoped_key

    return scoped_key(artifact_scope(preset, out), "sweep-progress")


def _run(spec, planned, data_versions, out: Path, logger, *, gpus_per_experiment, scheduler_address,
         n_workers, fresh, run_analysis, append_to_history, preset, experiment_timeout=None,
         search="grid", min_epochs=None, reduction_factor=3, n_trials=None, fuse="auto", max_fused=None) -> dict:
    if search != "grid":  # adaptive search: flows/search.py
        from flows.search import run_search

        return run_search(spec, planned, data_versions, out, logger, search=search, min_epochs=min_epochs,
                          reduction_factor=reduction_factor, n_trials=n_trials,
                          gpus_per_experiment=gpus_per_experiment, scheduler_address=scheduler_address,
                          n_workers=n_workers, fresh=fresh, run_analysis=run_analysis,
                          append_to_history=append_to_history, preset=preset,
                          experiment_timeout=experiment_timeout, fuse=fuse)
    version = code_version()
    plan = plan_cluster(gpus_per_experiment, scheduler_address, n_workers)
    if fresh:
        for item in planned:
            shutil.rmtree(safe_run_dir(out, item.run_dir), ignore_errors=True)
        (out / "all_results.json").unlink(missing_ok=True)
        (out / JOURNAL).unlink(missing_ok=True)
    store = ResultsStore(out)
    started = now_iso()
    manifest = dict(grid=spec.grid(), planned=[p.as_dict() for p in planned], code_version=version,
                    data_versions=data_versions, started_at=started,
                    extra={"preset": preset, "spec": spec.model_dump(mode="json"),
                           "cluster": plan.description})
    write_manifest(out, **manifest)
    logger.info("ddrsa-sweep: %d experiments on %s; output %s", len(planned), plan.description, out)
    t0 = time.monotonic()
    task_fn = train_experiment.with_options(result_storage=result_storage(out), refresh_cache=fresh,
                                            timeout_seconds=experiment_timeout)

    data_version = {p.experiment_id: data_versions[data_key(p.config)] for p in planned}

    def parameters(item: dict) -> dict:
        return dict(name=item["name"], planned=item, output_dir=str(out), code_version=version,
                    data_version=data_version[item["experiment_id"]], gpus_per_experiment=gpus_per_experiment)

    def key_of(item: dict) -> str:
        return cache_key(None, parameters(item))

    # finished earlier under the same cache key: counted as cached, not submitted (tests/test_fullgrid_cache.py)
    todo, counts = [], {"completed": 0, "failed": 0, "diverged": 0, "cached": 0}
    for item in (p.as_dict() for p in planned):
        record = None if fresh else store.get(item["experiment_id"])
        if finished_under_key(record, key_of(item), out) or finished_member(record, key_of(item), out):
            counts[record["status"]] += 1
            counts["cached"] += 1
        else:
            todo.append(item)
    skipped = len(planned) - len(todo)
    progress_id = create_progress_artifact(
        progress=100.0 * skipped / max(len(planned), 1), key=progress_key(preset, out),
        description=f"{counts['completed']} completed, 0 failed, {counts['diverged']} diverged of {len(planned)}")
    if skipped:
        logger.info("[%d/%d] finished earlier with the same config, code and data versions (cache key): "
                    "%d counted as cached, not submitted", skipped, len(planned), skipped)

    restart = None if scheduler_address else lambda: plan_cluster(gpus_per_experiment, None, n_workers)
    # no cluster when every experiment finished earlier
    runner_context = _started_runner(plan, restart, logger) if todo else contextlib.nullcontext()
    with GpuMonitor(out, devices=plan.devices), runner_context as runner:
        def submit(item: dict):
            with dask.annotate(resources={plan.resource: plan.per_experiment}):
                return runner.submit(task_fn, parameters=parameters(item))

        def resubmit_alone(item: dict):
            with dask.annotate(resources={plan.resource: 1}):  # a whole worker
                return runner.submit(task_fn, parameters=parameters(item))

        try:
            if todo:  # fusion groups (flows/fused_run.py) and one task per experiment left, side by side
                groups, todo = submit_groups(
                    todo, fuse=fuse, max_fused=max_fused, resource=plan.resource, runner=runner, out=out,
                    code_version=version, data_version=data_version, key_of=key_of, logger=logger)
                counts = _collect(submit, todo, store, len(planned), progress_id, logger, runner.client.loop,
                                  resubmit_alone=resubmit_alone, counts=counts, key_of=key_of, groups=groups)
        finally:  # every record in all_results.json, even after Ctrl-C (a SIGKILL leaves the journal)
            store.close()
    wall = time.monotonic() - t0
    write_manifest(out, **manifest, finished_at=now_iso())
    logger.info("ddrsa-sweep finished in %.0f s: %s", wall, counts)
    summary = {"output_dir": str(out), "n_experiments": len(planned), "wall_seconds": wall, **counts}
    if run_analysis:
        from flows.analysis import analysis_flow

        summary["analysis"] = analysis_flow(output_dir=str(out), append_to_history=append_to_history,
                                            run_label=preset)
    return summary


def main(params: dict) -> int:
    """Run the flow with checked parameters (see flows/sweep_cli.py) under one API server."""
    import logging

    from flows.server import api_server

    logging.getLogger("distributed").setLevel(logging.WARNING)
    with api_server(Path(params["output_dir"])):  # its own database in OUTPUT_DIR/.prefect
        state = ddrsa_sweep(**params, return_state=True)
        summary = state_summary(state)  # raises what the flow raised (folder held by another sweep, ...)
    from reports.tables import folder_data_sources

    print(f"{summary['completed']} completed ({summary['cached']} cached), {summary['failed']} failed, "
          f"{summary['diverged']} diverged of {summary['n_experiments']} in {summary['wall_seconds']:.0f} s; "
          f"data: {folder_data_sources(summary['output_dir'])}; results in {summary['output_dir']}")
    for line in (summary.get("analysis") or {}).get("winners", []):
        print(f"  {line}")
    if not state.is_completed():
        print(f"flow run {state.name}: {state.message}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(run_cli("python flows/sweep.py", main, PARAMS))
