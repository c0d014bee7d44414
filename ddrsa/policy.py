"""When to intervene: the OTI policy of DDRSA, two heuristic policies, per-unit evaluation (numpy).

The decision problem (Damera Venkata & Bhattacharyya, NeurIPS 2022, stated without their notation)
--------------------------------------------------------------------------------------------------
A unit is observed at steps j = 0, 1, 2, ...; its event happens at step T. At each step, after
seeing that step's features, we either intervene (once; the unit's story ends) or wait. Intervening
at step tau costs the life thrown away, T - tau steps, when T > tau; when the event comes first or
in that very step (T <= tau: the step's features already hold it, "lag 0") it is a miss, cost C.
Minimise the expected cost: E[(T - tau) 1{T > tau}] + C P(T <= tau). C is the Lagrange multiplier
of the paper's form "least expected residual time subject to P(miss) <= alpha": each C gives one
point (miss rate, time left) of the trade-off curve.

The OTI decision at step j from the hazards h_j(0..L-1)
-------------------------------------------------------
Let l = T - j (the event index of the window ending at j) and S(k) = P(l > k | history to j) =
prod_{m<=k} (1 - h_j(m)), k = 0..L-1 (ddrsa.metrics.survival_from_logits). The plan "wait v more
steps, then intervene" (v = 0: now) costs, with what is known at j,
    g(v) = C P(l <= v) + E[(l - v)^+] = C (1 - S(v)) + sum_{k>=v} S(k).
Against intervening now the tail sum cancels for every v <= L-1:
    g(v) - g(0) = C (S(0) - S(v)) - sum_{k=0}^{v-1} S(k)
(waiting v steps buys sum_{k<v} S(k) expected steps of life and adds S(0) - S(v) miss probability;
h_j(0), an event in the current step, is a miss whatever we do and drops out). OTI intervenes at j
when no plan within the horizon beats intervening now: g(0) <= g(v) for v = 1..L-1, i.e.
    C >= c*(j) = max_{v=1..L-1} sum_{k<v} S(k) / (S(0) - S(v))            (`oti_threshold`)
(a ratio with a zero denominator and a positive numerator is +inf: waiting is free of risk; ties
intervene). c*(j) is the smallest miss cost at which intervening now is optimal, so one number per
window gives the decision at every C.
- Discretisation: time is the data's step (a cycle, or a down-sampled Azure row); an event inside
  the step of the intervention is a miss; the time left is counted in whole steps, T - tau >= 1.
- Horizon edge: the model says nothing past L (mass S(L-1) beyond it, spread how it likes). The
  comparison above needs none of it: g(v) - g(0) only uses S(0..v), so the tail beyond L cancels
  exactly; what the horizon limits is the set of plans, waiting at most L-1 steps. A unit whose
  hazards put little mass inside the horizon (c* = +inf when S(0) = S(L-1)) never fires.
- Why this is optimal: stopping now is optimal only if it beats every open-loop plan, so the
  closed-loop optimum never intervenes where OTI waits. When the hazard process is Markov and
  monotone (the paper's setting: the health state only degrades and worse states fail more often),
  the set {C h_j(1) >= 1} where intervening beats waiting one step is closed under the dynamics,
  the one-step look-ahead rule is optimal (the "monotone case" of optimal stopping), and OTI
  (whose first condition, v = 1, is exactly C h_j(1) >= 1) equals it. tests/test_policy.py checks
  this against value iteration on such chains, and shows a non-monotone chain where they differ.
  The paper writes its policy as 1{T_j <= V'_j}: intervene when the expected time to event is at
  most a threshold computed from h_j and C (its Corollary 4.1.1 and Eq. 9; only the abstract was
  available here). The original system's notes transcribed V'_j = inf{v : v >= E[min(T-j, L) -
  C 1{T-j < v}]}, and a public reimplementation computes V' from batch-averaged hazards with a miss
  rate that does not depend on C; neither is used: the dynamic program is the reference here.

Heuristics (the usual practice the paper compares against)
----------------------------------------------------------
- `tte`: intervene when the predicted expected time E[min(l, L)] = sum_k S(k) falls to a threshold
  theta (steps) or below.
- `window`: intervene when P(event within w steps) = P(l < w) = 1 - S(w-1) reaches a threshold p.
Each policy is a score per window that fires when score <= threshold (OTI: c*(j) <= C; tte: E <= theta;
window: -P <= -p), so one code path (`evaluate_scores`) walks every policy.

Per-unit evaluation (`evaluate_policy`, `evaluate_scores`)
----------------------------------------------------------
A policy acts once per unit, at the FIRST window (in time) where it fires; windows after that are
never looked at. Windows are grouped into sequences (`sequences`): one unit's windows with the same
end point j + rul, so an Azure machine with several failures gives one sequence per inter-failure
segment (the policy starts afresh after each failure). A sequence ends in an observed failure when
any of its windows is uncensored (an event seen inside the horizon); otherwise it is censored (Azure
after a machine's last failure; with window_stride >= L an event segment whose kept windows are all
beyond the horizon is also counted censored, the conservative side). For a failure sequence:
  - fires at tau with rul(tau) = T - tau >= 1: caught, time left T - tau steps;
  - fires at a window with rul = 0 (lag 0) or never fires before the event: a miss.
For a censored sequence any firing is a false alarm (no failure was observed to justify it); it is
never a catch, and a censored sequence enters neither the miss rate's denominator nor the time left.
So: miss_rate = misses / failure sequences; mean_tte / median_tte over caught failure sequences
(NaN when none); false_alarms = censored sequences where it fired (out of n_censored).
Only run-to-failure data can be scored: the C-MAPSS held-out split, Azure PM segments; never the
official C-MAPSS test units (their records stop before the failure, so "never fired" cannot be
told from "would have fired later"). With `window_stride` > 1 the policy sees only the kept
windows: it is a policy that inspects every stride-th step (the last step is always kept).

Bugs put in to see tests/test_policy.py fail (each failed, then was removed; failing tests of 61):
  - a unit judged by its LAST firing window instead of its first (windows not walked in time): 6;
  - an event at lag 0 counted as a catch (time left >= 0 instead of >= 1): 4;
  - the OTI ratio with S(v+1) in place of S(v) (off by one step in the plan): 16;
  - a censored sequence's firing counted as a catch: 2;
  - ties (C == c*) waiting instead of intervening: 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddrsa.metrics import VAL_PREFIX

# The costs of a miss written into every test_metrics.json (the original system's keys).
OTI_COSTS = (8, 16, 32, 64, 128, 256)
POLICIES = ("oti", "tte", "window")


def oti_miss_key(cost: float) -> str:
    """Record key of the OTI miss rate at miss cost C: 'oti_miss_rate_C8'."""
    return f"oti_miss_rate_C{cost:g}"


def oti_tte_key(cost: float) -> str:
    """Record key of the OTI mean time left (steps, caught units) at miss cost C: 'oti_avg_tte_C8'."""
    return f"oti_avg_tte_C{cost:g}"


OTI_N_FAILURES = "oti_n_failures"  # failure sequences the miss rates are over
OTI_N_CENSORED = "oti_n_censored"  # censored sequences (their firings are false alarms)
OTI_METRIC_KEYS = tuple(k for c in OTI_COSTS for k in (oti_miss_key(c), oti_tte_key(c)))


# ------------------------------------------------------------------------------------- decisions
def oti_threshold(survival: np.ndarray) -> np.ndarray:
    """c*(j): the least miss cost C at which OTI intervenes at window j (see the module docstring).

    survival (N, L) S(k) = P(l > k), L >= 2 -> float64 (N,) in [0, inf]; intervene iff C >= c*."""
    s = np.asarray(survival, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError("survival must be (N, L) with L >= 2")
    gain = np.cumsum(s, axis=1)[:, :-1]  # v = 1..L-1: sum_{k<v} S(k)
    risk = s[:, :1] - s[:, 1:]  # S(0) - S(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(risk > 0, gain / np.where(risk > 0, risk, 1.0), np.where(gain > 0, np.inf, 0.0))
    return ratio.max(axis=1)


def expected_tte(survival: np.ndarray) -> np.ndarray:
    """E[min(l, L)] = sum_k S(k), steps. (N, L) -> (N,) (same as ddrsa.metrics.expected_time)."""
    return np.asarray(survival, dtype=np.float64).sum(axis=1)


def window_probability(survival: np.ndarray, w: int) -> np.ndarray:
    """P(l < w) = 1 - S(w-1): the event in this step or the next w-1. (N, L), 1 <= w <= L -> (N,)."""
    s = np.asarray(survival, dtype=np.float64)
    if not 1 <= w <= s.shape[1]:
        raise ValueError(f"window w={w} must be in 1..{s.shape[1]}")
    return 1.0 - s[:, w - 1]


def default_window(horizon: int) -> int:
    """The `window` heuristic's w when none is given: a quarter of the horizon (16 at L = 64)."""
    return max(1, horizon // 4)


def policy_scores(survival: np.ndarray, policy: str, window: int | None = None) -> np.ndarray:
    """Per-window score that fires when score <= threshold (thresholds in `policy_thresholds` units
    through `score_threshold`). oti: c*; tte: E[min(l, L)]; window: -P(l < w)."""
    if policy == "oti":
        return oti_threshold(survival)
    if policy == "tte":
        return expected_tte(survival)
    if policy == "window":
        return -window_probability(survival, window or default_window(np.shape(survival)[1]))
    raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")


def score_threshold(policy: str, value: float) -> float:
    """A policy's natural threshold (C; theta steps; probability p) -> the score threshold."""
    return -float(value) if policy == "window" else float(value)


def policy_grid(policy: str, horizon: int) -> np.ndarray:
    """The thresholds that trace a policy's trade-off curve: C from 1 to 4096 (log-spaced), theta
    from 0 to L steps (quarter steps), p from 0.01 to 0.99 and on to 1 - 1e-6 (log-spaced gaps)."""
    if policy == "oti":
        return np.unique(np.round(np.concatenate([np.geomspace(1.0, 4096.0, 49), OTI_COSTS]), 9))
    if policy == "tte":
        return np.linspace(0.0, float(horizon), 4 * horizon + 1)
    if policy == "window":  # and up to 1 - 1e-6: near the failure P(l < w) is within 1e-3 of 1
        return np.unique(np.round(np.r_[np.linspace(0.01, 0.99, 99), 1.0 - np.geomspace(1e-6, 1e-2, 13)], 12))
    raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")


# ------------------------------------------------------------------------------------- sequences
@dataclass(frozen=True)
class Sequences:
    """Windows grouped into per-unit sequences in time order.

    order  int64 (N,)   window indices, sorted by sequence then time
    bounds int64 (M+1,) sequence m is order[bounds[m]:bounds[m+1]]
    failed bool  (M,)   the sequence ends in an observed failure
    unit   int64 (M,)   its unit id
    rul    float64 (N,) true steps to the event (failure sequences) of each window, input order
    """

    order: np.ndarray
    bounds: np.ndarray
    failed: np.ndarray
    unit: np.ndarray
    rul: np.ndarray

    def __len__(self) -> int:
        return len(self.failed)


def sequences(unit, step, rul, censored) -> Sequences:
    """Group windows (N,) into sequences. unit: unit id; step: any int increasing with time within a
    unit (SurvivalWindows.end: rows are contiguous per unit, so differences are steps); rul: true
    steps to the event or the record end (SurvivalWindows.rul); censored: the window's label."""
    unit = np.asarray(unit, np.int64)
    step = np.asarray(step, np.int64)
    rul = np.asarray(rul, np.float64)
    censored = np.asarray(censored, bool)
    if not (len(unit) == len(step) == len(rul) == len(censored)):
        raise ValueError("unit, step, rul and censored must have one value per window")
    endpoint = step + np.rint(rul).astype(np.int64)  # event (or record end) row of each window
    order = np.lexsort((step, endpoint, unit))
    u, e = unit[order], endpoint[order]
    starts = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (e[1:] != e[:-1])]) if len(order) else np.zeros(0, np.int64)
    bounds = np.r_[starts, len(order)].astype(np.int64)
    failed = np.logical_or.reduceat(~censored[order], starts) if len(order) else np.zeros(0, bool)
    return Sequences(order=order, bounds=bounds, failed=failed, unit=u[starts] if len(order) else u, rul=rul)


