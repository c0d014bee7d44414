"""The yardsticks of a verdict: baselines beside the winner, intervals over test units, paired comparisons.

Reads result records (`reports.tables.records_frame` rows) and the per-run predictions of their run
folders (`ddrsa.run_predictions`, read through `PredictionCache`); the statistics are
`reports.uncertainty`'s. Within one group of comparable runs (a dataset and C-MAPSS subset for the
headline; a subset and test split for the benchmark):

- configurations (CONFIG_KEYS, seeds and split seeds pooled) are ranked on their mean validation
  RMSE (`tables.ranking_metric`, the leaderboard's and the headline's ranking);
- the **winner** is the best DDRSA configuration, the **runner-up** the second best DDRSA
  configuration, the **best baseline** the best configuration of a model in `BASELINE_MODELS`
  (gbm, cox, km), chosen the same way. A baseline is never the winner;
- each comparison is a paired bootstrap over the same test units (`uncertainty.paired_bootstrap`,
  winner minus other) of the benchmark capped RMSE where every run involved has benchmark windows
  (C-MAPSS official test units), else of the test RMSE.

Runs without a predictions file (sweeps written before runs kept them) still analyse: their
intervals over test units and comparisons are None and read "unavailable".
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ddrsa.config import BASELINE_MODELS
from ddrsa.run_predictions import load_predictions
from reports.tables import CONFIG_KEYS, HYPERPARAMETERS, completed, ranking_metric
from reports.uncertainty import (
    BENCHMARK_RMSE,
    OVER_UNITS,
    TEST_RMSE,
    UNIT_METRICS,
    Interval,
    Paired,
    UnitSums,
    bootstrap_interval,
    paired_bootstrap,
    unit_sums,
)

UNAVAILABLE = "unavailable (no per-window predictions in the run folders)"
METRIC_WORDS = {TEST_RMSE: "test RMSE", BENCHMARK_RMSE: "benchmark capped RMSE"}
SELECTION_METRIC = "rul_rmse"
FLOOR_MODEL = "km"


def is_baseline(model) -> bool:
    """True for a yardstick model (`ddrsa.config.BASELINE_MODELS`)."""
    return str(model) in BASELINE_MODELS


def config_key(values) -> tuple:
    """A hashable configuration key from CONFIG_KEYS values (numbers as float, NaN as None)."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            out.append(str(v))
    return tuple(out)


def row_key(row) -> tuple:
    return config_key([row[k] for k in CONFIG_KEYS])


def split_key(row) -> tuple:
    """Which held-out units a run was scored on: (test_split, split_seed)."""
    seed = row.get("split_seed", 0) if hasattr(row, "get") else 0
    seed = 0 if seed is None or (isinstance(seed, float) and math.isnan(seed)) else int(seed)
    return (str(row.get("test_split") or "held-out"), seed)


class PredictionCache:
    """Per-unit sums of each run folder's predictions, loaded once per analysis (None: no file, or
    no output folder), and the intervals over test units computed from them."""

    def __init__(self, output_dir=None):
        self.output_dir = None if output_dir is None else Path(output_dir)
        self._sums: dict[str, dict[str, UnitSums | None] | None] = {}
        self._intervals: dict[tuple, Interval | None] = {}  # (run folders, metric) -> interval

    def sums(self, run_dir: str, metric: str) -> UnitSums | None:
        if run_dir not in self._sums:
            got = None
            if self.output_dir is not None and run_dir:
                try:
                    pred = load_predictions(self.output_dir / str(run_dir))
                    got = None if pred is None else {m: unit_sums(pred, m) for m in UNIT_METRICS}
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                    got = None  # an unreadable, partial or foreign file: as if absent
            self._sums[run_dir] = got
        got = self._sums[run_dir]
        return None if got is None else got[metric]

    def runs(self, runs: pd.DataFrame, metric: str) -> dict[tuple, list[UnitSums]] | None:
        """{split key: [UnitSums of each run]} of a configuration's runs; None when any run lacks them."""
        out: dict[tuple, list[UnitSums]] = {}
        for _, row in runs.iterrows():
            s = self.sums(str(row.get("run_dir") or ""), metric)
            if s is None:
                return None
            out.setdefault(split_key(row), []).append(s)
        return out or None

    def interval(self, runs: pd.DataFrame, metric: str) -> Interval | None:
        """The 95% interval over test units of a configuration's runs (each seed's run); cached per
        set of run folders and metric."""
        key = (tuple(sorted(runs["run_dir"].astype(str))), metric)
        if key not in self._intervals:
            got = self.runs(runs, metric)
            self._intervals[key] = bootstrap_interval(got) if got else None
        return self._intervals[key]

    def lookup(self, run_dirs, metric: str) -> Interval | None:
        """An interval `interval` already computed for these run folders, else None."""
        return self._intervals.get((tuple(sorted(str(d) for d in run_dirs)), metric))


