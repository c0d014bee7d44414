"""Score a fleet with a model package: `python -m ddrsa.score --model MODEL_DIR --data FILE [--output scores.csv]`.

For every unit, at its last time step (the window of its last `lookback_window` steps), from the
predicted survival curve S(k) = P(l > k) over lags k = 0..L-1 (l = steps until the failure, 0 = the
last step itself):
  expected_time_to_failure  E[min(l, L)] = sum_k S(k), steps (L = the package's pred_horizon)
  p_fail_within_<k>         P(l < k) = 1 - S(k-1): a failure within the next k steps (counting the last one)
  time_q<q>                 the smallest k with P(l <= k) >= q/100 (empty: beyond the horizon)
  intervene_now, reason     the decision rule (`decide`; a threshold rule for now)
Rows are sorted by risk (P(failure within the alarm window) descending, then expected time ascending).
The table's covariates must be those the package was trained on (same names after one-hot encoding).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ddrsa.atomic import write_data
from ddrsa.cli import OneLineParser, run_cli
from ddrsa.errors import DataError, DDRSAError
from ddrsa.metrics import expected_time, survival_from_logits

PROG = "python -m ddrsa.score"
QUANTILES = (10, 50, 90)
DEFAULT_THRESHOLD = 0.5


def default_ks(horizon: int) -> list[int]:
    """P(failure within k) columns: 1, L/8, L/4, L/2, L (distinct, >= 1)."""
    return sorted({max(1, horizon // d) for d in (horizon, 8, 4, 2, 1)})


def last_windows(package, path, column_flags: dict | None = None):
    """(FleetTable, x float32 (U, K, F), mask (U, K)) of each unit's last window, scaled by the
    package's scaler. DataError when the covariates do not match the package."""
    from ddrsa.data.fleet import FleetScaler
    from ddrsa.data.fleet_table import FleetColumns, read_fleet
    from ddrsa.data.windows import make_windows

    meta = package.meta
    if not meta.get("scaler"):
        raise DDRSAError(
            f"{package.path} was fitted on the built-in data set {meta.get('dataset')!r}; scoring "
            "needs a package refitted on a fleet table (docs/DATA.md)"
        )
    cols = dict(meta.get("columns") or {})
    cols.update({k: v for k, v in (column_flags or {}).items() if v is not None})
    table = read_fleet(path, FleetColumns(**cols), categories=meta.get("categories") or {}, require_failure=False)
    want = list(meta["covariates"])
    if table.covariates != want:
        missing = [c for c in want if c not in table.covariates]
        extra = [c for c in table.covariates if c not in want]
        raise DataError(
            f"{path}: covariates do not match the package {package.path.name} (missing: "
            f"{', '.join(missing) or 'none'}; not in the package: {', '.join(extra) or 'none'}"
            f"{'' if missing or extra else '; order differs'})"
        )
    scaler = FleetScaler.from_dict(meta["scaler"])
    feats = [scaler.transform(s) for s in table.steps]
    n = len(feats)
    w = make_windows(
        list(table.unit_ids),
        feats,
        [np.zeros(len(f), np.int64) for f in feats],
        [np.ones(len(f), bool) for f in feats],
        [np.zeros(len(f)) for f in feats],
        package.config.lookback_window,
        last_only=True,
    )
    assert len(w) == n
    return table, w.x, w.mask


def decide(survival: np.ndarray, package, window: int, threshold: float) -> list[tuple[bool, str]]:
    """THE decision hook: (intervene_now, reason) per unit from its survival curve (U, L).

    Now a threshold rule: intervene when P(failure within `window` steps) >= `threshold`.
    ddrsa/policy.py's OTI rule (cost chosen on validation, kept in package.meta["intervention"])
    replaces this function's body; its callers and output columns stay."""
    p = 1.0 - survival[:, window - 1]
    return [
        (
            bool(pi >= threshold),
            f"P(failure within {window} steps) = {pi:.2f} {'>=' if pi >= threshold else '<'} {threshold:g}",
        )
        for pi in p
    ]


