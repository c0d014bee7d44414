"""C-MAPSS turbofan (FD001-FD004): reading, unit split, scaling, windows.

Raw layout: 26 whitespace-separated numbers per row: unit, cycle, setting1-3, sensor1-21.
Files `train_FD00x.txt`, `test_FD00x.txt`, `RUL_FD00x.txt` (plain or .gz) in `<data_dir>/cmapss/`.
When `train_FD00x.txt` is absent but a PHM08 challenge `train.txt` (same 26 columns) is there, it is
used as the training file; `test.txt` without a RUL file gives no benchmark (benchmark=None).

Preprocessing (all statistics on TRAIN-split units only):
  - FD002/FD004: operating condition = (round(setting1), round(setting2, 2), round(setting3)) -> exactly 6
    conditions on the real files; each sensor is z-scored per condition.
  - constant channels dropped: sensors whose within-condition std is below 0.025 raw units on the
    training units (only quantisation noise; leaves the usual 14 sensors 2,3,4,7,8,9,11,12,13,14,15,17,
    20,21 on all four real subsets). Settings are not features.
  - min-max to [-1, 1] fitted on training units (val/test/benchmark may fall outside).
  - `age_input`: one more channel, `cycle` (the cycle index of the row, column 2 of the file), min-max
    scaled like the sensors on the training units' cycles (the literature's models do not use it).
Labels: training-file units run to failure: l = T - t; censored = l >= pred_horizon; rul = l.
Benchmark: last window of each test unit, rul = RUL file line i, event_index = rul,
censored = rul >= pred_horizon.
Test split (`test_split`):
  held-out  `test_fraction` of the training-file units (default).
  official  the literature's protocol: every training-file unit trains or validates (`val_fraction`
            of them validate, split by unit), and `test` is every window of every official test unit,
            labelled with its true RUL: l = RUL_i + (T_i - t) at cycle t of a unit last seen at T_i
            (the RUL file gives l at T_i; the unit keeps running after its last observed cycle).
"""

from __future__ import annotations

import numpy as np

from ddrsa.errors import DataError

from .windows import make_windows, run_to_failure_labels

N_COLUMNS = 26
SENSOR_NAMES = [f"sensor_{i}" for i in range(1, 22)]
CONSTANT_STD = 0.025


def condition_keys(settings: np.ndarray) -> np.ndarray:
    """(n, 3) settings -> (n, 3) rounded keys identifying the operating condition."""
    return np.column_stack([settings[:, 0].round(0), settings[:, 1].round(2), settings[:, 2].round(0)]) + 0.0


def split_units(units: np.ndarray, test_fraction: float, val_fraction: float, seed: int) -> dict:
    """Disjoint {"train","val","test"} arrays of unit ids (sorted), split at random by `seed`.
    test_fraction 0 holds out no test unit (`test` empty; the official C-MAPSS protocol)."""
    units = np.unique(units)
    n = len(units)
    if n < 3:
        raise DataError(f"need at least 3 units/machines to split, got {n}")
    perm = np.random.default_rng(seed).permutation(units)
    n_test = 0 if test_fraction == 0 else min(max(1, int(round(test_fraction * n))), n - 2)
    n_val = min(max(1, int(round(val_fraction * (n - n_test)))), n - n_test - 1)
    return {
        "test": np.sort(perm[:n_test]),
        "val": np.sort(perm[n_test : n_test + n_val]),
        "train": np.sort(perm[n_test + n_val :]),
    }


def check_table(arr: np.ndarray, path) -> None:
    """Units and cycles must be positive integers, cycles increasing within each unit."""
    if len(arr) == 0:
        raise DataError(f"{path}: no rows")
    u, c = arr[:, 0], arr[:, 1]
    if (u != np.round(u)).any() or (c != np.round(c)).any() or (u < 1).any():
        raise DataError(f"{path}: unit and cycle (columns 1-2) must be positive integers")
    same = u[1:] == u[:-1]
    if (same & (c[1:] <= c[:-1])).any():
        i = int(np.flatnonzero(same & (c[1:] <= c[:-1]))[0]) + 2
        raise DataError(f"{path}: line {i}: cycles of a unit must increase")


