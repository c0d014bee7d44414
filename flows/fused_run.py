"""Fused groups in the sweep (`--fuse auto|on|off`, `--max-fused N`; ddrsa/fused).

`submit_groups` is called by flows/grid.py `run_grid` with the experiments still to train: it groups
them (ddrsa/fused/groups.py) and submits each group as one Prefect task named for it
(`turbofan/paper/bs128 x24`, holding a whole worker). The experiments left alone (unfusable, or
without a partner) are submitted by `GridCollector` next to the groups, so both run side by side;
it records one result per member (`group_records`) as each group finishes, and the
members of a group that failed (its worker died, or it failed after its retries) go back into its
queue to train one by one.

Caching and resume stay per member: a member whose record is finished under its own cache key
(config + code + data version + folder, `cache_key`) with its test_metrics.json present is not
submitted again; a group killed part-way resumes each unfinished member from its checkpoint
(`train_group` loads checkpoint_last.pt per member), and a finished member trains no epoch.
"""

from __future__ import annotations

from pathlib import Path

import dask
from prefect import get_run_logger, task

from ddrsa.config import ExperimentConfig
from ddrsa.fused.groups import plan_groups
from ddrsa.status import DIVERGED, FINISHED
from ddrsa.sweep.results import make_record, now_iso, safe_run_dir
from flows.faults import injected_faults
from flows.gpu_limits import gpu_slot
from flows.run_ops import ddrsa_logs_to_prefect, retry_if_transient
from flows.runner import worker_name
from flows.tasks import RETRIES, RETRY_DELAY_S, start_over_if_stale


@task(
    name="train-fused-group",
    task_run_name="{name}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY_S,
    retry_condition_fn=retry_if_transient,
    persist_result=False,
)
def train_fused_group(
    name: str, members: list[dict], output_dir: str, code_version: str, data_versions: list[str], keys: list[str]
) -> list[dict]:
    """Train one fusion group (resuming each member) and return one result record per member.
    One log line per member per epoch (the task run's logs in Prefect)."""
    from prefect.runtime import task_run

    from ddrsa.fused import train_group

    attempt = task_run.run_count or 1
    logger = get_run_logger()
    configs = [ExperimentConfig(**m["config"]) for m in members]
    dirs = [safe_run_dir(Path(output_dir), m["run_dir"]) for m in members]
    for run_dir, version in zip(dirs, data_versions):
        start_over_if_stale(run_dir, code_version, version)
    started = now_iso()

    def on_epoch(i: int, entry: dict) -> None:
        logger.info(
            "%s epoch %d/%d train %.4f val %.4f lr %.2e",
            members[i]["name"],
            entry["epoch"],
            configs[i].num_epochs,
            entry["train_loss"],
            entry["val_loss"],
            entry["learning_rate"],
        )

    with ddrsa_logs_to_prefect(), gpu_slot(1.0, logger):  # a group holds its whole GPU's limit
        with injected_faults(name, attempt, dirs[0]):  # DDRSA_INJECT_FAULT=MODE:<group name part>:N
            results = train_group(configs, dirs, on_epoch=on_epoch)
    worker = worker_name()
    return [
        {
            **make_record(m, status=r.status, result=r.to_dict(), worker=worker, attempts=attempt, started_at=started),
            "cache_key": key,
        }
        for m, r, key in zip(members, results, keys)
    ]


def finished_member(record: dict | None, key: str, out: Path) -> bool:
    """A member finished earlier under the same cache key (its test metrics on disk when completed)."""
    if record is None or record.get("status") not in FINISHED or record.get("cache_key") != key:
        return False
    return record["status"] == DIVERGED or (safe_run_dir(out, record["run_dir"]) / "test_metrics.json").is_file()


def submit_groups(
    todo: list[dict],
    *,
    fuse: str,
    max_fused: int | None,
    resource: str,
    runner,
    out: Path,
    code_version: str,
    data_version: dict,
    key_of,
    logger,
) -> tuple[list[tuple], list[dict]]:
    """Group the experiments `todo` (ddrsa/fused/groups.py) and submit each group as one task
    holding a whole worker (or GPU). Returns ([(Prefect future, group)], the experiments left alone);
    flows/grid.py `GridCollector` records the groups as they finish, side by side with the others."""
    device_type = "cuda" if resource == "GPU" else "cpu"
    groups, singles = plan_groups(todo, fuse, device_type, max_fused)
    if groups:
        logger.info("%d fused group(s): %s", len(groups), "; ".join(g["name"] for g in groups))
    futures = []
    for group in groups:
        members = group["members"]
        params = dict(
            name=group["name"],
            members=members,
            output_dir=str(out),
            code_version=code_version,
            data_versions=[data_version[m["experiment_id"]] for m in members],
            keys=[key_of(m) for m in members],
        )
        with dask.annotate(resources={resource: 1}):  # a whole worker (or GPU) per group
            futures.append((runner.submit(train_fused_group, parameters=params), group))
    return futures, singles


def group_records(outcome, group: dict, logger) -> list[dict] | None:
    """The member records of a finished group task (`outcome`: its final State, or the exception
    of flows/runner.py `Completions.next`), or None when the group failed (its worker died, or it
    failed after its retries): then its members train one by one, each resuming its own
    checkpoint, with the per-experiment retries and failure records."""
    try:
        if isinstance(outcome, Exception):  # KilledWorker and friends: this group's members
            raise outcome
        records = outcome.result(raise_on_failure=False) if outcome.is_completed() else None
        error = None if records is not None else (outcome.message or outcome.name)[:2000]
    except Exception as exc:
        records, error = None, f"{type(exc).__name__}: {exc}"
    if records is None or isinstance(records, BaseException):
        error = error or f"{type(records).__name__}: {records}"
        logger.warning(
            "fused group %s failed (%s): its %d members train one by one",
            group["name"],
            error[:300],
            len(group["members"]),
        )
        return None
    return records
