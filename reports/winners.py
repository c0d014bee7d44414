"""Who won, by how much, and whether it beats the floor: one answer per dataset (and C-MAPSS subset).

`answers(board)` reads the leaderboard (`reports.leaderboard.leaderboard_frame`: one row per
configuration, seeds pooled, ranked within dataset and subset on validation RMSE) and returns,
per dataset/subset, the winning DDRSA configuration, the hyperparameters that vary in this grid,
its test metrics with whatever interval exists, the runner-up configuration and the margin, the
best yardstick model (ddrsa.config BASELINE_MODELS) when one ran, and a verdict: a winner whose
test RMSE is not lower than the age-only floor (`km`) or whose C-index cannot be told from chance
(0.5) is reported as "no model beats the floor" instead of as a winner.

Units as in reports.tables: RMSE in steps (cycles for C-MAPSS), C-index unitless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ddrsa.config import BASELINE_MODELS
from reports.tables import HYPERPARAMETERS

FLOOR_MODEL = "km"  # Kaplan-Meier on training lifetimes conditioned on age: the age-only floor
CHANCE = 0.5  # C-index of a random ranking
CHANCE_BAND = 0.1  # without an interval, a C-index below CHANCE + CHANCE_BAND is not told from chance
HP_LABELS = {
    "batch_size": "batch size",
    "learning_rate": "learning rate",
    "lambda_param": "lambda",
    "nasa_weight": "NASA weight",
    "dropout": "dropout",
}
# paired margin columns (winner minus runner-up over the same test units, reports/uncertainty.py)
# when the leaderboard carries them; else the plain difference of test means, labelled as such
PAIRED_MARGIN = ("rmse_margin", "rmse_margin_low", "rmse_margin_high")


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def interval_text(row: pd.Series, metric: str, fmt: str = ".3f") -> str:
    """`22.031 [21.502, 22.560] (95% t-interval over 3 seeds)`, the unit-bootstrap interval when the
    row has one (`<metric>_boot_low/_high`), or `22.031 (1 seed: no interval)`."""
    value = _num(row.get(metric))
    if value is None:
        return "n/a"
    n = int(_num(row.get("n_seeds")) or 1)
    seeds = f"{n} seed" + ("" if n == 1 else "s")
    boot = _num(row.get(f"{metric}_boot_low")), _num(row.get(f"{metric}_boot_high"))
    if None not in boot:
        return f"{value:{fmt}} [{boot[0]:{fmt}}, {boot[1]:{fmt}}] (95% bootstrap over test units, {seeds})"
    low, high = _num(row.get(f"{metric}_ci_low")), _num(row.get(f"{metric}_ci_high"))
    if low is not None and high is not None:
        return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}] (95% t-interval over {seeds})"
    return f"{value:{fmt}} ({seeds}: no interval)"


def varying_hyperparameters(board: pd.DataFrame) -> list[str]:
    """The hyperparameters with more than one value among these configurations (grid order)."""
    return [hp for hp in HYPERPARAMETERS if hp in board and board[hp].nunique(dropna=True) > 1]


def config_label(row: pd.Series, hps: list[str]) -> str:
    """`gru_basic (batch size 64, learning rate 0.001)`: the model and the hyperparameters `hps`."""
    values = ", ".join(f"{HP_LABELS.get(hp, hp)} {row[hp]:g}" for hp in hps if _num(row.get(hp)) is not None)
    return f"{row['model']} ({values})" if values else str(row["model"])


def floor_reason(winner: pd.Series, floor: pd.Series | None) -> str:
    """'' when the winner beats the floor; else why not (the km baseline's test RMSE, or chance)."""
    rmse, floor_rmse = _num(winner.get("rul_rmse")), _num(None if floor is None else floor.get("rul_rmse"))
    if rmse is not None and floor_rmse is not None and rmse >= floor_rmse:
        return f"test RMSE {rmse:.3f} is not below the age-only floor ({FLOOR_MODEL}) {floor_rmse:.3f}"
    c = _num(winner.get("concordance_index"))
    if c is None:
        return ""
    low = _num(winner.get("concordance_index_boot_low"))
    low = _num(winner.get("concordance_index_ci_low")) if low is None else low
    if low is not None:
        return (
            f"test C-index {c:.3f}: its interval reaches chance ({CHANCE}; lower end {low:.3f})"
            if low <= CHANCE
            else ""
        )
    if c < CHANCE + CHANCE_BAND:
        return f"test C-index {c:.3f} is within {CHANCE_BAND} of chance ({CHANCE}) and has no interval to tell it apart"
    return ""


@dataclass
class Answer:
    """The answer for one dataset (and subset). `winner`/`runner_up`/`baseline`: leaderboard rows."""

    dataset: str
    subset: str | None
    varying: list[str]
    winner: pd.Series | None
    runner_up: pd.Series | None = None
    baseline: pd.Series | None = None
    floor: str = ""  # why no model beats the floor ("" when the winner does)
    margin: str = ""  # the winner's margin over the runner-up, labelled by what it is
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.dataset} {self.subset}" if self.dataset == "turbofan" and self.subset else self.dataset