@dataclass
class Comparison:
    """One paired comparison: the winner against `other` (`role`: "best baseline" or "runner-up")."""

    role: str
    winner: str
    other: str
    metric: str
    paired: Paired | None

    def verdict(self) -> str:
        """Who is better on these test units, in words."""
        p = self.paired
        if p is None:
            return "unavailable"
        if p.high < 0:
            return f"{self.winner} is better"
        if p.low > 0:
            return f"{self.other} is better"
        return "neither is distinguishably better on these test units"

    def text(self) -> str:
        """`vs best baseline gbm: benchmark capped RMSE difference +0.41 [-0.70, 1.52] (paper minus gbm, ...`"""
        head = f"vs {self.role} {self.other}"
        if self.paired is None:
            return f"{head}: {UNAVAILABLE}"
        p = self.paired
        return (
            f"{head}: {METRIC_WORDS[self.metric]} difference {p.difference:+.2f} [{p.low:+.2f}, {p.high:+.2f}] "
            f"({self.winner} minus {self.other}; 95% paired bootstrap {OVER_UNITS}, {p.n_units} units, "
            f"{p.n_resamples:,} resamples, RMSE averaged over seeds), "
            f"{self.winner} better in {p.share_better:.0%} of resamples: "
            f"{self.verdict()}"
        )

    def columns(self, prefix: str) -> dict:
        """CSV columns `<prefix>_model/_metric/_diff/_low/_high/_share_better/_text`."""
        p = self.paired
        nums = (p.difference, p.low, p.high, p.share_better) if p else (math.nan,) * 4
        return {
            f"{prefix}_model": self.other,
            f"{prefix}_metric": self.metric,
            **dict(zip((f"{prefix}_diff", f"{prefix}_low", f"{prefix}_high", f"{prefix}_share_better"), nums)),
            f"{prefix}_text": self.text(),
        }


@dataclass
class GroupVerdict:
    """Winner, runner-up and best baseline of one group of comparable runs, with the comparisons."""

    winner: tuple | None  # config keys
    runner_up: tuple | None
    best_baseline: tuple | None
    baselines: list[tuple]  # the best configuration of each baseline model, best first
    vs_baseline: Comparison | None
    vs_runner_up: Comparison | None
    n_configs: int  # DDRSA configurations that competed
    selected_on: str
    rank_col: str = ""  # the column the configurations were ranked on


def config_label(runs: pd.DataFrame, other: pd.DataFrame | None = None) -> str:
    """The model, plus the hyperparameters that differ from `other`'s (to tell two configurations of
    one model apart); '<model> (baseline)' is not added here (the role says it)."""
    first = runs.iloc[0]
    if other is None or first["model"] != other.iloc[0]["model"] or is_baseline(first["model"]):
        return str(first["model"])
    diff = [f"{k} {first[k]:g}" for k in HYPERPARAMETERS if first[k] != other.iloc[0][k]]
    return f"{first['model']} ({', '.join(diff)})" if diff else str(first["model"])


def comparison_metric(cache: PredictionCache, *groups: pd.DataFrame) -> str:
    """BENCHMARK_RMSE when every run of every group has benchmark windows, else TEST_RMSE."""
    for g in groups:
        for run_dir in g["run_dir"].astype(str):
            if cache.sums(run_dir, BENCHMARK_RMSE) is None:
                return TEST_RMSE
    return BENCHMARK_RMSE


