"""Shared fixtures: one real Prefect server per test session, tiny sweep settings, helpers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DDRSA_DATA_SOURCE", "auto")
# One torch thread per process: tests run servers, workers and trainers side by side on 2 cores,
# and oversubscribed OpenMP threads spin (measured 8-45x slower per step, see BENCHMARKS.md).
os.environ.setdefault("DDRSA_TORCH_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tiny experiments: synthetic data, short windows, few units, two epochs.
TINY = ["--data-source", "synthetic", "--max-units", "12", "--window-stride", "8",
        "--lookback-window", "32", "--pred-horizon", "16", "--num-epochs", "2"]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect API server on a free 127.0.0.1 port, its own PREFECT_HOME; URL exported."""
    from flows.server import start_server, stop_server

    home = tmp_path_factory.mktemp("prefect-home")
    old = {k: os.environ.get(k) for k in ("PREFECT_HOME", "PREFECT_API_URL")}
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)
    proc, url = start_server(log_path=home / "server.log")
    os.environ["PREFECT_API_URL"] = url
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: str(home)}):
        yield url
    stop_server(proc)
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_cli(args: list[str], *, env: dict | None = None, timeout: float = 600,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run a project command (`flows/sweep.py ...` or `-m ddrsa.train ...`) as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def read_results(output_dir: Path) -> list[dict]:
    return json.loads((Path(output_dir) / "all_results.json").read_text())


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
