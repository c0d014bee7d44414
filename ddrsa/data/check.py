"""`summarize(path, columns) -> dict`: what a sweep would use of a fleet table (`python -m ddrsa.data check`).

Suggested sizes (a starting point, not a tuned value):
  pred_horizon = the largest power of two <= the median length of the failed segments, in [8, 256]
                 (at least half the segments that end in a failure are longer than the horizon, so the
                 data holds both event windows and windows censored at the horizon);
  lookback     = the largest power of two <= the median steps per unit, in [8, 128].
"""

from __future__ import annotations

import numpy as np

from ddrsa.config import DataConfig

from .fleet import FleetScaler, split_fleet
from .fleet_table import FleetColumns, read_fleet


def _pow2_floor(x: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, 2 ** int(np.floor(np.log2(max(x, 1)))))))


def failed_segment_lengths(event_steps: list) -> np.ndarray:
    """Steps from a unit's start (or its previous failure) to each failure, inclusive."""
    out = [np.diff(np.concatenate([[-1], e])) for e in event_steps if len(e)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def summarize(path, columns: FleetColumns | None = None) -> dict:
    """Validate the table (DataError on bad input) and describe it under the default split."""
    table = read_fleet(path, columns)
    defaults = DataConfig()
    split = split_fleet(table, defaults.split_seed, defaults.test_fraction, defaults.val_fraction)
    pos = {u: i for i, u in enumerate(table.unit_ids.tolist())}
    scaler = FleetScaler().fit(table.covariates, [table.steps[pos[u]] for u in split["train"].tolist()])
    lengths = np.array([len(s) for s in table.steps])
    n_fail = int(sum(len(e) for e in table.event_steps))
    censored = int(sum(1 for s, e in zip(table.steps, table.event_steps) if not len(e) or e[-1] < len(s) - 1))
    seg = failed_segment_lengths(table.event_steps)
    dropped = dict(table.dropped, **{c: "constant on the training units" for c in scaler.dropped})
    return {
        "name": table.name,
        "version": table.version,
        "rows": table.n_rows,
        "units": len(table.unit_ids),
        "segments": n_fail + censored,
        "failures": n_fail,
        "censored_segments": censored,
        "steps_per_unit": (int(lengths.min()), float(np.median(lengths)), int(lengths.max())),
        "failed_segment_median": float(np.median(seg)),
        "covariates_kept": scaler.feature_names,
        "covariates_dropped": dropped,
        "categories": table.categories,
        "missing_share": table.missing_share,
        "split_units": {k: len(v) for k, v in split.items()},
        "pred_horizon": _pow2_floor(float(np.median(seg)), 8, 256),
        "lookback_window": _pow2_floor(float(np.median(lengths)), 8, 128),
    }


def format_summary(s: dict) -> str:
    lo, med, hi = s["steps_per_unit"]
    drop = ", ".join(f"{c} ({why})" for c, why in s["covariates_dropped"].items()) or "none"
    cats = "; ".join(f"{c}: {len(v)} values" for c, v in s["categories"].items())
    lines = [
        f"{s['name']}: {s['rows']} rows, data version {s['version']}",
        f"units {s['units']} (split train/val/test {s['split_units']['train']}/{s['split_units']['val']}/"
        f"{s['split_units']['test']} at the default seed)",
        f"segments {s['segments']}: failures {s['failures']}, censored {s['censored_segments']}",
        f"steps per unit min {lo} / median {med:g} / max {hi}; failed segment median {s['failed_segment_median']:g}",
        f"covariates kept {len(s['covariates_kept'])}: {', '.join(s['covariates_kept'])}",
        f"covariates dropped: {drop}",
    ]
    if cats:
        lines.append(f"one-hot encoded: {cats}")
    lines += [
        f"missing values: {s['missing_share']:.2%} of the kept covariate cells (imputed: last observed "
        "value of the unit, else the training units' median)",
        f"suggested: --pred-horizon {s['pred_horizon']} --lookback-window {s['lookback_window']}",
    ]
    return "\n".join(lines)
