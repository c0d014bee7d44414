"""Prefect 3 flow `ddrsa-analysis`: analyse a sweep folder (finished, running or crashed).

    python flows/analysis.py --output-dir parallel_experiments [--append-to-history --run-label L]

Thin wiring around `reports.report.run_analysis` (CSVs, charts, report.html) plus Prefect
artifacts. Also called as a subflow by the sweep flow.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: repo root importable; a slow temporary server is OK
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import (create_link_artifact, create_markdown_artifact,  # noqa: E402
                               create_table_artifact)

KEY_PREFIX = "ddrsa"


def artifact_key(name: str) -> str:
    """Prefect artifact key: lowercase letters, digits and dashes only."""
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(part for part in cleaned.split("-") if part)


def _table(df) -> list[dict]:
    from reports.tables import nan_to_none

    return nan_to_none(df.to_dict(orient="records"))


@flow(name="ddrsa-analysis")
def analysis_flow(output_dir: str = "parallel_experiments", append_to_history: bool = False,
                  run_label: str | None = None) -> dict:
    """Analyse `output_dir` in place; publish table, markdown and link artifacts.

    Returns {"counts": {...}, "report": path, "summary_statistics": path,
    "best_configurations": path, "charts": {name: html path}, "history_lines_added": int,
    "notes": [str], "selected_on": what ranked the winners ("validation" or the fallback),
    "data_sources": {dataset: [data_source, ...]}}.
    """
    from reports.report import headline_markdown, run_analysis, selection_summary

    logger = get_run_logger()
    res = run_analysis(output_dir, append_to_history=append_to_history, run_label=run_label)
    create_table_artifact(_table(res.best), key=f"{KEY_PREFIX}-best-configurations",
                          description="Best configuration per dataset, model and criterion: chosen on validation "
                                      "metrics (column selected_on), test metrics shown (means across seeds)")
    create_table_artifact(_table(res.summary), key=f"{KEY_PREFIX}-summary-statistics",
                          description="Per dataset/model statistics of completed experiments")
    create_markdown_artifact(headline_markdown(res), key=f"{KEY_PREFIX}-sweep-headline",
                             description="DDRSA sweep headline")
    create_link_artifact(res.files["report"].as_uri(), link_text="report.html",
                         key=f"{KEY_PREFIX}-report", description="Self-contained sweep report")
    for name, paths in res.charts.items():
        create_link_artifact(paths["html"].as_uri(), link_text=f"{name}.html",
                             key=artifact_key(f"{KEY_PREFIX}-chart-{name}"), description=f"Interactive chart {name}")
    logger.info("analysis of %s: %s; report %s", res.output_dir, res.counts, res.files["report"])
    return {"counts": res.counts, "report": str(res.files["report"]),
            "summary_statistics": str(res.files["summary_statistics"]),
            "best_configurations": str(res.files["best_configurations"]),
            "charts": {n: str(p["html"]) for n, p in res.charts.items()},
            "history_lines_added": res.history_lines_added, "notes": res.notes,
            "selected_on": selection_summary(res.best), "data_sources": res.data_sources}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flows/analysis.py", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="parallel_experiments",
                        help="sweep output folder (all_results.json, experiment_manifest.json, logs/)")
    parser.add_argument("--append-to-history", action="store_true",
                        help="append this run's bests to OUTPUT_DIR/sweep_history.jsonl")
    parser.add_argument("--run-label", default=None, help="label of this run in the history (default: time)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.output_dir)
    if not out.exists():
        print(f"error: output directory {str(out)!r} does not exist", file=sys.stderr)
        return 2
    if not out.is_dir():
        print(f"error: output directory {str(out)!r} is not a directory", file=sys.stderr)
        return 2
    from reports.tables import data_source_line

    summary = analysis_flow(str(out), append_to_history=args.append_to_history, run_label=args.run_label)
    c = summary["counts"]
    print(f"{c['completed']} completed, {c['failed']} failed, {c['diverged']} diverged, {c['pending']} pending;"
          f" winners ranked on {summary['selected_on']}, test metrics reported;"
          f" data: {data_source_line(summary['data_sources'])}; report: {summary['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
