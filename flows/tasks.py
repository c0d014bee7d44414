"""The sweep's train task and what its caching rests on: the cache key, the results storage,
the run folder's version stamp. Submitted by flows/grid.py and flows/search.py."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from prefect import get_run_logger, task
from prefect.filesystems import LocalFileSystem

from ddrsa.config import ExperimentConfig
from ddrsa.status import FINISHED
from ddrsa.sweep.results import make_record, now_iso, safe_run_dir
from ddrsa.trainer import train
from flows.faults import injected_faults
from flows.gpu_limits import gpu_slot
from flows.progress_lines import attempts_seconds
from flows.run_ops import ddrsa_logs_to_prefect, retry_if_transient
from flows.runner import worker_name

RESULTS_CACHE = ".prefect-results"
RETRIES, RETRY_DELAY_S = 2, 5  # an experiment that raises runs up to 3 times, 5 s apart
VERSIONS_FILE = ".versions.json"


def cache_key(_context, parameters: dict) -> str:
    """Experiment config + code version + data version + output folder; never the flow run."""
    folder = hashlib.sha256(str(parameters["output_dir"]).encode()).hexdigest()[:8]
    stop = parameters.get("stop_after_epoch")  # a search's rung: its own result (same run folder)
    rung = f"-e{stop}" if stop is not None and stop < parameters["planned"]["config"]["num_epochs"] else ""
    return (
        f"ddrsa-{parameters['planned']['experiment_id']}-{parameters['code_version']}"
        f"-{parameters['data_version']}-{folder}{rung}"
    )


def finished_under_key(record: dict | None, key: str, out: Path) -> bool:
    """True when `record` (from all_results.json) is a finished result that Prefect holds under cache
    key `key` (`cache_key` of this run's parameters) in OUTPUT_DIR/.prefect-results: submitted
    again it would only come back Cached, after ~0.2 s of orchestration (4.5 min for a finished
    full grid), so the sweep counts it as cached without submitting it. --fresh (records
    emptied), new code or new data (another key) still train."""
    return (
        record is not None
        and record.get("status") in FINISHED
        and record.get("cache_key") == key
        and (out / RESULTS_CACHE / key).is_file()
    )


def result_storage(out: Path) -> LocalFileSystem:
    """Cached task results live in OUTPUT_DIR/.prefect-results on every worker (a saved block:
    workers in other processes resolve storage by block id, not from this process's settings)."""
    fs = LocalFileSystem(basepath=str(out / RESULTS_CACHE))
    name = "ddrsa-results-" + hashlib.sha256(str(out).encode()).hexdigest()[:12]
    fs.save(name, overwrite=True)
    return fs


def start_over_if_stale(run_dir: Path, code_version: str, data_version: str) -> None:
    """A cache miss caused by new code or data must retrain, not resume the old checkpoint: a run
    folder stamped with other versions (or none) is emptied; then it is stamped with these."""
    from ddrsa.atomic import read_json, write_json

    stamp = {"code_version": code_version, "data_version": data_version}
    if run_dir.exists() and read_json(run_dir / VERSIONS_FILE) != stamp:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / VERSIONS_FILE, stamp)


@task(
    name="train-experiment",
    task_run_name="{name}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY_S,
    retry_condition_fn=retry_if_transient,
    cache_key_fn=cache_key,
    persist_result=True,
)
def train_experiment(
    name: str,
    planned: dict,
    output_dir: str,
    code_version: str,
    data_version: str,
    gpus_per_experiment: float = 1.0,
    stop_after_epoch: int | None = None,
) -> dict:
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
        record = make_record(
            planned,
            status=result.status,
            result=result.to_dict(),
            worker=worker_name(),
            attempts=attempt,
            started_at=started,
        )
        record["attempts_seconds"] = attempts_seconds(result.train_seconds)  # earlier attempts included
        if stop_after_epoch is not None:
            record["best_val_loss"] = result.best_val_loss
            if result.val_policy:  # a paused run's val_oti_*: the search's intervention objective
                record["val_policy"] = result.val_policy
        return record
