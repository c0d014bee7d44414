"""Command line of `python flows/sweep.py`: parse and validate everything before heavy imports.

Bad input answers in well under a second with one line and exit code 2; nothing is written and
no server or cluster starts until the grid, the data and the output folder have been checked.
"""
from __future__ import annotations

from pathlib import Path

from ddrsa.errors import DDRSAError
from ddrsa.sweep.spec import GRID_AXES, PlannedExperiment, SweepSpec, expand

SPEC_FIELDS = tuple(GRID_AXES) + ("num_epochs", "patience", "subset", "lookback_window", "pred_horizon",
                                  "max_units", "window_stride", "data_source", "amp", "compile",
                                  "deterministic")
FLOW_FIELDS = ("preset", "output_dir", "gpus_per_experiment", "scheduler_address", "n_workers", "fresh",
               "run_analysis", "append_to_history", "experiment_timeout")


# Flags that choose how to run, not what to train: alone they keep the quick `default` preset.
RUN_ONLY_FIELDS = ("data_source", "amp", "compile", "deterministic")


def build_spec(preset: str | None, overrides: dict) -> SweepSpec:
    """The validated spec: the preset with the given fields on top. Without a preset, the quick
    `default` preset (2 epochs, every 32nd window) applies only when no grid or training field is
    given; otherwise what is not given takes the library defaults (100 epochs, every window), so
    `--models lstm_basic --num-epochs 50` never trains on a thinned data set by surprise."""
    from deployments.presets import preset_spec

    given = {k: v for k, v in overrides.items() if v is not None}
    if preset is None and set(given) - set(RUN_ONLY_FIELDS):
        return SweepSpec(**given)
    return preset_spec(preset or "default", given)


def build_parser():
    from ddrsa.cli import OneLineParser

    p = OneLineParser(prog="python flows/sweep.py",
                      description="Run a DDRSA hyperparameter sweep (Prefect flow `ddrsa-sweep`) on a "
                                  "Dask cluster. Each grid flag takes one or more values; the grid is "
                                  "their Cartesian product. Flags next to --preset override it.")
    grid = p.add_argument_group("grid (defaults: the `default` preset, or the chosen --preset)")
    grid.add_argument("--datasets", nargs="+", help="turbofan and/or azure_pm")
    grid.add_argument("--models", nargs="+", help="lstm_basic lstm_deep gru_basic gru_deep transformer_basic "
                                                  "transformer_deep probsparse_basic probsparse_deep paper")
    grid.add_argument("--batch-sizes", nargs="+", type=int)
    grid.add_argument("--learning-rates", nargs="+", type=float)
    grid.add_argument("--lambda-params", nargs="+", type=float, help="DDRSA loss lambda, each in [0, 1]")
    grid.add_argument("--nasa-weights", nargs="+", type=float, help="NASA auxiliary loss weights (>= 0)")
    grid.add_argument("--dropout-rates", nargs="+", type=float, help="each in [0, 1)")
    grid.add_argument("--seeds", nargs="+", type=int, help="repeats of every configuration")
    run = p.add_argument_group("every experiment")
    run.add_argument("--num-epochs", type=int)
    run.add_argument("--patience", type=int, help="early-stopping patience (epochs)")
    run.add_argument("--subset", help="C-MAPSS subset FD001-FD004")
    run.add_argument("--lookback-window", type=int, help="K, history steps")
    run.add_argument("--pred-horizon", type=int, help="L_max, future steps")
    run.add_argument("--max-units", type=int, help="use only this many units/machines (quick looks)")
    run.add_argument("--window-stride", type=int, help="keep every n-th window")
    run.add_argument("--data-source", choices=["auto", "real", "synthetic"])
    run.add_argument("--no-amp", dest="amp", action="store_const", const=False, help="no mixed precision on GPU")
    run.add_argument("--compile", action="store_const", const=True, help="torch.compile each model (off by default)")
    run.add_argument("--deterministic", action="store_const", const=True,
                     help="deterministic kernels and cuDNN settings (reproducible, slower on GPU)")
    where = p.add_argument_group("where and how")
    where.add_argument("--preset", help="named study (see deployments/presets.py or the launcher)")
    where.add_argument("--output-dir", default="parallel_experiments")
    where.add_argument("--gpus-per-experiment", type=float, default=1.0,
                       help="share of a GPU (or CPU worker) per experiment; 0.25 packs four")
    where.add_argument("--scheduler-address", help="run on an existing Dask cluster (tcp://host:8786)")
    where.add_argument("--n-workers", type=int, help="local workers (default: one per GPU, else per core pair)")
    where.add_argument("--experiment-timeout", type=float, metavar="SECONDS",
                       help="fail an experiment still running after SECONDS (per attempt; not retried)")
    where.add_argument("--dry-run", action="store_true", help="print the expanded grid and its size; train nothing")
    where.add_argument("--fresh", action="store_true", help="ignore earlier results in --output-dir")
    where.add_argument("--append-to-history", action="store_true",
                       help="append this sweep's best results to OUTPUT_DIR/sweep_history.jsonl (nightly trend)")
    where.add_argument("--no-analysis", dest="run_analysis", action="store_false",
                       help="skip the analysis subflow at the end")
    return p


def _print_grid(spec: SweepSpec, planned: list[PlannedExperiment]) -> None:
    for axis, values in spec.grid().items():
        print(f"  {axis:15s} {' '.join(str(v) for v in values)}")
    print(f"  {'epochs':15s} {spec.num_epochs} (patience {spec.patience})")
    windows = "every window" if spec.window_stride == 1 else f"1 in {spec.window_stride} windows"
    units = f", first {spec.max_units} units" if spec.max_units else ""
    print(f"  {'data':15s} K={spec.lookback_window} L={spec.pred_horizon}, {windows}{units}"
          + (f", C-MAPSS {' '.join(spec.subset_list())}, {spec.test_split} test units"
             if "turbofan" in spec.datasets else ""))
    for item in planned:
        print(f"  {item.index:5d}  {item.name}")
    print(f"{len(planned)} experiments")


def preflight(argv) -> dict | None:
    """Parse and check the command line; return the flow's parameters, or None after --dry-run."""
    args = build_parser().parse_args(argv)
    params = vars(args)
    dry_run = params.pop("dry_run")
    spec = build_spec(params["preset"], {k: params[k] for k in SPEC_FIELDS})
    planned = expand(spec)
    if dry_run:
        _print_grid(spec, planned)
        return None
    if args.n_workers is not None and args.n_workers < 1:
        raise DDRSAError("--n-workers must be at least 1")
    if args.experiment_timeout is not None and not args.experiment_timeout > 0:
        raise DDRSAError(f"--experiment-timeout must be a positive number of seconds, got {args.experiment_timeout}")
    if not 0 < args.gpus_per_experiment <= 1:
        raise DDRSAError(f"--gpus-per-experiment must be in (0, 1], got {args.gpus_per_experiment}")
    target = Path(args.output_dir)
    if target.exists() and not target.is_dir():
        raise DDRSAError(f"output folder {target} is a file")
    if args.scheduler_address:
        from flows.cluster import check_scheduler_address

        check_scheduler_address(args.scheduler_address)
    from ddrsa.sweep.results import SweepLock, check_output_dir
    from flows.prepare import prepare

    prepare(spec)  # bad data files fail here, before anything is written or started
    out = check_output_dir(target)
    with SweepLock(out):  # refuse now, before a server starts, if another sweep holds the folder
        pass
    return {k: v for k, v in params.items() if k in SPEC_FIELDS or k in FLOW_FIELDS}
