"""A designed failure reads as one line, a crash keeps its traceback (issue 32 point 1): a flow run
created from a deployment and executed by `python -m prefect.flow_engine` (what a process worker
runs), its state and logs read back from a real server."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

ENTRY = "tests/designed_failure_flow.py:designed"


def _run(client, deployment_id, crash: bool):
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    run = client.create_flow_run_from_deployment(deployment_id, parameters={"crash": crash})
    env = {**os.environ, "PREFECT__FLOW_RUN_ID": str(run.id), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "prefect.flow_engine", ENTRY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    run = client.read_flow_run(run.id)
    import time

    deadline = time.monotonic() + 30  # logs are sent in batches: wait for the engine's last record
    while True:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), sort=LogSort.TIMESTAMP_ASC
        )
        if any(log.level >= 40 for log in logs) or time.monotonic() > deadline:
            return run, logs, proc
        time.sleep(0.5)


def test_designed_failure_is_one_line_and_a_crash_keeps_its_traceback(prefect_server):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("designed-failure")
        dep = client.create_deployment(flow_id=flow_id, name="designed-failure-test", entrypoint=ENTRY, path=str(ROOT))

        run, logs, _ = _run(client, dep, crash=False)
        assert run.state.is_failed(), run.state
        assert run.state.message.startswith("1 of 2 experiments failed"), run.state.message
        errors = [log.message for log in logs if log.level >= 40]
        assert errors, [log.message for log in logs]
        assert errors[-1].startswith("sweep ended Failed: 1 of 2 experiments failed"), errors[-1]
        # the run's last log lines: the summary (ERROR), then Prefect's "Finished in state Failed('<summary>')"
        assert "1 of 2 experiments failed" in logs[-1].message and "Traceback" not in logs[-1].message
        assert sum("sweep ended Failed" in log.message for log in logs) == 1
        assert not any("Traceback" in log.message or "Engine execution exited" in log.message for log in logs)

        run, logs, _ = _run(client, dep, crash=True)
        assert run.state.is_failed()
        text = "\n".join(log.message for log in logs)
        assert "Traceback" in text and "RuntimeError: a real crash in the sweep's own code" in text
