"""The grid search: every planned experiment trains to the end, at most `SUBMIT_WINDOW` in
flight, fusion groups (flows/fused_run.py) side by side; each is recorded as it finishes."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import distributed
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from ddrsa.status import COMPLETED, DIVERGED, FAILED
from ddrsa.sweep.results import ResultsStore, make_record, now_iso, write_manifest
from flows.fused_run import finished_member, group_records, submit_groups
from flows.prepare import data_key
from flows.progress_lines import progress_description, result_line
from flows.run_ops import failed_attempts
from flows.runner import Completions
from flows.session import SweepSession
from flows.tasks import cache_key, finished_under_key, train_experiment

SUBMIT_WINDOW = 64  # experiments submitted but not yet recorded, at most (each submit costs ~0.1-0.2 s)
GROUP, ALONE = "group", "experiment"  # what a watched future trains


def progress_key(preset: str | None, out: Path) -> str:
    """`ddrsa-sweep-progress-<preset or output folder name>` (flows/analysis.py `artifact_scope`)."""
    from flows.analysis import artifact_scope, scoped_key

    return scoped_key(artifact_scope(preset, out), "sweep-progress")


class GridCollector:
    """Submit experiments (`submit(planned)` -> Prefect future) at most `window` in flight and
    record each as it finishes; a failure never stops the others. Submission and recording
    interleave, so progress moves from the first finished experiment on. `counts` holds what was
    counted before (experiments not submitted); `key_of(planned)`: the cache key a completed record
    is stamped with. `total` counts every experiment, grouped or not.

    An experiment whose worker died too often (KilledWorker) may only have shared the worker (or
    its queue) with the experiment that kills it. Once nothing else is in flight, each such
    experiment runs once more, one at a time and holding a whole worker (`resubmit_alone`); only
    a second KilledWorker (then it is the killer) records it as failed."""

    def __init__(
        self,
        completions: Completions,
        submit,
        resubmit_alone,
        store: ResultsStore,
        total: int,
        progress_id,
        logger,
        *,
        counts: dict,
        key_of,
        window: int = SUBMIT_WINDOW,
    ):
        self.completions, self.submit, self.resubmit_alone = completions, submit, resubmit_alone
        self.store, self.total, self.progress_id, self.logger = store, total, progress_id, logger
        self.key_of, self.window = key_of, window
        self.counts = dict(counts)
        self.attempts_allowed = 1 + (train_experiment.retries or 0)
        self.queue: collections.deque = collections.deque()
        self.alone: set[str] = set()  # experiment ids already re-run on a worker of their own
        self.suspects: list[dict] = []  # KilledWorker once: to re-run alone when nothing else runs
        self.done = 0
        self.started = time.monotonic()  # the time-left estimate's clock

    def run(self, todo: list[dict], groups: list[tuple]) -> dict:
        """Train `todo` and the already submitted fusion `groups` ([(future, group)]): a group is
        recorded member by member; a failed group's members join the queue and train one by one."""
        self.done = self.total - len(todo) - sum(len(g["members"]) for _, g in groups)  # counted before
        self.queue.extend(todo)
        for future, group in groups:
            self.completions.add(future, (GROUP, group))
        self._fill()
        while len(self.completions):
            (kind, item), outcome = self.completions.next()
            if kind == GROUP:
                records = group_records(outcome, item, self.logger)
                if records is None:
                    self.queue.extend(item["members"])
                outcomes = [(record, False, "fused, ") for record in records or ()]
            else:
                single = self._outcome_of(outcome, item)
                outcomes = [] if single is None else [(*single, "")]
            for record, cached, how in outcomes:
                self._record(record, cached, how)
            if outcomes:
                self._show_progress()
            self._fill()  # after the lines and the artifact: they never wait for submissions
            if self.suspects and not len(self.completions):  # nothing in flight, nothing left to submit
                planned = self.suspects.pop(0)
                self.completions.add(self.resubmit_alone(planned), (ALONE, planned))
        return self.counts

    def _fill(self) -> None:
        """Submit up to `window` in flight; stop early when one has finished (record it first)."""
        while len(self.completions) < self.window and self.queue:
            planned = self.queue.popleft()
            self.completions.add(self.submit(planned), (ALONE, planned))
            if self.completions.has_ready():
                return

    def _record(self, record: dict, cached: bool, how: str = "") -> None:
        self.store.upsert(record)
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        self.counts["cached"] += cached
        self.done += 1
        self.logger.info("[%d/%d] %s", self.done, self.total, result_line(record, cached, how))

    def _show_progress(self) -> None:
        if self.progress_id is not None:
            update_progress_artifact(
                self.progress_id,
                100.0 * self.done / self.total,
                description=progress_description(self.counts, self.total, time.monotonic() - self.started),
            )

    def _outcome_of(self, outcome, planned: dict) -> tuple[dict, bool] | None:
        """(record, cached) of a finished single experiment; None when it goes back to run alone."""
        if isinstance(outcome, Exception):  # KilledWorker and friends: this experiment only
            if (
                isinstance(outcome, distributed.KilledWorker)
                and self.resubmit_alone is not None
                and planned["experiment_id"] not in self.alone
            ):
                self.alone.add(planned["experiment_id"])
                self.logger.warning(
                    "%s: its worker died (%s); it runs again alone once nothing else runs",
                    planned["name"],
                    type(outcome).__name__,
                )
                self.suspects.append(planned)
                return None
            note = " (also when run alone on a worker)" if planned["experiment_id"] in self.alone else ""
            return make_record(planned, status=FAILED, error=f"{type(outcome).__name__}: {outcome}{note}"), False
        state = outcome
        if state.is_completed():
            record = state.result(raise_on_failure=False)
            if self.key_of is not None:  # what it is cached under: a re-run need not submit it
                record = {**record, "cache_key": self.key_of(planned)}
            return record, state.name == "Cached"
        if state.name == "TimedOut":
            return make_record(planned, status=FAILED, error=f"timed out: {state.message}"[:2000]), False
        return make_record(
            planned,
            status=FAILED,
            attempts=failed_attempts(state, self.attempts_allowed),
            error=(state.message or state.name)[:2000],
        ), False