class CmapssPreprocessor:
    """Fitted on training rows; `transform` maps raw (n, 26) rows to float32 (n, F) features."""

    def __init__(self, subset: str, age_input: bool = False):
        self.multi = subset in ("FD002", "FD004")
        self.age_input = age_input

    def _cond(self, rows: np.ndarray) -> np.ndarray:
        keys = condition_keys(rows[:, 2:5])
        idx = np.full(len(rows), -1)
        for i, k in enumerate(self.cond_keys):
            idx[(keys == k).all(1)] = i
        if (idx < 0).any():  # unseen condition: nearest known one
            miss = idx < 0
            d = ((keys[miss, None, :] - self.cond_keys[None]) ** 2).sum(-1)
            idx[miss] = d.argmin(1)
        return idx

    def fit(self, rows: np.ndarray) -> CmapssPreprocessor:
        sens = rows[:, 5:]
        self.cond_keys = np.unique(condition_keys(rows[:, 2:5]), axis=0) if self.multi else np.zeros((1, 3))
        cond = self._cond(rows) if self.multi else np.zeros(len(rows), int)
        self.mu = np.stack([sens[cond == c].mean(0) for c in range(len(self.cond_keys))])
        self.sd = np.stack([sens[cond == c].std(0) for c in range(len(self.cond_keys))])
        self.keep = np.flatnonzero(self.sd.max(0) >= CONSTANT_STD)
        z = self._norm(rows)
        self.lo, self.hi = z.min(0), z.max(0)
        return self

    def _norm(self, rows):
        sens = rows[:, 5:][:, self.keep]
        if self.multi:
            cond = self._cond(rows)
            sens = (sens - self.mu[cond][:, self.keep]) / self.sd[cond][:, self.keep].clip(1e-8)
        return np.column_stack([sens, rows[:, 1]]) if self.age_input else sens

    def transform(self, rows: np.ndarray) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return (2.0 * (self._norm(rows) - self.lo) / span - 1.0).astype(np.float32)

    @property
    def feature_names(self) -> list[str]:
        return [SENSOR_NAMES[i] for i in self.keep] + (["cycle"] if self.age_input else [])


def _per_unit(rows: np.ndarray, feats: np.ndarray, units: np.ndarray):
    """Split rows by unit id (rows are grouped by unit and ordered by cycle)."""
    uid = rows[:, 0].astype(np.int64)
    order = np.argsort(uid, kind="stable")
    uid, feats = uid[order], feats[order]
    bounds = np.searchsorted(uid, units), np.searchsorted(uid, units, side="right")
    return [feats[a:b] for a, b in zip(*bounds)]


def prepare_cmapss(
    train_rows: np.ndarray,
    test_rows: np.ndarray | None,
    rul: np.ndarray | None,
    subset: str,
    lookback: int,
    pred_horizon: int,
    split_seed: int,
    test_fraction: float,
    val_fraction: float,
    window_stride: int = 1,
    max_units: int | None = None,
    test_split: str = "held-out",
    age_input: bool = False,
) -> dict:
    """Raw float (n, 26) training/test rows + RUL (n_test_units,) -> dict of windows and metadata.

    test_split "official": `test` = the official test units (see the module docstring); their ids
    are listed under split_units["test"] (ids of test_FD00x, not of train_FD00x)."""
    official = test_split == "official"
    if official and (test_rows is None or rul is None):
        raise DataError(f"test_split 'official' needs test_{subset}.txt and RUL_{subset}.txt")
    units = np.unique(train_rows[:, 0].astype(np.int64))
    if max_units is not None:
        units = units[:max_units]
        train_rows = train_rows[np.isin(train_rows[:, 0].astype(np.int64), units)]
    split = split_units(units, 0.0 if official else test_fraction, val_fraction, split_seed)
    pre = CmapssPreprocessor(subset, age_input).fit(train_rows[np.isin(train_rows[:, 0], split["train"])])
    feats = pre.transform(train_rows)
    out = {"feature_names": pre.feature_names, "split_units": split, "n_conditions": len(pre.cond_keys)}
    for part, us in split.items():
        if official and part == "test":
            continue
        per = _per_unit(train_rows, feats, us)
        labels = [run_to_failure_labels(len(f), pred_horizon) for f in per]
        out[part] = make_windows(
            list(us),
            per,
            [a for a, _, _ in labels],
            [b for _, b, _ in labels],
            [c for _, _, c in labels],
            lookback,
            window_stride,
            feature_names=pre.feature_names,
        )
    out["benchmark"] = None
    if test_rows is not None and rul is not None:
        tunits = np.unique(test_rows[:, 0].astype(np.int64))
        if len(tunits) != len(rul):
            raise DataError(f"RUL_{subset}: {len(rul)} values for {len(tunits)} test units")
        per = _per_unit(test_rows, pre.transform(test_rows), tunits)
        r = np.asarray(rul, np.int64)
        if official:
            ev = [v + np.arange(len(f) - 1, -1, -1, dtype=np.int64) for f, v in zip(per, r)]
            out["test"] = make_windows(
                list(tunits),
                per,
                ev,
                [e >= pred_horizon for e in ev],
                [e.astype(np.float32) for e in ev],
                lookback,
                window_stride,
                feature_names=pre.feature_names,
            )
            split["test"] = tunits
        out["benchmark"] = make_windows(
            list(tunits),
            per,
            [np.full(len(f), v) for f, v in zip(per, r)],
            [np.full(len(f), v >= pred_horizon) for f, v in zip(per, r)],
            [np.full(len(f), float(v)) for f, v in zip(per, r)],
            lookback,
            last_only=True,
            feature_names=pre.feature_names,
        )
    return out
