"""Run-time estimates of a sweep from experiment times measured earlier under an output root.

Every `all_results.json` under the root (one per sweep folder) is read; each completed or diverged
experiment gives a *seconds per epoch* for its (dataset, model, data shape, device kind). A planned
experiment is estimated as that mean times its `num_epochs` (an upper bound: early stopping often
ends sooner). Data shape = subset, lookback window, horizon, max units, window stride: a tiny test
run never stands in for a full-size one. GPU measurements are preferred; CPU ones are used (and
said so) when no GPU run was measured. Nothing measured: "no measurement yet".
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ddrsa.sweep.spec import SweepSpec, expand

SHAPE_FIELDS = ("subset", "lookback_window", "pred_horizon", "max_units", "window_stride")
NO_MEASUREMENT = "no measurement yet"


def _shape(config: dict) -> tuple:
    subset = config.get("subset") if config.get("dataset") == "turbofan" else None
    return (subset,) + tuple(config.get(f) for f in SHAPE_FIELDS[1:])


def _kind(device: str | None) -> str:
    return "gpu" if device and device.startswith("cuda") else "cpu"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def measured_epoch_seconds(output_root: str | Path) -> dict[tuple, list[float]]:
    """{(dataset, model, shape, device kind): [seconds per epoch, ...]} from every sweep folder."""
    found: dict[tuple, list[float]] = defaultdict(list)
    root = Path(output_root)
    if not root.is_dir():
        return found
    for results_file in sorted(root.rglob("all_results.json")):
        records = _read_json(results_file)
        manifest = _read_json(results_file.parent / "experiment_manifest.json") or {}
        configs = {
            e.get("experiment_id"): e.get("config", {}) for e in manifest.get("experiments", []) if isinstance(e, dict)
        }
        if not isinstance(records, list):
            continue
        for rec in records:
            if not isinstance(rec, dict) or rec.get("status") not in ("completed", "diverged"):
                continue
            epochs, seconds = rec.get("epochs_trained") or 0, rec.get("train_seconds") or 0.0
            config = configs.get(rec.get("experiment_id"))
            if epochs <= 0 or seconds <= 0 or config is None:
                continue
            key = (rec.get("dataset"), rec.get("model"), _shape(config), _kind(rec.get("device")))
            found[key].append(seconds / epochs)
    return found


@dataclass
class Estimate:
    seconds: float | None  # one GPU (or one CPU worker) running the experiments one after another
    device: str | None  # "gpu" | "cpu" | None
    measured: int  # planned experiments that had a measurement
    total: int  # planned experiments

    def text(self) -> str:
        if self.seconds is None:
            return NO_MEASUREMENT
        where = "per GPU" if self.device == "gpu" else "on 1 CPU worker (no GPU run measured)"
        partial = "" if self.measured == self.total else f", {self.measured}/{self.total} measured"
        return f"<= {format_duration(self.seconds)} {where}{partial}"


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def estimate_spec(
    spec: SweepSpec, output_root: str | Path = "parallel_experiments", measurements: dict | None = None
) -> Estimate:
    """Sequential run time of `spec` on one GPU from measured epochs; unmeasured kinds extrapolated
    from the mean of the measured ones."""
    found = measured_epoch_seconds(output_root) if measurements is None else measurements
    planned = expand(spec)
    for kind in ("gpu", "cpu"):
        per_exp = []
        for item in planned:
            c = item.config.model_dump()
            times = found.get((c["dataset"], c["model"], _shape(c), kind))
            per_exp.append(sum(times) / len(times) * c["num_epochs"] if times else None)
        known = [t for t in per_exp if t is not None]
        if known:
            mean = sum(known) / len(known)
            total = sum(t if t is not None else mean for t in per_exp)
            return Estimate(total, kind, len(known), len(planned))
    return Estimate(None, None, 0, len(planned))


def estimate_preset(
    name: str, output_root: str | Path = "parallel_experiments", measurements: dict | None = None
) -> Estimate:
    from deployments.presets import preset_spec

    return estimate_spec(preset_spec(name), output_root, measurements)
