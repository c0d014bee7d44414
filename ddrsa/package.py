"""Model package: one folder holding everything needed to score a fleet (docs/CONTRACTS.md).

    MODEL_DIR/
      weights.pt     torch.save of the model's state dict (load with weights_only=True)
      package.json   format, config, dataset name and path, feature names, raw covariates, one-hot
                     categories, column settings, fitted scaler, data version, code version,
                     validation metrics, refit (epochs, units), intervention rule

`write_package` writes both into a temporary folder beside MODEL_DIR and renames it into place
(an existing package is replaced whole, never half-written). `load_package` rebuilds the model.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ddrsa.atomic import json_safe
from ddrsa.config import ExperimentConfig, dataset_name
from ddrsa.errors import DDRSAError

FORMAT = 1
WEIGHTS, META = "weights.pt", "package.json"


@dataclass
class ModelPackage:
    """A loaded package: `model` (eval mode, CPU) and its `meta` (package.json)."""

    path: Path
    model: torch.nn.Module
    config: ExperimentConfig
    meta: dict

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def scaler(self) -> dict | None:
        return self.meta.get("scaler")


def write_package(
    path,
    model: torch.nn.Module,
    config: ExperimentConfig,
    *,
    feature_names: list[str],
    data_version: str,
    code_version: str,
    validation_metrics: dict,
    refit: dict,
    data_info: dict | None = None,
    intervention: dict | None = None,
) -> Path:
    """Write the package folder `path` (replaced atomically). `data_info`: the fleet loader's info
    (scaler, categories, columns); None for built-in data sets (which `python -m ddrsa.score` cannot
    score). Returns `path`."""
    path = Path(path)
    info = data_info or {}
    meta = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset_name(config.dataset),
        "dataset_path": config.dataset,
        "config": config.model_dump(mode="json"),
        "feature_names": list(feature_names),
        "covariates": (info.get("scaler") or {}).get("covariates"),
        "categories": info.get("categories"),
        "columns": info.get("columns"),
        "scaler": info.get("scaler"),
        "data_version": data_version,
        "code_version": code_version,
        "validation_metrics": validation_metrics,
        "refit": refit,
        "intervention": intervention or {"rule": "threshold"},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps(json_safe(meta), indent=2, sort_keys=True))
        tmp.chmod(0o755)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_package(path) -> ModelPackage:
    """Read MODEL_DIR; DDRSAError (one line) when it is not a package."""
    from ddrsa.models import build_model

    path = Path(path)
    if not (path / META).is_file() or not (path / WEIGHTS).is_file():
        raise DDRSAError(
            f"{path} is not a model package (needs {META} and {WEIGHTS}; made by a sweep's --refit or ddrsa.refit)"
        )
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as exc:
        raise DDRSAError(f"{path / META}: unreadable ({exc})") from None
    if meta.get("format") != FORMAT:
        raise DDRSAError(f"{path}: package format {meta.get('format')!r}, this code reads {FORMAT}")
    config = ExperimentConfig.model_validate(meta["config"])
    model = build_model(
        config.model,
        n_features=len(meta["feature_names"]),
        pred_horizon=config.pred_horizon,
        dropout=config.dropout,
        lookback_window=config.lookback_window,
    )
    model.load_state_dict(torch.load(path / WEIGHTS, map_location="cpu", weights_only=True))
    model.eval()
    return ModelPackage(path=path, model=model, config=config, meta=meta)
