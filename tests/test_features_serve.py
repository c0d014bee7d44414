"""`python -m deployments.serve` running flow runs (issue 18): `--limit 1` really keeps a second
deployment run waiting while one runs, and a run created by the launcher (`--where server`) is
picked up by serve and completes, its records written. One serve process against the session's
real Prefect server; two tiny one-experiment runs of `ddrsa-sweep/default` into one folder (the
second, run after the first, finds the experiment finished and trains nothing).

The first run is held in training by the `hang` fault (flows/faults.py, inherited by the flow-run
processes serve starts) until the test has seen the second one wait; states and start/end times
are read back through the Prefect client. (Serve's refusals, `--only`, `--timezone` and the
launcher's "not registered" error: tests/test_features_deploy.py.)

Bugs tried (`python benchmarks/mutation.py NAME`, caught): serve-limit-ignored (serve runs with
no limit, so the second run starts at once)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, read_results

pytestmark = pytest.mark.slow

TINY_PARAMS = {
    "datasets": ["turbofan"],
    "models": ["paper"],
    "seeds": [1],
    "data_source": "synthetic",
    "max_units": 12,
    "window_stride": 8,
    "lookback_window": 32,
    "pred_horizon": 16,
    "num_epochs": 1,
    "n_workers": 1,
    "run_analysis": False,
}


def _delete_default(client) -> None:
    from prefect.exceptions import ObjectNotFound

    try:
        client.delete_deployment(client.read_deployment_by_name("ddrsa-sweep/default").id)
    except ObjectNotFound:
        pass


def _wait(what: str, check, serve, log_path, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert serve.poll() is None, f"serve exited while waiting for {what}: " + log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}: " + log_path.read_text()[-3000:]
        time.sleep(0.5)


def test_serve_limit_1_and_a_launcher_server_run(tmp_path, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    release, attempts = tmp_path / "release", tmp_path / "attempts.jsonl"
    out = tmp_path / "sweep"
    env = {
        **os.environ,
        "DDRSA_INJECT_FAULT": "hang:/:*",
        "DDRSA_FAULT_RELEASE": str(release),
        "DDRSA_FAULT_HANG_S": "120",
        "DDRSA_ATTEMPT_LOG": str(attempts),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }  # serve looks for scheduled runs every 2 s
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")
    with get_client(sync_client=True) as client:
        _delete_default(client)
        serve = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve", "--only", "default", "--limit", "1"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def registered():
                try:
                    return client.read_deployment_by_name("ddrsa-sweep/default")
                except ObjectNotFound:
                    return None

            dep = _wait("serve to register ddrsa-sweep/default", registered, serve, log_path)

            # 1. the launcher creates a real flow run of the deployment (it does not wait for it)
            sets = [
                a for k, v in {**TINY_PARAMS, "output_dir": str(out)}.items() for a in ("--set", f"{k}={json.dumps(v)}")
            ]
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "deployments.launcher",
                    "--preset",
                    "default",
                    "--where",
                    "server",
                    "--yes",
                    *sets,
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            match = re.search(r"submitted flow run (\S+) \(([0-9a-f-]{36})\)", proc.stdout)
            assert match, proc.stdout
            first_id = match.group(2)
            assert f"/runs/flow-run/{first_id}" in proc.stdout

            # serve picks it up; its experiment starts and hangs in training
            _wait(
                "the launcher's run to start training",
                lambda: attempts.is_file() and attempts.read_text().strip(),
                serve,
                log_path,
            )
            assert client.read_flow_run(first_id).state.is_running()

            # 2. a second run while the first runs: --limit 1 keeps it waiting
            skipped = "scheduled runs skipped (at capacity)"  # prefect's runner, on each poll it holds one back
            before = log_path.read_text().count(skipped)
            second = run_deployment(
                "ddrsa-sweep/default", timeout=0, parameters={**TINY_PARAMS, "output_dir": str(out)}
            )
            # positive signal: two of serve's polls saw the second run and held it back
            _wait(
                "serve to hold the second run back twice",
                lambda: log_path.read_text().count(skipped) >= before + 2,
                serve,
                log_path,
            )
            assert client.read_flow_run(second.id).state.is_scheduled(), client.read_flow_run(second.id).state
            assert client.read_flow_run(first_id).state.is_running()
            assert len(attempts.read_text().splitlines()) == 1

            release.touch()

            def both_final():
                runs = [client.read_flow_run(i) for i in (first_id, second.id)]
                return runs if all(r.state.is_final() for r in runs) else None

            first_run, second_run = _wait("both runs to finish", both_final, serve, log_path, timeout=240)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGTERM)
                try:
                    serve.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(serve.pid, signal.SIGKILL)
                    serve.wait()
            log.close()
            _delete_default(client)

    for run in (first_run, second_run):
        assert run.state.is_completed(), (run.name, run.state, log_path.read_text()[-3000:])
        assert run.deployment_id == dep.id
    # never both running: the second started after the first ended (read back from the server)
    assert second_run.start_time >= first_run.end_time, (first_run.end_time, second_run.start_time)
    assert first_run.parameters["output_dir"] == str(out) and first_run.parameters["preset"] == "default"
    assert first_run.parameters["num_epochs"] == 1 and first_run.parameters["models"] == ["paper"]
    records = read_results(out)  # the launcher's run trained its one experiment
    assert [(r["status"], r["dataset"], r["model"], r["seed"]) for r in records] == [
        ("completed", "turbofan", "paper", 1)
    ]
    assert len(attempts.read_text().splitlines()) == 1  # the second found it finished: trained nothing
    assert "scheduled runs skipped (at capacity)" in log_path.read_text()
