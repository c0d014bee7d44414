"""Fault injection for reliability drills: `DDRSA_INJECT_FAULT=MODE:NAME_PART:ATTEMPTS[,...]`.

MODE is `raise` (the task raises), `kill` (the worker process dies with SIGKILL), `killonce`
(the worker dies DDRSA_FAULT_DELAY_S into the first attempt only; a marker file in
DDRSA_FAULT_MARKER_DIR remembers) or
`nan` (the training loss becomes NaN in the first epoch: a real divergence for the trainer to
catch). It fires for experiments whose name contains NAME_PART, on attempts 1..ATTEMPTS (`*` for
every attempt). Several faults are separated by commas. Unset, nothing happens. Used by the
reliability tests and by operators who want to watch a sweep survive faults.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import tempfile
import threading
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


@contextlib.contextmanager
def injected_faults(name: str, attempt: int):
    """Around one attempt of an experiment: raise or die when a fault is configured for it.

    `killonce` arms a timer that kills the worker DDRSA_FAULT_DELAY_S into the attempt, and
    disarms it when the attempt ends first, so it never hits another experiment.
    """
    mode = fault_mode(name, attempt)
    if mode == "raise":
        raise InjectedFault(f"injected failure in {name} (attempt {attempt})")
    if mode == "kill":
        _kill_self(name)
    timer = None
    if mode == "killonce" and _first_time(name):
        delay = float(os.environ.get("DDRSA_FAULT_DELAY_S", "1.0"))
        timer = threading.Timer(delay, _kill_self, args=(name,))
        timer.daemon = True
        timer.start()
    try:
        yield mode
    finally:
        if timer is not None:
            timer.cancel()
