"""Data layer: `load_dataset(config, settings) -> PreparedData` of `SurvivalWindows` (docs/CONTRACTS.md)."""

from .loader import clear_cache, load_dataset
from .windows import PreparedData, SurvivalWindows, make_windows

__all__ = ["load_dataset", "clear_cache", "SurvivalWindows", "PreparedData", "make_windows"]
