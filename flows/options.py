"""The flow `ddrsa-sweep`'s parameters, defined once: `SweepSpec` (what to train,
ddrsa/sweep/spec.py) and `SweepOptions` (where and how). The flow's signature and docstring,
the command line (flows/sweep_cli.py) and the launcher's form (deployments/launcher.py) derive
from them."""

from __future__ import annotations

import inspect
import typing

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ddrsa.cli import field_flag, field_kind
from ddrsa.sweep.spec import SweepSpec


class SweepOptions(BaseModel):
    """Where and how a sweep runs (not what it trains: that is `SweepSpec`). With `SweepSpec`
    the one definition of the flow's parameters, the command line and the launcher's fields.
    Each field reaches flows/session.py `SweepSession` (or the grid or search) as the keyword of the same name."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(
        None,
        description="named study (deployments/presets.py); the grid and training fields given next to it override it",
    )
    output_dir: str = Field(
        "parallel_experiments", description="results folder (resumable: finished experiments are not trained again)"
    )
    gpus_per_experiment: float = Field(
        1.0, gt=0, le=1, description="share of a GPU (or CPU worker) per experiment; 0.25 packs four"
    )
    scheduler_address: str | None = Field(None, description="run on an existing Dask cluster (tcp://host:8786)")
    n_workers: int | None = Field(None, ge=1, description="local workers (default: one per GPU, else per core pair)")
    fresh: bool = Field(False, description="ignore earlier results in the output folder")
    run_analysis: bool = Field(
        True,
        description="run the analysis subflow (report.html) at the end; --no-analysis skips it",
        json_schema_extra={"flag": "--no-analysis"},
    )
    append_to_history: bool = Field(
        False, description="append this sweep's best results to OUTPUT_DIR/sweep_history.jsonl (nightly trend)"
    )
    experiment_timeout: float | None = Field(
        None,
        gt=0,
        description="fail an experiment still running after this many seconds (per attempt; not retried)",
        json_schema_extra={"metavar": "SECONDS"},
    )
    # adaptive search (flows/search.py, ddrsa/sweep/halving.py, ddrsa/sweep/tpe.py)
    search: typing.Literal["grid", "halving", "tpe"] = Field(
        "grid",
        description="grid: train every grid point to the end; halving: asynchronous successive "
        "halving (ASHA) over the grid, ranked on validation loss at each rung; tpe: Optuna "
        "TPE for --n-trials trials, pruned on the same rungs. For tpe a grid flag with two "
        "values is a range (log-uniform for learning rates and batch sizes), with three or "
        "more (or --models) a categorical choice; seeds are not searched (first one)",
    )
    min_epochs: int | None = Field(
        None,
        ge=1,
        description="halving/tpe: epochs of the first rung (default "
        "num_epochs / eta^2); rungs r, r*eta, ... up to "
        "--num-epochs",
        json_schema_extra={"metavar": "R"},
    )
    reduction_factor: int = Field(
        3, ge=2, description="halving/tpe: eta, keep the best 1/eta at each rung", json_schema_extra={"metavar": "ETA"}
    )
    n_trials: int | None = Field(None, ge=1, description="tpe: number of trials", json_schema_extra={"metavar": "N"})
    # fused training (ddrsa/fused, flows/fused_run.py)
    fuse: typing.Literal["auto", "on", "off"] = Field(
        "auto",
        description="train RNN experiments that differ only in learning rate, lambda, NASA weight, "
        "dropout and seed as one stacked model per group, each member still its own "
        "experiment (same results): on, off, or auto = on a GPU only (on a CPU fusion "
        "measured slower, BENCHMARKS.md); grid search only",
    )
    max_fused: int | None = Field(
        None,
        ge=2,
        description="most experiments per fused group (default: "
        "block-diagonal hidden size <= 1024, i.e. paper 64, "
        "*_basic 16, *_deep 8)",
        json_schema_extra={"metavar": "N"},
    )


SPEC_FIELDS = tuple(SweepSpec.model_fields)
FLOW_FIELDS = tuple(SweepOptions.model_fields)
# Flags that choose how to run, not what to train: alone they keep the quick `default` preset.
RUN_ONLY_FIELDS = tuple(
    name for name, info in SweepSpec.model_fields.items() if (info.json_schema_extra or {}).get("run_only")
)


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


def parameter_fields() -> dict:
    """Every flow parameter's FieldInfo: the spec's fields, then the options'."""
    return {**SweepSpec.model_fields, **SweepOptions.model_fields}


def item_type(name: str):
    """int, float, str or bool: the type of one value of parameter `name` (one element of a list)."""
    return field_kind(parameter_fields()[name].annotation)[1]


def flag(name: str) -> str:
    """The command-line option of parameter `name`: --batch-sizes, --no-amp, --no-analysis."""
    return field_flag(name, parameter_fields()[name])


def flow_signature() -> inspect.Signature:
    """Keyword-only parameters of the flow `ddrsa-sweep`: every SweepSpec field as `T | None = None`
    (None: the preset's value), then every SweepOptions field with its default. Types keep their
    constraints, so Prefect validates a run's parameters and its UI form shows them."""
    params = []
    for name, info in SweepSpec.model_fields.items():
        ann = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        optional = typing.Optional[ann]  # noqa: UP045 (built at run time from the field's type)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=optional))
    for name, info in SweepOptions.model_fields.items():
        ann = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info.default, annotation=ann))
    return inspect.Signature(params, return_annotation=dict)


def flow_docstring(summary: str) -> str:
    """`summary` plus a Google-style Args section: Prefect reads it into each parameter's description."""
    lines = [summary, "", "Args:"]
    for name, info in parameter_fields().items():
        text = " ".join((info.description or name).split())
        if name in SweepSpec.model_fields:
            default = info.default_factory() if info.default_factory else info.default
            text += f" (default: the preset's value; library default {default!r})"
        lines.append(f"    {name}: {text}")
    return "\n".join(lines)


def options_error(exc: ValidationError) -> str:
    """One line naming each bad option by its flag: `--n-workers: Input should be ...`."""
    parts = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err.get("loc") else "options"
        label = flag(name) if name in parameter_fields() else name
        parts.append(f"{label}: {err.get('msg', 'invalid')} (got {err.get('input')!r})")
    return "; ".join(parts)
