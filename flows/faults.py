"""Fault injection for reliability drills: `DDRSA_INJECT_FAULT=MODE:NAME_PART:ATTEMPTS[,...]`.

MODE is
- `raise`: the task raises;
- `killstart`: the first Dask worker process to start dies with SIGKILL while the local cluster
  starts (NAME_PART and ATTEMPTS are ignored, write `killstart:*:1`);
- `kill`: the worker process dies with SIGKILL;
- `killonce`: the worker dies DDRSA_FAULT_DELAY_S into the first attempt only, or, with
  DDRSA_FAULT_AFTER_EPOCH=N, as soon as the run's training_log.json holds N epochs (a marker
  file in DDRSA_FAULT_MARKER_DIR remembers);
- `nan`: the training loss becomes NaN in the first epoch (a real divergence for the trainer to
  catch);
- `dataerror`: the attempt raises ddrsa.errors.DataError (a data problem, never retried);
- `hang`: the attempt sleeps for DDRSA_FAULT_HANG_S seconds (default one hour) before training,
  or until the file DDRSA_FAULT_RELEASE exists: a stuck experiment for --experiment-timeout; the
  sleep is in Python steps, which a Prefect task timeout can interrupt.
It fires for experiments whose name contains NAME_PART, on attempts 1..ATTEMPTS (`*` for
every attempt). Several faults are separated by commas. Unset, nothing happens. Used by the
reliability tests and by operators who want to watch a sweep survive faults.

With DDRSA_ATTEMPT_LOG=FILE every attempt appends one line `{"name", "attempt", "pid", "t"}`
(JSON, t = Unix time in seconds) before any fault fires: how tests count attempts and their spacing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path


class InjectedFault(RuntimeError):
    """Raised on purpose by DDRSA_INJECT_FAULT."""


def _faults() -> list[tuple[str, str, str]]:
    out = []
    for spec in os.environ.get("DDRSA_INJECT_FAULT", "").split(","):
        parts = spec.strip().split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
    return out


def fault_mode(name: str, attempt: int) -> str | None:
    for mode, part, attempts in _faults():
        if part in name and (attempts == "*" or attempt <= int(attempts)):
            return mode
    return None


def _marker(name: str, suffix: str = "") -> Path:
    folder = Path(os.environ.get("DDRSA_FAULT_MARKER_DIR", tempfile.gettempdir()))
    return folder / f".ddrsa-fault-{hashlib.sha256(name.encode()).hexdigest()[:12]}{suffix}"


def _first_time(name: str) -> bool:
    try:
        _marker(name).touch(exist_ok=False)
        return True
    except FileExistsError:
        return False


def _kill_self(name: str) -> None:
    _marker(name, "-fired").touch()
    os.kill(os.getpid(), signal.SIGKILL)


def _hang() -> None:
    deadline = time.monotonic() + float(os.environ.get("DDRSA_FAULT_HANG_S", "3600"))
    release = os.environ.get("DDRSA_FAULT_RELEASE")
    while time.monotonic() < deadline and not (release and os.path.exists(release)):
        time.sleep(0.1)


def _epochs_logged(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "training_log.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_after_epoch(name: str, run_dir: Path, epoch: int, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        if _epochs_logged(run_dir) >= epoch:
            _kill_self(name)


def _log_attempt(name: str, attempt: int) -> None:
    path = os.environ.get("DDRSA_ATTEMPT_LOG")
    if path:
        line = json.dumps({"name": name, "attempt": attempt, "pid": os.getpid(), "t": time.time()})
        with open(path, "a") as fh:  # one short write per line: appends from several workers interleave whole
            fh.write(line + "\n")


def read_attempt_log(path) -> list[dict]:
    """The attempts DDRSA_ATTEMPT_LOG recorded, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def worker_start_fault() -> None:
    """Called by the worker preload (flows.cluster.dask_setup): `killstart` kills the first worker
    process that starts (once per DDRSA_FAULT_MARKER_DIR), as the OOM killer or a stray `kill`
    would while the sweep's cluster comes up."""
    if any(mode == "killstart" for mode, _, _ in _faults()) and _first_time("worker-start"):
        _kill_self("worker-start")


@contextlib.contextmanager
def injected_faults(name: str, attempt: int, run_dir: Path | None = None):
    """Around one attempt of an experiment: raise or die when a fault is configured for it.

    `killonce` arms a timer that kills the worker DDRSA_FAULT_DELAY_S into the attempt, and
    disarms it when the attempt ends first, so it never hits another experiment.
    """
    _log_attempt(name, attempt)
    mode = fault_mode(name, attempt)
    if mode == "hang":
        _hang()
    if mode == "raise":
        raise InjectedFault(f"injected failure in {name} (attempt {attempt})")
    if mode == "dataerror":
        from ddrsa.errors import DataError

        raise DataError(f"injected data error in {name} (attempt {attempt})")
    if mode == "kill":
        _kill_self(name)
    timer = None
    if mode == "killonce" and _first_time(name):
        after_epoch = os.environ.get("DDRSA_FAULT_AFTER_EPOCH")
        if after_epoch and run_dir is not None:
            timer = threading.Event()
            threading.Thread(
                target=_kill_after_epoch, args=(name, Path(run_dir), int(after_epoch), timer), daemon=True
            ).start()
        else:
            timer = threading.Timer(float(os.environ.get("DDRSA_FAULT_DELAY_S", "1.0")), _kill_self, args=(name,))
            timer.daemon = True
            timer.start()
    try:
        yield mode
    finally:
        if timer is not None:
            timer.set() if isinstance(timer, threading.Event) else timer.cancel()
