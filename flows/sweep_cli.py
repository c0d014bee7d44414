"""Command line of `python flows/sweep.py`: parse and validate everything before heavy imports.

Bad input answers in well under a second with one line and exit code 2; nothing is written and
no server or cluster starts until the grid, the data and the output folder have been checked.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ddrsa.cli import field_kind
from ddrsa.errors import DDRSAError
from ddrsa.sweep.spec import GRID_AXES, PlannedExperiment, SweepSpec, expand
from flows.options import FLOW_FIELDS, SPEC_FIELDS, SweepOptions, build_spec, flag, options_error, parameter_fields


def _add_argument(group, name: str, info, from_preset: bool) -> None:
    is_list, kind, choices = field_kind(info.annotation)
    extra = info.json_schema_extra or {}
    kwargs: dict = {"dest": name, "help": (info.description or "").replace("%", "%%")}
    if kind is bool:
        on = info.default is not True
        if from_preset:  # None = the preset's value
            kwargs.update(action="store_const", const=on)
        else:
            kwargs.update(action="store_true" if on else "store_false")
    else:
        kwargs["type"] = kind
        if choices:
            kwargs["choices"] = choices
        if is_list:
            kwargs["nargs"] = "+"
        if "metavar" in extra:
            kwargs["metavar"] = extra["metavar"]
        if not from_preset:
            kwargs["default"] = info.default
    group.add_argument(flag(name), **kwargs)


def build_parser():
    from ddrsa.cli import OneLineParser

    p = OneLineParser(
        prog="python flows/sweep.py",
        description="Run a DDRSA hyperparameter sweep (Prefect flow `ddrsa-sweep`) on a "
        "Dask cluster. Each grid flag takes one or more values; the grid is "
        "their Cartesian product. Flags next to --preset override it.",
    )
    grid = p.add_argument_group("grid (defaults: the `default` preset, or the chosen --preset)")
    run = p.add_argument_group("every experiment")
    for name, info in SweepSpec.model_fields.items():
        _add_argument(grid if name in GRID_AXES else run, name, info, from_preset=True)
    where = p.add_argument_group("where and how")
    for name, info in SweepOptions.model_fields.items():
        _add_argument(where, name, info, from_preset=False)
    where.add_argument("--dry-run", action="store_true", help="print the expanded grid and its size; train nothing")
    return p


def cli_args(params: dict) -> list[str]:
    """The flags of `python flows/sweep.py` that give these flow parameters (None: not given)."""
    args: list[str] = []
    for name, value in params.items():
        if value is None:
            continue
        info = parameter_fields()[name]
        if field_kind(info.annotation)[1] is bool:
            args += [flag(name)] if bool(value) != (info.default is True) else []
        elif isinstance(value, (list, tuple)):
            args += [flag(name), *(str(v) for v in value)]
        else:
            args += [flag(name), str(value)]
    return args


def _print_grid(spec: SweepSpec, planned: list[PlannedExperiment]) -> None:
    for axis, values in spec.grid().items():
        print(f"  {axis:15s} {' '.join(str(v) for v in values)}")
    print(f"  {'epochs':15s} {spec.num_epochs} (patience {spec.patience})")
    windows = "every window" if spec.window_stride == 1 else f"1 in {spec.window_stride} windows"
    units = f", first {spec.max_units} units" if spec.max_units else ""
    print(
        f"  {'data':15s} K={spec.lookback_window} L={spec.pred_horizon}, {windows}{units}"
        + (
            f", C-MAPSS {' '.join(spec.subset_list())}, {spec.test_split} test units"
            if "turbofan" in spec.datasets
            else ""
        )
    )
    for item in planned:
        print(f"  {item.index:5d}  {item.name}")


def _print_groups(planned: list[PlannedExperiment], fuse: str, max_fused: int | None) -> None:
    """The fusion groups this machine would train (--fuse auto: on a GPU only)."""
    import torch

    from ddrsa.fused.groups import describe, fuse_enabled, plan_groups

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not fuse_enabled(fuse, device):
        why = (
            (
                "--fuse auto fuses on a GPU only: on a CPU it measured slower than separate runs, "
                "BENCHMARKS.md section 12; --fuse on fuses anyway"
            )
            if fuse == "auto"
            else "--fuse off"
        )
        print(f"fused training off ({why})")
        return
    groups, singles = plan_groups([p.as_dict() for p in planned], fuse, device, max_fused)
    for line in describe(groups, singles):
        print(line)
    print(f"{len(groups)} fused group(s), {len(singles)} experiment(s) alone")


def preflight(argv) -> dict | None:
    """Parse and check the command line; return the flow's parameters, or None after --dry-run."""
    args = build_parser().parse_args(argv)
    params = vars(args)
    dry_run = params.pop("dry_run")
    spec = build_spec(params["preset"], {k: params[k] for k in SPEC_FIELDS})
    planned = expand(spec)
    if dry_run:
        _print_grid(spec, planned)
        _print_groups(planned, params["fuse"], params["max_fused"])
        print(f"{len(planned)} experiments")  # last: the launcher and scripts read it there
        return None
    try:
        SweepOptions(**{k: params[k] for k in FLOW_FIELDS})
    except ValidationError as exc:
        raise DDRSAError(options_error(exc)) from None
    from ddrsa.sweep.tpe import check_search

    check_search(spec, args.search, args.min_epochs, args.reduction_factor, args.n_trials, args.fuse)
    target = Path(args.output_dir)
    if target.exists() and not target.is_dir():
        raise DDRSAError(f"output folder {target} is a file")
    if args.scheduler_address:
        import sys

        from prefect.settings import PREFECT_API_URL

        from flows.external import EXTERNAL_RESOURCE, api_url_warning, check_cluster_resources, check_scheduler_address

        check_scheduler_address(args.scheduler_address)  # nothing listens: one line, at once
        hosts = check_cluster_resources(args.scheduler_address, EXTERNAL_RESOURCE, args.gpus_per_experiment)
        warning = api_url_warning(args.scheduler_address, PREFECT_API_URL.value(), hosts)
        if warning:
            print(f"python flows/sweep.py: warning: {warning}", file=sys.stderr)
    from ddrsa.sweep.results import SweepLock, check_output_dir
    from flows.prepare import prepare

    prepare(spec)  # bad data files fail here, before anything is written or started
    out = check_output_dir(target)
    with SweepLock(out):  # refuse now, before a server starts, if another sweep holds the folder
        pass
    return {k: v for k, v in params.items() if k in SPEC_FIELDS or k in FLOW_FIELDS}
