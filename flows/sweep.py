"""`ddrsa-sweep`: train every grid point on a Dask cluster, resumably, then analyse.

python flows/sweep.py                      # small default sweep (see --help)
python flows/sweep.py --preset batch-study --num-epochs 20
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python flows/sweep.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":  # check the command line before the slow imports below
    from ddrsa.cli import run_cli
    from flows.sweep_cli import preflight

    PARAMS = run_cli("python flows/sweep.py", preflight, sys.argv[1:], passthrough=True)
    if PARAMS is None:
        sys.exit(0)
    # Prefect's console log (tracebacks included) on stdout: stderr holds only this command's
    # one-line error (disk full, Ctrl-C, ...). Read when prefect is imported below.
    import os

    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", "ext://sys.stdout")

import os

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # worker start-up chatter off the terminal

from prefect import flow, get_run_logger

from ddrsa.sweep.results import SweepLock, check_output_dir
from ddrsa.sweep.tpe import check_search
from flows.final_state import state_summary, sweep_state
from flows.grid import run_grid
from flows.options import FLOW_FIELDS, SPEC_FIELDS, build_spec, flow_docstring, flow_signature
from flows.prepare import prepare
from flows.run_ops import sweep_run_name
from flows.search import run_search
from flows.session import SweepSession

FLOW_SUMMARY = "Expand the grid (preset + overrides), train every experiment on Dask, write results, analyse."


def ddrsa_sweep(**params) -> dict:
    """The flow's body. Its parameters are the fields of SweepSpec (what to train; None = the
    preset's value) and SweepOptions (where and how), both in flows/options.py / ddrsa/sweep/spec.py:
    the signature below is derived from them, so Prefect validates runs and its UI form shows
    each field's type, constraints and description."""
    logger = get_run_logger()
    spec = build_spec(params["preset"], {k: params[k] for k in SPEC_FIELDS})
    planned, data_versions = prepare(spec)
    out = check_output_dir(Path(params["output_dir"])).resolve()
    options = {k: params[k] for k in FLOW_FIELDS if k != "output_dir"}
    with SweepLock(out):
        return sweep_state(
            run_sweep(spec, planned, data_versions, out, logger, **options), {p.experiment_id for p in planned}
        )


ddrsa_sweep.__signature__ = flow_signature()
ddrsa_sweep.__doc__ = flow_docstring(FLOW_SUMMARY)
ddrsa_sweep = flow(name="ddrsa-sweep", log_prints=True, description=FLOW_SUMMARY, flow_run_name=sweep_run_name)(
    ddrsa_sweep
)


def run_sweep(
    spec,
    planned,
    data_versions,
    out: Path,
    logger,
    *,
    search: str = "grid",
    min_epochs=None,
    reduction_factor: int = 3,
    n_trials=None,
    fuse: str = "auto",
    max_fused=None,
    **session_options,
) -> dict:
    """Dispatch to the grid (flows/grid.py) or an adaptive search (flows/search.py), each in a
    SweepSession; `session_options`: the other SweepOptions fields."""
    if search == "grid":
        session = SweepSession(spec, planned, data_versions, out, logger, **session_options)
        return run_grid(session, fuse=fuse, max_fused=max_fused)
    check_search(spec, search, min_epochs, reduction_factor, n_trials, fuse)  # runs started from the UI too
    session = SweepSession(spec, planned, data_versions, out, logger, **session_options)
    return run_search(
        session, search=search, min_epochs=min_epochs, reduction_factor=reduction_factor, n_trials=n_trials
    )


def main(params: dict) -> int:
    """Run the flow with checked parameters (see flows/sweep_cli.py) under one API server."""
    import logging

    from flows.server import api_server

    logging.getLogger("distributed").setLevel(logging.WARNING)
    with api_server(Path(params["output_dir"])):  # its own database in OUTPUT_DIR/.prefect
        state = ddrsa_sweep(**params, return_state=True)
        summary = state_summary(state)  # raises what the flow raised (folder held by another sweep, ...)
    from reports.tables import folder_data_sources

    print(
        f"{summary['completed']} completed ({summary['cached']} cached), {summary['failed']} failed, "
        f"{summary['diverged']} diverged of {summary['n_experiments']} in {summary['wall_seconds']:.0f} s; "
        f"data: {folder_data_sources(summary['output_dir'])}; results in {summary['output_dir']}"
    )
    for line in (summary.get("analysis") or {}).get("winners", []):
        print(f"  {line}")
    for name, folder in (summary.get("packages") or {}).items():
        print(f"  model package {name}: {folder} (python -m ddrsa.score --model {folder} --data FILE)")
    if not state.is_completed():
        print(f"flow run {state.name}: {state.message}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(run_cli("python flows/sweep.py", main, PARAMS))
