"""Azure Predictive Maintenance: per-machine steps of `downsample_hours`, features, labels, windows.

Inputs are the raw tables in the CSV schemas of the files (see `synthetic.make_synthetic_azure`):
errors, maint, failures, machines and, when the user has it, telemetry (PdM_telemetry.csv).
Step s of a machine covers hours [t0 + s*dh, t0 + (s+1)*dh). With telemetry t0 is the machine's
first telemetry hour and the steps run to its last; without telemetry every machine shares the
observation period of the event logs: t0 = the first errors/failures record (floored to the hour),
last step = the one holding the last errors/failures record.
Features per step (float32, scaled to [-1, 1] on TRAIN machines only; `feature_names`):
  volt, rotate, pressure, vibration  mean of the hourly readings in the step (ONLY with telemetry)
  error1..error5                     number of errors in the step
  days_since_comp1..comp4            days from the last replacement STRICTLY BEFORE the step start
                                     (records before t0 count; none known -> days since the first
                                     maintenance record in the file, a lower bound). Measured at the
                                     step start so the replacement done at a failure does not reveal it.
  model1..model4, age                machine model one-hot and age (years)
18 features with telemetry, 14 without. Nothing is generated: every value comes from the files.
`age_input` adds one last channel, `record_steps`: the step index s (steps since the start of the
machine's record, t0 above), scaled with the rest on the training machines (`age` is already there).
Events: failure rows sharing (machine, datetime) are ONE event; each event is assigned to the step
it falls in (never dropped by down-sampling; two events in one step become one event step).
No look past the event: in a step holding an event, the hourly records (telemetry readings, errors)
AFTER the first event of that step are dropped, so the features of the step (the last row of its
lag-0 window) end at the event hour (inclusive). Those hours count in no step.
Labels at step j: l = f - j with f the next event step >= j (0 at the event step),
censored = l >= pred_horizon; after the machine's last event: censored, l = rul = S - 1 - j.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ddrsa.errors import DataError

from .cmapss import split_units
from .windows import make_windows

log = logging.getLogger(__name__)
TELEMETRY = ["volt", "rotate", "pressure", "vibration"]
ERRORS = [f"error{i}" for i in range(1, 6)]
COMPS = [f"comp{i}" for i in range(1, 5)]
MODELS = [f"model{i}" for i in range(1, 5)]
REAL_SIGNAL_NAMES = ERRORS + [f"days_since_{c}" for c in COMPS] + MODELS + ["age"]
FEATURE_NAMES = TELEMETRY + REAL_SIGNAL_NAMES  # with telemetry
_HOUR = pd.Timedelta(hours=1)


def feature_names(with_telemetry: bool) -> list[str]:
    """Feature columns in order: 18 with telemetry, the 14 non-telemetry signals without."""
    return list(FEATURE_NAMES if with_telemetry else REAL_SIGNAL_NAMES)


def observation_period(tables: dict) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first, last) hour of the event logs (errors and failures, all machines): the shared step
    grid when there is no telemetry. Never depends on which machine fails when."""
    times = pd.concat([tables["errors"]["datetime"], tables["failures"]["datetime"]])
    if not len(times):
        raise DataError("Azure PM: PdM_errors and PdM_failures are both empty; no observation period")
    return pd.Timestamp(times.min()).floor("h"), pd.Timestamp(times.max())


