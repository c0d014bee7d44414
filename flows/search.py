"""`--search halving|tpe`: adaptive searches on the sweep's Prefect + Dask machinery.

Both submit the grid's task (`flows.tasks.train_experiment`) with `stop_after_epoch` = the rung's
epoch budget, through the task runner's `submit`, and take each back as it finishes
(flows/runner.py `Completions`, as the grid does); a promoted run continues from its checkpoint. As many runs are in
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

import time

from ddrsa.config import ExperimentConfig
from ddrsa.status import COMPLETED, DIVERGED, FAILED, PAUSED, STOPPED_EARLY
from ddrsa.sweep.halving import DecisionLog
from ddrsa.sweep.results import now_iso, write_manifest
from ddrsa.sweep.tpe import (
    STUDY_FILE,
    describe_space,
    fields_of,
    open_study,
    rungs_for,
    search_space,
    suggest,
)
from flows.halving import annotate, objective, outcome_of, run_halving
from flows.prepare import data_key
from flows.runner import Completions, slot_count
from flows.session import SweepSession


def run_search(
    session: SweepSession, *, search: str, min_epochs=None, reduction_factor: int = 3, n_trials=None
) -> dict:
    """The body of the flow `ddrsa-sweep` for `search` halving or tpe (the grid is flows/grid.py);
    its settings were checked (ddrsa/sweep/tpe.py `check_search`)."""
    spec, planned, out, logger = session.spec, session.planned, session.out, session.logger
    eta = int(reduction_factor)
    rungs = rungs_for(spec, min_epochs, eta)
    session.wipe_if_fresh(files=(DecisionLog(out).path.name, STUDY_FILE), folders=("logs/tpe",))
    store = session.open_store()
    task_fn = session.task()
    data_version = session.data_versions[data_key(planned[0].config)]
    settings = {
        "search": search,
        "rungs": rungs,
        "reduction_factor": eta,
        "n_trials": n_trials,
        "full_grid_epochs": len(planned) * spec.num_epochs,
        "grid_size": len(planned),
    }
    manifest = session.manifest(search=settings)
    logger.info(
        "ddrsa-sweep --search %s: rungs %s epochs, eta %d, on %s; output %s",
        search,
        rungs,
        eta,
        session.plan.description,
        out,
    )
    t0 = time.monotonic()
    with session.running() as runner:
        completions = Completions(runner)

        def submit(item: dict, epochs: int, job) -> None:
            params = session.parameters(item, data_version, stop_after_epoch=epochs)
            completions.add(session.submit(runner, task_fn, params), job)

        slots = slot_count(runner, session.plan)
        if search == "halving":
            write_manifest(out, planned=[p.as_dict() for p in planned], **manifest)
            items, summary = run_halving(planned, rungs, eta, out, store, submit, completions, slots, logger, spec)
        else:
            items, summary = _tpe(
                spec, planned, rungs, eta, n_trials, out, store, submit, completions, slots, logger, manifest
            )
    wall = time.monotonic() - t0
    settings.update(summary, wall_seconds=wall)
    write_manifest(
        out, planned=items, **{**manifest, "extra": {**manifest["extra"], "search": settings}}, finished_at=now_iso()
    )
    records = store.records()
    counts = {s: sum(r["status"] == s for r in records) for s in (COMPLETED, FAILED, DIVERGED, STOPPED_EARLY)}
    logger.info(
        "ddrsa-sweep --search %s finished in %.0f s: %s; %d of the full grid's %d epochs (%.0f%%)",
        search,
        wall,
        counts,
        summary["epochs_trained"],
        settings["full_grid_epochs"],
        100.0 * summary["epochs_trained"] / max(settings["full_grid_epochs"], 1),
    )
    return session.analyse(
        {
            "output_dir": str(out),
            "n_experiments": len(items),
            "wall_seconds": wall,
            "cached": summary["cached"],
            **counts,
            "search": settings,
        }
    )


# ---------------------------------------------------------------------------------------------- tpe
def _trial_item(base: ExperimentConfig, fields: dict, number: int) -> dict:
    config = ExperimentConfig(**{**base.model_dump(), **fields})
    return {
        "index": number,
        "experiment_id": f"{config.experiment_id()}-t{number}",
        "name": f"trial{number}/{config.display_name()}",
        "run_dir": f"logs/tpe/trial{number:04d}",
        "config": config.model_dump(mode="json"),
    }


def _tpe(spec, planned, rungs, eta, n_trials, out, store, submit, completions, slots, logger, manifest):
    import optuna
    from optuna.trial import TrialState

    space = search_space(spec)
    base = planned[0].config
    study = open_study(out, rungs, eta, seed=base.seed)
    logger.info(
        "TPE over %s; %d trials, pruning by successive halving on rungs %s", describe_space(space), n_trials, rungs
    )
    items: dict[int, dict] = {}
    for frozen in study.get_trials(deepcopy=False):
        items[frozen.number] = _trial_item(base, fields_of(frozen.params, space), frozen.number)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # killed mid-trial
        done_steps = [s for s in frozen.intermediate_values if s in rungs]
        rung = rungs.index(max(done_steps)) + 1 if done_steps else 0
        trial = optuna.trial.Trial(study, frozen._trial_id)
        submit(items[frozen.number], rungs[rung], (trial, rung))
    if len(completions):
        logger.info(
            "resuming the study: %d trials told, %d running again", len(items) - len(completions), len(completions)
        )
    cached = 0
    while True:
        while len(completions) < slots and len(study.trials) < n_trials:
            trial = study.ask()
            items[trial.number] = item = _trial_item(base, suggest(trial, space), trial.number)
            write_manifest(out, planned=list(items.values()), **manifest)
            submit(item, rungs[0], (trial, 0))
        if not len(completions):
            break
        (trial, rung), outcome = completions.next()
        item = items[trial.number]
        record, was_cached = outcome_of(outcome, item)
        cached += was_cached
        value = objective(record, spec)
        last = rung == len(rungs) - 1
        if record["status"] == PAUSED and not last:
            trial.report(value, rungs[rung])
            pruned = trial.should_prune()
            store.upsert(
                annotate(dict(record, trial=trial.number), "tpe", rung, rungs, not pruned or rung > 0, stopped=pruned)
            )
            logger.info(
                "trial %d rung %d (%d epochs) val_loss %s: %s",
                trial.number,
                rung,
                rungs[rung],
                value,
                "pruned" if pruned else "continues",
            )
            if pruned:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                submit(item, rungs[rung + 1], (trial, rung + 1))
            continue
        elif value is None:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
        if record["status"] != PAUSED:
            store.upsert(annotate(dict(record, trial=trial.number), "tpe", rung, rungs, rung > 0, stopped=False))
        logger.info(
            "trial %d rung %d %s%s val_loss %s",
            trial.number,
            rung,
            record["status"],
            " (cached)" if was_cached else "",
            value,
        )
    epochs = sum((r.get("epochs_trained") or 0) for r in store.records())
    best = None
    try:
        best = {"number": study.best_trial.number, "value": study.best_value, "params": study.best_params}
    except ValueError:  # no completed trial
        pass
    return list(items.values()), {
        "epochs_trained": epochs,
        "cached": cached,
        "trials": len(study.trials),
        "best_trial": best,
    }
