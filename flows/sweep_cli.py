"""Command line of `python flows/sweep.py`: parse and validate everything before heavy imports.

Bad input answers in well under a second with one line and exit code 2; nothing is written and
no server or cluster starts until the grid, the data and the output folder have been checked.
"""
from __future__ import annotations

import inspect
import typing
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddrsa.cli import field_flag, field_kind
from ddrsa.errors import DDRSAError
from ddrsa.sweep.spec import GRID_AXES, PlannedExperiment, SweepSpec, expand


class SweepOptions(BaseModel):
    """Where and how a sweep runs (not what it trains: that is `SweepSpec`). With `SweepSpec`
    the one definition of the flow's parameters, the command line and the launcher's fields.
    Each field reaches `flows/sweep.py:_run` as the keyword argument of the same name."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(None, description="named study (deployments/presets.py); the grid and "
                                                 "training fields given next to it override it")
    output_dir: str = Field("parallel_experiments", description="results folder (resumable: finished "
                                                                "experiments are not trained again)")
    gpus_per_experiment: float = Field(1.0, gt=0, le=1, description="share of a GPU (or CPU worker) per "
                                                                    "experiment; 0.25 packs four")
    scheduler_address: str | None = Field(None, description="run on an existing Dask cluster "
                                                            "(tcp://host:8786)")
    n_workers: int | None = Field(None, ge=1, description="local workers (default: one per GPU, else "
                                                          "per core pair)")
    fresh: bool = Field(False, description="ignore earlier results in the output folder")
    run_analysis: bool = Field(True, description="run the analysis subflow (report.html) at the end; "
                                                 "--no-analysis skips it",
                               json_schema_extra={"flag": "--no-analysis"})
    append_to_history: bool = Field(False, description="append this sweep's best results to "
                                                       "OUTPUT_DIR/sweep_history.jsonl (nightly trend)")
    experiment_timeout: float | None = Field(
        None, gt=0, description="fail an experiment still running after this many seconds (per attempt; "
                                "not retried)", json_schema_extra={"metavar": "SECONDS"})
    # adaptive search (flows/search.py, ddrsa/sweep/halving.py, ddrsa/sweep/tpe.py)
    search: typing.Literal["grid", "halving", "tpe"] = Field(
        "grid", description="grid: train every grid point to the end; halving: asynchronous successive "
                            "halving (ASHA) over the grid, ranked on validation loss at each rung; tpe: Optuna "
                            "TPE for --n-trials trials, pruned on the same rungs. For tpe a grid flag with two "
                            "values is a range (log-uniform for learning rates and batch sizes), with three or "
                            "more (or --models) a categorical choice; seeds are not searched (first one)")
    min_epochs: int | None = Field(None, ge=1, description="halving/tpe: epochs of the first rung (default "
                                                           "num_epochs / eta^2); rungs r, r*eta, ... up to "
                                                           "--num-epochs", json_schema_extra={"metavar": "R"})
    reduction_factor: int = Field(3, ge=2, description="halving/tpe: eta, keep the best 1/eta at each rung",
                                  json_schema_extra={"metavar": "ETA"})
    n_trials: int | None = Field(None, ge=1, description="tpe: number of trials",
                                 json_schema_extra={"metavar": "N"})
    # fused training (ddrsa/fused, flows/fused_run.py)
    fuse: typing.Literal["auto", "on", "off"] = Field(
        "auto", description="train RNN experiments that differ only in learning rate, lambda, NASA weight, "
                            "dropout and seed as one stacked model per group, each member still its own "
                            "experiment (same results): on, off, or auto = on a GPU only (on a CPU fusion "
                            "measured slower, BENCHMARKS.md); grid search only")
    max_fused: int | None = Field(None, ge=2, description="most experiments per fused group (default: "
                                                          "block-diagonal hidden size <= 1024, i.e. paper 64, "
                                                          "*_basic 16, *_deep 8)",
                                  json_schema_extra={"metavar": "N"})


SPEC_FIELDS = tuple(SweepSpec.model_fields)
FLOW_FIELDS = tuple(SweepOptions.model_fields)
# Flags that choose how to run, not what to train: alone they keep the quick `default` preset.
RUN_ONLY_FIELDS = tuple(name for name, info in SweepSpec.model_fields.items()
                        if (info.json_schema_extra or {}).get("run_only"))


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


# --------------------------------------------------------------------------- derived from the models

def _fields() -> dict:
    """Every flow parameter's FieldInfo: the spec's fields, then the options'."""
    return {**SweepSpec.model_fields, **SweepOptions.model_fields}


