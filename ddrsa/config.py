"""Typed, validated experiment configuration (one boundary, unknown keys are errors)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATASETS = ("turbofan", "azure_pm")
# Besides the built-in names, a dataset may be the path of a fleet table (docs/DATA.md): a file
# ending in one of these; its name (run folders, task names) is the file name without the suffix.
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
SUBSETS = ("FD001", "FD002", "FD003", "FD004")
DEFAULT_MODELS = ("lstm_basic", "lstm_deep", "gru_basic", "gru_deep", "transformer_basic", "transformer_deep")
MODEL_NAMES = DEFAULT_MODELS + ("probsparse_basic", "probsparse_deep", "paper")
# Yardstick models (ddrsa/baselines/): named like any model, scored by the same code, never "best DDRSA
# configuration". km: Kaplan-Meier on training lifetimes conditioned on age (the floor); cox: penalised
# Cox PH on window summaries; gbm: gradient-boosted trees on window summaries predicting capped RUL.
BASELINE_MODELS = ("gbm", "cox", "km")
ALL_MODELS = MODEL_NAMES + BASELINE_MODELS  # every name `model` accepts
# ExperimentConfig fields that only DDRSA training reads: a baseline's config holds their defaults
# whatever was asked (so the grid's training axes do not multiply a baseline, and its id is stable)
TRAINING_ONLY_FIELDS = (
    "batch_size",
    "learning_rate",
    "lambda_param",
    "nasa_weight",
    "dropout",
    "num_epochs",
    "patience",
    "grad_clip",
    "weight_decay",
    "amp",
    "deterministic",
    "compile",
)


def is_baseline(model: str) -> bool:
    """True for the yardstick models of ddrsa/baselines (never "best DDRSA configuration")."""
    return model in BASELINE_MODELS


# What the `test` split holds: "held-out" = `test_fraction` of the training units/machines, held out
# by `split_seed`; "official" (C-MAPSS only) = every training unit trains or validates and `test` is
# the official test_FD00x units, labelled from RUL_FD00x.txt (the literature's benchmark protocol).
TEST_SPLITS = ("held-out", "official")


def is_table_path(dataset: str) -> bool:
    """True when `dataset` names a fleet table file rather than a built-in data set."""
    return dataset not in DATASETS and str(dataset).lower().endswith(TABLE_SUFFIXES)


def check_dataset(value: str) -> str:
    """A built-in name as is, a table path made absolute (so every process reads the same file);
    anything else is a ValueError naming the choices."""
    if value in DATASETS:
        return value
    if is_table_path(value):
        return str(Path(value).expanduser().resolve())
    raise ValueError(
        f"unknown dataset {value!r}: choose turbofan, azure_pm, or the path of a fleet table "
        f"({', '.join(TABLE_SUFFIXES)})"
    )


def dataset_name(dataset: str) -> str:
    """`turbofan`, `azure_pm`, or a table's file name without its suffix (`/x/pumps.csv.gz` -> pumps)."""
    if not is_table_path(dataset):
        return dataset
    name = Path(dataset).name
    return name[: -len(next(s for s in sorted(TABLE_SUFFIXES, key=len, reverse=True) if name.lower().endswith(s)))]


