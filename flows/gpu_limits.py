"""One Prefect global concurrency limit per GPU, shared by every sweep that uses one Prefect server.

Dask's `GPU` resource only counts inside one cluster, and every sweep starts its own: two sweeps
started at once (two deployment runs, or a deployment and a command line) would each fill the
same devices. So an experiment that runs on a GPU first takes its share of the global concurrency
limit of that device, `ddrsa-gpu-<host>-<device>`, and holds it while it trains:

- the limit's capacity is GPU_UNITS (100: the whole device); an experiment occupies
  `GPU_UNITS // slots`, where `slots` is how many experiments its sweep packs on one GPU (1 for
  `--gpus-per-experiment 1`, 2 for 0.5, 4 for 0.25), so sweeps with different packings share a
  device correctly (a 0.5 and a 0.25 sweep: 50 + 25 + 25);
- the limit is created on first use (capacity GPU_UNITS, active). A limit that exists is used as
  it is: after `prefect gcl update ddrsa-gpu-HOST-0 --limit 50` all sweeps together use at most
  half of that GPU (an experiment whose share is larger holds all 50: it runs alone there);
  `prefect gcl update ... --disable` switches the check off;
- the device is the first entry of the worker's CUDA_VISIBLE_DEVICES (the physical index, UUID or
  MIG id the worker was given; the one it trains on); unset, device 0 when torch sees a GPU. A
  worker with no GPU (CUDA_VISIBLE_DEVICES empty, CPU runs) takes no limit;
- slots are leased for LEASE_S seconds and renewed while the experiment runs: a worker killed
  mid-experiment frees its share at most LEASE_S seconds later.

- `--experiment-timeout` (the task's `timeout_seconds`) bounds the wait for a share too: the task's
  own timeout cannot interrupt a wait in a thread that is not the main one (a Dask worker's;
  measured: a 3 s timeout, still waiting after 100 s), so the wait is given the same limit and an
  experiment that could not get its GPU in time fails with "timed out ... waiting for a share".
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time

GPU_UNITS = 100
LEASE_S = 60.0
PREFIX = "ddrsa-gpu-"


def _clean(text: str) -> str:
    """Limit names may not hold / % & > < and friends: keep letters, digits, `.`, `_`, `-`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def worker_device() -> str | None:
    """The device this process trains on (see the module docstring), or None without a GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        first = visible.split(",")[0].strip()
        return first or None
    try:
        import torch

        return "0" if torch.cuda.device_count() > 0 else None
    except Exception:  # broken driver: the trainer runs on CPU
        return None


def limit_name(device: str, host: str | None = None) -> str:
    """`ddrsa-gpu-<host>-<device>`: one limit per physical device of one machine."""
    return f"{PREFIX}{_clean(host or socket.gethostname())}-{_clean(device)}"


def units_for(gpus_per_experiment: float) -> int:
    """Share of GPU_UNITS one experiment occupies: exactly the sweep's packing fits in one GPU."""
    from flows.cluster import slots_per_worker  # the one definition of experiments per GPU

    return max(1, GPU_UNITS // slots_per_worker(gpus_per_experiment))


def ensure_limit(name: str, capacity: int = GPU_UNITS) -> tuple[int, bool]:
    """Create the global concurrency limit `name` (`capacity` slots) unless it exists.

    Returns (its capacity now, whether this call created it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit, False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=capacity))
            return capacity, True
        except ObjectAlreadyExists:  # another sweep created it a moment ago
            return client.read_global_concurrency_limit_by_name(name).limit, False


def _task_timeout() -> float | None:
    """`timeout_seconds` of the task this runs in (`--experiment-timeout`), or None."""
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    return ctx.task.timeout_seconds if ctx else None


def _holder():
    """The task run holding the slot (shown by the server), when inside one."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    return ConcurrencyLeaseHolder(type="task_run", id=ctx.task_run.id) if ctx else None


@contextlib.contextmanager
def gpu_slot(gpus_per_experiment: float, logger=None, timeout_seconds: float | None = None):
    """Hold this experiment's share of its GPU's limit (waiting for it) around the body.

    Waits at most `timeout_seconds` (default: the enclosing task's timeout, none outside a task),
    then raises TimeoutError. Yields the limit name, or None on a worker without a GPU (nothing is
    taken)."""
    device = worker_device()
    if device is None:
        yield None
        return
    from prefect.concurrency.sync import concurrency

    name = limit_name(device)
    capacity, created = ensure_limit(name)
    if created and logger is not None:
        logger.info("created global concurrency limit %s (%d units = one GPU)", name, GPU_UNITS)
    # a limit an operator lowered below this share: hold all of it (Prefect refuses more than the limit)
    units = max(1, min(units_for(gpus_per_experiment), capacity))
    timeout = timeout_seconds if timeout_seconds is not None else _task_timeout()
    if logger is not None:
        logger.info("asking for %d/%d units of %s", units, capacity, name)
    t0 = time.monotonic()
    slot = contextlib.ExitStack()
    try:  # only the wait: a TimeoutError from the body must pass unchanged
        slot.enter_context(
            concurrency(
                name,
                occupy=units,
                timeout_seconds=timeout,
                lease_duration=LEASE_S,
                strict=True,
                holder=_holder(),
                raise_on_lease_renewal_failure=False,
            )
        )
    except TimeoutError as exc:
        raise TimeoutError(
            f"timed out after {timeout:g} s waiting for a share ({units} units) of {name}: another sweep holds the GPU"
        ) from exc
    with slot:
        waited = time.monotonic() - t0
        if logger is not None:
            logger.info(
                "holding %d/%d units of %s%s",
                units,
                capacity,
                name,
                f" (waited {waited:.0f} s: another sweep was using the GPU)" if waited >= 1 else "",
            )
        yield name