def first_firing(fire: np.ndarray, seqs: Sequences) -> np.ndarray:
    """Window index of each sequence's first firing (time order), -1 where it never fires.
    fire bool (N,) or (G, N) -> int64 (M,) or (G, M)."""
    fire = np.asarray(fire, bool)
    single = fire.ndim == 1
    f = fire[None] if single else fire
    if not len(seqs):
        out = np.zeros((len(f), 0), np.int64)
        return out[0] if single else out
    fo = f[:, seqs.order]
    pos = np.arange(fo.shape[1])
    first = np.minimum.reduceat(np.where(fo, pos, fo.shape[1]), seqs.bounds[:-1], axis=1)
    fired = first < seqs.bounds[1:]
    out = np.where(fired, seqs.order[np.minimum(first, fo.shape[1] - 1)], -1)
    return out[0] if single else out


# ------------------------------------------------------------------------------------- evaluation
def outcome(first: np.ndarray, seqs: Sequences) -> dict:
    """Per-sequence outcome of first firings (M,) (or (G, M)): caught, missed, false_alarm (bool)
    and time_left (float, T - tau where caught, else NaN)."""
    first = np.asarray(first, np.int64)
    fired = first >= 0
    left = np.where(fired, seqs.rul[np.maximum(first, 0)], np.nan)
    caught = seqs.failed & fired & (left >= 1)
    return {
        "caught": caught,
        "missed": seqs.failed & ~caught,
        "false_alarm": ~seqs.failed & fired,
        "time_left": np.where(caught, left, np.nan),
    }


