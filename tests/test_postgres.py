"""A sweep on a Prefect server backed by a real PostgreSQL (the documented path for big or
concurrent sweeps, README "PostgreSQL"): initdb + pg_ctl in a temporary folder on 127.0.0.1.

Needs the Debian package `postgresql` (>= 14; .ci/run installs it). Without it the test is skipped
with the reason, except under CI (env CI set), where it fails.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from flows.server import free_port, start_server, stop_server
from tests.conftest import TINY, in_ci, read_results, run_cli

pytestmark = pytest.mark.slow
MIN_VERSION = 14  # Prefect 3 supports PostgreSQL 14+


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin with initdb, major >= MIN_VERSION."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        major = Path(initdb).parent.parent.name
        if major.isdigit() and int(major) >= MIN_VERSION:
            found.append((int(major), Path(initdb).parent))
    return max(found)[1] if found else None


def unavailable(reason: str):
    if in_ci():
        pytest.fail(f"CI is set but {reason}: .ci/run must install the Debian package postgresql", pytrace=False)
    pytest.skip(reason)


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture()
def postgres():
    """A throw-away PostgreSQL on 127.0.0.1:<free port> with database `prefect` and pg_trgm;
    yields (asyncpg URL, psql command prefix). As root, the server runs as the user `postgres`."""
    bindir = postgres_bindir()
    if bindir is None:
        unavailable(f"no PostgreSQL >= {MIN_VERSION} (initdb under /usr/lib/postgresql/*/bin)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="ddrsa-pg-"))
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            unavailable("running as root and no user `postgres` to run the PostgreSQL server as")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    started = False
    try:
        _run([*as_user, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off"
        _run(
            [
                *as_user,
                bindir / "pg_ctl",
                "-D",
                data,
                "-l",
                folder / "postgres.log",
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )
        started = True
        psql = [bindir / "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]
        _run([*psql, "-d", "postgres", "-c", "CREATE DATABASE prefect"])
        _run([*psql, "-d", "prefect", "-c", "CREATE EXTENSION IF NOT EXISTS pg_trgm"])
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect", [*psql, "-d", "prefect"]
    finally:
        if started:
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(folder, ignore_errors=True)


def test_sweep_on_a_postgres_backed_prefect_server(postgres, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    db_url, psql = postgres
    t0 = time.monotonic()
    server, api_url = start_server(log_path=tmp_path / "server.log", home=tmp_path / "prefect-home", database=db_url)
    t_server = time.monotonic() - t0
    try:
        out = tmp_path / "out"
        env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_CONNECTION_URL")}
        env["PREFECT_API_URL"] = api_url
        t1 = time.monotonic()
        run_cli(
            [
                "flows/sweep.py",
                "--datasets",
                "turbofan",
                "--models",
                "paper",
                "gru_basic",
                "--batch-sizes",
                "32",
                *TINY,
                "--num-epochs",
                "1",
                "--n-workers",
                "1",
                "--output-dir",
                str(out),
            ],
            env=env,
            timeout=400,
            check=True,
        )
        t_sweep = time.monotonic() - t1
        records = read_results(out)
        assert len(records) == 2 and all(r["status"] == "completed" for r in records)

        with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            [run] = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ddrsa-sweep"])))
            assert run.state.is_completed(), run.state
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            by_name = {t.name: t for t in task_runs}
            assert {r["name"] for r in records} <= set(by_name)  # one task run per experiment
            assert all(by_name[r["name"]].state.is_completed() for r in records)
            run_ids = [f.id for f in client.read_flow_runs()]  # the sweep and its analysis subflow
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
            )
            kinds = {a.type for a in artifacts}
            assert {"progress", "table"} <= kinds, kinds
            assert [a.data for a in artifacts if a.type == "progress" and a.flow_run_id == run.id] == [100.0]
        # it really is PostgreSQL that holds them, and no SQLite file was made
        rows = _run(
            [
                *psql,
                "-c",
                "SELECT count(*) FROM task_run; SELECT count(*) FROM artifact; "
                "SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'",
            ]
        ).stdout.split()
        assert int(rows[0]) >= 2 and int(rows[1]) == len(artifacts) and rows[2] == "pg_trgm"
        assert not list((tmp_path / "prefect-home").glob("*.db"))
        print(f"postgres-backed Prefect server start {t_server:.1f} s, 2-experiment sweep {t_sweep:.1f} s")
    finally:
        stop_server(server)
