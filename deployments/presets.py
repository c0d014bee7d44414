"""The named studies, defined once: used by `flows/sweep.py --preset`, prefect.yaml and the launcher.

A preset is a partial `SweepSpec`: the fields it sets; everything else keeps the spec defaults.
"""

from __future__ import annotations

from ddrsa.config import DEFAULT_MODELS, MODEL_NAMES
from ddrsa.errors import DDRSAError
from ddrsa.sweep.spec import SweepSpec

_STUDY = dict(learning_rates=[0.001], lambda_params=[0.75], nasa_weights=[0.1], dropout_rates=[0.1])

PRESETS: dict[str, dict] = {
    "default": {
        "description": "What `python flows/sweep.py` runs with no flags: every default model on both "
        "datasets, 2 epochs on every 32nd window; minutes on a 2-core laptop.",
        "spec": dict(batch_sizes=[128], num_epochs=2, window_stride=32, **_STUDY),
    },
    "quick-comparison": {
        "description": "Every default model on both datasets, one configuration.",
        "spec": dict(batch_sizes=[128], num_epochs=30, **_STUDY),
    },
    "batch-study": {
        "description": "Batch size 32-512 at lr 0.001, lambda 0.75, NASA weight 0.1, dropout 0.1.",
        "spec": dict(batch_sizes=[32, 64, 128, 256, 512], num_epochs=100, **_STUDY),
    },
    "lr-sweep": {
        "description": "Learning rate 1e-5 to 1e-2 at batch 128, the rest at the batch-study values.",
        "spec": dict(
            _STUDY, batch_sizes=[128], learning_rates=[0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01], num_epochs=100
        ),
    },
    "nasa-tuning": {
        "description": "NASA auxiliary-loss weight 0 to 0.5 at batch 128.",
        "spec": dict(_STUDY, batch_sizes=[128], nasa_weights=[0.0, 0.05, 0.1, 0.2, 0.3, 0.5], num_epochs=100),
    },
    "dropout-sensitivity": {
        "description": "Dropout 0 to 0.5 at batch 128.",
        "spec": dict(
            _STUDY, batch_sizes=[128], dropout_rates=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5], num_epochs=100
        ),
    },
    "full-grid": {
        "description": "All nine models x batch 64/128/256 x lr 5e-4/1e-3/5e-3 x lambda 0.5/0.75 x "
        "NASA 0/0.1 x dropout 0.1/0.2 on both datasets.",
        "spec": dict(
            models=list(MODEL_NAMES),
            batch_sizes=[64, 128, 256],
            learning_rates=[0.0005, 0.001, 0.005],
            lambda_params=[0.5, 0.75],
            nasa_weights=[0.0, 0.1],
            dropout_rates=[0.1, 0.2],
            num_epochs=100,
        ),
    },
    "cmapss-benchmark": {
        "description": "The C-MAPSS literature protocol on FD001-FD004: lookback 30, horizon 125 (= the "
        "RUL cap), all training units train or validate (30% of them validate, split by "
        "unit), scored on the last window of every official test unit against "
        "RUL_FD00x.txt; 5 seeds per configuration, the configuration per subset chosen on "
        "validation on val_benchmark_rmse (10 seeded random truncations of each validation "
        "unit, truth capped at 125; report section `Benchmark vs literature`). One split (split "
        "seed 0): the official test units are fixed, so repeating the split (--split-seeds) would "
        "re-draw only the validation units; the spread over test units is the report's bootstrap.",
        # the paper's 16-unit LSTM, two learning rates; NASA weight 0 (0.1 was worse on validation in
        # an earlier run: BENCHMARKS.md section 7). lstm_basic (64 units) costs 4.4x per epoch on CPU.
        # The yardsticks gbm, cox, km (issue 25) run once per subset and seed beside it (seconds each).
        "spec": dict(
            datasets=["turbofan"],
            subsets=["FD001", "FD002", "FD003", "FD004"],
            test_split="official",
            lookback_window=30,
            pred_horizon=125,
            models=["paper", "gbm", "cox", "km"],
            batch_sizes=[64],
            learning_rates=[0.01, 0.003],
            lambda_params=[0.75],
            nasa_weights=[0.0],
            dropout_rates=[0.1],
            seeds=[0, 1, 2, 3, 4],
            split_seeds=[0],
            num_epochs=60,
            patience=10,
        ),
    },
    "nightly": {
        "description": "Scheduled nightly run: quick-comparison with 3 seeds, appended to the history.",
        "spec": dict(batch_sizes=[128], num_epochs=30, seeds=[42, 43, 44], **_STUDY),
    },
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_spec(name: str, overrides: dict | None = None) -> SweepSpec:
    """The preset's SweepSpec with `overrides` (flags given next to the preset) on top.
    A `subset` override replaces the preset's list of subsets (`--subset FD001` runs only FD001)."""
    if name not in PRESETS:
        raise DDRSAError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    fields = {"models": list(DEFAULT_MODELS), **PRESETS[name]["spec"]}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "subset" in given:
        fields.pop("subsets", None)
    fields.update(given)
    return SweepSpec(**fields)