def compare(cache: PredictionCache, role: str, winner: pd.DataFrame, other: pd.DataFrame) -> Comparison:
    """The paired bootstrap of `winner` minus `other` (each a configuration's runs)."""
    metric = comparison_metric(cache, winner, other)
    w, o = cache.runs(winner, metric), cache.runs(other, metric)
    paired = None
    if w and o and set(w) & set(o):
        paired = paired_bootstrap(w, o)
    label = config_label(other, winner)
    return Comparison(
        role, config_label(winner, other), f"{label} (baseline)" if is_baseline(label) else label, metric, paired
    )


def keyed(runs: pd.DataFrame) -> pd.Series:
    """The config key of each run (index aligned)."""
    rows = runs[list(CONFIG_KEYS)].itertuples(index=False, name=None)
    return pd.Series([config_key(r) for r in rows], index=runs.index, dtype=object)


class ByConfig(dict):
    """config key -> row positions in `frame`; `runs(key)` gives that configuration's runs."""

    def __init__(self, frame: pd.DataFrame):
        super().__init__()
        self.frame = frame
        for pos, k in enumerate(keyed(frame)):
            self.setdefault(k, []).append(pos)

    def runs(self, key: tuple) -> pd.DataFrame:
        return self.frame.iloc[self[key]]

    def means(self, column: str) -> dict[tuple, float]:
        """config key -> mean of `column` over its runs (NaN-skipping; NaN when none is defined).
        A dict, not a Series: tuple labels would become a MultiIndex that turns None into NaN."""
        values = self.frame[column].to_numpy(dtype=float)
        return {
            k: float(np.nanmean(values[pos])) if np.isfinite(values[pos]).any() else math.nan for k, pos in self.items()
        }


def by_config(runs: pd.DataFrame) -> ByConfig:
    """The configurations (CONFIG_KEYS; seeds and splits pooled) of `runs`."""
    return ByConfig(runs)


def group_verdict(runs: pd.DataFrame, cache: PredictionCache, prefer: tuple[str, str] | None = None) -> GroupVerdict:
    """Winner, runner-up and best baseline of one group's completed runs, with both comparisons.
    `prefer`: (column, what it is called) ranked on instead of validation RMSE when every run has it
    (the cmapss-benchmark preset: val_benchmark_rmse, the benchmark protocol on validation units)."""
    rank_col, selected_on = ranking_metric(runs, SELECTION_METRIC)
    if prefer and prefer[0] in runs and runs[prefer[0]].notna().all():
        rank_col, selected_on = prefer
    configs = by_config(runs)
    means = configs.means(rank_col)
    # best first; ties go to the first configuration in CONFIG_KEYS order (as tables.best_configurations)
    ranked = sorted(
        (k for k, v in means.items() if not math.isnan(v)),
        key=lambda k: (means[k], tuple((v is None, "" if v is None else v) for v in k)),
    )
    base = [k for k in ranked if is_baseline(k[CONFIG_KEYS.index("model")])]
    ddrsa = [k for k in ranked if k not in base]
    seen, best_per_model = set(), []
    for k in base:
        if k[CONFIG_KEYS.index("model")] not in seen:
            seen.add(k[CONFIG_KEYS.index("model")])
            best_per_model.append(k)
    winner = ddrsa[0] if ddrsa else None
    runner = ddrsa[1] if len(ddrsa) > 1 else None
    best_base = base[0] if base else None
    of = {k: configs.runs(k) for k in (winner, runner, best_base) if k is not None}
    vs_b = compare(cache, "best baseline", of[winner], of[best_base]) if winner and best_base else None
    vs_r = compare(cache, "runner-up", of[winner], of[runner]) if winner and runner else None
    return GroupVerdict(winner, runner, best_base, best_per_model, vs_b, vs_r, len(ddrsa), selected_on, rank_col)


def headline_verdicts(df: pd.DataFrame, cache: PredictionCache) -> dict[tuple, GroupVerdict]:
    """(dataset, subset) -> GroupVerdict over the completed runs (the headline's groups)."""
    done = completed(df)
    if not len(done):
        return {}
    return {(ds, sub): group_verdict(g, cache) for (ds, sub), g in done.groupby(["dataset", "subset"], sort=True)}


def unit_interval_text(interval: Interval | None, fmt: str = ".2f") -> str:
    """`[10.91, 14.83] over test units` or the unavailable note."""
    if interval is None:
        return f"{OVER_UNITS}: {UNAVAILABLE}"
    return f"[{interval.low:{fmt}}, {interval.high:{fmt}}] {OVER_UNITS}"


