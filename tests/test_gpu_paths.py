"""GPU code paths exercised on a machine without a GPU (issue 18): the worker layout for N visible
GPUs (the device count patched where flows/cluster.py asks torch), the NVML monitor fed a recorded
sample file through a stand-in `pynvml` module, and `peak_gpu_mb` None (not 0) on CPU."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
import types

import pandas as pd
import pytest

from flows import cluster

# ------------------------------------------------------------------------------ cluster layout


def _workers(plan) -> dict:
    return plan.task_runner.cluster_kwargs["workers"]


@pytest.mark.parametrize(
    "n_gpus, gpus_per_experiment, n_workers, expect_workers, expect_slots",
    [
        (4, 1.0, None, 4, 1),  # one worker per visible GPU
        (4, 0.25, None, 4, 4),  # packing: four experiments per GPU worker
        (4, 0.5, 2, 2, 2),  # --n-workers below the GPU count
        (2, 1.0, 8, 2, 1),  # never more workers than GPUs
    ],
)
def test_worker_per_visible_gpu(monkeypatch, n_gpus, gpus_per_experiment, n_workers, expect_workers, expect_slots):
    monkeypatch.setattr(cluster, "visible_gpu_count", lambda: n_gpus)
    monkeypatch.delenv("DDRSA_TORCH_THREADS", raising=False)
    plan = cluster.plan_cluster(gpus_per_experiment=gpus_per_experiment, n_workers=n_workers)
    workers = _workers(plan)
    assert plan.resource == "GPU" and plan.per_experiment == gpus_per_experiment
    assert list(workers) == [f"gpu{i}" for i in range(expect_workers)]
    threads = max(1, (os.cpu_count() or 2) // (expect_workers * expect_slots))
    for i, (name, spec) in enumerate(workers.items()):
        opts = spec["options"]
        assert opts["name"] == name and opts["resources"] == {"GPU": 1}
        assert opts["nthreads"] == expect_slots and opts["host"] == "127.0.0.1"
        assert opts["env"]["CUDA_VISIBLE_DEVICES"] == str(i)  # each worker sees exactly its own GPU
        assert opts["env"]["DDRSA_TORCH_THREADS"] == opts["env"]["OMP_NUM_THREADS"] == str(threads)
    assert f"{expect_workers} GPU worker(s), {expect_slots} experiment(s) per GPU" == plan.description
    monkeypatch.setenv("DDRSA_TORCH_THREADS", "3")  # the override reaches every worker
    plan = cluster.plan_cluster(gpus_per_experiment=gpus_per_experiment, n_workers=n_workers)
    assert {s["options"]["env"]["DDRSA_TORCH_THREADS"] for s in _workers(plan).values()} == {"3"}


def test_default_cpu_layout_without_gpus(monkeypatch):
    """No GPU: one worker per core pair, CUDA hidden, the cores split between experiments."""
    monkeypatch.setattr(cluster, "visible_gpu_count", lambda: 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("DDRSA_TORCH_THREADS", raising=False)
    plan = cluster.plan_cluster()
    workers = _workers(plan)
    assert plan.resource == "CPU" and list(workers) == ["cpu0", "cpu1", "cpu2", "cpu3"]
    for spec in workers.values():
        opts = spec["options"]
        assert opts["resources"] == {"CPU": 1} and opts["nthreads"] == 1
        assert opts["env"]["CUDA_VISIBLE_DEVICES"] == "" and opts["env"]["DDRSA_TORCH_THREADS"] == "2"
    assert plan.description == "4 CPU worker(s) x 1 slot(s), 2 torch thread(s) each (no GPU)"


def test_visible_gpu_count_is_torchs_device_count():
    """The boundary patched above is torch's own count (0 on a CPU-only machine)."""
    import torch

    assert cluster.visible_gpu_count() == torch.cuda.device_count()


# ------------------------------------------------------------------------------ NVML monitor
# A recorded sample file: what two GPUs reported at three instants (utilisation %, memory bytes).
RECORDED = {
    "0": [[35, 1.5 * 2**30], [80, 3 * 2**30], [95, 3.25 * 2**30]],
    "1": [[0, 0.25 * 2**30], [50, 2 * 2**30], [60, 2.5 * 2**30]],
}


