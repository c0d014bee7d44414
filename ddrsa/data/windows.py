"""Sliding survival windows over per-unit sequences (see docs/CONTRACTS.md).

Storage is compact: every unit's covariates are stored once in a flat float32 array
`data` (R, F) with K-1 zero rows in front of each unit, and window i is the K rows ending at
row `end[i]`. `x` (N, K, F) is built on demand (it can be large: FD004 at K=128 is ~0.6 GB
dense), so trainers should prefer `batch(idx)` or `row_index(idx)` + `data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(init=False, eq=False)
class SurvivalWindows:
    """N windows of K steps and F features with survival labels.

    Attributes (all read-only numpy arrays):
      event_index int64 (N,)  l = steps until the event, or the censoring index when censored
      censored    bool  (N,)
      rul         float32 (N,) true steps to event when known, else censoring time
      unit        int64 (N,)  unit / machine id
      data        float32 (R, F) flat per-unit storage (zero rows = padding)
      valid       bool (R,)  True on real observations
      end         int64 (N,) row of `data` holding the last (most recent) step of window i
      step        int64 (N,) index of that last step within its unit's sequence (0 = the unit's first
                  step; C-MAPSS: cycle - 1). Dense construction without `step`: the window's valid
                  steps - 1 (exact for histories shorter than K, a lower bound otherwise)
      lookback    int K
    Properties `x` float32 (N, K, F) and `mask` bool (N, K) are materialised on each access.
    """

    event_index: np.ndarray
    censored: np.ndarray
    rul: np.ndarray
    unit: np.ndarray
    data: np.ndarray
    valid: np.ndarray
    end: np.ndarray
    step: np.ndarray
    lookback: int
    feature_names: list = field(default_factory=list)

    def __init__(
        self,
        x=None,
        mask=None,
        event_index=None,
        censored=None,
        rul=None,
        unit=None,
        *,
        data=None,
        valid=None,
        end=None,
        lookback=None,
        feature_names=None,
        step=None,
    ):
        """Either dense `x` (N, K, F) + `mask` (N, K) as in the contract, or flat storage
        `data`/`valid`/`end`/`lookback` (used by `make_windows`)."""
        if x is not None:
            x = np.asarray(x, dtype=np.float32)
            n, k, f = x.shape
            mask = np.ones((n, k), bool) if mask is None else np.asarray(mask, bool)
            data, valid = x.reshape(n * k, f), mask.reshape(n * k)
            end, lookback = np.arange(n, dtype=np.int64) * k + (k - 1), k
        if data is None or end is None or lookback is None:
            raise ValueError("SurvivalWindows needs x (and mask) or data/valid/end/lookback")
        self.data = _readonly(np.asarray(data, np.float32))
        self.valid = _readonly(np.ones(len(self.data), bool) if valid is None else np.asarray(valid, bool))
        self.end = _readonly(np.asarray(end, np.int64))
        self.lookback = int(lookback)
        n = len(self.end)
        self.event_index = _readonly(np.asarray(event_index, np.int64).reshape(n))
        self.censored = _readonly(np.asarray(censored, bool).reshape(n))
        self.rul = _readonly(np.asarray(rul, np.float32).reshape(n))
        self.unit = _readonly(np.asarray(unit, np.int64).reshape(n))
        self.feature_names = list(feature_names or [])
        if n and (self.end.min() < self.lookback - 1 or self.end.max() >= len(self.data)):
            raise ValueError("window end rows out of range of data")
        if step is None:
            step = self.valid[self.row_index()].sum(axis=1) - 1 if n else np.zeros(0, np.int64)
        self.step = _readonly(np.asarray(step, np.int64).reshape(n))

    def __len__(self) -> int:
        return len(self.end)

    def __repr__(self) -> str:
        return (
            f"SurvivalWindows(n={len(self)}, K={self.lookback}, F={self.n_features}, "
            f"units={len(np.unique(self.unit))}, censored={int(self.censored.sum())})"
        )

    @property
    def n_features(self) -> int:
        return int(self.data.shape[1])

    def row_index(self, idx=None) -> np.ndarray:
        """int64 (B, K) rows of `data` for windows `idx` (all when None), oldest step first.
        With a torch copy of `data` on the GPU: `x = data_t[torch.from_numpy(rows)]`."""
        end = self.end if idx is None else self.end[np.asarray(idx)]
        return end[:, None] + np.arange(-self.lookback + 1, 1, dtype=np.int64)[None, :]

    def batch(self, idx) -> tuple[np.ndarray, np.ndarray]:
        """(x float32 (B, K, F), mask bool (B, K)) for window indices `idx` (new, writable arrays)."""
        rows = self.row_index(idx)
        return self.data[rows], self.valid[rows]

    @property
    def x(self) -> np.ndarray:
        """float32 (N, K, F), zero-padded at the front; N*K*F*4 bytes, built on each access."""
        return self.data[self.row_index()]

    @property
    def mask(self) -> np.ndarray:
        """bool (N, K): True on real observations, False on front padding."""
        return self.valid[self.row_index()]

    @property
    def nbytes_dense(self) -> int:
        """Bytes `x` would take dense (N*K*F*4)."""
        return len(self) * self.lookback * self.n_features * 4

    def subset(self, idx) -> SurvivalWindows:
        """Windows `idx` (int indices or bool mask); shares the flat storage."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return SurvivalWindows(
            event_index=self.event_index[idx],
            censored=self.censored[idx],
            rul=self.rul[idx],
            unit=self.unit[idx],
            data=self.data,
            valid=self.valid,
            end=self.end[idx],
            lookback=self.lookback,
            feature_names=self.feature_names,
            step=self.step[idx],
        )