def annotate_best(
    best: pd.DataFrame, df: pd.DataFrame, cache: PredictionCache, verdicts: dict[tuple, GroupVerdict]
) -> pd.DataFrame:
    """best_configurations plus: `baseline` (a yardstick model's row), `rul_rmse_units_low/_high`
    (95% bootstrap of the test RMSE over test units; NaN when unavailable) and, on each group's
    winner row of the RMSE criterion, the paired comparisons `vs_best_baseline_*` and
    `vs_runner_up_*` (`Comparison.columns`)."""
    out = best.copy()
    if not len(out):
        return out.assign(
            baseline=pd.Series(dtype=bool),
            rul_rmse_units_low=pd.Series(dtype=float),
            rul_rmse_units_high=pd.Series(dtype=float),
        )
    configs = by_config(completed(df))
    out["baseline"] = out["model"].map(is_baseline).astype(bool)
    lows, highs, extra = [], [], []
    for _, row in out.iterrows():
        k = row_key(row)
        iv = cache.interval(configs.runs(k), TEST_RMSE) if k in configs else None
        lows.append(iv.low if iv else math.nan)
        highs.append(iv.high if iv else math.nan)
        v = verdicts.get((row["dataset"], row["subset"]))
        cols = {}
        if v is not None and row["criterion"] == "RMSE" and k == v.winner:
            for prefix, comp in (("vs_best_baseline", v.vs_baseline), ("vs_runner_up", v.vs_runner_up)):
                if comp is not None:
                    cols.update(comp.columns(prefix))
        extra.append(cols)
    out["rul_rmse_units_low"], out["rul_rmse_units_high"] = lows, highs
    more = pd.DataFrame(extra, index=out.index)
    return pd.concat([out, more], axis=1)


def annotate_board(board: pd.DataFrame, df: pd.DataFrame, cache: PredictionCache) -> pd.DataFrame:
    """Leaderboard plus `rul_rmse_units_low/_high` where an interval over test units was computed
    (the chosen configurations, runners-up and baselines: the verdicts' configurations)."""
    out = board.copy()
    lows, highs = [], []
    configs = by_config(completed(df))
    run_dirs = configs.frame["run_dir"].to_numpy() if len(configs.frame) else np.array([])
    for row in out[list(CONFIG_KEYS)].itertuples(index=False, name=None):
        k = config_key(row)
        iv = cache.lookup(run_dirs[configs[k]], TEST_RMSE) if k in configs else None
        lows.append(iv.low if iv else math.nan)
        highs.append(iv.high if iv else math.nan)
    out["rul_rmse_units_low"], out["rul_rmse_units_high"] = lows, highs
    return out


def ensure_intervals(df: pd.DataFrame, cache: PredictionCache, verdicts: dict[tuple, GroupVerdict]) -> None:
    """Compute the test-RMSE interval over test units of every verdict's configurations (winner,
    runner-up, each baseline model's best), so the leaderboard can show them."""
    configs = by_config(completed(df))
    for v in verdicts.values():
        for k in {v.winner, v.runner_up, *v.baselines} - {None}:
            cache.interval(configs.runs(k), TEST_RMSE)


def floor_sentence(df: pd.DataFrame, dataset: str, subset: str) -> str:
    """One sentence naming the age-only floor (the km baseline) of a dataset/subset; '' without km."""
    done = completed(df)
    if not len(done):
        return ""
    km = done[(done["model"] == FLOOR_MODEL) & (done["dataset"] == dataset) & (done["subset"] == subset)]
    if not len(km):
        return ""
    parts = [f"test RMSE {km['rul_rmse'].mean():.2f}", f"C-index {km['concordance_index'].mean():.3f}"]
    if "benchmark_rmse" in km and km["benchmark_rmse"].notna().any():
        parts.append(f"benchmark capped RMSE {km['benchmark_rmse'].mean():.2f}")
    where = f"{dataset} {subset}" if dataset == "turbofan" and subset else dataset
    return (
        f"Age-only floor on {where} (km: Kaplan-Meier on training lifetimes conditioned on the window's age, "
        f"no sensor): {', '.join(parts)} (mean over {len(km)} run(s)); read every model's numbers against it."
    )
