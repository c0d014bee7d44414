"""Adaptive search in the report (issue 13): the rung chart and the compute sentence.

Pure functions of result records (all_results.json), the manifest and the runs' training logs
(OUTPUT_DIR/<run_dir>/training_log.json). Records of a search carry `search` (halving | tpe),
`rung` (index of the highest rung reached), `rung_epochs` (the rungs' epoch budgets),
`epochs_trained` and `promoted`; the manifest's `search` entry holds `full_grid_epochs` and
`grid_size`. A grid sweep has none of these: both functions then return None.
Units: epochs; validation loss is the DDRSA training objective (unitless).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import altair as alt
import pandas as pd

from ddrsa.status import STOPPED_EARLY

SEARCH_CHART = "search_rungs"


def search_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("search") in ("halving", "tpe")]


def rung_curves(records: list[dict], output_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per (configuration, epoch) of a search: name, epoch, val_loss, status, reached_last
    (the configuration trained to the last rung), promoted. Runs without a readable log are skipped."""
    rows = []
    for r in search_records(records):
        try:
            log = json.loads((Path(output_dir) / str(r.get("run_dir") or "") / "training_log.json").read_text())
        except (OSError, ValueError):
            continue
        rungs = r.get("rung_epochs") or []
        last = r.get("rung") is not None and rungs and r["rung"] == len(rungs) - 1
        for e in log.get("epochs") or []:
            if isinstance(e, dict) and isinstance(e.get("val_loss"), (int, float)):
                rows.append(
                    {
                        "name": r["name"],
                        "epoch": int(e["epoch"]),
                        "val_loss": float(e["val_loss"]),
                        "status": r["status"],
                        "reached_last": bool(last),
                        "promoted": bool(r.get("promoted")),
                    }
                )
    return pd.DataFrame(rows, columns=["name", "epoch", "val_loss", "status", "reached_last", "promoted"])


def rung_chart(records: list[dict], output_dir: str | os.PathLike) -> alt.TopLevelMixin | None:
    """Validation loss against epochs, one line per configuration of the search; configurations that
    reached the last rung in colour, those promoted at least once in grey, the rest light; dashed
    rules at the rungs. None for a grid sweep or without logs."""
    curves = rung_curves(records, output_dir)
    if curves.empty:
        return None
    rungs = next((r.get("rung_epochs") for r in search_records(records) if r.get("rung_epochs")), []) or []
    curves["outcome"] = curves.apply(
        lambda row: (
            "reached the last rung"
            if row["reached_last"]
            else ("promoted, then stopped" if row["promoted"] else "stopped at the first rung")
        ),
        axis=1,
    )
    order = ["reached the last rung", "promoted, then stopped", "stopped at the first rung"]
    lines = (
        alt.Chart(curves)
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X(
                "epoch:Q",
                title="epoch",
                scale=alt.Scale(zero=False, nice=False),
                axis=alt.Axis(tickMinStep=1, format="d"),
            ),
            y=alt.Y("val_loss:Q", title="validation loss (DDRSA objective)", scale=alt.Scale(zero=False, type="log")),
            detail="name:N",
            color=alt.Color(
                "outcome:N",
                sort=order,
                scale=alt.Scale(domain=order, range=["#d62728", "#7f7f7f", "#c7c7c7"]),
                title="configuration",
            ),
            strokeWidth=alt.condition("datum.reached_last", alt.value(2.5), alt.value(1)),
            tooltip=["name:N", "epoch:Q", alt.Tooltip("val_loss:Q", format=".4f"), "status:N"],
        )
    )
    search = search_records(records)[0]["search"]
    title = f"{search}: validation loss per epoch, one line per configuration (rungs at {rungs} epochs)"
    rules = alt.Chart(pd.DataFrame({"epoch": rungs})).mark_rule(strokeDash=[4, 4], color="#999").encode(x="epoch:Q")
    return alt.layer(rules, lines).properties(width=640, height=360, title=title)


def compute_sentence(records: list[dict], manifest: dict | None) -> str | None:
    """ "Halving trained 176 epochs over 72 configurations: 27% of the 648 a full grid (72 x 9) trains;
    8 reached the last rung, 64 stopped early." None for a grid sweep."""
    runs = search_records(records)
    if not runs:
        return None
    info = (manifest or {}).get("search") or {}
    search = runs[0]["search"]
    epochs = sum(int(r.get("epochs_trained") or 0) for r in runs)
    rungs = runs[0].get("rung_epochs") or []
    grid_size = info.get("grid_size")
    full = info.get("full_grid_epochs") or (grid_size * rungs[-1] if grid_size and rungs else None)
    reached = sum(1 for r in runs if rungs and r.get("rung") == len(rungs) - 1)
    stopped = sum(1 for r in runs if r["status"] == STOPPED_EARLY)
    what = "Successive halving" if search == "halving" else "TPE"
    text = f"{what} trained {epochs} epochs over {len(runs)} configurations"
    if full:
        text += (
            f": {100.0 * epochs / full:.0f}% of the {full} epochs a full grid"
            f"{f' ({grid_size} x {rungs[-1]})' if grid_size and rungs else ''} trains"
        )
    return text + f"; {reached} reached the last rung ({rungs[-1] if rungs else '?'} epochs), {stopped} stopped early."
