"""The Dask cluster of a sweep: one worker per GPU (or per core pair), or an existing scheduler."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ddrsa.errors import DDRSAError
from flows.external import EXTERNAL_RESOURCE, check_cluster_resources, check_scheduler_address, warn_api_url

NEVER_CLOSE_LOST_WORKERS = "3650 days"  # lost-worker-timeout of the local cluster (keep_restarting_workers)


@dataclass
class ClusterPlan:
    """How the sweep's tasks get slots: resource name and amount each experiment asks for."""

    task_runner: object
    resource: str  # "GPU" or "CPU"
    per_experiment: float  # amount of `resource` one experiment holds
    description: str
    devices: dict[str, str] | None = None  # local GPU worker name -> CUDA_VISIBLE_DEVICES entry


def visible_gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # broken driver: run on CPU
        return 0


def parse_visible_devices(value: str) -> list[str]:
    """The entries of a CUDA_VISIBLE_DEVICES value, as CUDA reads them: comma-separated device
    indices (`2`), GPU UUIDs (`GPU-8a3f...`) or MIG device ids (`MIG-...`, `MIG-GPU-<uuid>/1/0`);
    the list ends at the first entry that is none of these (CUDA ignores the rest). `""` or `-1`: none."""
    out = []
    for entry in (part.strip() for part in value.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        out.append(entry)
    return out


def visible_devices() -> list[str]:
    """The GPUs this sweep may use, one CUDA_VISIBLE_DEVICES entry each: the entries of the
    sweep's own CUDA_VISIBLE_DEVICES (`2,3` -> ["2", "3"]) or, when it is unset, 0..n-1.
    Empty when torch sees no GPU. Several MIG ids are all kept even when CUDA shows this process
    only one of them: each worker gets one."""
    n = visible_gpu_count()
    if n == 0:
        return []
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [str(i) for i in range(n)]
    entries = parse_visible_devices(raw)
    return entries if any(e.startswith("MIG-") for e in entries) else entries[:n]


def worker_names(devices: list[str]) -> dict[str, str]:
    """Dask worker name -> its device: `gpu2` for device index 2, else the id's first 12
    characters (`GPU-8a3f1c2d`, `MIG-5c1e07aa`), made unique with the position when needed.
    flows/gpu_monitor.py labels its samples with the same names."""
    names: dict[str, str] = {}
    for i, device in enumerate(devices):
        name = f"gpu{device}" if device.isdigit() else device[:12]
        names[name if name not in names else f"{name}-{i}"] = device
    return names


def device_env() -> dict[str, str]:
    """CUDA_DEVICE_ORDER for the workers: PCI_BUS_ID (nvidia-smi's and NVML's numbering, so device
    index 2 of a worker is the GPU the monitor samples as index 2) unless the sweep's environment
    chose an order."""
    return {"CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")}


def _torch_threads(concurrent: int) -> int:
    """Torch threads per experiment: DDRSA_TORCH_THREADS when set (use 1 on a shared, busy
    machine: oversubscribed OpenMP threads spin), else the cores split between experiments."""
    if os.environ.get("DDRSA_TORCH_THREADS"):
        return max(1, int(os.environ["DDRSA_TORCH_THREADS"]))
    return max(1, (os.cpu_count() or 2) // concurrent)


def slots_per_worker(per_experiment: float) -> int:
    """Experiments one worker (one GPU) runs at once with this share each: 0.25 -> 4."""
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


def keep_restarting_workers() -> None:
    """Stop SpecCluster from closing a worker's Nanny for good after a worker death.

    SpecCluster checks, `distributed.deploy.lost-worker-timeout` (15 s) after each worker death,
    whether a worker of that name is registered, and closes its Nanny when none is. Our Nannies
    restart their workers themselves, so the check only fails while a restart after a later death
    is under way; the closed Nanny is never replaced: the cluster loses the worker, the experiment
    it was about to run gets KilledWorker, and a one-worker sweep waits forever. Measured: two
    deaths 11 s apart under load closed the Nanny mid-restart (tests/test_reliability.py).
    """
    import dask

    dask.config.set({"distributed.deploy.lost-worker-timeout": NEVER_CLOSE_LOST_WORKERS})


def plan_cluster(
    gpus_per_experiment: float = 1.0, scheduler_address: str | None = None, n_workers: int | None = None
) -> ClusterPlan:
    """Build the DaskTaskRunner for this machine (or for `scheduler_address`)."""
    from distributed import Nanny, Scheduler, SpecCluster
    from prefect_dask import DaskTaskRunner

    slots = slots_per_worker(gpus_per_experiment)
    if scheduler_address:
        check_scheduler_address(scheduler_address)
        hosts = check_cluster_resources(scheduler_address, EXTERNAL_RESOURCE, gpus_per_experiment)
        warn_api_url(scheduler_address, hosts)
        return ClusterPlan(
            DaskTaskRunner(address=scheduler_address),
            EXTERNAL_RESOURCE,
            gpus_per_experiment,
            f"existing Dask cluster at {scheduler_address} (workers declare GPU=1)",
        )
    keep_restarting_workers()
    devices = visible_devices()
    n_gpus = len(devices)
    # dashboard on a free loopback port (the default ":8787" listens on every interface)
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}
    common = {
        "nthreads": slots,
        "host": "127.0.0.1",
        "dashboard": False,
        "death_timeout": 120,
        "preload": ["flows.cluster"],
    }  # dask_setup below runs in each worker process
    if n_gpus:
        n = min(n_workers or n_gpus, n_gpus)
        threads = _torch_threads(n * slots)
        names = worker_names(devices[:n])
        workers = {
            name: {
                "cls": Nanny,
                "options": {
                    **common,
                    "name": name,
                    "resources": {"GPU": 1},
                    "env": {
                        "CUDA_VISIBLE_DEVICES": device,
                        **device_env(),
                        "DDRSA_TORCH_THREADS": str(threads),
                        "OMP_NUM_THREADS": str(threads),
                    },
                },
            }
            for name, device in names.items()
        }
        resource, desc = "GPU", f"{n} GPU worker(s), {slots} experiment(s) per GPU"
        if devices[:n] != [str(i) for i in range(n)]:
            desc += f" (devices {' '.join(devices[:n])})"
    else:
        cores = os.cpu_count() or 2
        n = n_workers or max(1, cores // 2)
        threads = _torch_threads(n * slots)
        workers = {
            f"cpu{i}": {
                "cls": Nanny,
                "options": {
                    **common,
                    "name": f"cpu{i}",
                    "resources": {"CPU": 1},
                    "env": {
                        "CUDA_VISIBLE_DEVICES": "",
                        "DDRSA_TORCH_THREADS": str(threads),
                        "OMP_NUM_THREADS": str(threads),
                    },
                },
            }
            for i in range(n)
        }
        resource, desc = "CPU", f"{n} CPU worker(s) x {slots} slot(s), {threads} torch thread(s) each (no GPU)"
    runner = DaskTaskRunner(cluster_class=SpecCluster, cluster_kwargs={"workers": workers, "scheduler": scheduler})
    return ClusterPlan(runner, resource, gpus_per_experiment, desc, devices=names if resource == "GPU" else {})