def _fake_pynvml(samples: dict) -> types.ModuleType:
    """The four NVML calls GpuMonitor makes, replaying `samples`; NVMLError once one GPU is exhausted."""
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    queues = {int(k): list(v) for k, v in samples.items()}
    current: dict[int, list] = {}

    def utilization(handle):
        if not queues[handle]:
            raise NVMLError("no more samples")
        current[handle] = queues[handle].pop(0)
        return types.SimpleNamespace(gpu=current[handle][0])

    mod.NVMLError = NVMLError
    mod.nvmlInit = lambda: None
    mod.nvmlDeviceGetCount = lambda: len(queues)
    mod.nvmlDeviceGetHandleByIndex = lambda i: i
    mod.nvmlDeviceGetUtilizationRates = utilization
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=current[h][1])
    mod.remaining = lambda: sum(len(q) for q in queues.values())
    return mod


def test_nvml_monitor_csv_and_chart_from_recorded_samples(tmp_path, monkeypatch):
    from flows.gpu_monitor import COLUMNS, FILENAME, GpuMonitor
    from reports.charts import gpu_utilization, save_chart
    from reports.tables import load_gpu_samples

    recording = tmp_path / "nvml_samples.json"
    recording.write_text(json.dumps(RECORDED))
    fake = _fake_pynvml(json.loads(recording.read_text()))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with GpuMonitor(tmp_path, interval_s=0.01) as monitor:
        assert monitor.n_gpus == 2
        deadline = time.monotonic() + 10
        while fake.remaining() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert fake.remaining() == 0 and monitor.n_samples == 6
    with open(tmp_path / FILENAME, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == COLUMNS
    got = [(r[1], int(r[2]), int(r[3]), float(r[4])) for r in rows[1:]]
    expected = [(f"gpu{g}", g, u, round(m / 2**20, 1)) for g in (0, 1) for u, m in RECORDED[str(g)]]
    assert sorted(got) == sorted(expected)
    for r in rows[1:]:
        assert pd.Timestamp(r[0]).tzinfo is not None  # ISO 8601 with the UTC offset

    samples = load_gpu_samples(tmp_path)
    assert len(samples) == 6 and samples["memory_used_mb"].max() == 3328.0
    chart = gpu_utilization(samples)
    data = [row for rows in chart.to_dict()["datasets"].values() for row in rows]
    assert sorted((d["gpu"], d["utilization_pct"]) for d in data) == sorted(
        (f"gpu{g} / GPU {g}", u) for g in (0, 1) for u, _ in RECORDED[str(g)]
    )
    paths = save_chart(chart, tmp_path / "plots", "gpu_utilization")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second sweep into the same folder appends without a second header
    fake2 = _fake_pynvml({"0": [[10, 2**30]]})
    monkeypatch.setitem(sys.modules, "pynvml", fake2)
    with GpuMonitor(tmp_path, interval_s=0.01):
        deadline = time.monotonic() + 10
        while fake2.remaining() and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = (tmp_path / FILENAME).read_text().splitlines()
    assert len(lines) == 8 and lines.count(",".join(COLUMNS)) == 1


def test_monitor_without_nvidia_records_nothing(tmp_path, monkeypatch):
    """No NVML (this machine): no CSV, and the analysis reads 'no samples' instead of zeros."""
    from flows.gpu_monitor import FILENAME, GpuMonitor
    from reports.tables import load_gpu_samples

    broken = types.ModuleType("pynvml")

    def init():
        raise RuntimeError("NVML Shared Library Not Found")

    broken.nvmlInit = init
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    with GpuMonitor(tmp_path) as monitor:
        assert monitor.n_gpus == 0
    assert not (tmp_path / FILENAME).exists() and load_gpu_samples(tmp_path) is None


# ------------------------------------------------------------------------------ peak_gpu_mb on CPU
def test_peak_gpu_mb_is_none_on_cpu(tmp_path):
    import torch

    from ddrsa.config import ExperimentConfig
    from ddrsa.settings import Settings
    from ddrsa.sweep.results import make_record
    from ddrsa.sweep.spec import SweepSpec, expand
    from ddrsa.trainer import train

    threads = torch.get_num_threads()
    try:
        result = train(
            ExperimentConfig(
                model="paper",
                num_epochs=1,
                data_source="synthetic",
                max_units=12,
                window_stride=8,
                lookback_window=32,
                pred_horizon=16,
            ),
            tmp_path / "run",
            settings=Settings(data_source="synthetic", device="cpu"),
        )
    finally:
        torch.set_num_threads(threads)
    assert result.device == "cpu" and result.peak_gpu_mb is None and result.peak_rss_mb > 0
    planned = expand(SweepSpec(models=["paper"], datasets=["turbofan"]))[0].as_dict()
    record = make_record(planned, status="completed", result=result.to_dict(), worker=None, attempts=1)
    assert record["peak_gpu_mb"] is None
    assert json.loads(json.dumps(record))["peak_gpu_mb"] is None  # null in all_results.json, never 0
