"""Issue 28 end to end on a generated fleet whose wear drives the hazard: `check`, a two-model sweep
on the file with --refit, `score` on a later snapshot of the same units, and the `ddrsa-score/fleet-nightly`
deployment run by a process worker on a real Prefect server, publishing its artifacts. The riskiest scored units must be the ones the
generator made riskiest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, read_results, run_cli, stop_processes
from tests.fleet_fixtures import make_fleet, true_risk
from tests.test_deployments import full_server  # noqa: F401 (fixture: `prefect server start`, all services)

pytestmark = pytest.mark.slow
N_UNITS, TRAIN_STEPS, LATER_STEPS, HORIZON = 24, 100, 130, 16


def prefect_cmd(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [f"{os.path.dirname(sys.executable)}/prefect", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"prefect {args}: {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def fleet_sweep(tmp_path_factory, prefect_server):
    root = tmp_path_factory.mktemp("fleet-e2e")
    df, _ = make_fleet(N_UNITS, TRAIN_STEPS, seed=11)
    table = root / "pumps.csv"
    df.to_csv(table, index=False)
    out = root / "sweep"
    env = {"PREFECT_API_URL": prefect_server, "DDRSA_TORCH_THREADS": "1"}
    check = run_cli(["-m", "ddrsa.data", "check", str(table)], env=env, timeout=120)
    sweep = run_cli(
        [
            "flows/sweep.py",
            "--datasets",
            str(table),
            "--models",
            "gru_basic",
            "lstm_basic",
            "--num-epochs",
            "6",
            "--lookback-window",
            "16",
            "--pred-horizon",
            str(HORIZON),
            "--learning-rates",
            "0.01",
            "--refit",
            "--n-workers",
            "1",
            "--output-dir",
            str(out),
        ],
        env=env,
        timeout=900,
    )
    return root, table, out, check, sweep, env


def test_check_sweep_refit_score_finds_the_riskiest_units(fleet_sweep, tmp_path):
    _, table, out, check, sweep, env = fleet_sweep
    assert check.returncode == 0 and f"units {N_UNITS}" in check.stdout, check.stderr
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    records = read_results(out)
    assert sorted(r["model"] for r in records) == ["gru_basic", "lstm_basic"]
    assert all(r["status"] == "completed" and r["run_dir"].startswith("logs/pumps/") for r in records)
    package = out / "packages" / "pumps"
    assert (package / "weights.pt").is_file() and f"model package pumps: {package}" in sweep.stdout

    later, state = make_fleet(N_UNITS, LATER_STEPS, seed=11)
    snapshot = tmp_path / "pumps-later.csv"
    later.to_csv(snapshot, index=False)
    scores_csv = tmp_path / "scores.csv"
    scored = run_cli(
        ["-m", "ddrsa.score", "--model", str(package), "--data", str(snapshot), "--output", str(scores_csv)],
        env=env,
        timeout=120,
    )
    assert scored.returncode == 0, scored.stderr
    assert scored.stderr.strip().startswith(f"scored {N_UNITS} units of pumps-later.csv")
    scores = pd.read_csv(scores_csv)
    window = HORIZON // 4
    truth = true_risk(state, window)
    predicted = scores.set_index("unit")[f"p_fail_within_{window}"]
    rho = pd.Series(truth).rank().corr(predicted.rank())
    top_true = sorted(truth, key=truth.get, reverse=True)[:4]
    top_scored = scores["unit"].head(8).tolist()
    assert rho > 0.6, (rho, top_true, top_scored)
    assert len(set(top_true) & set(top_scored)) >= 3, (top_true, top_scored)


def test_score_deployment_runs_on_a_process_worker(fleet_sweep, full_server, tmp_path):  # noqa: F811
    """`ddrsa-score/fleet-nightly` from prefect.yaml, deployed with `prefect deploy` on a real server and
    run by a process worker on the sweep's package: Completed, its CSV written, the table artifact of
    the riskiest units and the survival-curve markdown artifact on its flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    _, table, out, _, sweep, _ = fleet_sweep
    assert sweep.returncode == 0
    env = {
        **full_server,
        "DDRSA_PROJECT_DIR": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "DDRSA_TORCH_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    prefect_cmd(["work-pool", "create", "ddrsa-local", "--type", "process"], env)
    worker_log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [f"{os.path.dirname(sys.executable)}/prefect", "worker", "start", "--pool", "ddrsa-local"],
        cwd=tmp_path,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    scores = tmp_path / "scores"
    try:
        prefect_cmd(["--no-prompt", "deploy", "--name", "fleet-nightly"], env, timeout=240)
        params = {
            "model_dir": str(out / "packages" / "pumps"),
            "data_path": str(table),
            "output_dir": str(scores),
            "top_n": 5,
        }
        started = prefect_cmd(["deployment", "run", "ddrsa-score/fleet-nightly", "--params", json.dumps(params)], env)
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1)
        deadline = time.monotonic() + 300
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("ddrsa-score/fleet-nightly")
            assert [(s.schedule.cron, s.active) for s in dep.schedules] == [("0 6 * * *", False)]
            while not ((run := client.read_flow_run(run_id)).state and run.state.is_final()):
                assert time.monotonic() < deadline, f"flow run still {run.state.name} after 300 s"
                time.sleep(2)
            assert run.state.is_completed(), (run.state, (tmp_path / "worker.log").read_text()[-4000:])
            arts = {
                a.key: a
                for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
                )
            }
    finally:
        stop_processes([worker], timeout=20)
        worker_log.close()
    latest = pd.read_csv(scores / "pumps-latest.csv")
    assert len(latest) == N_UNITS
    assert {"ddrsa-fleet-risk-pumps", "ddrsa-fleet-survival-pumps"} <= set(arts)
    rows = arts["ddrsa-fleet-risk-pumps"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert [r["unit"] for r in rows] == latest["unit"].head(5).tolist()
    assert np.allclose(
        [r["expected_time_to_failure"] for r in rows], latest["expected_time_to_failure"].head(5), rtol=1e-5
    )
    assert "data:image/png;base64," in arts["ddrsa-fleet-survival-pumps"].data
