"""Two sweeps started at once do not oversubscribe a GPU (issue 14): one Prefect global concurrency
limit per GPU (flows/gpu_limits.py), created on first use, shared through one Prefect server.

The end-to-end test runs two real sweep processes against the session's real Prefect server, each
with a local Dask cluster of one "GPU" worker packing two experiments (`--gpus-per-experiment 0.5`).
There is no GPU here: the one boundary patched is flows/cluster.py's count of visible GPUs (1), so
each sweep's worker gets CUDA_VISIBLE_DEVICES=0 as on a one-GPU machine, takes the real limit
`ddrsa-gpu-<host>-0`, and trains on CPU (torch sees no CUDA). Without the limit both sweeps
would run 2 + 2 experiments at once on that device; with it, at most 2.

Bugs tried (`python benchmarks/mutation.py NAME`, caught): gpu-limit-not-taken (gpu_slot never
enters the concurrency limit: a third experiment starts training).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from flows import gpu_limits
from flows.faults import read_attempt_log
from tests.conftest import TINY, read_results

# ------------------------------------------------------------------------------ naming and shares


@pytest.mark.parametrize(
    "visible, expect",
    [
        ("0", "0"),
        ("2,3", "2"),
        (" 3 , 1", "3"),  # the first visible device is trained on
        ("GPU-8c2e1f0a-77aa-4c1e-9d1b-0123456789ab", "GPU-8c2e1f0a-77aa-4c1e-9d1b-0123456789ab"),
        ("", None),  # CPU worker: no limit
    ],
)
def test_worker_device_from_cuda_visible_devices(monkeypatch, visible, expect):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu_limits.worker_device() == expect


def test_worker_device_unset_follows_torch(monkeypatch):
    import torch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_limits.worker_device() == ("0" if torch.cuda.device_count() else None)


def test_limit_names_are_legal_and_per_host_and_device():
    from prefect.types import BANNED_CHARACTERS

    mig = gpu_limits.limit_name("MIG-GPU-8c2e1f0a/1/0", host="node-7.cluster")
    assert mig == "ddrsa-gpu-node-7.cluster-MIG-GPU-8c2e1f0a-1-0"
    assert not set(mig) & set(BANNED_CHARACTERS)
    assert (
        gpu_limits.limit_name("0", host="a")
        != gpu_limits.limit_name("1", host="a")
        != gpu_limits.limit_name("0", host="b")
    )


def test_units_fit_exactly_the_packing():
    """Brute force over packings: `slots` experiments of one sweep fit in one GPU's 100 units,
    one more does not (so the limit never blocks a sweep's own packing, nor allows more)."""
    from flows.cluster import slots_per_worker

    for share in [1.0, 0.75, 0.5, 0.34, 1 / 3, 0.3, 0.25, 0.2, 1 / 6, 0.125, 0.1, 0.05]:
        slots, units = slots_per_worker(share), gpu_limits.units_for(share)
        assert slots * units <= gpu_limits.GPU_UNITS < (slots + 1) * units, (share, slots, units)
    assert [gpu_limits.units_for(s) for s in (1.0, 0.5, 0.25)] == [100, 50, 25]


# ------------------------------------------------------------------------------ two sweeps at once

PATCHED_SWEEP = (
    "import runpy, sys; import flows.cluster as c; c.visible_gpu_count = lambda: 1; "
    "sys.argv = ['flows/sweep.py', *sys.argv[1:]]; runpy.run_path('flows/sweep.py', run_name='__main__')"
)


@contextlib.contextmanager
def _sweep(out: Path, env: dict):
    """A sweep process (its own process group, killed on the way out if still running)."""
    args = [
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "--seeds",
        "1",
        "2",
        *TINY,
        "--num-epochs",
        "1",
        "--n-workers",
        "1",
        "--gpus-per-experiment",
        "0.5",
        "--no-analysis",
        "--output-dir",
        str(out),
        # unfused: each experiment is its own task holding its own share (a fused group on the
        # patched "GPU" would hold the whole device as one task)
        "--fuse",
        "off",
    ]
    from tests.test_reliability import process_group

    with (
        open(out.parent / f"{out.name}.log", "w") as log,
        process_group(["-c", PATCHED_SWEEP, *args], env=env, stdout=log, stderr=subprocess.STDOUT) as proc,
    ):
        yield proc


def _wait(what: str, check, procs, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"a sweep exited (rc {p.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (brute force over every start)."""
    return max(sum(1 for s, e in intervals if s <= t < e) for t, _ in intervals)


def _t(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


@pytest.mark.slow
def test_two_concurrent_sweeps_share_one_gpu_limit(tmp_path, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateName,
        LogFilter,
        LogFilterTaskRunId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateName,
    )
    from prefect.exceptions import ObjectNotFound

    name = gpu_limits.limit_name("0", host=socket.gethostname())
    release, attempts = tmp_path / "release", tmp_path / "attempts.jsonl"
    env = {
        **os.environ,
        "DDRSA_INJECT_FAULT": "hang:/:*",
        "DDRSA_FAULT_RELEASE": str(release),
        "DDRSA_FAULT_HANG_S": "120",
        "DDRSA_ATTEMPT_LOG": str(attempts),
        "DDRSA_DATA_SOURCE": "synthetic",
    }
    outs = [tmp_path / "sweep-a", tmp_path / "sweep-b"]
    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(name)
        try:
            with _sweep(outs[0], env) as a, _sweep(outs[1], env) as b:
                procs = [a, b]

                def running_tasks():
                    running = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Running"])))
                    runs = [
                        fr
                        for fr in client.read_flow_runs(flow_run_filter=running)
                        if Path(fr.parameters.get("output_dir", "/")).resolve() in {o.resolve() for o in outs}
                    ]
                    if len(runs) < 2:
                        return None
                    tasks = client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs])),
                        task_run_filter=TaskRunFilter(
                            state=TaskRunFilterState(name=TaskRunFilterStateName(any_=["Running"]))
                        ),
                    )
                    return tasks if len(tasks) == 4 else None

                # both sweeps have both experiments running on their workers (Dask packs 2 per
                # worker) but only two got into the GPU: the limit (created on first use) is full
                _wait("4 running task runs in the two sweeps", running_tasks, procs)
                _wait(
                    "two experiments inside the limit",
                    lambda: attempts.is_file() and len(read_attempt_log(attempts)) >= 2,
                    procs,
                )

                def asking():  # the task runs whose gpu_slot has sent its request for a share
                    logs = client.read_logs(
                        log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[t.id for t in running_tasks() or []]))
                    )
                    return {g.task_run_id for g in logs if g.message.startswith("asking for 50/100 units of ")}

                # positive signal: all four experiments have asked the server for their share (the
                # request follows that log line at once, and the line reaches the API only with
                # the next 2-s log batch, so the first answers are in by now)
                _wait("the four experiments to ask for their GPU share", lambda: len(asking()) == 4, procs)
                # a share granted to a third experiment shows within milliseconds as its attempt
                # line (gpu_slot -> start_over_if_stale -> the hang fault's log); 2 s is ample
                time.sleep(2.0)
                limit = client.read_global_concurrency_limit_by_name(name)
                assert (limit.limit, limit.active, limit.active_slots) == (100, True, 100)
                assert len(read_attempt_log(attempts)) == 2, "more than two experiments got into one GPU"
                assert len(running_tasks() or []) == 4
                released_at = time.time()
                release.touch()
                for p in procs:
                    p.wait(timeout=240)
            logs = [(o.parent / f"{o.name}.log").read_text() for o in outs]
            for p, log in zip(procs, logs):
                assert p.returncode == 0, log[-3000:]
                assert "2 completed (0 cached), 0 failed, 0 diverged of 2" in log, log[-3000:]

            records = [r for o in outs for r in read_results(o)]
            assert len(records) == 4 and {r["status"] for r in records} == {"completed"}
            assert {r["device"] for r in records} == {"cpu"} and {r["worker"] for r in records} == {"gpu0"}
            # every training ran inside the slot: never more than 2 at once across both sweeps
            assert _max_overlap([(_t(r["started_at"]), _t(r["finished_at"])) for r in records]) <= 2
            entries = sorted(read_attempt_log(attempts), key=lambda e: e["t"])
            assert len(entries) == 4 and all(e["attempt"] == 1 for e in entries)
            assert [e["t"] >= released_at for e in entries] == [False, False, True, True]
            limit = client.read_global_concurrency_limit_by_name(name)
            assert (limit.limit, limit.active_slots) == (100, 0)  # every share given back
        finally:
            with contextlib.suppress(ObjectNotFound):
                client.delete_global_concurrency_limit_by_name(name)