def preset_size(name: str) -> int:
    return preset_spec(name).size()


# --------------------------------------------------------------------------- used by deployments/*

NIGHTLY_CRON = "0 2 * * *"  # 02:00 every day, in the deployment's timezone
DEFAULT_OUTPUT_ROOT = "parallel_experiments"


def preset_output_dir(name: str, root: str = DEFAULT_OUTPUT_ROOT) -> str:
    """Where a preset's deployment writes: one folder per preset under the output root."""
    return f"{root}/{name}"


def preset_parameters(name: str) -> dict:
    """The flow parameters a preset's deployment sets (the grid itself comes from `preset`)."""
    preset_spec(name)  # unknown name -> DDRSAError
    params = {"preset": name, "output_dir": preset_output_dir(name)}
    if name == "nightly":
        params["append_to_history"] = True
    return params


def deployment_parameters(name: str) -> dict:
    """A preset's deployment parameters: `preset_parameters` plus the preset's resolved grid and
    training values (every SweepSpec field the preset decides; the run-only fields data_source, amp,
    compile, deterministic and unset optional fields stay out), so the Prefect UI's Custom run form
    shows and edits real values (`batch_sizes [32, 64, 128, 256, 512]`, `num_epochs 100`) instead
    of None. Given explicitly they resolve to the same SweepSpec as the preset alone. A preset with
    several C-MAPSS `subsets` leaves `subset` out (subsets replaces it: an edit would be ignored)."""
    spec = preset_spec(name)
    values = {
        field: value
        for field, value in spec.model_dump(mode="json").items()
        if value is not None and not (SweepSpec.model_fields[field].json_schema_extra or {}).get("run_only")
    }
    if spec.subsets:
        values.pop("subset", None)
    return {**preset_parameters(name), **values}


def preset_schedule(name: str) -> str | None:
    """Cron string of a preset's deployment, or None (run on demand)."""
    return NIGHTLY_CRON if name == "nightly" else None


def preset_grid_summary(name: str) -> str:
    """`datasets turbofan azure_pm; models ...; batch_sizes 128; ...; 30 epochs` (what the preset trains)."""
    spec = preset_spec(name)
    axes = "; ".join(
        f"{axis} {' '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in values)}"
        for axis, values in spec.grid().items()
    )
    extra = f", every {spec.window_stride}th window" if spec.window_stride > 1 else ""
    if "turbofan" in spec.datasets:
        extra += (
            f"; C-MAPSS {' '.join(spec.subset_list())}, lookback {spec.lookback_window}, "
            f"horizon {spec.pred_horizon}, {spec.test_split} test units"
        )
    return f"{axes}; {spec.num_epochs} epochs (early stopping after {spec.patience}){extra}"
