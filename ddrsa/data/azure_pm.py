"""Azure Predictive Maintenance: per-machine steps of `downsample_hours`, features, labels, windows.

Inputs are the five tables in the raw CSV schemas (see `synthetic.make_synthetic_azure`).
Step s of a machine covers [t0 + s*dh, t0 + (s+1)*dh) with t0 the machine's first telemetry hour.
Features per step (18, float32, scaled to [-1, 1] on TRAIN machines only):
  volt, rotate, pressure, vibration  mean of the hourly readings in the step
  error1..error5                     number of errors in the step
  days_since_comp1..comp4            days from the last replacement STRICTLY BEFORE the step start
                                     (records before the telemetry starts count; none known -> days
                                     since the first maintenance record in the file, a lower bound).
                                     Measured at the step start so the replacement done at a failure
                                     does not reveal that failure.
  model1..model4, age                machine model one-hot and age (years)
Events: failure rows sharing (machine, datetime) are ONE event; each event is assigned to the step
it falls in (never dropped by down-sampling; two events in one step become one event step).
Labels at step j: l = f - j with f the next event step >= j (0 at the event step),
censored = l >= pred_horizon; after the machine's last event: censored, l = rul = S - 1 - j.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .cmapss import split_units
from .windows import make_windows

log = logging.getLogger(__name__)
TELEMETRY = ["volt", "rotate", "pressure", "vibration"]
ERRORS = [f"error{i}" for i in range(1, 6)]
COMPS = [f"comp{i}" for i in range(1, 5)]
MODELS = [f"model{i}" for i in range(1, 5)]
FEATURE_NAMES = TELEMETRY + ERRORS + [f"days_since_{c}" for c in COMPS] + MODELS + ["age"]


def machine_steps(tel: pd.DataFrame, err: pd.DataFrame, maint: pd.DataFrame, fail: pd.DataFrame,
                  machine: pd.Series, dh: int, maint_origin: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """One machine -> (features float64 (S, 18), sorted distinct event steps int64)."""
    t0 = tel["datetime"].min()
    hour = pd.Timedelta(hours=1)
    step_of = (lambda dt: ((dt - t0) // hour).to_numpy().astype(np.int64) // dh)
    ts = step_of(tel["datetime"])
    n_steps = int(ts.max()) + 1
    agg = (pd.DataFrame(tel[TELEMETRY].to_numpy(), columns=TELEMETRY).assign(step=ts)
           .groupby("step").mean().reindex(range(n_steps)).ffill().bfill())
    x = np.zeros((n_steps, len(FEATURE_NAMES)))
    x[:, :4] = agg.to_numpy()
    if len(err):
        es = step_of(err["datetime"])
        ok = (es >= 0) & (es < n_steps)
        eid = pd.Categorical(err["errorID"].to_numpy()[ok], categories=ERRORS).codes
        good = eid >= 0
        np.add.at(x, (es[ok][good], 4 + eid[good]), 1.0)
    starts = t0 + pd.to_timedelta(np.arange(n_steps) * dh, unit="h")
    for ci, comp in enumerate(COMPS):
        mt = np.sort(maint.loc[maint["comp"] == comp, "datetime"].to_numpy())
        k = np.searchsorted(mt, starts.to_numpy(), side="left") - 1
        last = np.where(k >= 0, mt[np.maximum(k, 0)] if len(mt) else maint_origin.to_datetime64(),
                        maint_origin.to_datetime64())
        x[:, 9 + ci] = (starts.to_numpy() - last) / np.timedelta64(1, "D")
    model = str(machine["model"])
    if model in MODELS:
        x[:, 13 + MODELS.index(model)] = 1.0
    x[:, 17] = float(machine["age"])
    fs = step_of(pd.Series(fail["datetime"].unique()))
    dropped = int(((fs < 0) | (fs >= n_steps)).sum())
    if dropped:
        log.warning("machine %s: %d failure(s) outside the telemetry range ignored",
                    machine["machineID"], dropped)
    return x, np.unique(fs[(fs >= 0) & (fs < n_steps)])


def azure_labels(n_steps: int, event_steps: np.ndarray, pred_horizon: int):
    """(event_index int64, censored bool, rul float32), each (S,), per the module docstring."""
    j = np.arange(n_steps)
    if len(event_steps):
        nxt = np.searchsorted(event_steps, j, side="left")
        has = nxt < len(event_steps)
        f = event_steps[np.minimum(nxt, len(event_steps) - 1)]
    else:
        has, f = np.zeros(n_steps, bool), np.zeros(n_steps, np.int64)
    ev = np.where(has, f - j, n_steps - 1 - j).astype(np.int64)
    return ev, (~has) | (ev >= pred_horizon), ev.astype(np.float32)


def prepare_azure(tables: dict, lookback: int, pred_horizon: int, split_seed: int, test_fraction: float,
                  val_fraction: float, downsample_hours: int = 15, window_stride: int = 1,
                  max_units: int | None = None) -> dict:
    """tables: telemetry/errors/maint/failures/machines DataFrames -> dict of windows + metadata."""
    machines = tables["machines"].sort_values("machineID")
    tel_ids = np.unique(tables["telemetry"]["machineID"].to_numpy())
    ids = np.array([m for m in machines["machineID"].to_numpy() if m in set(tel_ids)], np.int64)
    if max_units is not None:
        ids = ids[:max_units]
    groups = {k: dict(tuple(tables[k].groupby("machineID"))) for k in ("telemetry", "errors", "maint", "failures")}
    empty = {k: tables[k].iloc[:0] for k in groups}
    origin = pd.Timestamp(tables["maint"]["datetime"].min()) if len(tables["maint"]) else \
        pd.Timestamp(tables["telemetry"]["datetime"].min())
    feats, events = {}, {}
    for _, m in machines[machines.machineID.isin(ids)].iterrows():
        mid = int(m["machineID"])
        g = {k: groups[k].get(mid, empty[k]) for k in groups}
        feats[mid], events[mid] = machine_steps(g["telemetry"].sort_values("datetime"), g["errors"],
                                                g["maint"], g["failures"], m, downsample_hours, origin)
    split = split_units(ids, test_fraction, val_fraction, split_seed)
    train_x = np.concatenate([feats[m] for m in split["train"]])
    lo, hi = train_x.min(0), train_x.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = {"feature_names": list(FEATURE_NAMES), "split_units": split,
           "n_event_steps": int(sum(len(e) for e in events.values())),
           "n_events": int(tables["failures"][tables["failures"].machineID.isin(ids)]
                           [["machineID", "datetime"]].drop_duplicates().shape[0])}
    for part, us in split.items():
        xs = [(2.0 * (feats[m] - lo) / span - 1.0).astype(np.float32) for m in us]
        labels = [azure_labels(len(feats[m]), events[m], pred_horizon) for m in us]
        out[part] = make_windows(list(us), xs, [a for a, _, _ in labels], [b for _, b, _ in labels],
                                 [c for _, _, c in labels], lookback, window_stride,
                                 feature_names=list(FEATURE_NAMES))
    out["benchmark"] = None
    return out