class DataConfig(BaseModel):
    """What to load and how to window it; part of the cache key through `ExperimentConfig`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(
        "turbofan",
        description="turbofan (NASA C-MAPSS), azure_pm, or the path of a fleet "
        "table (.csv, .csv.gz, .parquet; docs/DATA.md)",
    )
    subset: Literal["FD001", "FD002", "FD003", "FD004"] = Field(
        "FD001", description="C-MAPSS subset FD001-FD004 (turbofan only)"
    )
    lookback_window: int = Field(128, ge=1, le=4096, description="K, covariate steps the encoder reads")
    pred_horizon: int = Field(64, ge=2, le=1024, description="L_max, future steps with a hazard each")
    split_seed: int = Field(0, description="seed of the unit/machine split (kept fixed across repeats)")
    test_fraction: float = Field(
        0.3, gt=0, lt=1, description="fraction of the units held out for test (test_split held-out)"
    )
    val_fraction: float = Field(0.3, gt=0, lt=1, description="fraction of the training units for validation")
    downsample_hours: int = Field(15, ge=1, le=24 * 30, description="Azure PM: hours per step")
    window_stride: int = Field(1, ge=1, description="take every n-th window (tests and quick runs)")
    max_units: int | None = Field(None, ge=3, description="use only this many units/machines (tests)")
    data_source: Literal["auto", "real", "synthetic"] | None = Field(
        None, description="override DDRSA_DATA_SOURCE for this experiment"
    )
    test_split: Literal["held-out", "official"] = Field(
        "held-out",
        description="held-out: test_fraction of the units; official: C-MAPSS test_FD00x "
        "units scored against RUL_FD00x.txt, all training units train/validate",
    )
    age_input: bool = Field(
        False,
        description="add the unit's age as an input channel (C-MAPSS: cycle "
        "index; Azure PM: steps since the start of the machine's "
        "record), scaled on training units; the literature omits it",
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        return check_dataset(value)

    @model_validator(mode="after")
    def _official_is_cmapss(self):
        if self.test_split == "official" and self.dataset != "turbofan":
            raise ValueError("test_split 'official' exists only for the C-MAPSS turbofan data set")
        return self


class ExperimentConfig(DataConfig):
    """One training run. Every field is a flag of `python -m ddrsa.train` (ddrsa/cli.py
    `add_model_arguments`: --field-name, its description as help)."""

    model: str = Field(
        "lstm_basic",
        description="model variant, from: "
        + " ".join(MODEL_NAMES)
        + "; or a baseline (fitted, not trained; training flags do not apply): "
        + " ".join(BASELINE_MODELS),
    )
    batch_size: int = Field(128, ge=1, le=1_000_000, description="windows per optimiser step")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="Adam learning rate (> 0)")
    lambda_param: float = Field(0.75, ge=0, le=1, description="DDRSA loss weight of the event-time term, in [0, 1]")
    nasa_weight: float = Field(0.1, ge=0, description="weight of the expected-NASA-score auxiliary loss (0 disables)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout rate in [0, 1)")
    num_epochs: int = Field(100, ge=1, le=100_000, description="maximum epochs")
    patience: int = Field(10, ge=1, description="early stopping: epochs without validation improvement")
    seed: int = Field(42, description="torch/numpy/random seed of the run")
    grad_clip: float = Field(1.0, gt=0, description="clip the gradient's global L2 norm to this value")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay (L2 penalty)")
    amp: bool = Field(True, description="bf16/fp16 autocast on CUDA (ignored on CPU); --no-amp disables it")
    deterministic: bool = Field(False, description="deterministic kernels (slower)")
    compile: bool = Field(False, description="torch.compile the model")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in ALL_MODELS:
            raise ValueError(f"unknown model {value!r}; choose from {', '.join(ALL_MODELS)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _baseline_ignores_training_fields(cls, data):
        """A baseline (gbm, cox, km) takes the defaults of TRAINING_ONLY_FIELDS: it never reads them."""
        if isinstance(data, dict) and data.get("model") in BASELINE_MODELS:
            data = {k: v for k, v in data.items() if k not in TRAINING_ONLY_FIELDS}
        return data

    def data_config(self) -> DataConfig:
        return DataConfig(**{k: getattr(self, k) for k in DataConfig.model_fields})

    def experiment_id(self) -> str:
        """Stable 12-hex id of everything that changes the result."""
        fields = self.model_dump(mode="json")
        if fields["test_split"] == "held-out":  # the default: ids of older runs stay valid
            del fields["test_split"]
        if not fields["age_input"]:  # likewise: ids of runs without age input stay valid
            del fields["age_input"]
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def short_name(self) -> str:
        """`bs128_lr0.001_lam0.75_nasa0.1_drop0.1_s42`: the human-readable part of a task name
        (`s42` for a baseline: no training hyperparameter applies; `_split<n>` appended for a split seed
        other than 0, `--split-seeds`)."""
        if is_baseline(self.model):
            return f"s{self.seed}" + (f"_split{self.split_seed}" if self.split_seed else "")
        return (
            f"bs{self.batch_size}_lr{self.learning_rate:g}_lam{self.lambda_param:g}"
            f"_nasa{self.nasa_weight:g}_drop{self.dropout:g}_s{self.seed}"
            + (f"_split{self.split_seed}" if self.split_seed else "")
        )

    def display_name(self) -> str:
        """`turbofan/lstm_basic/<short_name>`; C-MAPSS subsets other than FD001 and the official test
        split are named in the first part (`turbofan-FD002-official/...`) so grid points stay distinct."""
        head: str = dataset_name(self.dataset)
        if self.dataset == "turbofan" and (self.subset != "FD001" or self.test_split != "held-out"):
            head += f"-{self.subset}" + ("-official" if self.test_split == "official" else "")
        return f"{head}/{self.model}/{self.short_name()}"

    def run_dir_name(self, index: int) -> str:
        """Relative run folder: logs/<dataset>/<model>/bs.._lr.._lam.._nasa.._drop.._id<i>
        (logs/<dataset>/<model>/s<seed>_id<i> for a baseline)."""
        if is_baseline(self.model):
            return f"logs/{dataset_name(self.dataset)}/{self.model}/s{self.seed}_id{index}"
        leaf = (
            f"bs{self.batch_size}_lr{self.learning_rate:g}_lam{self.lambda_param:g}"
            f"_nasa{self.nasa_weight:g}_drop{self.dropout:g}_id{index}"
        )
        return f"logs/{dataset_name(self.dataset)}/{self.model}/{leaf}"


def format_validation_error(exc) -> str:
    """One line naming each bad field, for pydantic.ValidationError."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "config"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{field}: {msg} (got {err.get('input')!r})")
    return "invalid config: " + "; ".join(parts)
