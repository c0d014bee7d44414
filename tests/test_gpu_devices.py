"""Workers get the GPUs the sweep was given (issue 14): CUDA_VISIBLE_DEVICES=2,3 (or GPU UUIDs, or MIG
ids) gives the local cluster's workers devices 2 and 3, and the NVML monitor samples and labels those
same devices. The boundaries are patched as in tests/test_gpu_paths.py: torch's device count and the
`pynvml` module (a stand-in with four GPUs); the environment variable is the real one."""

from __future__ import annotations

import csv
import sys
import time
import types

import pytest

from flows import cluster, external

UUID_A = "GPU-8a3f1c2d-1111-2222-3333-444455556666"
UUID_B = "GPU-0b9e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
MIG_1 = "MIG-5c1e07aa-1234-5678-9abc-def012345678"
MIG_2 = "MIG-77d0c3b1-1234-5678-9abc-def012345678"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2,3", ["2", "3"]),
        (" 1 , 0 ", ["1", "0"]),
        ("", []),
        ("-1", []),
        ("0,1,bogus,2", ["0", "1"]),  # CUDA stops at the first invalid entry
        (f"{UUID_A},{UUID_B}", [UUID_A, UUID_B]),
        (f"{MIG_1},{MIG_2}", [MIG_1, MIG_2]),
    ],
)
def test_parse_visible_devices(value, expected):
    assert cluster.parse_visible_devices(value) == expected


def _layout(plan) -> dict:
    return {
        name: spec["options"]["env"]["CUDA_VISIBLE_DEVICES"]
        for name, spec in plan.task_runner.cluster_kwargs["workers"].items()
    }


