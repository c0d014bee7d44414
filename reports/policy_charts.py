"""When-to-intervene charts (Altair): trade-off curves and per-unit timelines (ddrsa/policy.py).

- `intervention_trade_off(records, best)`: the report's chart, from the records alone: per dataset,
  the OTI curve (test miss rate against mean time left at intervention, steps, over caught held-out
  units; seeds averaged) at the costs C of every test_metrics.json, one line per best configuration
  of the Intervention criterion, its operating point (the C chosen on validation) marked. Heuristic
  policies need the predictions, so they are drawn per run (`run_trade_off`).
- `run_trade_off(predictions)`, `unit_timelines(predictions)`: one run's test predictions
  (test_predictions.npz with test_rul/test_end): OTI against the tte and window heuristics over
  their whole threshold grids; and for a few test units the predicted E[min(T, L)] over the unit's
  life against the truth, the step OTI fires at, and the failure.
Only run-to-failure held-out units are scored (never the official C-MAPSS test units).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ddrsa import policy
from ddrsa.metrics import expected_time

CONFIG_KEYS = ("dataset", "subset", "model", "batch_size", "learning_rate", "lambda_param", "nasa_weight", "dropout")
POLICY_LABELS = {"oti": "OTI (cost C)", "tte": "E[min(T, L)] <= theta", "window": "P(event within w) >= p"}


def _same_config(record: dict, row: pd.Series) -> bool:
    for k in CONFIG_KEYS:
        a, b = record.get(k), row.get(k)
        if k == "subset" and record.get("dataset") != "turbofan":
            continue
        if isinstance(b, float) and isinstance(a, (int, float)):
            if not np.isclose(float(a), b):
                return False
        elif str(a) != str(b):
            return False
    return True


def intervention_frame(records: list[dict], best: pd.DataFrame) -> pd.DataFrame:
    """Rows (dataset, line, C, miss_rate, mean_tte, chosen) for the Intervention winners' OTI curves."""
    rows = []
    winners = best[best["criterion"] == "Intervention"] if len(best) else best
    for _, row in winners.iterrows():
        runs = [r for r in records if r.get("status") == "completed" and _same_config(r, row)]
        where = f"{row['dataset']} {row['subset']}".strip() if row["dataset"] == "turbofan" else row["dataset"]
        line = f"{row['model']} (bs {int(row['batch_size'])}, lr {row['learning_rate']:g})"
        for c in policy.OTI_COSTS:
            miss = [r["metrics"].get(policy.oti_miss_key(c)) for r in runs]
            tte = [r["metrics"].get(policy.oti_tte_key(c)) for r in runs]
            miss = [float(v) for v in miss if isinstance(v, (int, float))]
            tte = [float(v) for v in tte if isinstance(v, (int, float))]
            if miss:
                rows.append(
                    {
                        "dataset": where,
                        "line": line,
                        "C": c,
                        "threshold": float(c),
                        "miss_rate": float(np.mean(miss)),
                        "mean_tte": float(np.mean(tte)) if tte else np.nan,
                        "chosen": bool(np.isclose(c, row.get("intervention_cost", np.nan))),
                    }
                )
    return pd.DataFrame(rows, columns=["dataset", "line", "C", "threshold", "miss_rate", "mean_tte", "chosen"])


