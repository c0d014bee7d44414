"""Seeded synthetic data in EXACTLY the raw file schemas (C-MAPSS text tables, Azure PM CSVs).

Used when the real files are absent (data_source auto/synthetic) and by the tests. Degradation is
visible in the covariates (rising sensor drift before failures), so models can learn from it.
Generated covariates only ever depend on events generated here, never on real event times (a drift
placed before a real failure would encode the label); the loader never mixes generated covariates
with real files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CMAPSS_COLUMNS = ["unit", "cycle", "setting1", "setting2", "setting3"] + [f"s{i}" for i in range(1, 22)]
# the six operating conditions of FD002/FD004 (setting1, setting2, setting3)
CONDITIONS = np.array(
    [
        [0.0, 0.0, 100.0],
        [10.0, 0.25, 100.0],
        [20.0, 0.70, 100.0],
        [25.0, 0.62, 60.0],
        [35.0, 0.84, 100.0],
        [42.0, 0.84, 100.0],
    ]
)
_BASE = np.array(
    [
        518.67,
        642.5,
        1590.0,
        1409.0,
        14.62,
        21.61,
        553.4,
        2388.1,
        9065.0,
        1.3,
        47.5,
        521.4,
        2388.1,
        8143.0,
        8.44,
        0.03,
        393.0,
        2388.0,
        100.0,
        38.8,
        23.3,
    ]
)
_CONSTANT = np.array([0, 4, 5, 9, 15, 17, 18])  # sensors 1,5,6,10,16,18,19: no information
_SIGN = np.array([0, 1, 1, 1, 0, 0, -1, 1, 1, 0, 1, -1, 1, 1, 1, 0, 1, 0, 0, -1, -1])
_NOISE = np.maximum(0.05, 0.0006 * _BASE)


def _unit_rows(rng, uid, n_cycles, life, multi_condition, two_faults):
    """(n_cycles, 26) rows of one unit observed for cycles 1..n_cycles of a life `life`."""
    t = np.arange(1, n_cycles + 1, dtype=float)
    if multi_condition:
        cond = rng.integers(0, 6, n_cycles)
        settings = CONDITIONS[cond] + rng.normal(0, [0.002, 0.0003, 0.0], (n_cycles, 3))
        factor = 1.0 - 0.04 * cond[:, None] * (1 + 0.5 * np.sin(np.arange(21)))[None, :]
    else:
        settings = rng.normal(0, [0.002, 0.0003, 0.0], (n_cycles, 3)) + [0, 0, 100.0]
        factor = np.ones((n_cycles, 21))
    wear = (np.exp(3.0 * t / life) - 1.0) / (np.exp(3.0) - 1.0)  # 0 -> 1 at failure
    amp = 4.0 * _NOISE * (rng.uniform(0.7, 1.3, 21))
    sign = _SIGN.copy()
    if two_faults and rng.random() < 0.5:
        sign[[2, 3, 13]] *= -1  # second fault mode
    sensors = _BASE * factor + sign * amp * wear[:, None] + rng.normal(0, 1, (n_cycles, 21)) * _NOISE
    sensors[:, _CONSTANT] = (_BASE * factor)[:, _CONSTANT]
    return np.column_stack([np.full(n_cycles, uid), t, settings.round(4), sensors.round(4)])


def make_synthetic_cmapss(
    subset: str = "FD001", n_units: int = 20, n_test_units: int | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, test, rul) DataFrames with the 26 C-MAPSS columns (`CMAPSS_COLUMNS`) and one RUL column.

    Lifetimes 128..362 cycles (like FD001); FD002/FD004 use the 6 operating conditions and FD003/FD004
    two fault modes. Test units stop at a random cycle; `rul` row i is the true RUL of test unit i+1."""
    rng = np.random.default_rng(seed)
    multi, two = subset in ("FD002", "FD004"), subset in ("FD003", "FD004")
    n_test_units = n_units if n_test_units is None else n_test_units
    lives = np.clip(128 + rng.gamma(2.0, 38.0, n_units + n_test_units), 128, 362).astype(int)
    train = [_unit_rows(rng, u + 1, lives[u], lives[u], multi, two) for u in range(n_units)]
    test, ruls = [], []
    for u in range(n_test_units):
        life = lives[n_units + u]
        cut = int(rng.integers(max(31, int(0.35 * life)), life))
        test.append(_unit_rows(rng, u + 1, cut, life, multi, two))
        ruls.append(life - cut)
    to_df = lambda rows: pd.DataFrame(np.concatenate(rows), columns=CMAPSS_COLUMNS).astype({"unit": int, "cycle": int})
    return to_df(train), to_df(test), pd.DataFrame({"rul": np.array(ruls, dtype=int)})


def write_cmapss_text(df: pd.DataFrame, path: Path) -> None:
    """Write rows in the original layout: space separated, no header, two trailing spaces."""
    lines = [" ".join(f"{v:g}" for v in row) + "  " for row in df.to_numpy()]
    Path(path).write_text("\n".join(lines) + "\n")


