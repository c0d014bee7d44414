"""`--search halving|tpe`: adaptive searches on the sweep's Prefect + Dask machinery.

Both submit the grid's task (`flows.sweep.train_experiment`) with `stop_after_epoch` = the rung's
epoch budget, through the task runner's `submit` and Prefect's public futures API
(`prefect.futures.as_completed`); a promoted run continues from its checkpoint. As many runs are in
flight as the cluster has experiment slots, so no slot idles at a rung barrier (ASHA).

halving: the ASHA logic of `ddrsa.sweep.halving`; each decision is appended (fsynced) to
  OUTPUT_DIR/search_decisions.jsonl before it is acted on, and replayed by the same command after
  a kill: in-flight runs are submitted again (their checkpoints, and Prefect's result cache keyed
  by experiment and rung, mean nothing finished is trained again), then the search goes on.
tpe: Optuna TPE through ask-and-tell (`ddrsa.sweep.tpe`), pruned by Optuna's
  SuccessiveHalvingPruner on the same rungs; the study is OUTPUT_DIR/optuna_study.db.

Records (all_results.json) carry `search`, `rung` (index of the highest rung reached),
`rung_epochs`, `epochs_trained`, `promoted`; a configuration the search stopped before the last
rung has `status: stopped_early` and no test metrics (it is never ranked).
"""
from __future__ import annotations

import inspect
import random
import shutil
import time
from pathlib import Path

import dask
from prefect.futures import as_completed

from ddrsa.config import ExperimentConfig
from ddrsa.errors import DDRSAError
from ddrsa.metrics import val_key
from ddrsa.policy import INTERVENTION_TTE, intervention_metrics
from ddrsa.sweep.halving import Asha, DecisionLog, replay, result_event
from ddrsa.sweep.results import JOURNAL, RESULTS, ResultsStore, make_record, now_iso, safe_run_dir, write_manifest
from ddrsa.sweep.tpe import (STUDY_FILE, check_search, describe_space, fields_of, finite_or_none, open_study, rungs_for,
                             search_space, suggest)
from ddrsa.version import code_version
from flows.cluster import plan_cluster
from flows.gpu_monitor import GpuMonitor
from flows.prepare import data_key

PAUSED = "paused"
SHUFFLE_SEED = 0  # order in which halving starts the grid's configurations
STOPPED = "stopped_early"


def _slots(runner, plan) -> int:
    """Experiments the cluster runs at once: its `plan.resource` total / the share of one."""
    workers = runner.client.scheduler_info().get("workers", {}).values()
    total = sum(w.get("resources", {}).get(plan.resource, 0) for w in workers)
    return max(1, int(total / plan.per_experiment + 1e-9))


