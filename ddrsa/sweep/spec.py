"""`SweepSpec`: a validated sweep request, and its expansion into experiment configs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ddrsa.config import (
    ALL_MODELS,
    BASELINE_MODELS,
    DATASETS,
    DEFAULT_MODELS,
    MODEL_NAMES,
    SUBSETS,
    ExperimentConfig,
    check_dataset,
    is_baseline,
)
from ddrsa.errors import DDRSAError
from ddrsa.policy import DEFAULT_MISS_RATE

# Sweep field -> ExperimentConfig field, in grid order (outermost first).
GRID_AXES = {
    "datasets": "dataset",
    "models": "model",
    "batch_sizes": "batch_size",
    "learning_rates": "learning_rate",
    "lambda_params": "lambda_param",
    "nasa_weights": "nasa_weight",
    "dropout_rates": "dropout",
    "seeds": "seed",
}


def _item(config_field: str):
    """Element type of a grid axis: the ExperimentConfig field's type with its constraints
    (so `lambda_params: [1.2]` is refused by the spec, the command line and the Prefect UI alike)."""
    info = ExperimentConfig.model_fields[config_field]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


BatchSize, LearningRate, LambdaParam = _item("batch_size"), _item("learning_rate"), _item("lambda_param")
NasaWeight, Dropout = _item("nasa_weight"), _item("dropout")
Subset = Literal["FD001", "FD002", "FD003", "FD004"]

# `json_schema_extra` keys read by the command line (flows/sweep_cli.py), nowhere else:
#   "flag": the option string when it is not --field-name (a bool that defaults to True gets --no-<name>)
#   "run_only": how to run, not what to train: alone it keeps the quick `default` preset
#   "metavar": argparse metavar


class SweepSpec(BaseModel):
    """Everything a sweep trains; each list is one grid axis (Cartesian product).

    THE definition of the sweep's grid and training parameters: the command line of
    `flows/sweep.py`, the flow's parameters (Prefect UI form), the launcher's fields and the
    presets (deployments/presets.py) all derive from these fields (see /docs/CONTRACTS.md)."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(
        default_factory=lambda: list(DATASETS),
        description="data sets: turbofan (C-MAPSS), azure_pm and/or paths of fleet tables (docs/DATA.md)",
    )
    models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        description="architectures, from: " + " ".join(MODEL_NAMES) + "; baselines "
        "(one run per dataset, subset and seed; training flags do not "
        "multiply them): " + " ".join(BASELINE_MODELS),
    )
    # the element types are built at import (_item): mypy cannot read them as types
    batch_sizes: list[BatchSize] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [128], description="batch sizes"
    )
    learning_rates: list[LearningRate] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [1e-3], description="Adam learning rates"
    )
    lambda_params: list[LambdaParam] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [0.75], description="DDRSA loss lambda, each in [0, 1]"
    )
    nasa_weights: list[NasaWeight] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [0.1], description="NASA auxiliary loss weights (>= 0)"
    )
    dropout_rates: list[Dropout] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [0.1], description="dropout rates, each in [0, 1)"
    )
    seeds: list[int] = Field(default_factory=lambda: [42], description="repeats of every configuration (seeds)")
    num_epochs: int = Field(100, ge=1, le=100_000, description="maximum training epochs per experiment")
    patience: int = Field(10, ge=1, description="early-stopping patience (epochs without validation improvement)")
    subset: Subset = Field("FD001", description="C-MAPSS subset FD001-FD004 (turbofan)")
    subsets: list[Subset] | None = Field(
        None, description="several C-MAPSS subsets: an outer grid axis for turbofan (replaces subset)"
    )
    split_seeds: list[int] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="seeds of the unit split (ExperimentConfig.split_seed): several repeat the grid once per "
        "split (outermost axis), so the held-out protocol shows the spread due to which units were held out; "
        "with --test-split official the official test units stay fixed (only the validation units change)",
    )
    test_split: Literal["held-out", "official"] = Field(
        "held-out",
        description="held-out: a share of the units tests; official: the C-MAPSS test_FD00x "
        "units scored against RUL_FD00x.txt",
    )
    lookback_window: int = Field(128, ge=1, le=4096, description="K, history steps the encoder reads")
    pred_horizon: int = Field(64, ge=2, le=1024, description="L_max, future steps with a hazard each")
    max_units: int | None = Field(None, ge=3, description="use only this many units/machines (quick looks)")
    age_input: bool = Field(False, description=ExperimentConfig.model_fields["age_input"].description)
    window_stride: int = Field(1, ge=1, description="keep every n-th training window (1 = all)")
    data_source: Literal["auto", "real", "synthetic"] | None = Field(
        None, description="real data, synthetic data, or auto (real when present)", json_schema_extra={"run_only": True}
    )
    refit: bool = Field(
        False,
        description="after the analysis, refit each data set's winner on training + "
        "validation units for its best epoch count and write a model package "
        "OUTPUT_DIR/packages/<data set>/ (ddrsa/refit.py)",
        json_schema_extra={"run_only": True},
    )
    amp: bool = Field(
        True, description="mixed precision on GPU (--no-amp turns it off)", json_schema_extra={"run_only": True}
    )
    compile: bool = Field(
        False, description="torch.compile each model (off by default)", json_schema_extra={"run_only": True}
    )
    deterministic: bool = Field(
        False,
        description="deterministic kernels and cuDNN settings (reproducible, slower on GPU)",
        json_schema_extra={"run_only": True},
    )
    miss_rate: float = Field(
        DEFAULT_MISS_RATE,
        gt=0,
        lt=1,
        description="target miss rate alpha of the intervention criterion: the OTI "
        "cost whose validation miss rate is closest to it is each run's "
        "operating point, ranked on validation mean time left "
        "(ddrsa/policy.py)",
        json_schema_extra={"run_only": True},
    )
    search_objective: Literal["val_loss", "intervention"] = Field(
        "val_loss",
        description="what halving/tpe rank on at each rung: the validation loss, or the "
        "intervention criterion (validation mean time left at the OTI cost whose "
        "validation miss rate is closest to --miss-rate; lower is better)",
        json_schema_extra={"run_only": True},
    )

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, datasets: list[str]) -> list[str]:
        return [check_dataset(d) for d in datasets]

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        for name in models:
            if name not in ALL_MODELS:
                raise ValueError(f"unknown model {name!r}; choose from {', '.join(ALL_MODELS)}")
        return models

    @model_validator(mode="after")
    def _non_empty(self) -> SweepSpec:
        for axis in GRID_AXES:
            if not getattr(self, axis):
                raise ValueError(f"{axis} is empty: the grid would have no experiment")
        return self

    def grid(self) -> dict[str, list]:
        """GRID_AXES' values, plus `split_seeds` when the split is not the single default 0."""
        out = {axis: list(dict.fromkeys(getattr(self, axis))) for axis in GRID_AXES}
        if self.split_seeds != [0]:
            out["split_seeds"] = list(dict.fromkeys(self.split_seeds))
        return out

    def subset_list(self) -> list[str]:
        """The C-MAPSS subsets a turbofan grid point runs on, in the order of SUBSETS."""
        chosen = set(self.subsets or [self.subset])
        return [s for s in SUBSETS if s in chosen]

    def size(self) -> int:
        """Experiments `expand` plans: a baseline runs once per seed (training axes do not apply)."""
        grid = self.grid()
        n = 1
        for axis, values in grid.items():
            if axis not in ("datasets", "models", "seeds"):
                n *= len(values)
        trained = sum(not is_baseline(m) for m in grid["models"])
        fitted = len(grid["models"]) - trained
        per_dataset = {"turbofan": len(self.subset_list())}
        return (trained * n + fitted) * len(grid["seeds"]) * sum(per_dataset.get(d, 1) for d in grid["datasets"])


