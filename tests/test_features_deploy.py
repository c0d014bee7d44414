"""`python -m deployments.serve` and the launcher against a real Prefect server (issue 18): serve's
refusal when `prefect deploy` registered the names, `--only`, `--limit`, the timezone check, a live
serve registering the nightly schedule, and the launcher's "deployment not registered" error.
(The launcher's real local run is in tests/test_features_sweep.py; a deployment run executed by a
worker is in tests/test_deployments.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, assert_one_line_error

SERVE = [sys.executable, "-m", "deployments.serve"]


def _run(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "args, env, needle",
    [
        (["--timezone", "Mars/Olympus"], {}, "unknown timezone 'Mars/Olympus'"),
        ([], {"DDRSA_NIGHTLY_TZ": "Not/AZone"}, "unknown timezone 'Not/AZone'"),  # the variable is checked too
        (["--limit", "0"], {}, "--limit must be at least 1"),
        (["--only", "no-such-preset"], {}, "--only"),
        ([], {"PREFECT_API_URL": ""}, "PREFECT_API_URL is not set"),
    ],
)
def test_serve_bad_input_is_one_line(args, env, needle):
    assert_one_line_error(_run(SERVE + args, env={"PREFECT_API_URL": "http://127.0.0.1:9/api", **env}), needle)


def _delete(client, name: str) -> None:
    from prefect.exceptions import ObjectNotFound

    try:
        client.delete_deployment(client.read_deployment_by_name(f"ddrsa-sweep/{name}").id)
    except ObjectNotFound:
        pass


def test_serve_refuses_names_that_prefect_deploy_registered(prefect_server):
    """A deployment `prefect deploy` created for a work pool (made here through the API, as
    prefect deploy does): serve names it and the pool, exits 2, and serves nothing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="ddrsa-local-test", type="process"), overwrite=True)
        flow_id = client.create_flow_from_name("ddrsa-sweep")
        client.create_deployment(
            flow_id=flow_id,
            name="batch-study",
            work_pool_name="ddrsa-local-test",
            entrypoint="flows/sweep.py:ddrsa_sweep",
            parameters={"preset": "batch-study"},
        )
        try:
            proc = _run(SERVE + ["--only", "nightly", "batch-study"], timeout=180)
            assert_one_line_error(proc, "batch-study", "already deployed", "ddrsa-local-test")
            with pytest.raises(ObjectNotFound):
                client.read_deployment_by_name("ddrsa-sweep/nightly")
        finally:
            _delete(client, "batch-study")
            client.delete_work_pool("ddrsa-local-test")


def test_live_serve_only_nightly_with_timezone_and_launcher_unregistered(prefect_server, tmp_path):
    """`serve --only nightly --timezone Europe/Berlin --limit 1` registers exactly nightly (no work
    pool, 02:00 Europe/Berlin, the preset's parameters); the launcher asked for batch-study, which
    nobody registered, says so in one line."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from deployments.presets import deployment_parameters

    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen(
        SERVE + ["--only", "nightly", "--timezone", "Europe/Berlin", "--limit", "1"],
        cwd=tmp_path,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while True:
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                try:
                    dep = client.read_deployment_by_name("ddrsa-sweep/nightly")
                    break
                except ObjectNotFound:
                    assert time.monotonic() < deadline, "serve registered nothing in 180 s"
                    time.sleep(0.5)
            assert dep.work_pool_name is None and dep.parameters == deployment_parameters("nightly")
            assert [(s.schedule.cron, s.schedule.timezone) for s in dep.schedules] == [("0 2 * * *", "Europe/Berlin")]
            with pytest.raises(ObjectNotFound):
                client.read_deployment_by_name("ddrsa-sweep/batch-study")  # --only: nothing else

            proc = _run(
                [sys.executable, "-m", "deployments.launcher", "--preset", "batch-study", "--where", "server", "--yes"],
                timeout=180,
            )
            assert_one_line_error(proc, "ddrsa-sweep/batch-study is not registered", prefect_server)
            assert "serving 1 deployments of ddrsa-sweep" in (tmp_path / "serve.log").read_text()
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()
        with get_client(sync_client=True) as client:
            _delete(client, "nightly")
