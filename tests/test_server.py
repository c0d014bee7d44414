"""The Prefect server a sweep starts for itself: its own database in the output folder."""

from __future__ import annotations

import re
import socket
import sqlite3

import pytest

from flows.server import SERVER_HOME, database_url, describe_database
from tests.conftest import TINY, read_results, run_cli

DB_VARS = (
    "PREFECT_API_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_DRIVER",
    "PREFECT_PROFILES_PATH",
)


def test_database_url_is_the_output_folder_unless_one_is_configured(tmp_path):
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    home = tmp_path / "user-home" / ".prefect"
    out_home = tmp_path / "out" / SERVER_HOME
    ours = f"sqlite+aiosqlite:///{out_home.resolve()}/prefect.db"
    with temporary_settings(
        updates={PREFECT_HOME: str(home)}, restore_defaults={PREFECT_SERVER_DATABASE_CONNECTION_URL}
    ):
        assert database_url(out_home) == ours  # Prefect's default (PREFECT_HOME/prefect.db): never used
    # the default spelled out by hand is still the user's own database: redirected as well
    with temporary_settings(
        updates={
            PREFECT_HOME: str(home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{home}/prefect.db",
        }
    ):
        assert database_url(out_home) == ours
    chosen = "postgresql+asyncpg://prefect:s3cret@127.0.0.1:5432/prefect"
    with temporary_settings(updates={PREFECT_HOME: str(home), PREFECT_SERVER_DATABASE_CONNECTION_URL: chosen}):
        assert database_url(out_home) == chosen  # a database the user configured (e.g. PostgreSQL) is kept
    assert "s3cret" not in describe_database(chosen) and "127.0.0.1:5432/prefect" in describe_database(chosen)
    assert describe_database(ours) == f"SQLite {out_home.resolve()}/prefect.db"


@pytest.mark.slow
def test_sweep_without_api_url_keeps_its_database_in_the_output_folder(tmp_path, monkeypatch):
    """No PREFECT_API_URL, a fresh HOME and PREFECT_HOME: the sweep's own server writes its SQLite
    database under OUTPUT_DIR/.prefect (the flow run and its task run are in it) and nothing at
    PREFECT_HOME/prefect.db or ~/.prefect/prefect.db; the server is gone when the command returns."""
    home = tmp_path / "home"
    prefect_home = home / "prefect-home"
    home.mkdir()
    out = tmp_path / "out"
    for name in DB_VARS:  # run_cli starts from os.environ: drop the session server's URL there
        monkeypatch.delenv(name, raising=False)
    env = dict(HOME=str(home), PREFECT_HOME=str(prefect_home))
    proc = run_cli(
        [
            "flows/sweep.py",
            "--datasets",
            "turbofan",
            "--models",
            "paper",
            "--batch-sizes",
            "32",
            *TINY,
            "--num-epochs",
            "1",
            "--n-workers",
            "1",
            "--no-analysis",
            "--output-dir",
            str(out),
        ],
        env=env,
        timeout=400,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    [record] = read_results(out)
    assert record["status"] == "completed"

    db = out / SERVER_HOME / "prefect.db"
    assert f"database: SQLite {db.resolve()}" in proc.stdout
    assert db.is_file()
    assert not (prefect_home / "prefect.db").exists() and not (home / ".prefect" / "prefect.db").exists()
    with sqlite3.connect(db) as con:  # read the file itself: the server is stopped
        flow_runs = con.execute(
            "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id"
        ).fetchall()
        task_runs = {name for (name,) in con.execute("SELECT name FROM task_run")}
    assert flow_runs == [("ddrsa-sweep", "COMPLETED")]
    assert record["name"] in task_runs

    port = int(re.search(r"Prefect server started on http://127\.0\.0\.1:(\d+)", proc.stdout).group(1))
    with socket.socket() as sock:  # stopped with the sweep: nothing listens on its port
        assert sock.connect_ex(("127.0.0.1", port)) != 0