def machine_steps(
    err: pd.DataFrame,
    maint: pd.DataFrame,
    fail: pd.DataFrame,
    machine: pd.Series,
    dh: int,
    maint_origin: pd.Timestamp,
    tel: pd.DataFrame | None = None,
    period: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One machine -> (features float64 (S, F), sorted distinct event steps int64 (E,)).

    tel: that machine's telemetry rows (F = 18) or None (F = 14; then `period` = (t0, last hour)
    from `observation_period`). Records after an event inside the event's step are dropped."""
    names = feature_names(tel is not None)
    col = {n: i for i, n in enumerate(names)}
    if tel is not None:
        t0, last = tel["datetime"].min(), tel["datetime"].max()
    elif period is not None:
        t0, last = period
    else:
        raise ValueError("machine_steps needs telemetry or an observation period")
    hours_of = lambda dt: ((pd.to_datetime(pd.Series(dt)) - t0) // _HOUR).to_numpy().astype(np.int64)
    n_steps = int(hours_of([last])[0]) // dh + 1
    # events: distinct failure times (several components at one time = one event)
    ev_hours = np.unique(hours_of(fail["datetime"].unique()))
    inside = (ev_hours >= 0) & (ev_hours < n_steps * dh)
    if (~inside).any():
        log.warning(
            "machine %s: %d failure(s) outside the observation range ignored",
            machine["machineID"],
            int((~inside).sum()),
        )
    ev_hours = ev_hours[inside]
    event_steps = np.unique(ev_hours // dh)
    cutoff = np.full(n_steps, np.iinfo(np.int64).max)  # last hour kept in each step
    np.minimum.at(cutoff, ev_hours // dh, ev_hours)

    def keep(hours: np.ndarray) -> np.ndarray:
        """In range and not after the first event of its step."""
        ok = (hours >= 0) & (hours < n_steps * dh)
        ok[ok] &= hours[ok] <= cutoff[hours[ok] // dh]
        return ok

    x = np.zeros((n_steps, len(names)))
    if tel is not None:
        th = hours_of(tel["datetime"])
        ok = keep(th)
        agg = (
            pd.DataFrame(tel[TELEMETRY].to_numpy()[ok], columns=TELEMETRY)
            .assign(step=th[ok] // dh)
            .groupby("step")
            .mean()
            .reindex(range(n_steps))
            .ffill()
            .bfill()
        )
        x[:, [col[c] for c in TELEMETRY]] = agg.to_numpy()
    if len(err):
        eh = hours_of(err["datetime"])
        eid = pd.Categorical(err["errorID"].to_numpy(), categories=ERRORS).codes
        ok = keep(eh) & (eid >= 0)
        np.add.at(x, (eh[ok] // dh, col["error1"] + eid[ok]), 1.0)
    starts = (t0 + pd.to_timedelta(np.arange(n_steps) * dh, unit="h")).to_numpy()
    for comp in COMPS:
        mt = np.sort(maint.loc[maint["comp"] == comp, "datetime"].to_numpy())
        k = np.searchsorted(mt, starts, side="left") - 1
        last_rep = np.where(
            k >= 0, mt[np.maximum(k, 0)] if len(mt) else maint_origin.to_datetime64(), maint_origin.to_datetime64()
        )
        x[:, col[f"days_since_{comp}"]] = (starts - last_rep) / np.timedelta64(1, "D")
    model = str(machine["model"])
    if model in MODELS:
        x[:, col[model]] = 1.0
    x[:, col["age"]] = float(machine["age"])
    return x, event_steps.astype(np.int64)


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


def prepare_azure(
    tables: dict,
    lookback: int,
    pred_horizon: int,
    split_seed: int,
    test_fraction: float,
    val_fraction: float,
    downsample_hours: int = 15,
    window_stride: int = 1,
    max_units: int | None = None,
    age_input: bool = False,
) -> dict:
    """tables: errors/maint/failures/machines DataFrames and optionally telemetry (key absent or None
    when there is none) -> dict of windows + metadata. Machines are split (by `split_seed`) before
    scaling; the min/max scaler is fit on the train machines' steps only."""
    tel = tables.get("telemetry")
    machines = tables["machines"].sort_values("machineID")
    ids = machines["machineID"].to_numpy().astype(np.int64)
    if tel is not None:
        ids = ids[np.isin(ids, tel["machineID"].to_numpy())]
    if max_units is not None:
        ids = ids[:max_units]
    kinds = ("errors", "maint", "failures") + (("telemetry",) if tel is not None else ())
    groups = {k: dict(tuple(tables[k].groupby("machineID"))) for k in kinds}
    empty = {k: tables[k].iloc[:0] for k in kinds}
    origin = (
        pd.Timestamp(tables["maint"]["datetime"].min())
        if len(tables["maint"])
        else (pd.Timestamp(tel["datetime"].min()) if tel is not None else observation_period(tables)[0])
    )
    period = None if tel is not None else observation_period(tables)
    feats, events = {}, {}
    for _, m in machines[machines.machineID.isin(ids)].iterrows():
        mid = int(m["machineID"])
        g = {k: groups[k].get(mid, empty[k]) for k in kinds}
        feats[mid], events[mid] = machine_steps(
            g["errors"],
            g["maint"],
            g["failures"],
            m,
            downsample_hours,
            origin,
            tel=g["telemetry"].sort_values("datetime") if tel is not None else None,
            period=period,
        )
        if age_input:
            feats[mid] = np.column_stack([feats[mid], np.arange(len(feats[mid]), dtype=np.float64)])
    split = split_units(ids, test_fraction, val_fraction, split_seed)
    train_x = np.concatenate([feats[m] for m in split["train"]])
    lo, hi = train_x.min(0), train_x.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    names = feature_names(tel is not None) + (["record_steps"] if age_input else [])
    fail = tables["failures"]
    out = {
        "feature_names": names,
        "split_units": split,
        "n_event_steps": int(sum(len(e) for e in events.values())),
        "n_events": int(fail[fail.machineID.isin(ids)][["machineID", "datetime"]].drop_duplicates().shape[0]),
    }
    for part, us in split.items():
        xs = [(2.0 * (feats[m] - lo) / span - 1.0).astype(np.float32) for m in us]
        labels = [azure_labels(len(feats[m]), events[m], pred_horizon) for m in us]
        out[part] = make_windows(
            list(us),
            xs,
            [a for a, _, _ in labels],
            [b for _, b, _ in labels],
            [c for _, _, c in labels],
            lookback,
            window_stride,
            feature_names=names,
        )
    out["benchmark"] = None
    return out
