"""One Prefect API server for a whole local sweep (flow process and every Dask worker).

With no PREFECT_API_URL each worker PROCESS would start its own temporary server and the flow
fails (shared/PREFECT-NOTES.md). `api_server(output_dir)` starts one uvicorn server on 127.0.0.1
for the sweep's lifetime, exports PREFECT_API_URL to this process and its children (the Dask
workers it spawns later), and stops it at the end. The server dies with its parent even on
SIGKILL (PR_SET_PDEATHSIG), so a killed sweep leaves no orphan listening.

Its database is the one the user chose (PREFECT_API_DATABASE_CONNECTION_URL or the
PREFECT_SERVER_DATABASE_* settings, e.g. PostgreSQL), else SQLite in OUTPUT_DIR/.prefect/prefect.db
with PREFECT_HOME=OUTPUT_DIR/.prefect for the server process: never the default
~/.prefect/prefect.db that a `prefect server start` of the user's writes, so the two cannot collide,
and the sweep's run history stays with its results.

Why not Prefect's `prefect.server.api.server.SubprocessASGIServer` (what `prefect_test_harness`
uses; re-checked against Prefect 3.9.1, issue 14): it runs the same app
(`prefect.server.api.server:create_app` under uvicorn, as here) but not the same job:
- it sets PREFECT_UI_ENABLED=0 and PREFECT__SERVER_EPHEMERAL=1: no UI (the sweep prints its URL for
  the user to watch), and only the services marked for ephemeral servers (task run recorder,
  events, triggers). The Repossessor, which frees the leases of global concurrency limits
  (flows/gpu_limits.py) that a killed sweep held, cancellation clean-up and late-run marking do
  not run;
- its only parameter is the port (random in 8000-8999 if none); PREFECT_HOME and the database
  come from the caller's settings, so keeping them under OUTPUT_DIR would mean temporary_settings
  around start() instead of two arguments;
- uvicorn's output goes to our console, not to a log file, and a start-up failure (uvicorn exits
  with code 3, e.g. an unreachable PostgreSQL or a missing pg_trgm) is taken for a taken port and
  retried on another port until the timeout, instead of being reported at once with the log;
- it is stopped by atexit only: a SIGKILLed sweep leaves it listening (here PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 120
SERVER_HOME = ".prefect"  # OUTPUT_DIR/.prefect: the sweep's own server's PREFECT_HOME and SQLite file
DB_ENV = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")  # first wins


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM the server when the sweep process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def database_url(home: Path) -> str:
    """The database of a server started for a sweep whose server home is `home`.

    The URL the user configured (environment or Prefect profile: PREFECT_API_DATABASE_CONNECTION_URL,
    PREFECT_SERVER_DATABASE_DRIVER/HOST/..., e.g. postgresql+asyncpg://...) when it differs from
    Prefect's default; otherwise SQLite at `home`/prefect.db instead of PREFECT_HOME/prefect.db.
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    configured = settings.server.database.connection_url
    url = configured.get_secret_value() if configured is not None else None
    if url and url != f"sqlite+aiosqlite:///{settings.home}/prefect.db":
        return url
    return f"sqlite+aiosqlite:///{Path(home).resolve() / 'prefect.db'}"


def describe_database(url: str) -> str:
    """`url` for printing: a SQLite file's path, or the URL with its password hidden."""
    if url.startswith("sqlite"):
        return f"SQLite {url.split(':///', 1)[-1]}"
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _log_tail(log_path: Path | None, chars: int = 1500) -> str:
    if not log_path or not Path(log_path).is_file():
        return ""
    return "; server log ends: " + Path(log_path).read_text(errors="replace")[-chars:].strip()


def start_server(
    port: int | None = None, log_path: Path | None = None, home: Path | None = None, database: str | None = None
) -> tuple[subprocess.Popen, str]:
    """Start Prefect's API and UI on 127.0.0.1 (a free port unless `port`); return (process, api_url).

    `home`: the server's PREFECT_HOME (created); `database`: its connection URL. Unset, both come
    from this process's environment and profile as for `prefect server start`.
    """
    import prefect

    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    # full server (not webserver-only): its services record the task runs that Dask workers report
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": api_url}
    env.pop("PREFECT_API_URL", None)
    if home is not None:
        Path(home).mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(Path(home).resolve())
    if database is not None:
        for name in DB_ENV:
            env.pop(name, None)
        env[DB_ENV[0]] = database
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(Path(prefect.__file__).parent.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=_die_with_parent,
        )
    finally:
        if log_path:
            out.close()  # the child keeps its own descriptor
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"Prefect server exited with code {proc.returncode} during start-up" + _log_tail(log_path)
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return proc, api_url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError(f"Prefect server did not answer on {api_url} within {STARTUP_TIMEOUT_S} s" + _log_tail(log_path))


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def api_server(output_dir: Path | None = None, log_path: Path | None = None, echo=print):
    """Use PREFECT_API_URL when set; else run a server on 127.0.0.1 for the duration, with its
    home (and SQLite database, unless one is configured) in `output_dir`/.prefect."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    home = Path(output_dir) / SERVER_HOME if output_dir is not None else None
    if log_path is None and output_dir is not None:
        log_path = Path(output_dir) / "prefect-server.log"
    database = database_url(home) if home is not None else None
    t0 = time.monotonic()
    proc, api_url = start_server(log_path=log_path, home=home, database=database)
    where = f"; database: {describe_database(database)}" if database else ""
    echo(
        f"Prefect server started on {api_url.removesuffix('/api')} in {time.monotonic() - t0:.0f} s{where} "
        "(UI there while this command runs; set PREFECT_API_URL to use your own server)"
    )
    os.environ["PREFECT_API_URL"] = api_url  # for child processes (Dask workers)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):  # for this process
            yield api_url
    finally:
        _flush_api_logs()
        os.environ.pop("PREFECT_API_URL", None)
        stop_server(proc)


def _flush_api_logs() -> None:
    """Send buffered flow/task logs while the server still listens."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception:  # logging must never fail the sweep
        pass
