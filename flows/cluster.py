"""The Dask cluster of a sweep: one worker per GPU (or per core pair), or an existing scheduler."""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from ddrsa.errors import DDRSAError

CONNECT_TIMEOUT_S = 5.0


@dataclass
class ClusterPlan:
    """How the sweep's tasks get slots: resource name and amount each experiment asks for."""

    task_runner: object
    resource: str          # "GPU" or "CPU"
    per_experiment: float  # amount of `resource` one experiment holds
    description: str


def visible_gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # broken driver: run on CPU
        return 0


def check_scheduler_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within `timeout` seconds, naming the address, when nothing listens there."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise DDRSAError(f"--scheduler-address {address!r} is not host:port or tcp://host:port")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            pass
    except OSError as exc:
        raise DDRSAError(f"no Dask scheduler answers at {address} ({exc.strerror or exc})") from None


def _torch_threads(concurrent: int) -> int:
    """Torch threads per experiment: DDRSA_TORCH_THREADS when set (use 1 on a shared, busy
    machine: oversubscribed OpenMP threads spin), else the cores split between experiments."""
    if os.environ.get("DDRSA_TORCH_THREADS"):
        return max(1, int(os.environ["DDRSA_TORCH_THREADS"]))
    return max(1, (os.cpu_count() or 2) // concurrent)


def _slots(per_experiment: float) -> int:
    if not 0 < per_experiment <= 1:
        raise DDRSAError(f"--gpus-per-experiment must be in (0, 1], got {per_experiment}")
    return max(1, math.floor(1 / per_experiment + 1e-9))


def dask_setup(worker=None) -> None:
    """Worker preload: ignore SIGINT. Ctrl-C in a terminal reaches the whole process group; the
    sweep process handles it (exit 130) and closes its cluster, instead of every worker printing
    a KeyboardInterrupt traceback."""
    import signal
    import threading

    from flows.faults import worker_start_fault

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_start_fault()


def plan_cluster(gpus_per_experiment: float = 1.0, scheduler_address: str | None = None,
                 n_workers: int | None = None) -> ClusterPlan:
    """Build the DaskTaskRunner for this machine (or for `scheduler_address`)."""
    from distributed import Nanny, Scheduler, SpecCluster
    from prefect_dask import DaskTaskRunner

    slots = _slots(gpus_per_experiment)
    if scheduler_address:
        check_scheduler_address(scheduler_address)
        return ClusterPlan(DaskTaskRunner(address=scheduler_address), "GPU", gpus_per_experiment,
                           f"existing Dask cluster at {scheduler_address} (workers declare GPU=1)")
    n_gpus = visible_gpu_count()
    # dashboard on a free loopback port (the default ":8787" listens on every interface)
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}
    common = {"nthreads": slots, "host": "127.0.0.1", "dashboard": False, "death_timeout": 120,
              "preload": ["flows.cluster"]}  # dask_setup below runs in each worker process
    if n_gpus:
        n = min(n_workers or n_gpus, n_gpus)
        threads = _torch_threads(n * slots)
        workers = {f"gpu{i}": {"cls": Nanny, "options": {
            **common, "name": f"gpu{i}", "resources": {"GPU": 1},
            "env": {"CUDA_VISIBLE_DEVICES": str(i), "DDRSA_TORCH_THREADS": str(threads),
                    "OMP_NUM_THREADS": str(threads)}}} for i in range(n)}
        resource, desc = "GPU", f"{n} GPU worker(s), {slots} experiment(s) per GPU"
    else:
        cores = os.cpu_count() or 2
        n = n_workers or max(1, cores // 2)
        threads = _torch_threads(n * slots)
        workers = {f"cpu{i}": {"cls": Nanny, "options": {
            **common, "name": f"cpu{i}", "resources": {"CPU": 1},
            "env": {"CUDA_VISIBLE_DEVICES": "", "DDRSA_TORCH_THREADS": str(threads),
                    "OMP_NUM_THREADS": str(threads)}}} for i in range(n)}
        resource, desc = "CPU", f"{n} CPU worker(s) x {slots} slot(s), {threads} torch thread(s) each (no GPU)"
    runner = DaskTaskRunner(cluster_class=SpecCluster,
                            cluster_kwargs={"workers": workers, "scheduler": scheduler})
    return ClusterPlan(runner, resource, gpus_per_experiment, desc)
