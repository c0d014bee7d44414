"""One Prefect API server for a whole local sweep (flow process and every Dask worker).

With no PREFECT_API_URL each worker PROCESS would start its own temporary server and the flow
fails (shared/PREFECT-NOTES.md). `api_server()` starts one uvicorn server on 127.0.0.1 for the
sweep's lifetime, exports PREFECT_API_URL to this process and its children (the Dask workers it
spawns later), and stops it at the end. The server dies with its parent even on SIGKILL
(PR_SET_PDEATHSIG), so a killed sweep leaves no orphan listening.
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


def start_server(port: int | None = None, log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start uvicorn serving Prefect's API and UI on 127.0.0.1; return (process, api_url)."""
    import prefect

    port = port or free_port()
    # full server (not webserver-only): its services record the task runs that Dask workers report
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    env.pop("PREFECT_API_URL", None)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env=env, stdout=out, stderr=out, preexec_fn=_die_with_parent)
    api_url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited with code {proc.returncode} during start-up")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return proc, api_url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"Prefect server did not answer on {api_url} within {STARTUP_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def api_server(log_path: Path | None = None, echo=print):
    """Use PREFECT_API_URL when set; else run a server on 127.0.0.1 for the duration."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    t0 = time.monotonic()
    proc, api_url = start_server(log_path=log_path)
    echo(f"Prefect server started on {api_url.removesuffix('/api')} in {time.monotonic() - t0:.0f} s "
         "(UI there while the sweep runs; set PREFECT_API_URL to use your own server)")
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