def summarise(out: dict, seqs: Sequences) -> dict:
    """Figures of one policy at one threshold: miss_rate, mean_tte, median_tte (steps, caught),
    n_caught, n_missed, false_alarms, n_failures, n_censored (see the module docstring)."""
    n_fail = int(seqs.failed.sum())
    left = out["time_left"][out["caught"]]
    return {
        "miss_rate": float(out["missed"].sum() / n_fail) if n_fail else float("nan"),
        "mean_tte": float(left.mean()) if len(left) else float("nan"),
        "median_tte": float(np.median(left)) if len(left) else float("nan"),
        "n_caught": int(out["caught"].sum()),
        "n_missed": int(out["missed"].sum()),
        "false_alarms": int(out["false_alarm"].sum()),
        "n_failures": n_fail,
        "n_censored": int((~seqs.failed).sum()),
    }


def evaluate_scores(score: np.ndarray, thresholds, seqs: Sequences) -> list[dict]:
    """One `summarise` dict per score threshold t (fires where score <= t), plus its `threshold`."""
    score = np.asarray(score, np.float64)
    ts = np.atleast_1d(np.asarray(thresholds, np.float64))
    firsts = first_firing(score[None, :] <= ts[:, None], seqs)
    rows = []
    for t, first in zip(ts, firsts):
        rows.append(dict(summarise(outcome(first, seqs), seqs), threshold=float(t)))
    return rows


