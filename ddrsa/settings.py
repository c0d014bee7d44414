"""Settings from the environment (`DDRSA_*`) and a `.env` file, via pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    """`../shared/data` next to the checkout when present, else `./data`."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "shared" / "data", here / "data"):
        if (candidate / "cmapss").is_dir() or (candidate / "azure_pm").is_dir():
            return candidate
    return here / "data"


class Settings(BaseSettings):
    """Machine-level settings; experiment hyperparameters live in `ExperimentConfig`."""

    model_config = SettingsConfigDict(env_prefix="DDRSA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="folder holding cmapss/ and azure_pm/ (files plain or .gz)"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_source: Literal["auto", "real", "synthetic"] = "auto"
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch default)")


def get_settings() -> Settings:
    return Settings()