def margin_text(winner: pd.Series, runner_up: pd.Series | None) -> str:
    """The winner's test-RMSE margin over the runner-up: paired (same test units) when the
    leaderboard carries it, else the plain difference of test means, labelled as such."""
    if runner_up is None:
        return "no runner-up (one configuration)"
    paired = [_num(winner.get(c)) for c in PAIRED_MARGIN]
    if paired[0] is not None:
        ci = f" [{paired[1]:.3f}, {paired[2]:.3f}]" if None not in paired[1:] else ""
        return f"{paired[0]:+.3f}{ci} test RMSE, paired over the same test units (negative: winner better)"
    a, b = _num(winner.get("rul_rmse")), _num(runner_up.get("rul_rmse"))
    if a is None or b is None:
        return "n/a"
    return f"{a - b:+.3f} test RMSE (plain difference of means, not paired; negative: winner better)"


def answers(board: pd.DataFrame) -> list[Answer]:
    """One Answer per dataset/subset of the leaderboard `board` (ranked on validation)."""
    out: list[Answer] = []
    if board is None or not len(board):
        return out
    for (dataset, subset), g in board.groupby(["dataset", "subset"], sort=True, dropna=False):
        g = g.sort_values("rank", kind="stable")
        models = g[~g["model"].isin(BASELINE_MODELS)]
        baselines = g[g["model"].isin(BASELINE_MODELS)]
        varying = varying_hyperparameters(models)
        sub = None if isinstance(subset, float) and math.isnan(subset) else subset
        if not len(models):
            out.append(Answer(dataset, sub, varying, None, notes=["no DDRSA model completed"]))
            continue
        winner = models.iloc[0]
        runner_up = models.iloc[1] if len(models) > 1 else None
        floor = baselines[baselines["model"] == FLOOR_MODEL]
        out.append(
            Answer(
                dataset,
                sub,
                varying,
                winner,
                runner_up,
                baselines.iloc[0] if len(baselines) else None,
                floor=floor_reason(winner, floor.iloc[0] if len(floor) else None),
                margin=margin_text(winner, runner_up),
            )
        )
    return out


def answers_table(items: list[Answer]) -> list[dict]:
    """Rows for a table artifact: dataset, verdict, winner, the varying hyperparameters first, test
    metrics with intervals, runner-up, margin, best baseline, what chose the winner."""
    rows = []
    varying = [hp for hp in HYPERPARAMETERS if any(hp in a.varying for a in items)]
    for a in items:
        row = {"dataset": a.where}
        if a.winner is None:
            rows.append({**row, "verdict": "; ".join(a.notes)})
            continue
        w = a.winner
        row["verdict"] = f"no model beats the floor: {a.floor}" if a.floor else "winner"
        row["winner"] = w["model"]
        row.update({HP_LABELS.get(hp, hp): _num(w.get(hp)) for hp in varying})
        row["test RMSE (steps)"] = interval_text(w, "rul_rmse")
        row["test C-index"] = interval_text(w, "concordance_index")
        row["runner-up"] = config_label(a.runner_up, a.varying) if a.runner_up is not None else ""
        row["runner-up test RMSE"] = interval_text(a.runner_up, "rul_rmse") if a.runner_up is not None else ""
        row["margin"] = a.margin
        row["best baseline"] = (
            f"{a.baseline['model']}: test RMSE {interval_text(a.baseline, 'rul_rmse')}"
            if a.baseline is not None
            else "none run"
        )
        row["chosen on"] = f"{w.get('selected_on')} RMSE"
        row["data source"] = w.get("data_source")
        rows.append(row)
    return rows


def answers_markdown(items: list[Answer]) -> str:
    """The answers as a markdown table (what the sweep's flow run page shows)."""
    rows = answers_table(items)
    if not rows:
        return "No completed experiment yet."
    return pd.DataFrame(rows).fillna("").to_markdown(index=False, floatfmt="g")
