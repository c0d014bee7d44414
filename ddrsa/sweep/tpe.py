"""TPE search space from the grid flags, the checks of a search request, and the Optuna study.

No Prefect here. The search space is read off a `SweepSpec`:
  - an axis with one value is fixed;
  - a numeric axis with two values is a range between them: log-uniform for learning rates and
    batch sizes (integers), uniform for lambda, NASA weight and dropout;
  - an axis with three or more values (and `models` with two or more) is a categorical choice.
Seeds are not searched: every trial trains with the first `--seeds` value. Datasets and C-MAPSS
subsets are not searched either (validation losses of different data are not comparable): a
search needs one of each.

The study lives in OUTPUT_DIR/optuna_study.db (Optuna's RDB storage on SQLite: each tell is a
committed transaction, so a SIGKILL loses nothing told) under the name `ddrsa-tpe`; running the
same command again loads it and goes on. Pruning is Optuna's `SuccessiveHalvingPruner` with the
same rungs as `--search halving` (min_resource = --min-epochs, reduction_factor = eta).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from ddrsa.config import is_baseline
from ddrsa.errors import DDRSAError
from ddrsa.sweep.halving import rung_epochs
from ddrsa.sweep.spec import GRID_AXES, SweepSpec

SEARCHES = ("grid", "halving", "tpe")
STUDY_FILE = "optuna_study.db"
STUDY_NAME = "ddrsa-tpe"
SEARCHED_AXES = ("models", "batch_sizes", "learning_rates", "lambda_params", "nasa_weights", "dropout_rates")
LOG_AXES = ("learning_rates", "batch_sizes")
INT_AXES = ("batch_sizes",)


def search_space(spec: SweepSpec) -> dict[str, dict]:
    """axis -> {"kind": "fixed"|"range"|"categorical", "values", "low", "high", "log", "int"}."""
    space: dict[str, dict] = {}
    for axis, values in spec.grid().items():
        if axis not in SEARCHED_AXES:
            continue
        if len(values) == 1:
            space[axis] = {"kind": "fixed", "values": values}
        elif len(values) == 2 and axis != "models":
            space[axis] = {
                "kind": "range",
                "low": min(values),
                "high": max(values),
                "log": axis in LOG_AXES,
                "int": axis in INT_AXES,
            }
        else:
            space[axis] = {"kind": "categorical", "values": values}
    return space


def describe_space(space: dict[str, dict]) -> str:
    """One line per searched axis, for logs and the manifest."""
    parts = []
    for axis, s in space.items():
        if s["kind"] == "range":
            parts.append(f"{axis} {'log-' if s['log'] else ''}uniform [{s['low']:g}, {s['high']:g}]")
        elif s["kind"] == "categorical":
            parts.append(f"{axis} one of {', '.join(map(str, s['values']))}")
    return "; ".join(parts)


def check_search(
    spec: SweepSpec,
    search: str,
    min_epochs: int | None,
    reduction_factor: int,
    n_trials: int | None,
    fuse: str = "auto",
) -> None:
    """Refuse a search request that cannot run (DDRSAError, one line for the command line)."""
    if search not in SEARCHES:
        raise DDRSAError(f"--search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if search == "grid":
        return
    baselines = [m for m in spec.models if is_baseline(m)]
    if baselines:
        raise DDRSAError(
            f"--search {search} ranks DDRSA validation losses over epochs; the baselines "
            f"({' '.join(baselines)}) are fitted once: run them with --search grid"
        )
    if fuse == "on":  # rungs and trials are one task per experiment (flows/search.py)
        raise DDRSAError(
            f"--fuse on fuses grid sweeps only; --search {search} trains each experiment on its own (drop --fuse on)"
        )
    if reduction_factor < 2:
        raise DDRSAError(f"--reduction-factor must be at least 2, got {reduction_factor}")
    if min_epochs is not None and not 1 <= min_epochs <= spec.num_epochs:
        raise DDRSAError(f"--min-epochs must be between 1 and --num-epochs ({spec.num_epochs}), got {min_epochs}")
    if len(spec.grid()["datasets"]) > 1 or len(spec.subset_list()) > 1:
        raise DDRSAError(
            f"--search {search} ranks validation losses of one data set: give one dataset (and one C-MAPSS subset)"
        )
    if search == "tpe":
        if n_trials is None or n_trials < 1:
            raise DDRSAError(f"--search tpe needs --n-trials N with N >= 1, got {n_trials}")
        if all(s["kind"] == "fixed" for s in search_space(spec).values()):
            raise DDRSAError(
                "--search tpe needs a grid flag with two or more values to search "
                f"({', '.join('--' + a.replace('_', '-') for a in SEARCHED_AXES)})"
            )


def default_min_epochs(num_epochs: int, eta: int) -> int:
    """First rung when --min-epochs is not given: about num_epochs / eta^2, at least 1."""
    return max(1, num_epochs // (eta * eta))


def rungs_for(spec: SweepSpec, min_epochs: int | None, eta: int) -> list[int]:
    return rung_epochs(min_epochs or default_min_epochs(spec.num_epochs, eta), spec.num_epochs, eta)


def suggest(trial, space: dict[str, dict]) -> dict:
    """ExperimentConfig fields for an Optuna trial: {config field: value} of the searched axes."""
    out = {}
    for axis, s in space.items():
        field = GRID_AXES[axis]
        if s["kind"] == "fixed":
            out[field] = s["values"][0]
        elif s["kind"] == "categorical":
            out[field] = trial.suggest_categorical(axis, list(s["values"]))
        elif s["int"]:
            out[field] = trial.suggest_int(axis, int(s["low"]), int(s["high"]), log=s["log"])
        else:
            out[field] = trial.suggest_float(axis, float(s["low"]), float(s["high"]), log=s["log"])
    return out


def fields_of(params: dict, space: dict[str, dict]) -> dict:
    """The same mapping as `suggest` from a stored trial's params (resuming a running trial)."""
    out = {}
    for axis, s in space.items():
        out[GRID_AXES[axis]] = s["values"][0] if s["kind"] == "fixed" else params[axis]
    return out


def open_study(output_dir: str | Path, rungs: list[int], eta: int, seed: int):
    """Create or load the study in OUTPUT_DIR/optuna_study.db: TPE (constant liar, for trials that
    run side by side) and successive-halving pruning on `rungs`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{Path(output_dir) / STUDY_FILE}"
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0], reduction_factor=eta)
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.create_study(
                study_name=STUDY_NAME,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction="minimize",
                load_if_exists=True,
            )
        except sqlalchemy.exc.IntegrityError:
            # another process (optuna-dashboard, a script reading the study) set up the same new
            # database file at the same moment and stamped its schema version first: load it now
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def finite_or_none(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)
