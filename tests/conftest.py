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

# ------------------------------------------------------------------------------ real data
# One rule for every test: the shared data folder is DDRSA_DATA_DIR when set, else `../shared/data`
# next to the checkout (the code's default, ddrsa/settings.py). Tests that need it carry
# `@pytest.mark.realdata`: skipped with the reason when it is absent, a FAILURE under CI (env CI set,
# exported by .ci/run), where the data is provided and a silent skip would hide a broken test.
REAL_DATA_DIR = (
    Path(os.environ["DDRSA_DATA_DIR"]) if os.environ.get("DDRSA_DATA_DIR") else (ROOT.parent / "shared" / "data")
)
REAL_DATA_FILES = tuple(f"cmapss/{kind}_FD00{i}.txt" for i in range(1, 5) for kind in ("train", "test", "RUL")) + tuple(
    f"azure_pm/PdM_{name}.csv" for name in ("errors", "maint", "failures", "machines")
)


@pytest.fixture(autouse=True)
def _prefect_console_follows_capture():
    """Prefect's console handler keeps the stream it was configured with. Under `capsys` that is
    a stream pytest closes after the test, and a later in-process flow run then fails writing
    its log (ValueError, then RecursionError). Point the handler at this test's stderr."""
    if "prefect.logging.handlers" in sys.modules:
        import logging

        from prefect.logging.handlers import PrefectConsoleHandler

        loggers = [logging.getLogger()] + [
            v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)
        ]
        for handler in {h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)}:
            handler.stream = sys.stderr  # not setStream(): it flushes the closed one
            handler.console.file = sys.stderr
    yield


def real_data_missing() -> str | None:
    """None when every real data file is in REAL_DATA_DIR (plain or .gz), else why not."""
    missing = [
        f for f in REAL_DATA_FILES if not ((REAL_DATA_DIR / f).is_file() or (REAL_DATA_DIR / f"{f}.gz").is_file())
    ]
    if not missing:
        return None
    return f"real data absent: {len(missing)} file(s) missing in {REAL_DATA_DIR}, e.g. {missing[0]}(.gz)"


def real_data_file(relative: str) -> Path:
    """The real data file `relative` (e.g. 'cmapss/RUL_FD001.txt'), plain or .gz."""
    plain = REAL_DATA_DIR / relative
    return plain if plain.is_file() else REAL_DATA_DIR / f"{relative}.gz"


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def cannot_run(reason: str) -> None:
    """A required test whose setting is missing here (root, a tmpfs mount, chattr): skipped with
    `reason`, a FAILURE under CI (which runs as root with every tool), like the realdata tests."""
    if in_ci():
        pytest.fail(f"CI is set but {reason}: this test must run in CI", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item):
    if item.get_closest_marker("realdata") is None:
        return
    reason = real_data_missing()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI is set but {reason}: realdata tests must run in CI", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a realdata test that skips itself (pytest.skip inside the test) fails instead."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and item.get_closest_marker("realdata") is not None:
        report.outcome = "failed"
        report.longrepr = f"CI is set but realdata test {item.nodeid} was skipped: {report.longrepr}"


# Tiny experiments: synthetic data, short windows, few units, two epochs.
TINY = [
    "--data-source",
    "synthetic",
    "--max-units",
    "12",
    "--window-stride",
    "8",
    "--lookback-window",
    "32",
    "--pred-horizon",
    "16",
    "--num-epochs",
    "2",
]


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


def run_cli(
    args: list[str], *, env: dict | None = None, timeout: float = 600, check: bool = False
) -> subprocess.CompletedProcess:
    """Run a project command (`flows/sweep.py ...` or `-m ddrsa.train ...`) as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def stop_processes(procs: list[subprocess.Popen], timeout: float = 15) -> None:
    """Terminate `procs` in reverse start order (workers before their scheduler), killing any that
    has not exited within `timeout` seconds."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


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
