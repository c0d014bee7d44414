"""Validate a sweep before it trains: expand the grid and load each distinct data set once."""

from __future__ import annotations

from ddrsa.config import ExperimentConfig
from ddrsa.sweep.spec import PlannedExperiment, SweepSpec, expand


def data_key(config: ExperimentConfig) -> str:
    """Which data set an experiment reads (its data version is computed once per key)."""
    return config.dataset if config.dataset == "azure_pm" else f"{config.dataset}-{config.subset}"


def prepare(spec: SweepSpec) -> tuple[list[PlannedExperiment], dict[str, str]]:
    """Expanded grid and {data key: data version}; a missing or malformed file raises DataError."""
    from ddrsa.data import load_dataset
    from ddrsa.settings import get_settings

    planned = expand(spec)
    settings = get_settings()
    versions: dict[str, str] = {}
    for item in planned:
        key = data_key(item.config)
        if key not in versions:
            versions[key] = load_dataset(item.config.data_config(), settings).data_version
    return planned, versions