# ------------------------------------------------------------------------------ one experiment's slot


@pytest.fixture
def fresh_limit(prefect_server):
    """The limit of device 7 of this host, absent before and deleted after the test."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = gpu_limits.limit_name("7")
    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(name)
        yield client, name
        with contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(name)


def test_slot_created_on_first_use_held_and_given_back(monkeypatch, fresh_limit):
    """On a worker given device 7, one 0.25 experiment: the limit appears (100 units, active),
    25 are held inside, none after; a limit an operator lowered to 10 is kept and held whole."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    client, name = fresh_limit
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,2")
    with gpu_limits.gpu_slot(0.25) as held:
        assert held == name
        limit = client.read_global_concurrency_limit_by_name(name)
        assert (limit.limit, limit.active, limit.active_slots) == (100, True, 25)
    assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
    assert gpu_limits.ensure_limit(name) == (100, False)

    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=10))
    with gpu_limits.gpu_slot(0.25):
        limit = client.read_global_concurrency_limit_by_name(name)
        assert (limit.limit, limit.active_slots) == (10, 10)  # operator's setting kept, held whole
    assert client.read_global_concurrency_limit_by_name(name).active_slots == 0


def test_cpu_worker_takes_no_limit(monkeypatch, fresh_limit):
    from prefect.exceptions import ObjectNotFound

    client, name = fresh_limit
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with gpu_limits.gpu_slot(1.0) as held:
        assert held is None
    with pytest.raises(ObjectNotFound):
        client.read_global_concurrency_limit_by_name(name)


def test_wait_for_a_share_ends_at_the_timeout(monkeypatch, fresh_limit):
    """--experiment-timeout bounds the wait for a GPU another sweep holds: TimeoutError that says
    what it waited for, nothing taken; the holder keeps its share."""
    client, name = fresh_limit
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    with gpu_limits.gpu_slot(1.0):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=f"timed out after 2 s waiting for a share .50 units. of {name}"):
            with gpu_limits.gpu_slot(0.5, timeout_seconds=2):
                pytest.fail("entered a full GPU")
        assert 2 <= time.monotonic() - t0 < 30
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 100
    assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
