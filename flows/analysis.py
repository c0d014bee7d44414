"""Prefect 3 flow `ddrsa-analysis`: analyse a sweep folder (finished, running or crashed).

    python flows/analysis.py --output-dir parallel_experiments [--append-to-history --run-label L]

Thin wiring around `reports.report.run_analysis` (CSVs, charts, report.html) plus Prefect
artifacts. Also called as a subflow by the sweep flow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: repo root importable; a slow temporary server is OK
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger  # noqa: E402

from flows.artifact_images import embedded_png  # noqa: E402
from flows.run_ops import analysis_run_name  # noqa: E402

KEY_PREFIX = "ddrsa"
HEADLINE_CHART = "model_comparison"  # the chart shown in the overview artifact on the flow run page


def artifact_key(name: str) -> str:
    """Prefect artifact key: lowercase letters, digits and dashes only."""
    from flows.run_ops import slug

    return slug(name)


def artifact_scope(run_label: str | None, output_dir: str | os.PathLike) -> str:
    """What a sweep's artifact keys are scoped by: its preset (run label) AND its output folder's
    name, so only runs of the same study replace each other's "latest" artifacts: `batch-study`
    for the deployment's folder `parallel_experiments/batch-study` (folder named like the preset),
    `quick-comparison-fault-drill` for the same preset run into `fault-drill/`, `my-sweep` for a
    sweep without a preset in `my-sweep/`."""
    label, folder = artifact_key(run_label or ""), artifact_key(Path(output_dir).resolve().name)
    parts = [label] + ([folder] if folder and folder != label else [])
    return "-".join(p for p in parts if p) or "sweep"


def scoped_key(scope: str, name: str) -> str:
    """`ddrsa-<name>-<scope>`, e.g. ddrsa-best-configurations-batch-study."""
    return artifact_key(f"{KEY_PREFIX}-{name}-{scope}")


def _table(df) -> list[dict]:
    from reports.tables import nan_to_none

    return nan_to_none(df.to_dict(orient="records"))


# the chart drawn for a hyperparameter that varies in the grid (reports/report.py build_charts)
HP_CHARTS = {
    "batch_size": "batch_size_analysis",
    "learning_rate": "learning_rate_analysis",
    "nasa_weight": "nasa_loss_impact",
}
MAX_INLINE_CHARTS = 3  # each inline PNG (~45 kB) is stored with the run in the server's database


def overview_charts(res, varying: list[str]) -> list[str]:
    """Charts shown inline on the sweep's run: the model comparison, then one per hyperparameter
    that varies in this grid (its own analysis chart, else the metric-vs-hyperparameters panels)."""
    names = [HEADLINE_CHART] + [HP_CHARTS.get(hp, "rul_rmse_vs_hyperparameters") for hp in varying]
    names = [n for n in dict.fromkeys(names) if n in res.charts and Path(res.charts[n]["png"]).is_file()]
    return names[:MAX_INLINE_CHARTS]


def overview_markdown(res, headline: str, items=None) -> str:
    """What an operator reads on the sweep's flow run page: the answers table (winner per dataset,
    varying hyperparameters, test metrics with intervals, runner-up, margin, best baseline), the
    headline (data, counts, winners) and the charts (inline PNG)."""
    from reports.tables import HYPERPARAMETERS
    from reports.winners import answers, answers_markdown

    items = answers(res.leaderboard) if items is None else items
    varying = [hp for hp in HYPERPARAMETERS if any(hp in a.varying for a in items)]
    lines = ["## Best configuration per dataset", "", answers_markdown(items), "", headline, ""]
    for name in overview_charts(res, varying):
        lines += [f"## Chart: {name.replace('_', ' ')}", "", embedded_png(res.charts[name]["png"], name), ""]
    return "\n".join(lines)


def publish(key: str, kind: str, data, description: str) -> None:
    """An artifact on the SWEEP's flow run: the parent run when this flow is its subflow, else this
    run (the analysis command). The client's public `create_artifact` names the run; the
    `create_*_artifact` helpers attach to the current (sub)flow run only. `kind`: table (data: a
    list of dicts), markdown (text) or link (data: the URL, `description` its text)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.runtime import flow_run

    from reports.tables import nan_to_none

    if kind == "table":
        data = json.dumps(nan_to_none(list(data)), default=str)
    elif kind == "link":
        data = f"[{description}]({data})"
    target = flow_run.parent_flow_run_id or flow_run.id
    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(key=key, type=kind, description=description, data=data, flow_run_id=target)
        )


