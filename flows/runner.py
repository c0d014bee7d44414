"""The sweep's Dask task runner: starting it (with retries), its slots, and collecting its
futures as they finish (`Completions`)."""

from __future__ import annotations

import contextlib
from typing import Any

import distributed

CLUSTER_START_ATTEMPTS = 3


def worker_name() -> str | None:
    """Name of the Dask worker this code runs in (`gpu0`, `cpu1`), or None outside a worker."""
    try:
        return str(distributed.get_worker().name)
    except ValueError:  # not inside a Dask worker
        return None


@contextlib.contextmanager
def started_runner(plan, make_plan, logger, attempts: int = CLUSTER_START_ATTEMPTS):
    """Enter the plan's task runner (this starts the local Dask cluster). A worker process that
    dies while the cluster starts (OOM killer, a stray kill) makes Nanny start-up fail for the
    whole cluster; `make_plan()` builds a fresh one, up to `attempts` times. `make_plan` is None
    for an existing cluster (--scheduler-address): its start-up is not ours to retry."""
    for attempt in range(1, attempts + 1):
        stack = contextlib.ExitStack()
        try:
            runner = stack.enter_context(plan.task_runner)
            runner.client  # noqa: B018  (prefect-dask starts the cluster lazily, on first use of its client)
        except Exception as exc:  # distributed raises RuntimeError/OSError/TimeoutError here
            stack.close()
            if attempt == attempts or make_plan is None:
                raise
            logger.warning(
                "the Dask cluster failed to start (%s: %s); starting a fresh one (%d of %d)",
                type(exc).__name__,
                exc,
                attempt + 1,
                attempts,
            )
            plan = make_plan()
            continue
        with stack:
            yield runner
        return


def slot_count(runner, plan) -> int:
    """Experiments the cluster runs at once: its `plan.resource` total / the share of one."""
    workers = runner.client.scheduler_info().get("workers", {}).values()
    total = sum(w.get("resources", {}).get(plan.resource, 0) for w in workers)
    return max(1, int(total / plan.per_experiment + 1e-9))


class Completions:
    """The futures of one running task runner, handed back in the order they finish.

    Dask's `as_completed` underneath: unlike `prefect.futures.as_completed` it takes new futures
    while it runs (`add`), tells whether one has finished (`has_ready`), and each finished future
    is released, so a worker that dies later never makes Dask recompute a finished experiment."""

    def __init__(self, runner):
        self._items: dict = {}  # Dask future -> what it was submitted for
        self._pending = distributed.as_completed([], loop=runner.client.loop)

    def add(self, future, item: Any) -> None:
        """Watch `future` (a Prefect future of `runner.submit`) submitted for `item`."""
        dask_future = future.wrapped_future
        self._items[dask_future] = item
        self._pending.add(dask_future)

    def __len__(self) -> int:
        """Futures added and not yet handed back."""
        return len(self._items)

    def has_ready(self) -> bool:
        return self._pending.has_ready()

    def next(self) -> tuple[Any, Any]:
        """(item, outcome) of the next future to finish, waiting for one. The outcome is the task
        run's final Prefect State, or the exception when the task never reached one (its worker
        died too often: `distributed.KilledWorker`)."""
        dask_future = next(self._pending)
        item = self._items.pop(dask_future)
        try:
            outcome = dask_future.result()
        except Exception as exc:  # KilledWorker and friends: this future only
            outcome = exc
        dask_future.release()  # forget it on the cluster: no recompute after a later worker death
        return item, outcome
