"""Charts of one training run, read from its folder: `python -m reports.run_charts RUN_DIR`.

Loss curves from training_log.json; predicted-vs-true and hazard/survival charts when the folder
holds test_predictions.npz (every finished run writes it, ddrsa/run_predictions.py)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from ddrsa.atomic import read_json
from ddrsa.metrics import expected_time
from ddrsa.policy import INTERVENTION_COST, OTI_N_FAILURES, intervention_metrics
from ddrsa.run_predictions import load_predictions
from reports.charts import save_chart
from reports.policy_charts import run_trade_off, unit_timelines


def loss_curves(log: dict) -> alt.Chart:
    df = pd.DataFrame(log.get("epochs", []))
    long = df.melt(id_vars="epoch", value_vars=["train_loss", "val_loss"], var_name="split", value_name="loss")
    return (
        alt.Chart(long, title="Training and validation loss")
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch"),
            y=alt.Y("loss:Q", title="DDRSA loss (nats per window)"),
            color=alt.Color("split:N", title=None),
        )
        .properties(width=420, height=260)
    )


def predicted_vs_true(predictions: dict) -> alt.Chart:
    obs = ~predictions["test_censored"]
    df = pd.DataFrame(
        {"true": predictions["test_event_index"][obs], "predicted": expected_time(predictions["test_survival"])[obs]}
    )
    top = float(max(df["true"].max(), df["predicted"].max(), 1)) if len(df) else 1.0
    points = (
        alt.Chart(df, title="Predicted vs true time to event (uncensored test windows)")
        .mark_circle(size=12, opacity=0.4)
        .encode(
            x=alt.X("true:Q", title="true time to event (steps)"),
            y=alt.Y("predicted:Q", title="predicted E[min(T, L)] (steps)"),
        )
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"true": [0, top], "predicted": [0, top]}))
        .mark_line(color="gray", strokeDash=[4, 4])
        .encode(x="true:Q", y="predicted:Q")
    )
    return (points + diagonal).properties(width=380, height=380)


def hazard_and_survival(predictions: dict, n_units: int = 4) -> alt.Chart:
    """Hazard h(k) and survival S(k) of the last window of a few test units."""
    surv, units = predictions["test_survival"], predictions["test_unit"]
    rows = []
    for unit in list(dict.fromkeys(units.tolist()))[:n_units]:
        i = int(np.flatnonzero(units == unit)[-1])
        s = surv[i]
        prev = np.concatenate([[1.0], s[:-1]])
        hazard = 1.0 - s / np.maximum(prev, 1e-12)
        label = f"unit {unit} (true {int(predictions['test_event_index'][i])}" + (
            "+, censored)" if predictions["test_censored"][i] else ")"
        )
        for k in range(len(s)):
            rows.append({"k": k, "unit": label, "hazard": hazard[k], "survival": s[k]})
    df = pd.DataFrame(rows)
    base = (
        alt.Chart(df)
        .mark_line()
        .encode(x=alt.X("k:Q", title="steps ahead k"), color=alt.Color("unit:N", title="test unit"))
    )
    return alt.hconcat(
        base.encode(y=alt.Y("hazard:Q", title="hazard h(k)")).properties(title="Hazard", width=300, height=240),
        base.encode(y=alt.Y("survival:Q", title="survival S(k)", scale=alt.Scale(domain=[0, 1]))).properties(
            title="Survival", width=300, height=240
        ),
    )


def write_run_charts(run_dir: Path, predictions: dict | None = None) -> list[Path]:
    """Write loss_curves (runs with epochs: not the baselines), predicted_vs_true, hazard_survival
    (.html + .png) into run_dir/plots."""
    folder = Path(run_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    log = read_json(Path(run_dir) / "training_log.json", {})
    test_metrics = read_json(Path(run_dir) / "test_metrics.json", {}) or {}
    if predictions is None:
        predictions = load_predictions(run_dir)
    charts = {"loss_curves": loss_curves(log)} if log.get("epochs") else {}  # a baseline has no epochs
    if predictions is not None:
        charts["predicted_vs_true"] = predicted_vs_true(predictions)
        charts["hazard_survival"] = hazard_and_survival(predictions)
        if "test_rul" in predictions and test_metrics.get(OTI_N_FAILURES):  # held-out run-to-failure units
            cost = intervention_metrics(test_metrics)[INTERVENTION_COST]  # chosen on validation, alpha 5%
            charts.update(
                intervention_trade_off=run_trade_off(predictions, cost),
                unit_timelines=unit_timelines(predictions, cost if np.isfinite(cost) else 64.0),
            )
    for name, chart in charts.items():
        save_chart(chart, folder, name)
    return [folder / f"{n}.png" for n in charts]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m reports.run_charts", description="Write the charts of one run folder into RUN_DIR/plots."
    )
    p.add_argument("run_dir", help="run folder of `python -m ddrsa.train` (or of a sweep)")
    run_dir = Path(p.parse_args(argv).run_dir)
    if not (run_dir / "training_log.json").is_file():
        p.error(f"{run_dir} holds no training_log.json")
    for path in write_run_charts(run_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
