"""prefect.yaml <-> presets, time estimates, serve(), and a real deployment run end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deployments import generate
from deployments.estimates import NO_MEASUREMENT, estimate_preset, estimate_spec
from deployments.presets import PRESETS, deployment_parameters, preset_size, preset_spec
from tests.conftest import ROOT, read_results

TINY_PARAMS = {
    "data_source": "synthetic",
    "max_units": 12,
    "window_stride": 8,
    "lookback_window": 32,
    "pred_horizon": 16,
    "num_epochs": 1,
    "datasets": ["turbofan"],
    "models": ["paper"],
    "n_workers": 1,
}


def test_prefect_yaml_is_generated_from_the_presets():
    committed = (ROOT / "prefect.yaml").read_text()
    assert committed == generate.render(), "prefect.yaml is stale: run `python -m deployments.generate`"
    doc = yaml.safe_load(committed)
    assert doc["build"] is None and doc["push"] is None
    assert doc["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $DDRSA_PROJECT_DIR }}"}}
    ]
    by_name = {d["name"]: d for d in doc["deployments"] if d["entrypoint"] != generate.SCORE_ENTRYPOINT}
    assert list(by_name) == list(PRESETS)
    for name, dep in by_name.items():
        assert dep["entrypoint"] == "flows/sweep.py:ddrsa_sweep"
        assert dep["work_pool"]["name"] == "ddrsa-local"
        assert dep["parameters"] == deployment_parameters(name)
        assert dep["parameters"]["preset"] == name
        assert f"{preset_size(name)} experiments" in dep["description"]
        assert ("schedules" in dep) == (name == "nightly")
    assert by_name["nightly"]["parameters"]["append_to_history"] is True
    assert by_name["nightly"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert "append_to_history" not in by_name["batch-study"]["parameters"]
    # the counts the issue names
    assert preset_size("quick-comparison") == 12 and preset_size("batch-study") == 60
    assert preset_size("full-grid") == 1296 and preset_size("nightly") == 36


def test_generate_check_mode(tmp_path, capsys):
    stale = tmp_path / "prefect.yaml"
    stale.write_text("name: old\n")
    assert generate.main(["--check", "--output", str(stale)]) == 1
    assert generate.main(["--output", str(stale)]) == 0
    assert generate.main(["--check", "--output", str(stale)]) == 0
    assert stale.read_text() == (ROOT / "prefect.yaml").read_text()


def _fake_sweep(folder: Path, spec, seconds_per_epoch: float, device: str = "cuda:0", epochs: int = 4):
    from ddrsa.sweep.spec import expand

    planned = expand(spec)
    folder.mkdir(parents=True)
    (folder / "experiment_manifest.json").write_text(json.dumps({"experiments": [p.as_dict() for p in planned]}))
    records = [
        {
            "experiment_id": p.experiment_id,
            "dataset": p.config.dataset,
            "model": p.config.model,
            "status": "completed",
            "train_seconds": seconds_per_epoch * epochs,
            "epochs_trained": epochs,
            "device": device,
        }
        for p in planned
    ]
    (folder / "all_results.json").write_text(json.dumps(records))


def test_estimates_from_measured_runs(tmp_path):
    assert estimate_preset("batch-study", tmp_path).text() == NO_MEASUREMENT
    # a measured quick-comparison (same data shape as batch-study) on a GPU: 2 s per epoch
    _fake_sweep(tmp_path / "quick-comparison", preset_spec("quick-comparison"), 2.0)
    est = estimate_preset("batch-study", tmp_path)
    assert est.device == "gpu" and est.measured == est.total == 60
    assert est.seconds == pytest.approx(60 * 100 * 2.0)
    assert est.text() == "<= 3.3 h per GPU"
    # tiny test runs never stand in for full-size data
    _fake_sweep(
        tmp_path / "tiny", preset_spec("quick-comparison", {"max_units": 12, "num_epochs": 1}), 0.1, device="cpu"
    )
    assert estimate_preset("batch-study", tmp_path).seconds == pytest.approx(12000)
    # partly measured: the rest extrapolated from the mean, and said so
    full = preset_spec("full-grid")
    text = estimate_spec(full, tmp_path).text()
    assert "per GPU" in text and "/1296 measured" in text
    # CPU-only measurements are labelled as such
    other = tmp_path / "cpu-only"
    _fake_sweep(other / "run", preset_spec("default"), 1.0, device="cpu")
    assert "CPU" in estimate_preset("default", other).text()


def test_serve_builds_the_same_deployments_as_prefect_yaml():
    from deployments.serve import build_deployments

    deps = {d.name: d for d in build_deployments(list(PRESETS), timezone="Europe/Berlin")}
    assert list(deps) == list(PRESETS)
    assert deps["batch-study"].parameters == deployment_parameters("batch-study")
    assert deps["batch-study"].entrypoint.endswith("flows/sweep.py:ddrsa_sweep")
    assert not deps["batch-study"].schedules
    nightly = deps["nightly"]
    assert nightly.parameters["append_to_history"] is True
    assert len(nightly.schedules) == 1
    assert nightly.schedules[0].schedule.cron == "0 2 * * *"
    assert nightly.schedules[0].schedule.timezone == "Europe/Berlin"


# --------------------------------------------------------------------------- end to end


def _prefect(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.run(
        [f"{bindir}/prefect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"prefect {args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """A process worker needs two SIGTERMs (shared/PREFECT-NOTES.md)."""
    for _ in range(2):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture()
def full_server(tmp_path):
    """`prefect server start --host 127.0.0.1` (all services: the task-run recorder and the scheduler,
    which the webserver-only server of conftest lacks) on a free port, its own PREFECT_HOME."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": url,
    }
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "server.log", "wb")
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.Popen(
        [f"{bindir}/prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server start: no answer in 120 s"
            time.sleep(0.5)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield {**env, "PREFECT_API_URL": url}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the uvicorn it started
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_prefect_deploy_worker_and_deployment_run(full_server, tmp_path):
    """prefect.yaml registered with `prefect deploy --all` against a real server; a process worker
    runs `prefect deployment run ddrsa-sweep/quick-comparison` with tiny parameters, one of its two
    experiments failing on a data error (injected through the run's `env` job variable): the
    deployment's flow run ends Failed with the count and the reason, the other experiment's record
    and the analysis artifacts are there."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    env = {
        **full_server,
        "DDRSA_PROJECT_DIR": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "DDRSA_TORCH_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    _prefect(["work-pool", "create", "ddrsa-local", "--type", "process"], env)
    # the worker starts (and idles) while `prefect deploy` registers prefect.yaml
    worker_log = open(tmp_path / "worker.log", "wb")
    bindir = os.path.dirname(sys.executable)
    worker = subprocess.Popen(
        [f"{bindir}/prefect", "worker", "start", "--pool", "ddrsa-local"],
        cwd=tmp_path,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = tmp_path / "results"
    try:
        _prefect(["--no-prompt", "deploy", "--all"], env, timeout=240)

        with get_client(sync_client=True) as client:
            deployments = {
                d.name: d for d in client.read_deployments() if d.entrypoint != generate.SCORE_ENTRYPOINT
            }  # ddrsa-score/fleet-nightly: tests/test_fleet_e2e.py
            assert set(deployments) == set(PRESETS)
            for name, dep in deployments.items():
                assert dep.parameters == deployment_parameters(name)
                assert dep.work_pool_name == "ddrsa-local"
                assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
            nightly = deployments["nightly"]
            assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in nightly.schedules] == [
                ("0 2 * * *", "UTC", True)
            ]
            assert not deployments["quick-comparison"].schedules

        params = {**TINY_PARAMS, "seeds": [1, 2], "output_dir": str(out)}
        fault = json.dumps({"DDRSA_INJECT_FAULT": "dataerror:_s2:*"})
        started = _prefect(
            [
                "deployment",
                "run",
                "ddrsa-sweep/quick-comparison",
                "--params",
                json.dumps(params),
                "--job-variable",
                f"env={fault}",
            ],
            env,
        )
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1)
        deadline = time.monotonic() + 300
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(run_id)
                if run.state and run.state.is_final():
                    break
                assert time.monotonic() < deadline, f"flow run still {run.state.name} after 300 s"
                time.sleep(2)
            assert run.state.is_failed(), (run.state, (tmp_path / "worker.log").read_text()[-4000:])
            assert re.search(r"1 of 2 experiments failed: turbofan/paper/\S+_s2.*DataError", run.state.message), (
                run.state.message
            )
            assert run.parameters["preset"] == "quick-comparison" and run.parameters["num_epochs"] == 1

            records = sorted(read_results(out), key=lambda r: r["seed"])
            assert [r["status"] for r in records] == ["completed", "failed"]
            assert "DataError" in records[1]["error"] and records[1]["attempts"] == 1  # not retried
            assert records[0]["name"].startswith("turbofan/paper/")
            assert (out / "report.html").is_file() and (out / "experiment_manifest.json").is_file()

            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            assert records[0]["name"] in {t.name for t in task_runs}  # one task run named per experiment

            arts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["ddrsa-best-configurations-quick-comparison-results"])
                )
            )  # preset + folder
            ours = [art for art in arts if art.flow_run_id == run.id]  # on the sweep's own run (issue 32)
            assert ours and ours[0].type == "table"
            rows = json.loads(ours[0].data)  # one row per dataset: the winner of the one completed experiment
            assert [(r["dataset"], r["winner"]) for r in rows] == [("turbofan FD001", "paper")]
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            assert not any("Engine execution exited" in log.message for log in logs)  # a designed failure

            # the server's scheduler has put nightly's next 02:00 runs on the calendar
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

            scheduled = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployments["nightly"].id]))
            )
            assert scheduled and all(r.state.is_scheduled() for r in scheduled)
            assert all(r.expected_start_time.hour == 2 and r.expected_start_time.minute == 0 for r in scheduled)
    finally:
        _stop(worker)
        worker_log.close()