def run_grid(session: SweepSession, *, fuse: str = "auto", max_fused: int | None = None) -> dict:
    """The body of the flow `ddrsa-sweep` for `--search grid`: train every planned experiment."""
    out, planned, logger, plan = session.out, session.planned, session.logger, session.plan
    session.wipe_if_fresh()
    store = session.open_store()
    manifest = dict(session.manifest(), planned=[p.as_dict() for p in planned])
    write_manifest(out, **manifest)
    logger.info("ddrsa-sweep: %d experiments on %s; output %s", len(planned), plan.description, out)
    t0 = time.monotonic()
    task_fn = session.task()
    data_version = {p.experiment_id: session.data_versions[data_key(p.config)] for p in planned}

    def parameters(item: dict) -> dict:
        return session.parameters(item, data_version[item["experiment_id"]])

    def key_of(item: dict) -> str:
        return cache_key(None, parameters(item))

    # finished earlier under the same cache key: counted as cached, not submitted (tests/test_fullgrid_cache.py)
    todo, counts = [], {COMPLETED: 0, FAILED: 0, DIVERGED: 0, "cached": 0}
    for item in (p.as_dict() for p in planned):
        record = None if session.fresh else store.get(item["experiment_id"])
        if finished_under_key(record, key_of(item), out) or finished_member(record, key_of(item), out):
            counts[record["status"]] += 1
            counts["cached"] += 1
        else:
            todo.append(item)
    skipped = len(planned) - len(todo)
    progress_id = create_progress_artifact(
        progress=100.0 * skipped / max(len(planned), 1),
        key=progress_key(session.preset, out),
        description=progress_description(counts, len(planned), 0.0),
    )
    if skipped:
        logger.info(
            "[%d/%d] finished earlier with the same config, code and data versions (cache key): "
            "%d counted as cached, not submitted",
            skipped,
            len(planned),
            skipped,
        )
    with session.running(cluster=bool(todo)) as runner:  # no cluster when every experiment finished earlier
        if todo:  # fusion groups (flows/fused_run.py) and one task per experiment left, side by side
            groups, todo = submit_groups(
                todo,
                fuse=fuse,
                max_fused=max_fused,
                resource=plan.resource,
                runner=runner,
                out=out,
                code_version=session.version,
                data_version=data_version,
                key_of=key_of,
                logger=logger,
            )
            collector = GridCollector(
                Completions(runner),
                lambda item: session.submit(runner, task_fn, parameters(item)),
                lambda item: session.submit(runner, task_fn, parameters(item), whole_worker=True),
                store,
                len(planned),
                progress_id,
                logger,
                counts=counts,
                key_of=key_of,
            )
            counts = collector.run(todo, groups)
    wall = time.monotonic() - t0
    write_manifest(out, **manifest, finished_at=now_iso())
    logger.info("ddrsa-sweep finished in %.0f s: %s", wall, counts)
    return session.analyse({"output_dir": str(out), "n_experiments": len(planned), "wall_seconds": wall, **counts})