@pytest.mark.parametrize(
    "visible, torch_count, n_workers, expected",
    [
        (None, 2, None, {"gpu0": "0", "gpu1": "1"}),  # unset: 0..n-1 as before
        ("2,3", 2, None, {"gpu2": "2", "gpu3": "3"}),  # not 0 and 1
        ("3,1", 2, None, {"gpu3": "3", "gpu1": "1"}),  # the given order
        ("2,3", 2, 1, {"gpu2": "2"}),  # --n-workers 1: the first
        ("0,1,7", 2, None, {"gpu0": "0", "gpu1": "1"}),  # torch sees 2: no worker on 7
        (f"{UUID_A},{UUID_B}", 2, None, {"GPU-8a3f1c2d": UUID_A, "GPU-0b9e7d6c": UUID_B}),
        (f"{MIG_1},{MIG_2}", 1, None, {"MIG-5c1e07aa": MIG_1, "MIG-77d0c3b1": MIG_2}),  # one each
    ],
)
def test_workers_get_the_visible_devices(monkeypatch, visible, torch_count, n_workers, expected):
    monkeypatch.setattr(cluster, "visible_gpu_count", lambda: torch_count)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    plan = cluster.plan_cluster(n_workers=n_workers)
    assert plan.resource == "GPU" and _layout(plan) == expected and plan.devices == expected
    for spec in plan.task_runner.cluster_kwargs["workers"].values():
        assert spec["options"]["resources"] == {"GPU": 1}
        assert spec["options"]["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # NVML's numbering
    if visible == "2,3" and n_workers is None:
        assert plan.description == "2 GPU worker(s), 1 experiment(s) per GPU (devices 2 3)"
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # the user's choice is kept
    plan = cluster.plan_cluster(n_workers=n_workers)
    assert {s["options"]["env"]["CUDA_DEVICE_ORDER"] for s in plan.task_runner.cluster_kwargs["workers"].values()} == {
        "FASTEST_FIRST"
    }


def test_no_gpu_for_torch_means_cpu_workers_whatever_the_variable_says(monkeypatch):
    monkeypatch.setattr(cluster, "visible_gpu_count", lambda: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    plan = cluster.plan_cluster(n_workers=1)
    assert plan.resource == "CPU" and _layout(plan) == {"cpu0": ""} and plan.devices == {}


@pytest.mark.slow
def test_real_worker_processes_see_devices_2_and_3(monkeypatch):
    """The plan's SpecCluster started for real: each Nanny's worker process has its device."""
    from distributed import Client, SpecCluster

    monkeypatch.setattr(cluster, "visible_gpu_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    kwargs = cluster.plan_cluster().task_runner.cluster_kwargs
    with SpecCluster(**kwargs) as spec_cluster, Client(spec_cluster) as client:
        client.wait_for_workers(2, timeout=120)

        def seen(dask_worker):
            import os

            return dask_worker.name, os.environ["CUDA_VISIBLE_DEVICES"], os.environ["CUDA_DEVICE_ORDER"]

        got = sorted(client.run(seen).values())
    assert got == [("gpu2", "2", "PCI_BUS_ID"), ("gpu3", "3", "PCI_BUS_ID")]


# ------------------------------------------------------------------------------ NVML monitor


def _fake_pynvml(n_gpus: int = 4, uuids: dict | None = None, mig: dict | None = None):
    """NVML with `n_gpus` GPUs (handle = index): GPU i reports utilisation 10*i % and i GiB used.
    `uuids`: UUID -> index; `mig`: MIG UUID -> parent index (MIG handles: no index, no utilisation)."""
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    uuids, mig = uuids or {}, mig or {}
    mod.NVMLError = NVMLError
    mod.nvmlInit = lambda: None
    mod.nvmlDeviceGetCount = lambda: n_gpus
    mod.nvmlDeviceGetHandleByIndex = lambda i: i
    mod.calls = []

    def by_uuid(uuid):
        mod.calls.append(uuid)
        if uuid in uuids:
            return uuids[uuid]
        if uuid in mig:
            return ("mig", mig[uuid])
        raise NVMLError("Not Found")

    def index(handle):
        if isinstance(handle, tuple):
            raise NVMLError("Not Supported")
        return handle

    def utilization(handle):
        if isinstance(handle, tuple):
            raise NVMLError("Not Supported")
        return types.SimpleNamespace(gpu=10 * handle)

    def memory(handle):
        i = handle[1] if isinstance(handle, tuple) else handle
        return types.SimpleNamespace(used=(i + 0.5 if isinstance(handle, tuple) else i) * 2**30)

    mod.nvmlDeviceGetHandleByUUID = by_uuid
    mod.nvmlDeviceGetIndex = index
    mod.nvmlDeviceGetDeviceHandleFromMigDeviceHandle = lambda h: h[1]
    mod.nvmlDeviceGetUtilizationRates = utilization
    mod.nvmlDeviceGetMemoryInfo = memory
    return mod


def _sample(tmp_path, monkeypatch, fake, devices=None) -> list[tuple]:
    from flows.gpu_monitor import FILENAME, GpuMonitor

    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with GpuMonitor(tmp_path, interval_s=0.01, devices=devices) as monitor:
        deadline = time.monotonic() + 10
        while monitor.n_samples < 2 * monitor.n_gpus and time.monotonic() < deadline:
            time.sleep(0.01)
    with open(tmp_path / FILENAME, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return sorted({(r[1], int(r[2]), r[3], float(r[4])) for r in rows})


def test_monitor_samples_the_workers_devices_only(tmp_path, monkeypatch):
    """Of four GPUs, the plan's workers gpu2 and gpu3 own 2 and 3: only those are sampled,
    labelled with the workers' names and NVML's indices."""
    monkeypatch.setattr(cluster, "visible_gpu_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    plan = cluster.plan_cluster()
    got = _sample(tmp_path, monkeypatch, _fake_pynvml(4), devices=plan.devices)
    assert got == [("gpu2", 2, "20", 2048.0), ("gpu3", 3, "30", 3072.0)]


def test_monitor_default_follows_cuda_visible_devices(tmp_path, monkeypatch):
    """Without a plan (an external cluster on this machine) the sweep's own CUDA_VISIBLE_DEVICES:
    a UUID resolved by NVML, an index, a MIG device (memory only, its parent's index); an id NVML
    does not know is skipped with a warning, the others are sampled."""
    fake = _fake_pynvml(4, uuids={UUID_A: 1}, mig={MIG_1: 0})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUID_A},3,{MIG_1},{UUID_B}")
    got = _sample(tmp_path, monkeypatch, fake)
    assert got == [("GPU-8a3f1c2d", 1, "10", 1024.0), ("MIG-5c1e07aa", 0, "", 512.0), ("gpu3", 3, "30", 3072.0)]
    assert UUID_B in fake.calls  # looked up, not found, skipped


def test_monitor_default_without_the_variable_is_every_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    got = _sample(tmp_path, monkeypatch, _fake_pynvml(2))
    assert got == [("gpu0", 0, "0", 0.0), ("gpu1", 1, "10", 1024.0)]


# ------------------------------------------------------------------------------ --scheduler-address


def _start(args: list[str]):
    import os
    import subprocess

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_LOGGING__DISTRIBUTED": "warning"}
    return subprocess.Popen(
        [f"{os.path.dirname(sys.executable)}/dask", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_scheduler_without_the_resource_is_refused_at_once(tmp_path):
    """A real `dask scheduler` + `dask worker` on 127.0.0.1 whose worker declares no GPU: the sweep
    refuses in seconds with one line (exit 2) and writes nothing, instead of waiting forever; once
    a worker declares GPU=0.5, half-GPU experiments fit and whole-GPU ones still do not."""

    from distributed import Client

    from ddrsa.errors import DDRSAError
    from flows.server import free_port
    from tests.conftest import TINY, assert_one_line_error, run_cli, stop_processes

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"])]
    try:  # a worker retries until the scheduler listens
        procs.append(
            _start(["worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--name", "plain"])
        )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        t0 = time.monotonic()
        proc = run_cli(
            [
                "flows/sweep.py",
                *TINY,
                "--datasets",
                "turbofan",
                "--models",
                "paper",
                "--scheduler-address",
                address,
                "--output-dir",
                str(tmp_path / "never"),
            ],
            env={"PREFECT_API_URL": ""},
            timeout=120,
        )
        assert time.monotonic() - t0 < 60
        assert_one_line_error(proc, address, "declares the resource GPU>=1", "plain")
        assert not (tmp_path / "never").exists()

        procs.append(
            _start(
                [
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--name",
                    "half",
                    "--resources",
                    "GPU=0.5",
                ]
            )
        )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        assert external.check_cluster_resources(address, "GPU", 0.5) == ["127.0.0.1"]
        with pytest.raises(DDRSAError, match="GPU>=1"):
            external.check_cluster_resources(address, "GPU", 1.0)
    finally:
        stop_processes(procs)


def test_api_url_warning_when_the_cluster_is_elsewhere():
    """10.255.255.1 (an address this machine does not have) stands for another host."""
    far = "tcp://10.255.255.1:8786"
    assert "127.0.0.1" in external.api_url_warning(far, None)  # the sweep's own server
    assert "10.255.255.1" in external.api_url_warning(far, "http://localhost:4200/api")
    assert external.api_url_warning(far, "http://10.0.0.5:4200/api") is None  # a reachable API
    assert external.api_url_warning("tcp://127.0.0.1:8786", None) is None  # all on this machine
    assert "10.255.255.1" in external.api_url_warning("tcp://127.0.0.1:8786", None, ["10.255.255.1"])
    assert external.is_this_host("127.0.0.1") and not external.is_this_host("10.255.255.1")