def write_synthetic_cmapss(folder: Path, subset: str = "FD001", **kw) -> None:
    """train_/test_/RUL_<subset>.txt in `folder` (for tests of the file reader)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train, test, rul = make_synthetic_cmapss(subset, **kw)
    write_cmapss_text(train, folder / f"train_{subset}.txt")
    write_cmapss_text(test, folder / f"test_{subset}.txt")
    (folder / f"RUL_{subset}.txt").write_text("".join(f"{int(r)} \n" for r in rul["rul"]))


# ------------------------------------------------------------------------------------ Azure PM
AZURE_START = pd.Timestamp("2015-01-01 06:00:00")
AZURE_END = pd.Timestamp("2016-01-01 06:00:00")
COMPONENTS = ("comp1", "comp2", "comp3", "comp4")


def make_synthetic_azure(n_machines: int = 12, seed: int = 0, start=AZURE_START, end=AZURE_END) -> dict:
    """Dict of DataFrames named like the files: telemetry, errors, maint, failures, machines.

    Columns: telemetry datetime, machineID, volt, rotate, pressure, vibration (hourly);
    errors datetime, machineID, errorID; maint datetime, machineID, comp; failures datetime,
    machineID, failure; machines machineID, model, age. Failures ~ every 30 days (some with two
    components at one time); errors and telemetry drift rise in the days before each failure."""
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    machines = pd.DataFrame(
        {
            "machineID": np.arange(1, n_machines + 1),
            "model": [f"model{m}" for m in rng.integers(1, 5, n_machines)],
            "age": rng.integers(0, 21, n_machines),
        }
    )
    fail_rows, maint_rows, err_rows = [], [], []
    total_days = (end - start).days
    for mid in machines.machineID:
        day = float(rng.uniform(3, 40))
        while day < total_days - 2:
            t = start.normalize() + pd.Timedelta(days=int(day), hours=6)
            comps = rng.choice(COMPONENTS, 2 if rng.random() < 0.06 else 1, replace=False)
            for c in comps:
                fail_rows.append((t, mid, c))
                maint_rows.append((t, mid, c))
            n_err = rng.poisson(2.0)
            for _ in range(n_err):
                err_rows.append((t - pd.Timedelta(hours=int(rng.integers(1, 72))), mid, f"error{rng.integers(1, 6)}"))
            day += max(3.0, rng.exponential(32.0))
        for d in np.arange(rng.uniform(-200, 0), total_days, 45.0):  # scheduled maintenance
            maint_rows.append(
                (start.normalize() + pd.Timedelta(days=int(d), hours=6), mid, str(rng.choice(COMPONENTS)))
            )
        for h in rng.integers(0, total_days * 24, rng.poisson(30)):  # background errors
            err_rows.append((start + pd.Timedelta(hours=int(h)), mid, f"error{rng.integers(1, 6)}"))
    failures = pd.DataFrame(fail_rows, columns=["datetime", "machineID", "failure"])
    maint = (
        pd.DataFrame(maint_rows, columns=["datetime", "machineID", "comp"])
        .drop_duplicates()
        .sort_values(["machineID", "datetime"], ignore_index=True)
    )
    errors = pd.DataFrame(err_rows, columns=["datetime", "machineID", "errorID"])
    errors = errors[(errors.datetime >= start) & (errors.datetime <= end)].sort_values(
        ["machineID", "datetime"], ignore_index=True
    )
    telemetry = _telemetry_for_generated_failures(machines, failures, start, end, seed)
    return {"telemetry": telemetry, "errors": errors, "maint": maint, "failures": failures, "machines": machines}


def _telemetry_for_generated_failures(
    machines_df: pd.DataFrame, failures_df: pd.DataFrame, start=AZURE_START, end=AZURE_END, seed: int = 0
) -> pd.DataFrame:
    """Hourly telemetry (datetime, machineID, volt, rotate, pressure, vibration) from `start` to
    `end` inclusive for every machine in `machines_df`, consistent with `failures_df`, which MUST be
    the failures generated by `make_synthetic_azure` (never real ones): in the 10 days before each
    failure the channel of the failed component drifts (comp1 volt up, comp2 rotate down, comp3
    pressure up, comp4 vibration up) and vibration creeps up with time since the last failure."""
    rng = np.random.default_rng(seed + 7919)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    hours = pd.date_range(start, end, freq="h")
    h = ((hours - start) / pd.Timedelta(hours=1)).to_numpy()
    base = np.array([170.0, 450.0, 100.0, 40.0])
    noise = np.array([15.0, 50.0, 10.0, 5.0])
    drift = np.array([[30.0, 0, 0, 0], [0, -120.0, 0, 0], [0, 0, 25.0, 0], [0, 0, 0, 12.0]])
    out = []
    fail = failures_df.assign(h=(pd.to_datetime(failures_df["datetime"]) - start) / pd.Timedelta(hours=1))
    for mid in machines_df["machineID"].to_numpy():
        vals = base + rng.normal(0, 1, (len(h), 4)) * noise
        f = fail[fail.machineID == mid]
        ft = np.unique(f.h.to_numpy())
        if len(ft):
            nxt = np.searchsorted(ft, h)  # next failure at or after each hour
            has = nxt < len(ft)
            gap = np.where(has, ft[np.minimum(nxt, len(ft) - 1)] - h, np.inf)
            ramp = np.clip(1.0 - gap / 240.0, 0.0, 1.0) ** 2
            prev = np.where(nxt > 0, ft[np.maximum(nxt - 1, 0)], -1e9)
            since = np.clip(h - prev, 0, 24 * 120) / 24.0
            vals[:, 3] += 0.05 * since
            for comp_i, comp in enumerate(COMPONENTS):
                ct = np.unique(f.h[f.failure == comp].to_numpy())
                if not len(ct):
                    continue
                k = np.searchsorted(ct, h)
                g = np.where(k < len(ct), ct[np.minimum(k, len(ct) - 1)] - h, np.inf)
                vals += (np.clip(1.0 - g / 240.0, 0.0, 1.0) ** 2)[:, None] * drift[comp_i]
            vals[:, 3] += 2.0 * ramp
        out.append(
            pd.DataFrame(
                {
                    "datetime": hours,
                    "machineID": mid,
                    "volt": vals[:, 0],
                    "rotate": vals[:, 1],
                    "pressure": vals[:, 2],
                    "vibration": vals[:, 3],
                }
            )
        )
    return pd.concat(out, ignore_index=True)
