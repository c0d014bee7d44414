"""Sample GPU utilisation and memory (NVML) while a sweep runs: OUTPUT_DIR/gpu_utilization.csv.

Columns: timestamp (ISO 8601 UTC), worker (the Dask worker that owns the GPU), gpu_index (NVML's,
i.e. nvidia-smi's index; for a MIG device, its parent GPU's), utilization_pct (0-100; empty where
NVML cannot tell, e.g. a MIG device), memory_used_mb. Samples the GPUs given to the local
cluster's workers (flows/cluster.py: the sweep's CUDA_VISIBLE_DEVICES, so `2,3` samples GPUs 2 and 3
as workers gpu2 and gpu3); on a machine without NVIDIA GPUs it records nothing and says so.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("ddrsa.gpu")
FILENAME = "gpu_utilization.csv"
COLUMNS = ["timestamp", "worker", "gpu_index", "utilization_pct", "memory_used_mb"]


def default_devices(nvml_count: int) -> dict[str, str]:
    """Worker name -> device entry for this process's GPUs: its CUDA_VISIBLE_DEVICES entries when
    set, else every NVML device (0..nvml_count-1); named as flows/cluster.py names the workers."""
    from flows.cluster import parse_visible_devices, worker_names

    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = parse_visible_devices(raw) if raw is not None else [str(i) for i in range(nvml_count)]
    return worker_names(entries)


def nvml_handle(pynvml, device: str):
    """(NVML handle, NVML index of the GPU) of one CUDA_VISIBLE_DEVICES entry: an index is
    NVML's (PCI bus) index, which the workers use too (CUDA_DEVICE_ORDER=PCI_BUS_ID); a GPU or MIG
    UUID is looked up by UUID; a MIG device reports its parent GPU's index."""
    if device.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(device)), int(device)
    handle = pynvml.nvmlDeviceGetHandleByUUID(device)
    try:
        return handle, pynvml.nvmlDeviceGetIndex(handle)
    except pynvml.NVMLError:  # a MIG device has no index of its own
        parent = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        return handle, pynvml.nvmlDeviceGetIndex(parent)


class GpuMonitor:
    """Context manager: a daemon thread appending one row per GPU every `interval_s` seconds.

    `devices`: worker name -> CUDA_VISIBLE_DEVICES entry (`ClusterPlan.devices`); None = this
    process's visible GPUs (`default_devices`)."""

    def __init__(self, output_dir: Path, interval_s: float = 2.0, devices: dict[str, str] | None = None):
        self.path = Path(output_dir) / FILENAME
        self.interval_s = interval_s
        self.devices = devices
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.n_gpus = 0
        self.n_samples = 0
        self.handles: list[tuple[str, int, object]] = []  # (worker, gpu_index, handle)

    def __enter__(self) -> GpuMonitor:
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception:  # no driver / no GPU
            count = 0
        devices = (self.devices if self.devices is not None else default_devices(count)) if count else {}
        for worker, device in devices.items():
            try:
                handle, index = nvml_handle(pynvml, device)
            except Exception as exc:  # an id NVML does not know: say so, sample the others
                log.warning("GPU %s (worker %s) not found by NVML (%s): not sampled", device, worker, exc)
                continue
            self.handles.append((worker, index, handle))
        self.n_gpus = len(self.handles)
        if not self.n_gpus:
            log.info("no NVIDIA GPU visible: GPU utilisation is not sampled")
            return self
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(COLUMNS)
        self._thread = threading.Thread(target=self._loop, name="gpu-monitor", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        import pynvml

        while not self._stop.is_set():
            stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            for worker, index, handle in self.handles:
                try:
                    util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                except pynvml.NVMLError as exc:
                    if "not supported" not in str(exc).lower():  # MIG: memory only
                        continue
                    util = ""
                try:
                    mem = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
                except pynvml.NVMLError:
                    continue
                self._writer.writerow([stamp, worker, index, util, round(mem, 1)])
                self.n_samples += 1
            self._fh.flush()
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._fh.close()