def evaluate_policy(
    survival: np.ndarray, seqs: Sequences, policy: str = "oti", thresholds=None, window: int | None = None
) -> list[dict]:
    """The trade-off curve of one policy on held-out windows: one dict per threshold (natural units:
    C, theta steps or p; `policy_grid` when None) with `policy`, `threshold` and the figures of
    `summarise`. survival (N, L) S(k) of each window, aligned with the arrays `seqs` was built from."""
    values = policy_grid(policy, np.shape(survival)[1]) if thresholds is None else np.atleast_1d(thresholds)
    score = policy_scores(survival, policy, window)
    rows = evaluate_scores(score, [score_threshold(policy, v) for v in values], seqs)
    for row, v in zip(rows, values):
        row.update(policy=policy, threshold=float(v))
    return rows


def trade_off(survival: np.ndarray, seqs: Sequences, window: int | None = None) -> list[dict]:
    """Every policy's curve (`evaluate_policy` over `policy_grid`), one list of dicts."""
    return [row for p in POLICIES for row in evaluate_policy(survival, seqs, p, window=window)]


def oti_metrics(survival: np.ndarray, seqs: Sequences, prefix: str = "") -> dict:
    """The record's OTI figures: `oti_miss_rate_C{c}`, `oti_avg_tte_C{c}` for c in OTI_COSTS, plus
    oti_n_failures and oti_n_censored; each key with `prefix` (e.g. 'val_')."""
    rows = evaluate_policy(survival, seqs, "oti", OTI_COSTS)
    out = {}
    for c, row in zip(OTI_COSTS, rows):
        out[prefix + oti_miss_key(c)] = row["miss_rate"]
        out[prefix + oti_tte_key(c)] = row["mean_tte"]
    out[prefix + OTI_N_FAILURES] = int(seqs.failed.sum())
    out[prefix + OTI_N_CENSORED] = int((~seqs.failed).sum())
    return out