def make_windows(
    units: list,
    features: list,
    event_index: list,
    censored: list,
    rul: list,
    lookback: int,
    stride: int = 1,
    last_only: bool = False,
    feature_names=None,
) -> SurvivalWindows:
    """Windows ending at every step of every unit.

    units: unit ids; features[u]: float (T_u, F) covariates in time order; event_index[u] int (T_u,),
    censored[u] bool (T_u,), rul[u] float (T_u,) labels of the window ending at each step.
    stride: keep every `stride`-th window counted back from each unit's LAST step (so the last
    window of a unit is always kept). last_only: only the last window of each unit (benchmark).
    Steps before the start of a unit are zero rows with mask False.
    """
    k = int(lookback)
    n_feat = features[0].shape[1] if features else 0
    blocks, valids, ends, ev, ce, ru, un, st = [], [], [], [], [], [], [], []
    offset = 0
    for uid, feat, e, c, r in zip(units, features, event_index, censored, rul):
        feat = np.asarray(feat, np.float32)
        t = len(feat)
        if t == 0:
            continue
        blocks += [np.zeros((k - 1, n_feat), np.float32), feat]
        valids += [np.zeros(k - 1, bool), np.ones(t, bool)]
        steps = np.array([t - 1]) if last_only else np.arange(t - 1, -1, -int(stride))[::-1]
        ends.append(offset + (k - 1) + steps)
        ev.append(np.asarray(e)[steps])
        ce.append(np.asarray(c)[steps])
        ru.append(np.asarray(r)[steps])
        un.append(np.full(len(steps), uid, np.int64))
        st.append(steps)
        offset += k - 1 + t
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)
    data = np.concatenate(blocks) if blocks else np.zeros((0, n_feat), np.float32)
    return SurvivalWindows(
        event_index=cat(ev, np.int64),
        censored=cat(ce, bool),
        rul=cat(ru, np.float32),
        unit=cat(un, np.int64),
        data=data,
        valid=cat(valids, bool),
        end=cat(ends, np.int64),
        lookback=k,
        feature_names=feature_names,
        step=cat(st, np.int64),
    )


def run_to_failure_labels(t: int, pred_horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels for a unit observed until its event at its last step (C-MAPSS training units):
    l = T - t (0 at the last step), censored = l >= pred_horizon, rul = l."""
    ev = np.arange(t - 1, -1, -1, dtype=np.int64)
    return ev, ev >= pred_horizon, ev.astype(np.float32)


@dataclass
class PreparedData:
    """Everything a trainer needs; see docs/CONTRACTS.md.

    data_source: "real" | "synthetic" | "real-no-telemetry" (Azure: the 4 real event files without
    PdM_telemetry.csv, real non-telemetry signals only; nothing generated)."""

    train: SurvivalWindows
    val: SurvivalWindows
    test: SurvivalWindows
    benchmark: SurvivalWindows | None
    feature_names: list[str]
    data_source: str
    data_version: str
    n_units: dict[str, int]
    info: dict = field(default_factory=dict)