def trade_off_chart(df: pd.DataFrame, title: str) -> alt.Chart:
    """Lines of (miss_rate, mean_tte) per `line`, faceted by `dataset`; `chosen` rows ringed."""
    base = alt.Chart(df).encode(
        x=alt.X("miss_rate:Q", title="miss rate (held-out run-to-failure units)", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y(
            "mean_tte:Q", title="mean time left at intervention (steps, caught units; log)", scale=alt.Scale(type="log")
        ),  # >= 1 step; early firings reach ~200
        color=alt.Color("line:N", title=None),
        tooltip=[c for c in df.columns if c != "chosen"],
    )
    lines = base.mark_line(point=True).encode(order=alt.Order("threshold:Q"))  # along the policy's grid
    chosen = base.transform_filter(alt.datum.chosen).mark_point(size=220, shape="circle", filled=False, strokeWidth=2.5)
    return (
        alt.layer(lines, chosen, data=df)
        .properties(width=360, height=260)
        .facet(column=alt.Column("dataset:N", title=None))
        .properties(title=title)
    )


def intervention_trade_off(records: list[dict], best: pd.DataFrame) -> alt.Chart | None:
    """The report's trade-off chart (module docstring), or None when no record carries oti_* keys."""
    df = intervention_frame(records, best)
    if not len(df):
        return None
    return trade_off_chart(
        df,
        "When to intervene: OTI miss rate vs time left, best Intervention "
        "configurations (ring: cost chosen on validation)",
    )


def _sequences(predictions: dict) -> policy.Sequences:
    return policy.sequences(
        predictions["test_unit"], predictions["test_end"], predictions["test_rul"], predictions["test_censored"]
    )


def run_frame(predictions: dict, cost: float | None = None) -> pd.DataFrame:
    """Every policy's whole test curve of one run (ddrsa.policy.trade_off) as rows for `trade_off_chart`."""
    rows = policy.trade_off(predictions["test_survival"], _sequences(predictions))
    df = pd.DataFrame(rows)
    df["line"] = df["policy"].map(POLICY_LABELS)
    df["dataset"] = "test units"
    df["chosen"] = (df["policy"] == "oti") & np.isclose(df["threshold"], cost if cost else np.nan)
    return df[
        ["dataset", "line", "policy", "threshold", "miss_rate", "mean_tte", "median_tte", "false_alarms", "chosen"]
    ]


def run_trade_off(predictions: dict, cost: float | None = None) -> alt.Chart:
    return trade_off_chart(run_frame(predictions, cost), "OTI against thresholding heuristics (test units)")


def timeline_frame(predictions: dict, cost: float, n_units: int = 4) -> pd.DataFrame:
    """Rows (unit, step, series, value) for the first `n_units` failure sequences; series: predicted
    E[min(T, L)], true min(T - t, L); plus `fires` (the OTI firing step at `cost`, NaN if never) and
    `failure` (the event step), steps counted from the sequence's first window."""
    seqs = _sequences(predictions)
    surv = predictions["test_survival"]
    horizon = surv.shape[1]
    fire = policy.oti_threshold(surv) <= cost
    first = policy.first_firing(fire, seqs)
    pred = expected_time(surv)
    rows = []
    for m in np.flatnonzero(seqs.failed)[:n_units]:
        idx = seqs.order[seqs.bounds[m] : seqs.bounds[m + 1]]
        start = predictions["test_end"][idx[0]]
        label = f"unit {int(seqs.unit[m])}"
        failure = float(predictions["test_end"][idx[-1]] - start + predictions["test_rul"][idx[-1]])
        fires = float(predictions["test_end"][first[m]] - start) if first[m] >= 0 else np.nan
        for i in idx:
            step = float(predictions["test_end"][i] - start)
            rows.append(
                {
                    "unit": label,
                    "step": step,
                    "series": "predicted E[min(T, L)]",
                    "value": float(pred[i]),
                    "fires": fires,
                    "failure": failure,
                }
            )
            rows.append(
                {
                    "unit": label,
                    "step": step,
                    "series": "true min(T - t, L)",
                    "value": float(min(predictions["test_rul"][i], horizon)),
                    "fires": fires,
                    "failure": failure,
                }
            )
    return pd.DataFrame(rows, columns=["unit", "step", "series", "value", "fires", "failure"])


def unit_timelines(predictions: dict, cost: float = 64.0, n_units: int = 4) -> alt.Chart:
    df = timeline_frame(predictions, cost, n_units)
    lines = (
        alt.Chart(df)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="step of the unit's life"),
            y=alt.Y("value:Q", title="time to event (steps)"),
            color=alt.Color("series:N", title=None),
        )
    )
    fires = alt.Chart(df).mark_rule(color="green", strokeDash=[4, 3]).encode(x="min(fires):Q")
    fail = alt.Chart(df).mark_rule(color="red").encode(x="min(failure):Q")
    return (
        alt.layer(lines, fires, fail, data=df)
        .properties(width=300, height=180)
        .facet(facet=alt.Facet("unit:N", title=None), columns=2)
        .properties(title=f"Test units: OTI (C = {cost:g}) fires at the green line; failure at the red")
    )


def intervention_headline(best: pd.DataFrame, alpha: float) -> list[str]:
    """One line per dataset (and C-MAPSS subset): the Intervention winner over its models (lowest
    validation mean time left at its chosen cost) with its test figures there."""
    rows = best[best["criterion"] == "Intervention"] if len(best) else best
    out = []
    for (dataset, subset), g in rows.groupby(["dataset", "subset"], sort=True):
        r = g.loc[g["selection_score"].idxmin()]
        where = f"{dataset} {subset}".strip() if dataset == "turbofan" else dataset
        out.append(
            f"{where} when to intervene (OTI, target miss rate {alpha:g}, chosen on validation): "
            f"{r['model']} at C = {r['intervention_cost']:g}: test miss rate {r['intervention_miss_rate']:.3f}, "
            f"mean time left {r['intervention_tte']:.1f} steps over caught held-out units"
        )
    return out