def publish_overview(markdown: str, key: str, description: str) -> None:
    """The overview markdown artifact on the sweep's flow run (`publish`)."""
    publish(key, "markdown", markdown, description)


@flow(name="ddrsa-analysis", flow_run_name=analysis_run_name)
def analysis_flow(
    output_dir: str = "parallel_experiments", append_to_history: bool = False, run_label: str | None = None
) -> dict:
    """Analyse `output_dir` in place; publish table, markdown and link artifacts ON THE SWEEP'S
    FLOW RUN (the parent run when this runs as its subflow: `publish`), so the sweep's own
    Artifacts tab answers "who won".

    Artifact keys are `ddrsa-...-<scope>` (`artifact_scope`: the preset and the output folder).
    `ddrsa-best-configurations-<scope>`: one row per dataset (and subset): verdict, winner, the
    hyperparameters that vary in this grid, test metrics with intervals, runner-up, margin, best
    baseline (reports/winners.py); `ddrsa-sweep-overview-<scope>`: that table, the headline and the
    charts inline; `ddrsa-summary-statistics-<scope>`, `ddrsa-sweep-headline-<scope>`,
    `ddrsa-report-<scope>`, `ddrsa-chart-<name>-<scope>` links.

    Returns {"counts": {...}, "report": path, "summary_statistics": path,
    "best_configurations": path, "charts": {name: html path}, "history_lines_added": int,
    "notes": [str], "selected_on": what ranked the winners ("validation" or the fallback),
    "data_sources": {dataset: [data_source, ...]}, "artifact_scope": str, "winners": [str] (the
    best model per dataset/subset and the C-MAPSS benchmark lines, as the terminal prints them)}.
    """
    from reports.report import headline_markdown, run_analysis, selection_summary, winner_lines
    from reports.winners import answers, answers_table

    logger = get_run_logger()
    res = run_analysis(output_dir, append_to_history=append_to_history, run_label=run_label)
    scope = artifact_scope(run_label, res.output_dir)
    items = answers(res.leaderboard)
    publish(
        scoped_key(scope, "best-configurations"),
        "table",
        answers_table(items),
        "Best configuration per dataset: chosen on validation, test metrics with their interval, runner-up "
        "and margin, best baseline; 'no model beats the floor' when the winner does not beat the age-only "
        "floor (km) or chance",
    )
    publish(
        scoped_key(scope, "summary-statistics"),
        "table",
        _table(res.summary),
        "Per dataset/model statistics of completed experiments",
    )
    headline = headline_markdown(res)
    publish(scoped_key(scope, "sweep-headline"), "markdown", headline, "DDRSA sweep headline")
    publish_overview(
        overview_markdown(res, headline, items),
        scoped_key(scope, "sweep-overview"),
        f"DDRSA sweep {res.output_dir}: best configuration per dataset, headline, charts",
    )
    publish(scoped_key(scope, "report"), "link", res.files["report"].as_uri(), "report.html")
    for name, paths in res.charts.items():
        publish(scoped_key(scope, f"chart-{name}"), "link", paths["html"].as_uri(), f"{name}.html")
    logger.info("analysis of %s: %s; report %s", res.output_dir, res.counts, res.files["report"])
    return {
        "counts": res.counts,
        "report": str(res.files["report"]),
        "summary_statistics": str(res.files["summary_statistics"]),
        "best_configurations": str(res.files["best_configurations"]),
        "charts": {n: str(p["html"]) for n, p in res.charts.items()},
        "history_lines_added": res.history_lines_added,
        "notes": res.notes,
        "selected_on": selection_summary(res.best),
        "data_sources": res.data_sources,
        "artifact_scope": scope,
        "winners": winner_lines(res) + res.benchmark,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flows/analysis.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        default="parallel_experiments",
        help="sweep output folder (all_results.json, experiment_manifest.json, logs/)",
    )
    parser.add_argument(
        "--append-to-history", action="store_true", help="append this run's bests to OUTPUT_DIR/sweep_history.jsonl"
    )
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
    from flows.server import api_server
    from reports.tables import data_source_line

    with api_server(out):  # PREFECT_API_URL, else a server with its database in OUTPUT_DIR/.prefect
        summary = analysis_flow(str(out), append_to_history=args.append_to_history, run_label=args.run_label)
    c = summary["counts"]
    print(
        f"{c['completed']} completed, {c['failed']} failed, {c['diverged']} diverged, {c['pending']} pending;"
        f" winners ranked on {summary['selected_on']}, test metrics reported;"
        f" data: {data_source_line(summary['data_sources'])}; report: {summary['report']}"
    )
    for line in summary["winners"]:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
