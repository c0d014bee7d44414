"""A flow that ends Failed by design (as `ddrsa-sweep` does when an experiment failed) or crashes:
run by tests/test_designed_failure.py the way a deployment's worker runs a flow."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow  # noqa: E402

from flows.final_state import readable_failures, sweep_state  # noqa: E402

readable_failures()  # idempotent: flows/run_ops.py installs it on import too


@flow(name="designed-failure")
def designed(crash: bool = False):
    if crash:
        raise RuntimeError("a real crash in the sweep's own code")
    return sweep_state({"n_experiments": 2, "completed": 1, "cached": 0, "failed": 1, "diverged": 0})