def _outcome_of(future, planned: dict) -> tuple[dict, bool]:
    """(record, cached) of a finished train task; an exception is a `failed` record."""
    try:
        record = future.result(raise_on_failure=True)
        cached = getattr(future.state, "name", "") == "Cached"
    except Exception as exc:  # retries exhausted, timeout, KilledWorker: this run only
        record = make_record(planned, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        cached = False
    return record, cached


def objective(record: dict, spec) -> float | None:
    """What a rung ranks on (lower is better): `_val_loss`, or with spec.search_objective
    "intervention" the best checkpoint's validation mean time left at the OTI cost whose validation
    miss rate is closest to spec.miss_rate (ddrsa/policy.py; None, i.e. worst, when undefined)."""
    if getattr(spec, "search_objective", "val_loss") != "intervention":
        return _val_loss(record)
    metrics = (record.get("metrics") if record["status"] == "completed" else
               record.get("val_policy") if record["status"] == PAUSED else None) or {}
    return finite_or_none(intervention_metrics(metrics, spec.miss_rate)[val_key(INTERVENTION_TTE)])


def _val_loss(record: dict) -> float | None:
    """What a rung ranks on: the lowest validation loss so far (the best checkpoint's)."""
    if record["status"] == "completed":
        return finite_or_none((record.get("metrics") or {}).get("val_loss", record.get("best_val_loss")))
    if record["status"] == PAUSED:
        return finite_or_none(record.get("best_val_loss"))
    return None


def run_search(spec, planned, data_versions, out: Path, logger, *, search: str, min_epochs=None,
               reduction_factor: int = 3, n_trials=None, gpus_per_experiment: float = 1.0,
               scheduler_address=None, n_workers=None, fresh: bool = False, run_analysis: bool = True,
               append_to_history: bool = False, preset=None, experiment_timeout=None, fuse: str = "auto",
               **_more) -> dict:
    """The body of the flow `ddrsa-sweep` for `search` halving or tpe (the grid is flows/sweep.py:_run)."""
    from flows.sweep import _started_runner, result_storage, train_experiment

    check_search(spec, search, min_epochs, reduction_factor, n_trials, fuse)  # runs started from the UI too
    version = code_version()
    eta = int(reduction_factor)
    rungs = rungs_for(spec, min_epochs, eta)
    if fresh:
        for item in planned:
            shutil.rmtree(safe_run_dir(out, item.run_dir), ignore_errors=True)
        shutil.rmtree(out / "logs" / "tpe", ignore_errors=True)
        for name in (RESULTS, JOURNAL, DecisionLog(out).path.name, STUDY_FILE):
            (out / name).unlink(missing_ok=True)
    store = ResultsStore(out)
    plan = plan_cluster(gpus_per_experiment, scheduler_address, n_workers)
    task_fn = train_experiment.with_options(result_storage=result_storage(out), refresh_cache=fresh,
                                            timeout_seconds=experiment_timeout)
    data_version = data_versions[data_key(planned[0].config)]
    settings = {"search": search, "rungs": rungs, "reduction_factor": eta, "n_trials": n_trials,
                "full_grid_epochs": len(planned) * spec.num_epochs, "grid_size": len(planned)}
    started = now_iso()
    manifest = dict(grid=spec.grid(), code_version=version, data_versions=data_versions, started_at=started,
                    extra={"preset": preset, "spec": spec.model_dump(mode="json"), "cluster": plan.description,
                           "search": settings})
    logger.info("ddrsa-sweep --search %s: rungs %s epochs, eta %d, on %s; output %s", search, rungs, eta,
                plan.description, out)
    t0 = time.monotonic()
    restart = None if scheduler_address else lambda: plan_cluster(gpus_per_experiment, None, n_workers)
    with GpuMonitor(out), _started_runner(plan, restart, logger) as runner:
        def submit(item: dict, epochs: int):
            params = dict(name=item["name"], planned=item, output_dir=str(out), code_version=version,
                          data_version=data_version, stop_after_epoch=epochs)
            if "gpus_per_experiment" in inspect.signature(train_experiment.fn).parameters:
                params["gpus_per_experiment"] = gpus_per_experiment
            with dask.annotate(resources={plan.resource: plan.per_experiment}):
                return runner.submit(task_fn, parameters=params)

        slots = _slots(runner, plan)
        try:
            if search == "halving":
                write_manifest(out, planned=[p.as_dict() for p in planned], **manifest)
                items, summary = _halving(planned, rungs, eta, out, store, submit, slots, logger, spec)
            else:
                items, summary = _tpe(spec, planned, rungs, eta, n_trials, out, store, submit, slots, logger,
                                      manifest)
        finally:
            store.close()
    wall = time.monotonic() - t0
    settings.update(summary, wall_seconds=wall)
    write_manifest(out, planned=items, **{**manifest, "extra": {**manifest["extra"], "search": settings}},
                   finished_at=now_iso())
    records = store.records()
    counts = {s: sum(r["status"] == s for r in records) for s in ("completed", "failed", "diverged", STOPPED)}
    logger.info("ddrsa-sweep --search %s finished in %.0f s: %s; %d of the full grid's %d epochs (%.0f%%)",
                search, wall, counts, summary["epochs_trained"], settings["full_grid_epochs"],
                100.0 * summary["epochs_trained"] / max(settings["full_grid_epochs"], 1))
    result = {"output_dir": str(out), "n_experiments": len(items), "wall_seconds": wall, "cached": summary["cached"],
              **counts, "search": settings}
    if run_analysis:
        from flows.analysis import analysis_flow

        result["analysis"] = analysis_flow(output_dir=str(out), append_to_history=append_to_history,
                                           run_label=preset)
    return result


# ------------------------------------------------------------------------------------------ halving
def _halving(planned, rungs, eta, out, store, submit, slots, logger, spec=None) -> tuple[list[dict], dict]:
    items = {p.experiment_id: p.as_dict() for p in planned}
    # configurations start in a fixed shuffled order: in grid order (sorted learning rates, ...) each
    # newcomer can beat the ones before it and ASHA would promote nearly all (measured: 58 of 72)
    ids = list(items)
    random.Random(SHUFFLE_SEED).shuffle(ids)
    asha = Asha(ids, rungs, eta)
    log = DecisionLog(out)
    header = {"event": "header", "search": "halving", "rungs": rungs, "eta": eta, "ids": ids}
    events = log.read()
    if events and events[0] != header:
        raise DDRSAError(f"{log.path} holds another search (other grid, rungs or eta); use --fresh or "
                         "another --output-dir")
    if not events:
        log.append(header)
    if replay(asha, events):
        logger.info("resuming the search: %d decisions replayed, %d runs in flight again", len(events) - 1,
                    len(asha.pending()))
    inflight = {submit(items[cid], rungs[r]): (cid, r) for cid, r in asha.pending()}
    cached = 0
    while True:
        while len(inflight) < slots and (job := asha.next_job()) is not None:
            log.append(job)  # decided before acted on: a kill replays it
            asha.apply(job)
            inflight[submit(items[job["id"]], rungs[job["rung"]])] = (job["id"], job["rung"])
        if not inflight:
            break
        future = next(as_completed(list(inflight)))
        cid, rung = inflight.pop(future)
        record, was_cached = _outcome_of(future, items[cid])
        cached += was_cached
        final = record["status"] != PAUSED or rung == len(rungs) - 1
        event = result_event(cid, rung, record.get("epochs_trained") or 0, objective(record, spec), final)
        log.append(event)
        asha.apply(event)
        store.upsert(_annotate(record, "halving", rung, rungs, asha.outcome(cid)["promoted"], stopped=False))
        logger.info("rung %d (%d epochs) %s%s %s val_loss %s", rung, rungs[rung], record["status"],
                    " (cached)" if was_cached else "", record["name"], event["val_loss"])
    for cid in asha.started:  # final statuses: a paused run the search did not promote stopped early
        record = store.get(cid)
        if record is not None:
            outcome = asha.outcome(cid)
            store.upsert(_annotate(record, "halving", outcome["rung"], rungs, outcome["promoted"],
                                   stopped=outcome["stopped_early"]))
    return list(items.values()), {"epochs_trained": asha.total_epochs(), "cached": cached,
                                  "configurations_started": len(asha.started)}


def _annotate(record: dict, search: str, rung: int | None, rungs: list[int], promoted: bool,
              stopped: bool) -> dict:
    """The record with the search's fields; a paused run the search `stopped` becomes stopped_early."""
    out = dict(record, search=search, rung=rung, rung_epochs=rungs, promoted=bool(promoted))
    if stopped and out["status"] == PAUSED:
        out["status"] = STOPPED
    return out


# ---------------------------------------------------------------------------------------------- tpe
def _trial_item(base: ExperimentConfig, fields: dict, number: int) -> dict:
    config = ExperimentConfig(**{**base.model_dump(), **fields})
    return {"index": number, "experiment_id": f"{config.experiment_id()}-t{number}",
            "name": f"trial{number}/{config.display_name()}", "run_dir": f"logs/tpe/trial{number:04d}",
            "config": config.model_dump(mode="json")}


def _tpe(spec, planned, rungs, eta, n_trials, out, store, submit, slots, logger, manifest):
    import optuna
    from optuna.trial import TrialState

    space = search_space(spec)
    base = planned[0].config
    study = open_study(out, rungs, eta, seed=base.seed)
    logger.info("TPE over %s; %d trials, pruning by successive halving on rungs %s", describe_space(space),
                n_trials, rungs)
    items: dict[int, dict] = {}
    for frozen in study.get_trials(deepcopy=False):
        items[frozen.number] = _trial_item(base, fields_of(frozen.params, space), frozen.number)
    inflight: dict = {}
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # killed mid-trial
        done_steps = [s for s in frozen.intermediate_values if s in rungs]
        rung = rungs.index(max(done_steps)) + 1 if done_steps else 0
        trial = optuna.trial.Trial(study, frozen._trial_id)
        inflight[submit(items[frozen.number], rungs[rung])] = (trial, rung)
    if inflight:
        logger.info("resuming the study: %d trials told, %d running again", len(items) - len(inflight),
                    len(inflight))
    cached = 0
    while True:
        while len(inflight) < slots and len(study.trials) < n_trials:
            trial = study.ask()
            items[trial.number] = item = _trial_item(base, suggest(trial, space), trial.number)
            write_manifest(out, planned=list(items.values()), **manifest)
            inflight[submit(item, rungs[0])] = (trial, 0)
        if not inflight:
            break
        future = next(as_completed(list(inflight)))
        trial, rung = inflight.pop(future)
        item = items[trial.number]
        record, was_cached = _outcome_of(future, item)
        cached += was_cached
        value = objective(record, spec)
        last = rung == len(rungs) - 1
        if record["status"] == PAUSED and not last:
            trial.report(value, rungs[rung])
            pruned = trial.should_prune()
            store.upsert(_annotate(dict(record, trial=trial.number), "tpe", rung, rungs, not pruned or rung > 0,
                                   stopped=pruned))
            logger.info("trial %d rung %d (%d epochs) val_loss %s: %s", trial.number, rung, rungs[rung], value,
                        "pruned" if pruned else "continues")
            if pruned:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                inflight[submit(item, rungs[rung + 1])] = (trial, rung + 1)
            continue
        elif value is None:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
        if record["status"] != PAUSED:
            store.upsert(_annotate(dict(record, trial=trial.number), "tpe", rung, rungs, rung > 0, stopped=False))
        logger.info("trial %d rung %d %s%s val_loss %s", trial.number, rung, record["status"],
                    " (cached)" if was_cached else "", value)
    epochs = sum((r.get("epochs_trained") or 0) for r in store.records())
    best = None
    try:
        best = {"number": study.best_trial.number, "value": study.best_value, "params": study.best_params}
    except ValueError:  # no completed trial
        pass
    return list(items.values()), {"epochs_trained": epochs, "cached": cached, "trials": len(study.trials),
                                  "best_trial": best}