@torch.inference_mode()
def score(
    package,
    path,
    *,
    ks: list[int] | None = None,
    window: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    column_flags: dict | None = None,
) -> pd.DataFrame:
    """The scores table (one row per unit, riskiest first; see the module docstring)."""
    horizon = package.config.pred_horizon
    ks = ks or default_ks(horizon)
    window = window or max(1, horizon // 4)
    for k in [*ks, window]:
        if not 1 <= k <= horizon:
            raise DDRSAError(f"steps {k} outside 1..{horizon} (the package's horizon)")
    table, x, mask = last_windows(package, path, column_flags)
    logits = package.model(torch.from_numpy(x), torch.from_numpy(mask)).float().numpy()
    surv = survival_from_logits(logits)
    cdf = 1.0 - surv
    df = pd.DataFrame(
        {
            "unit": table.unit_labels,
            "last_time": table.last_time,
            "steps_observed": [len(s) for s in table.steps],
            "expected_time_to_failure": expected_time(surv),
        }
    )
    for k in ks:
        df[f"p_fail_within_{k}"] = cdf[:, k - 1]
    for q in QUANTILES:
        hit = cdf >= q / 100
        df[f"time_q{q}"] = np.where(hit.any(1), hit.argmax(1), np.nan)
    decisions = decide(surv, package, window, threshold)
    df["intervene_now"] = [d for d, _ in decisions]
    df["reason"] = [r for _, r in decisions]
    df["_risk"] = cdf[:, window - 1]
    df = df.sort_values(["_risk", "expected_time_to_failure"], ascending=[False, True], kind="stable")
    df.attrs["survival"] = surv[df.index.to_numpy()]
    df.attrs["window"] = window
    return df.drop(columns="_risk").reset_index(drop=True)


def summary_line(df: pd.DataFrame, package, path) -> str:
    top = df.iloc[0]
    w = df.attrs.get("window")
    risk = f"P(failure within {w} steps) {1.0 - df.attrs['survival'][0][w - 1]:.2f}" if w else ""
    return (
        f"scored {len(df)} units of {Path(path).name} with {package.path.name} "
        f"({package.config.model}, data version {package.meta.get('data_version')}): "
        f"{int(df['intervene_now'].sum())} to intervene now; riskiest {top['unit']} ({risk}, "
        f"expected {top['expected_time_to_failure']:.1f} steps)"
    )


def main(argv=None) -> int:
    from ddrsa.data.__main__ import add_column_arguments, column_flags
    from ddrsa.package import load_package

    p = OneLineParser(
        prog=PROG,
        description="Score every unit of a fleet table at its last step with a model package (riskiest first).",
    )
    p.add_argument("--model", required=True, help="model package folder (a sweep's --refit writes them)")
    p.add_argument("--data", required=True, help="fleet table (.csv, .csv.gz, .parquet), docs/DATA.md")
    p.add_argument("--output", help="write the scores here (CSV) instead of stdout")
    p.add_argument("--k", type=int, nargs="+", help="P(failure within k steps) columns (default 1, L/8, L/4, L/2, L)")
    p.add_argument(
        "--window", type=int, help="intervene when P(failure within WINDOW steps) >= THRESHOLD (default L/4)"
    )
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="probability threshold (default 0.5)")
    add_column_arguments(p)
    args = p.parse_args(argv)
    if not 0 < args.threshold <= 1:
        raise DDRSAError(f"--threshold must be in (0, 1], got {args.threshold}")
    package = load_package(args.model)
    df = score(
        package, args.data, ks=args.k, window=args.window, threshold=args.threshold, column_flags=column_flags(args)
    )
    text = df.to_csv(index=False, float_format="%.6g")
    if args.output:
        write_data(Path(args.output), text)
    else:
        sys.stdout.write(text)
    sys.stderr.write(summary_line(df, package, args.data) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
