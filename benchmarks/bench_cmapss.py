"""C-MAPSS benchmark figures from one or more finished sweep folders, as Markdown for BENCHMARKS.md.

    python flows/sweep.py --preset cmapss-benchmark --output-dir /tmp/cmapss-bench/all
    python benchmarks/bench_cmapss.py /tmp/cmapss-bench/all [more folders ...]

Prints (1) per subset the configuration chosen on mean validation RMSE across seeds with its
benchmark RMSE (truth capped at 125), uncapped RMSE and NASA score as mean ± sd [95% t-interval]
(`reports.benchmark.benchmark_summary`, the report's own numbers), each baseline model's row, the
capped RMSE's 95% interval over the official test units and the chosen configuration's paired
comparisons with the best baseline and the runner-up (from the run folders' test_predictions.npz;
"unavailable" without them), and (2) every configuration of the grid with its per-seed means, so
the selection can be checked. Reads OUTPUT_DIR/all_results.json and the predictions; trains nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reports.benchmark import (  # noqa: E402
    BENCHMARK_METRICS,
    benchmark_runs,
    benchmark_summary,
    comparison_texts,
    mean_sd_ci,
    units_text,
)
from reports.tables import CONFIG_KEYS, load_records  # noqa: E402


def chosen_table(records: list[dict]) -> str:
    """`records`' run_dir must be absolute (main() makes them so) for the intervals over test units."""
    rows = [
        "| subset | role | chosen on | model | lr | NASA w | dropout | seeds | configs | RMSE (capped), "
        "over seeds | RMSE (capped), over test units | RMSE (uncapped) | NASA score | paired comparisons |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in benchmark_summary(records, output_dir="/").iterrows():
        cells = [mean_sd_ci(r, m, ".0f" if "nasa" in m else ".2f") for m in BENCHMARK_METRICS]
        cells.insert(1, units_text(r))
        rows.append(
            f"| {r['subset']} ({r['test_split']}) | {r['role']} | {r['selected_on']} | {r['model']} | "
            f"{r['learning_rate']:g} | {r['nasa_weight']:g} | {r['dropout']:g} | {r['n_seeds']} | "
            f"{r['n_configs']} | " + " | ".join(cells) + f" | {'; '.join(comparison_texts(r))} |"
        )
    return "\n".join(rows)


def grid_table(records: list[dict]) -> str:
    runs = benchmark_runs(records)
    rows = [
        "| subset | model | lr | NASA w | seeds | val RMSE (ranked on) | benchmark RMSE | epochs (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if not len(runs):
        return "\n".join(rows)
    keys = ["test_split", *CONFIG_KEYS]
    for key, g in runs.groupby(keys, sort=True):
        cfg = dict(zip(keys, key))
        rows.append(
            f"| {cfg['subset']} | {cfg['model']} | {cfg['learning_rate']:g} | {cfg['nasa_weight']:g} | "
            f"{len(g)} | {g['val_rul_rmse'].mean():.2f} ± {g['val_rul_rmse'].std(ddof=1):.2f} | "
            f"{g['benchmark_rmse'].mean():.2f} ± {g['benchmark_rmse'].std(ddof=1):.2f} | "
            f"{g['epochs_trained'].mean():.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="sweep output folders (all_results.json)")
    args = p.parse_args()
    records = [
        {**r, "run_dir": str(Path(f).resolve() / str(r.get("run_dir") or ""))}
        for f in args.folders
        for r in load_records(f)
    ]
    if not records:
        print("no records in " + " ".join(args.folders), file=sys.stderr)
        sys.exit(2)
    print(chosen_table(records))
    print()
    print(grid_table(records))


if __name__ == "__main__":
    main()