def item_type(name: str):
    """int, float, str or bool: the type of one value of parameter `name` (one element of a list)."""
    return field_kind(_fields()[name].annotation)[1]


def flag(name: str) -> str:
    """The command-line option of parameter `name`: --batch-sizes, --no-amp, --no-analysis."""
    return field_flag(name, _fields()[name])


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

    p = OneLineParser(prog="python flows/sweep.py",
                      description="Run a DDRSA hyperparameter sweep (Prefect flow `ddrsa-sweep`) on a "
                                  "Dask cluster. Each grid flag takes one or more values; the grid is "
                                  "their Cartesian product. Flags next to --preset override it.")
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
        info = _fields()[name]
        if field_kind(info.annotation)[1] is bool:
            args += [flag(name)] if bool(value) != (info.default is True) else []
        elif isinstance(value, (list, tuple)):
            args += [flag(name), *(str(v) for v in value)]
        else:
            args += [flag(name), str(value)]
    return args


def flow_signature() -> inspect.Signature:
    """Keyword-only parameters of the flow `ddrsa-sweep`: every SweepSpec field as `T | None = None`
    (None: the preset's value), then every SweepOptions field with its default. Types keep their
    constraints, so Prefect validates a run's parameters and its UI form shows them."""
    params = []
    for name, info in SweepSpec.model_fields.items():
        ann = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=typing.Optional[ann]))
    for name, info in SweepOptions.model_fields.items():
        ann = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info.default,
                                        annotation=ann))
    return inspect.Signature(params, return_annotation=dict)


def flow_docstring(summary: str) -> str:
    """`summary` plus a Google-style Args section: Prefect reads it into each parameter's description."""
    lines = [summary, "", "Args:"]
    for name, info in _fields().items():
        text = " ".join((info.description or name).split())
        if name in SweepSpec.model_fields:
            default = info.default_factory() if info.default_factory else info.default
            text += f" (default: the preset's value; library default {default!r})"
        lines.append(f"    {name}: {text}")
    return "\n".join(lines)


def _options_error(exc: ValidationError) -> str:
    """One line naming each bad option by its flag: `--n-workers: Input should be ...`."""
    parts = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err.get("loc") else "options"
        label = flag(name) if name in _fields() else name
        parts.append(f"{label}: {err.get('msg', 'invalid')} (got {err.get('input')!r})")
    return "; ".join(parts)


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


def _print_groups(planned: list[PlannedExperiment], fuse: str, max_fused: int | None) -> None:
    """The fusion groups this machine would train (--fuse auto: on a GPU only)."""
    import torch

    from ddrsa.fused.groups import describe, fuse_enabled, plan_groups

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not fuse_enabled(fuse, device):
        why = ("--fuse auto fuses on a GPU only: on a CPU it measured slower than separate runs, "
               "BENCHMARKS.md section 12; --fuse on fuses anyway") if fuse == "auto" else "--fuse off"
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
        raise DDRSAError(_options_error(exc)) from None
    from ddrsa.sweep.tpe import check_search

    check_search(spec, args.search, args.min_epochs, args.reduction_factor, args.n_trials, args.fuse)
    target = Path(args.output_dir)
    if target.exists() and not target.is_dir():
        raise DDRSAError(f"output folder {target} is a file")
    if args.scheduler_address:
        import sys

        from prefect.settings import PREFECT_API_URL

        from flows.cluster import (EXTERNAL_RESOURCE, api_url_warning, check_cluster_resources,
                                   check_scheduler_address)

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
