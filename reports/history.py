"""Nightly history: one JSON line per dataset/model best, appended after each analysed sweep.

`OUTPUT_DIR/sweep_history.jsonl` lines: timestamp (ISO 8601 UTC), run_label, dataset, model,
best_rul_rmse (steps: cycles or down-sampled rows), best_concordance_index (unitless),
n_completed (completed experiments of that dataset/model in the run), selected_on, and the
values those winners were chosen on: selection_rul_rmse, selection_concordance_index.

"Best" is the configuration `reports.tables.best_configurations` chooses on VALIDATION metrics
(per criterion); the line holds its TEST mean over seeds, never the minimum test value (which
would be selection on the test set). `selected_on` says which data chose it.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ddrsa.atomic import read_json_lines
from reports.tables import best_configurations, completed, records_frame, write_atomic

HISTORY_FILE = "sweep_history.jsonl"
HISTORY_COLUMNS = (
    "timestamp",
    "run_label",
    "dataset",
    "model",
    "best_rul_rmse",
    "best_concordance_index",
    "n_completed",
    "selected_on",
    "selection_rul_rmse",
    "selection_concordance_index",
)


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def history_rows(records: list[dict], run_label: str, timestamp: str | None = None) -> list[dict]:
    """The lines `append_history` would add: per dataset/model, the test RMSE of the configuration
    chosen on validation RMSE and the test C-index of the one chosen on validation C-index
    (subsets of one dataset: the first subset's winner, as the trend follows one benchmark)."""
    done = completed(records_frame(records))
    if not len(done):
        return []
    best = best_configurations(done)
    stamp = timestamp or datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    for (dataset, model), g in done.groupby(["dataset", "model"], sort=True):
        chosen = best[(best["dataset"] == dataset) & (best["model"] == model)].sort_values("subset", kind="stable")

        def pick(criterion: str, metric: str, chosen=chosen) -> tuple[float | None, float | None, str | None]:
            hit = chosen[chosen["criterion"] == criterion]
            if not len(hit):
                return None, None, None
            first = hit.iloc[0]
            return _finite(first[metric]), _finite(first["selection_score"]), str(first["selected_on"])

        rmse, rmse_score, selected_on = pick("RMSE", "rul_rmse")
        cindex, cindex_score, _ = pick("C-Index", "concordance_index")
        rows.append(
            {
                "timestamp": stamp,
                "run_label": run_label,
                "dataset": dataset,
                "model": model,
                "best_rul_rmse": rmse,
                "best_concordance_index": cindex,
                "n_completed": int(len(g)),
                "selected_on": selected_on,
                "selection_rul_rmse": rmse_score,
                "selection_concordance_index": cindex_score,
            }
        )
    return rows


def append_history(
    output_root: str | os.PathLike, records: list[dict], run_label: str | None = None, timestamp: str | None = None
) -> int:
    """Append this run's dataset/model bests to `output_root/sweep_history.jsonl`; returns lines added.

    The whole file is rewritten through a temporary file (atomic); an unreadable last line left by
    a crash is dropped. `run_label` defaults to the UTC timestamp.
    """
    stamp = timestamp or datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = history_rows(records, run_label or stamp, stamp)
    if not rows:
        return 0
    path = Path(output_root) / HISTORY_FILE
    old = [json.dumps(r) for r in read_json_lines(path)]
    write_atomic(path, "\n".join(old + [json.dumps(r) for r in rows]) + "\n")
    return len(rows)


def read_history(output_root: str | os.PathLike) -> pd.DataFrame:
    """All history lines as a DataFrame (HISTORY_COLUMNS; empty when the file is absent)."""
    rows = read_json_lines(Path(output_root) / HISTORY_FILE)
    df = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    for col in ("best_rul_rmse", "best_concordance_index", "selection_rul_rmse", "selection_concordance_index"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df
