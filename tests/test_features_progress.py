"""The `ddrsa-sweep-progress` artifact read back through the Prefect client WHILE a sweep runs
(issue 18): a real sweep process with two experiments, one of them held by the `hang` fault
(flows/faults.py) until the test releases it, so the sweep sits at 1 of 2 done for as long as the
test looks; then it reaches 100. (The artifact after a finished sweep: tests/test_features_sweep.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, read_results

pytestmark = pytest.mark.slow


def _flow_run(client, out: Path):
    """The flow run of the sweep writing `out` (None until it exists)."""
    from prefect.client.schemas.sorting import FlowRunSort

    runs = [
        fr
        for fr in client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50)
        if Path(fr.parameters.get("output_dir", "/")).resolve() == out.resolve()
    ]
    return runs[0] if runs else None


def _progress(client, flow_run_id):
    """This flow run's progress artifact (None until created)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    arts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["progress"])
        )
    )
    assert len(arts) <= 1, [a.key for a in arts]
    return arts[0] if arts else None


def test_progress_artifact_moves_during_the_sweep_and_reaches_100(tmp_path, prefect_server):
    from prefect.client.orchestration import get_client

    out, release = tmp_path / "sweep", tmp_path / "release"
    env = {
        **os.environ,
        "DDRSA_INJECT_FAULT": "hang:_s2:*",
        "DDRSA_FAULT_RELEASE": str(release),
        "DDRSA_FAULT_HANG_S": "120",
    }
    args = [
        sys.executable,
        "flows/sweep.py",
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
        "--no-analysis",
        "--output-dir",
        str(out),
    ]
    log = open(tmp_path / "sweep.log", "w")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    seen = []  # (progress, description) as the client read them, in order
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 240
            flow_run = art = None
            while art is None or not 0 < art.data < 100:
                assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
                assert time.monotonic() < deadline, f"no progress strictly between 0 and 100 in 240 s: {seen}"
                time.sleep(0.5)
                flow_run = flow_run or _flow_run(client, out)
                art = _progress(client, flow_run.id) if flow_run else None
                if art is not None and (not seen or seen[-1] != (art.data, art.description)):
                    seen.append((art.data, art.description))
            # mid-sweep: one of two done, the sweep's flow run still running
            assert art.key.startswith("ddrsa-sweep-progress") and art.type == "progress"
            assert art.data == 50.0 and art.description.startswith(
                "1 of 2 done: 1 completed (0 cached), 0 failed, 0 diverged; 1 remaining, about "
            )
            assert client.read_flow_run(flow_run.id).state.is_running()
            assert proc.poll() is None
            release.touch()
            proc.wait(timeout=240)
            assert proc.returncode == 0, (tmp_path / "sweep.log").read_text()[-3000:]
            final = _progress(client, flow_run.id)
            assert final.id == art.id  # one artifact, updated in place
            assert (
                final.data == 100.0
                and final.description == "2 of 2 done: 2 completed (0 cached), 0 failed, 0 diverged; finished"
            )
            assert client.read_flow_run(flow_run.id).state.is_completed()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    values = [v for v, _ in seen]
    assert values == sorted(values) and values[-1] == 50.0  # never went backwards
    assert {r["status"] for r in read_results(out)} == {"completed"}
