"""Sample GPU utilisation and memory (NVML) while a sweep runs: OUTPUT_DIR/gpu_utilization.csv.

Columns: timestamp (ISO 8601 UTC), worker (the Dask worker that owns the GPU), gpu_index,
utilization_pct (0-100), memory_used_mb. Samples the GPUs of this machine, which are the
local cluster's workers; on a machine without NVIDIA GPUs it records nothing and says so.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
import threading
from pathlib import Path

log = logging.getLogger("ddrsa.gpu")
FILENAME = "gpu_utilization.csv"
COLUMNS = ["timestamp", "worker", "gpu_index", "utilization_pct", "memory_used_mb"]


class GpuMonitor:
    """Context manager: a daemon thread appending one row per GPU every `interval_s` seconds."""

    def __init__(self, output_dir: Path, interval_s: float = 2.0):
        self.path = Path(output_dir) / FILENAME
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.n_gpus = 0
        self.n_samples = 0

    def __enter__(self) -> "GpuMonitor":
        try:
            import pynvml

            pynvml.nvmlInit()
            self.n_gpus = pynvml.nvmlDeviceGetCount()
        except Exception:  # no driver / no GPU
            self.n_gpus = 0
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

        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(self.n_gpus)]
        while not self._stop.is_set():
            stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            for i, handle in enumerate(handles):
                try:
                    util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                    mem = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
                except pynvml.NVMLError:
                    continue
                self._writer.writerow([stamp, f"gpu{i}", i, util, round(mem, 1)])
                self.n_samples += 1
            self._fh.flush()
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._fh.close()