def windows_sequences(windows) -> Sequences:
    """`sequences` of a SurvivalWindows (unit, end, rul, censored)."""
    return sequences(windows.unit, windows.end, windows.rul, windows.censored)


def choose_cost(miss_rates: dict, alpha: float) -> float | None:
    """The cost C whose miss rate is closest to the target `alpha` ({C: miss rate}, NaN skipped;
    ties: the larger C, fewer misses). None when no rate is defined."""
    best = None
    for c in sorted(miss_rates):
        m = miss_rates[c]
        if m is None or not np.isfinite(m):
            continue
        if best is None or abs(m - alpha) <= abs(miss_rates[best] - alpha):
            best = c
    return best


def policy_metrics(survival: np.ndarray, windows, prefix: str = "") -> dict:
    """`oti_metrics` of the windows (a SurvivalWindows of run-to-failure units) and their S (N, L)."""
    return oti_metrics(survival, windows_sequences(windows), prefix)


# ------------------------------------------------------------------------------------- selection
# The `intervention` criterion (reports/tables.py CRITERIA, the search objective): derived from a
# record's oti_* keys at analysis time for a target miss rate alpha (`--miss-rate`, SweepSpec).
DEFAULT_MISS_RATE = 0.05
INTERVENTION_TTE = "intervention_tte"  # steps, lower is better (ranked on its val_ value)
INTERVENTION_MISS_RATE = "intervention_miss_rate"
INTERVENTION_COST = "intervention_cost"  # the C chosen on validation
INTERVENTION_KEYS = (INTERVENTION_TTE, INTERVENTION_MISS_RATE)


def intervention_metrics(metrics: dict, alpha: float = DEFAULT_MISS_RATE) -> dict:
    """The run's operating point chosen on validation: C in OTI_COSTS whose val_oti miss rate is
    closest to `alpha` (`choose_cost`), and at that C the test and validation mean time left
    (`intervention_tte`, `val_intervention_tte`) and miss rates. NaN everywhere when the record has
    no val_oti_* keys; test values NaN when it has no test oti_* keys (official C-MAPSS test)."""
    nan = float("nan")
    rates = {c: metrics.get(VAL_PREFIX + oti_miss_key(c)) for c in OTI_COSTS}
    c = choose_cost({k: v for k, v in rates.items() if isinstance(v, (int, float))}, alpha)
    keys = (INTERVENTION_TTE, INTERVENTION_MISS_RATE)
    out = {INTERVENTION_COST: nan, **{k: nan for k in keys}, **{VAL_PREFIX + k: nan for k in keys}}
    if c is None:
        return out

    def num(key):
        v = metrics.get(key)
        return float(v) if isinstance(v, (int, float)) else nan

    out.update(
        {
            INTERVENTION_COST: float(c),
            INTERVENTION_TTE: num(oti_tte_key(c)),
            INTERVENTION_MISS_RATE: num(oti_miss_key(c)),
            VAL_PREFIX + INTERVENTION_TTE: num(VAL_PREFIX + oti_tte_key(c)),
            VAL_PREFIX + INTERVENTION_MISS_RATE: num(VAL_PREFIX + oti_miss_key(c)),
        }
    )
    return out
