"""What the baselines read of a window: summaries of its lookback and its age (no torch).

`window_summaries(windows)` -> float64 (N, 3F + 1): per channel the mean, the last value and the
least-squares slope (per step) over the window's valid steps, then the number of valid steps
(min(step + 1, K)). `window_ages(windows)` -> int64 (N,): steps since the unit's last renewal.
`lifetimes(windows)` -> the renewal segments the training windows show (for Kaplan-Meier).
"""

from __future__ import annotations

import numpy as np

CHUNK = 2048  # windows summarised at once: CHUNK * K * F float32 (FD004, K 128: ~25 MB)


def summary_names(feature_names: list[str]) -> list[str]:
    """Column names of `window_summaries`: <f>_mean, <f>_last, <f>_slope per feature, valid_length."""
    return [f"{f}_{s}" for s in ("mean", "last", "slope") for f in feature_names] + ["valid_length"]


def window_summaries(windows) -> np.ndarray:
    """float64 (N, 3F + 1): [mean (F), last value (F), least-squares slope in units per step (F),
    valid length (1)] over each window's valid (unpadded) steps. A window with one valid step has
    slope 0. The last step of a window is always valid (a window ends at an observation)."""
    n, k, f = len(windows), windows.lookback, windows.n_features
    out = np.empty((n, 3 * f + 1))
    t = np.arange(k, dtype=np.float64)
    for start in range(0, n, CHUNK):
        x, mask = windows.batch(np.arange(start, min(n, start + CHUNK)))
        x, m = x.astype(np.float64), mask.astype(np.float64)
        cnt = m.sum(1)  # (B,) >= 1
        mean_t = (m * t).sum(1) / cnt  # (B,)
        mean_x = (m[:, :, None] * x).sum(1) / cnt[:, None]  # (B, F)
        dt = (t[None, :] - mean_t[:, None]) * m  # (B, K), 0 on padding
        sxx = (dt**2).sum(1)  # (B,)
        sxy = (dt[:, :, None] * (x - mean_x[:, None, :])).sum(1)  # (B, F)
        slope = np.divide(sxy, sxx[:, None], out=np.zeros_like(sxy), where=sxx[:, None] > 0)
        out[start : start + len(x)] = np.concatenate([mean_x, x[:, -1, :], slope, cnt[:, None]], axis=1)
    return out


def _event_steps(windows) -> dict[int, np.ndarray]:
    """unit -> sorted steps at which its events happen, as its uncensored windows show them (step + l)."""
    obs = ~np.asarray(windows.censored)
    steps = np.asarray(windows.step)[obs] + np.asarray(windows.event_index)[obs]
    units = np.asarray(windows.unit)[obs]
    return {int(u): np.unique(steps[units == u]) for u in np.unique(units)}


def window_ages(windows) -> np.ndarray:
    """int64 (N,) >= 1: the age a of each window, counted in steps up to and including its last step
    since the unit's last renewal: the step after its previous event (an event strictly before the
    window's last step, as the labels of its own earlier windows show it), else the unit's first
    step. C-MAPSS: a = the cycle index (units run from a new engine to one failure). Azure PM: steps
    since the machine's previous failure step, or since the start of its record when it has not
    failed yet in the record (a lower bound of the true age: the record starts mid-life)."""
    step = np.asarray(windows.step)
    unit = np.asarray(windows.unit)
    age = step + 1
    for u, events in _event_steps(windows).items():
        idx = np.flatnonzero(unit == u)
        prev = np.searchsorted(events, step[idx], side="left") - 1  # last event step < step
        has = prev >= 0
        age[idx[has]] = step[idx[has]] - events[prev[has]]
    return age


def lifetimes(windows) -> tuple[np.ndarray, np.ndarray]:
    """(durations int64, observed bool) of the renewal segments that `windows` (training units) show.

    A segment is one life of a unit, from a renewal (its first step, or the step after an event) to
    its event; its duration D is the age at the event (so an event at lag l of a window of age a
    gives D = a + l). Observed when one of its windows is uncensored; else censored at the largest
    a + c of its windows (c the censoring index: alive through lag c, so D > a + c)."""
    age = window_ages(windows)
    start = np.asarray(windows.step) - age + 1
    reach = age + np.asarray(windows.event_index)
    obs = ~np.asarray(windows.censored)
    keys = np.stack([np.asarray(windows.unit), start], axis=1)
    seg, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    observed = np.zeros(len(seg), bool)
    np.logical_or.at(observed, inv, obs)
    dur = np.zeros(len(seg), np.int64)
    np.maximum.at(dur, inv[~obs], reach[~obs])
    event_dur = np.zeros(len(seg), np.int64)
    np.maximum.at(event_dur, inv[obs], reach[obs])
    return np.where(observed, event_dur, dur), observed