@dataclass(frozen=True)
class PlannedExperiment:
    """One grid point with its stable id, display name and run folder (relative)."""

    index: int
    config: ExperimentConfig
    experiment_id: str
    name: str
    run_dir: str

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "experiment_id": self.experiment_id,
            "name": self.name,
            "run_dir": self.run_dir,
            "config": self.config.model_dump(mode="json"),
        }


def expand(spec: SweepSpec) -> list[PlannedExperiment]:
    """Cartesian product of the grid axes; every config is validated here, before training.

    A baseline (gbm, cox, km) ignores the training axes (its config holds their defaults,
    ddrsa/config.py TRAINING_ONLY_FIELDS): its repeats over them are one experiment, planned once
    per dataset, subset, split seed and seed (and the fixed lookback and horizon)."""
    grid = {axis: values for axis, values in spec.grid().items() if axis in GRID_AXES}
    # every non-grid field that ExperimentConfig also has goes to each experiment as is
    fixed = {
        name: getattr(spec, name)
        for name in SweepSpec.model_fields
        if name not in GRID_AXES and name != "subset" and name in ExperimentConfig.model_fields
    }
    planned: list[PlannedExperiment] = []
    points = []  # (split seed, subset, grid values): split seeds, then C-MAPSS subsets (turbofan only) outermost
    for split_seed, subset in itertools.product(dict.fromkeys(spec.split_seeds), spec.subset_list()):
        for values in itertools.product(*grid.values()):
            fields = {GRID_AXES[axis]: value for axis, value in zip(grid, values)}
            if fields["dataset"] == "turbofan" or subset == spec.subset_list()[0]:
                points.append(dict(fields, subset=subset, split_seed=split_seed))
    seen: set[str] = set()
    for fields in points:
        config = ExperimentConfig(**fields, **fixed)
        if config.experiment_id() in seen:  # a baseline's repeat over a training axis
            continue
        seen.add(config.experiment_id())
        index = len(planned)
        planned.append(
            PlannedExperiment(
                index=index,
                config=config,
                experiment_id=config.experiment_id(),
                name=config.display_name(),
                run_dir=config.run_dir_name(index),
            )
        )
    if not planned:
        raise DDRSAError("the grid is empty")
    return planned
