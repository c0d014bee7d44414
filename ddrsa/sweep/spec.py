"""`SweepSpec`: a validated sweep request, and its expansion into experiment configs."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ddrsa.config import DATASETS, DEFAULT_MODELS, MODEL_NAMES, SUBSETS, ExperimentConfig
from ddrsa.errors import DDRSAError

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


class SweepSpec(BaseModel):
    """Everything a sweep needs; each list is one grid axis (Cartesian product)."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[Literal["turbofan", "azure_pm"]] = Field(default_factory=lambda: list(DATASETS))
    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    batch_sizes: list[int] = Field(default_factory=lambda: [128])
    learning_rates: list[float] = Field(default_factory=lambda: [1e-3])
    lambda_params: list[float] = Field(default_factory=lambda: [0.75])
    nasa_weights: list[float] = Field(default_factory=lambda: [0.1])
    dropout_rates: list[float] = Field(default_factory=lambda: [0.1])
    seeds: list[int] = Field(default_factory=lambda: [42])
    num_epochs: int = Field(100, ge=1)
    patience: int = Field(10, ge=1)
    subset: Literal["FD001", "FD002", "FD003", "FD004"] = "FD001"
    subsets: list[Literal["FD001", "FD002", "FD003", "FD004"]] | None = Field(
        None, description="several C-MAPSS subsets: an outer grid axis for turbofan (replaces `subset`)")
    test_split: Literal["held-out", "official"] = "held-out"
    lookback_window: int = Field(128, ge=1)
    pred_horizon: int = Field(64, ge=2)
    max_units: int | None = Field(None, ge=3)
    window_stride: int = Field(1, ge=1)
    data_source: Literal["auto", "real", "synthetic"] | None = None
    amp: bool = True
    compile: bool = False
    deterministic: bool = False

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        for name in models:
            if name not in MODEL_NAMES:
                raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
        return models

    @model_validator(mode="after")
    def _non_empty(self) -> "SweepSpec":
        for axis in GRID_AXES:
            if not getattr(self, axis):
                raise ValueError(f"{axis} is empty: the grid would have no experiment")
        return self

    def grid(self) -> dict[str, list]:
        return {axis: list(dict.fromkeys(getattr(self, axis))) for axis in GRID_AXES}

    def subset_list(self) -> list[str]:
        """The C-MAPSS subsets a turbofan grid point runs on, in the order of SUBSETS."""
        chosen = set(self.subsets or [self.subset])
        return [s for s in SUBSETS if s in chosen]

    def size(self) -> int:
        n = 1
        for axis, values in self.grid().items():
            if axis != "datasets":
                n *= len(values)
        per_dataset = {"turbofan": len(self.subset_list())}
        return n * sum(per_dataset.get(d, 1) for d in self.grid()["datasets"])


@dataclass(frozen=True)
class PlannedExperiment:
    """One grid point with its stable id, display name and run folder (relative)."""

    index: int
    config: ExperimentConfig
    experiment_id: str
    name: str
    run_dir: str

    def as_dict(self) -> dict:
        return {"index": self.index, "experiment_id": self.experiment_id, "name": self.name,
                "run_dir": self.run_dir, "config": self.config.model_dump(mode="json")}


def expand(spec: SweepSpec) -> list[PlannedExperiment]:
    """Cartesian product of the grid axes; every config is validated here, before training."""
    grid = spec.grid()
    fixed = dict(num_epochs=spec.num_epochs, patience=spec.patience, subset=spec.subset,
                 lookback_window=spec.lookback_window, pred_horizon=spec.pred_horizon,
                 max_units=spec.max_units, window_stride=spec.window_stride,
                 data_source=spec.data_source, amp=spec.amp, test_split=spec.test_split,
                 compile=spec.compile, deterministic=spec.deterministic)
    planned = []
    points = []  # (subset, grid values): C-MAPSS subsets are the outermost axis, turbofan only
    for subset in spec.subset_list():
        for values in itertools.product(*grid.values()):
            fields = {GRID_AXES[axis]: value for axis, value in zip(grid, values)}
            if fields["dataset"] == "turbofan" or subset == spec.subset_list()[0]:
                points.append(dict(fields, subset=subset))
    for index, fields in enumerate(points):
        config = ExperimentConfig(**fields, **{k: v for k, v in fixed.items() if k != "subset"})
        planned.append(PlannedExperiment(index=index, config=config,
                                         experiment_id=config.experiment_id(),
                                         name=config.display_name(),
                                         run_dir=config.run_dir_name(index)))
    if not planned:
        raise DDRSAError("the grid is empty")
    return planned
