"""`--search halving`: the ASHA loop (decisions of `ddrsa.sweep.halving`, logged before acted on and
replayed after a kill), and what both adaptive searches share: a finished task's record, what a rung
ranks on (`objective`), and the search's fields on a record (`annotate`). flows/search.py dispatches."""

from __future__ import annotations

import random

from ddrsa.errors import DDRSAError
from ddrsa.metrics import val_key
from ddrsa.policy import INTERVENTION_TTE, intervention_metrics
from ddrsa.status import COMPLETED, FAILED, PAUSED, STOPPED_EARLY
from ddrsa.sweep.halving import Asha, DecisionLog, replay, result_event
from ddrsa.sweep.results import make_record
from ddrsa.sweep.tpe import finite_or_none

SHUFFLE_SEED = 0  # order in which halving starts the grid's configurations


def outcome_of(outcome, planned: dict) -> tuple[dict, bool]:
    """(record, cached) of a finished train task (`Completions.next`); an exception is a `failed` record."""
    try:
        if isinstance(outcome, Exception):  # KilledWorker: the task never reached a state
            raise outcome
        record = outcome.result(raise_on_failure=True)
        cached = outcome.name == "Cached"
    except Exception as exc:  # retries exhausted, timeout, KilledWorker: this run only
        record = make_record(planned, status=FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        cached = False
    return record, cached


def objective(record: dict, spec) -> float | None:
    """What a rung ranks on (lower is better): `val_loss`, or with spec.search_objective
    "intervention" the best checkpoint's validation mean time left at the OTI cost whose validation
    miss rate is closest to spec.miss_rate (ddrsa/policy.py; None, i.e. worst, when undefined)."""
    if getattr(spec, "search_objective", "val_loss") != "intervention":
        return val_loss(record)
    metrics = (
        record.get("metrics")
        if record["status"] == COMPLETED
        else record.get("val_policy")
        if record["status"] == PAUSED
        else None
    ) or {}
    return finite_or_none(intervention_metrics(metrics, spec.miss_rate)[val_key(INTERVENTION_TTE)])


def val_loss(record: dict) -> float | None:
    """What a rung ranks on: the lowest validation loss so far (the best checkpoint's)."""
    if record["status"] == COMPLETED:
        return finite_or_none((record.get("metrics") or {}).get("val_loss", record.get("best_val_loss")))
    if record["status"] == PAUSED:
        return finite_or_none(record.get("best_val_loss"))
    return None


def run_halving(
    planned, rungs, eta, out, store, submit, completions, slots, logger, spec=None
) -> tuple[list[dict], dict]:
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
        raise DDRSAError(
            f"{log.path} holds another search (other grid, rungs or eta); use --fresh or another --output-dir"
        )
    if not events:
        log.append(header)
    if replay(asha, events):
        logger.info(
            "resuming the search: %d decisions replayed, %d runs in flight again", len(events) - 1, len(asha.pending())
        )
    for cid, r in asha.pending():
        submit(items[cid], rungs[r], (cid, r))
    cached = 0
    while True:
        while len(completions) < slots and (job := asha.next_job()) is not None:
            log.append(job)  # decided before acted on: a kill replays it
            asha.apply(job)
            submit(items[job["id"]], rungs[job["rung"]], (job["id"], job["rung"]))
        if not len(completions):
            break
        (cid, rung), outcome = completions.next()
        record, was_cached = outcome_of(outcome, items[cid])
        cached += was_cached
        final = record["status"] != PAUSED or rung == len(rungs) - 1
        event = result_event(cid, rung, record.get("epochs_trained") or 0, objective(record, spec), final)
        log.append(event)
        asha.apply(event)
        store.upsert(annotate(record, "halving", rung, rungs, asha.outcome(cid)["promoted"], stopped=False))
        logger.info(
            "rung %d (%d epochs) %s%s %s val_loss %s",
            rung,
            rungs[rung],
            record["status"],
            " (cached)" if was_cached else "",
            record["name"],
            event["val_loss"],
        )
    for cid in asha.started:  # final statuses: a paused run the search did not promote stopped early
        record = store.get(cid)
        if record is not None:
            outcome = asha.outcome(cid)
            store.upsert(
                annotate(
                    record, "halving", outcome["rung"], rungs, outcome["promoted"], stopped=outcome["stopped_early"]
                )
            )
    return list(items.values()), {
        "epochs_trained": asha.total_epochs(),
        "cached": cached,
        "configurations_started": len(asha.started),
    }


def annotate(record: dict, search: str, rung: int | None, rungs: list[int], promoted: bool, stopped: bool) -> dict:
    """The record with the search's fields; a paused run the search `stopped` becomes stopped_early."""
    out = dict(record, search=search, rung=rung, rung_epochs=rungs, promoted=bool(promoted))
    if stopped and out["status"] == PAUSED:
        out["status"] = STOPPED_EARLY
    return out
