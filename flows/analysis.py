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

from flows.run_ops import analysis_run_name  # noqa: E402

KEY_PREFIX = "ddrsa"
HEADLINE_CHART = "model_comparison"  # the chart shown in the overview artifact on the flow run page
# test metrics first: the UI shows a wide table's left part and scrolls the rest
OVERVIEW_COLUMNS = ("dataset", "subset", "model", "criterion", "rul_rmse", "rul_mae", "concordance_index",
                    "nasa_score", "n_seeds", "batch_size", "learning_rate", "lambda_param", "nasa_weight", "dropout",
                    "selected_on", "data_source")


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


def _png_width(data: bytes) -> int | None:
    """Pixel width from a PNG's IHDR chunk (None if not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big")


def small_png(data: bytes) -> bytes:
    """The PNG re-encoded with a 256-colour palette, same pixels size (a chart: ~8x smaller, e.g.
    385 -> 45 kB; it is stored in the server's database with every run); as is without Pillow."""
    import io

    try:
        from PIL import Image
    except ImportError:
        return data
    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.convert("RGB").quantize(256).save(out, "PNG", optimize=True)
    return out.getvalue() if out.tell() < len(data) else data


def embedded_png(path: Path, alt: str, scale: int = 2) -> str:
    """An <img> with the PNG inline as a data: URI, shown at 1/`scale` of its pixel width (the
    charts are drawn at scale 2). The Prefect UI renders it inside a markdown artifact (a file://
    link it does not follow, and image artifacts print the whole URL under the image)."""
    import base64

    data = small_png(Path(path).read_bytes())
    width = _png_width(data)
    size = f' width="{width // scale}"' if width else ""
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"{size}>'


def overview_markdown(res, headline: str) -> str:
    """Headline text, the headline chart (inline PNG) and the best-configurations table (markdown):
    what an operator reads on the sweep's flow run page."""
    lines = [headline, ""]
    chart = res.charts.get(HEADLINE_CHART) or next(iter(res.charts.values()), None)
    if chart and Path(chart["png"]).is_file():
        name = HEADLINE_CHART if HEADLINE_CHART in res.charts else next(iter(res.charts))
        lines += [f"## Chart: {name.replace('_', ' ')}", "", embedded_png(chart["png"], name), ""]
    lines += ["## Best configurations", ""]
    if len(res.best):
        cols = [c for c in OVERVIEW_COLUMNS if c in res.best.columns]
        lines.append(res.best[cols].to_markdown(index=False, floatfmt=".4g"))
    else:
        lines.append("No completed experiment yet.")
    return "\n".join(lines)


def publish_overview(markdown: str, key: str, description: str) -> None:
    """A markdown artifact on the sweep's flow run: the parent run when this flow is its subflow,
    else this run (the analysis command)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.runtime import flow_run

    target = flow_run.parent_flow_run_id or flow_run.id
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(key=key, type="markdown", description=description, data=markdown,
                                              flow_run_id=target))


@flow(name="ddrsa-analysis", flow_run_name=analysis_run_name)
def analysis_flow(output_dir: str = "parallel_experiments", append_to_history: bool = False,
                  run_label: str | None = None) -> dict:
    """Analyse `output_dir` in place; publish table, markdown and link artifacts.

    Artifact keys are `ddrsa-...-<scope>`, scope = `run_label` (the sweep's preset) or the output
    folder's name (`artifact_scope`). The `ddrsa-sweep-overview-<scope>` markdown artifact (headline, headline chart
    inline, best configurations) is attached to the sweep's flow run when this runs as its subflow.

    Returns {"counts": {...}, "report": path, "summary_statistics": path,
    "best_configurations": path, "charts": {name: html path}, "history_lines_added": int,
    "notes": [str], "selected_on": what ranked the winners ("validation" or the fallback),
    "data_sources": {dataset: [data_source, ...]}, "artifact_scope": str, "winners": [str] (the
    best model per dataset/subset and the C-MAPSS benchmark lines, as the terminal prints them)}.
    """
    from reports.report import headline_markdown, run_analysis, selection_summary, winner_lines

    logger = get_run_logger()
    res = run_analysis(output_dir, append_to_history=append_to_history, run_label=run_label)
    scope = artifact_scope(run_label, res.output_dir)
    create_table_artifact(_table(res.best), key=scoped_key(scope, "best-configurations"),
                          description="Best configuration per dataset, model and criterion: chosen on validation "
                                      "metrics (column selected_on), test metrics shown (means across seeds)")
    create_table_artifact(_table(res.summary), key=scoped_key(scope, "summary-statistics"),
                          description="Per dataset/model statistics of completed experiments")
    headline = headline_markdown(res)
    create_markdown_artifact(headline, key=scoped_key(scope, "sweep-headline"), description="DDRSA sweep headline")
    publish_overview(overview_markdown(res, headline), scoped_key(scope, "sweep-overview"),
                     f"DDRSA sweep {res.output_dir}: headline, {HEADLINE_CHART} chart, best configurations")
    create_link_artifact(res.files["report"].as_uri(), link_text="report.html",
                         key=scoped_key(scope, "report"), description="Self-contained sweep report (open the file)")
    for name, paths in res.charts.items():
        create_link_artifact(paths["html"].as_uri(), link_text=f"{name}.html",
                             key=scoped_key(scope, f"chart-{name}"), description=f"Interactive chart {name}")
    logger.info("analysis of %s: %s; report %s", res.output_dir, res.counts, res.files["report"])
    return {"counts": res.counts, "report": str(res.files["report"]),
            "summary_statistics": str(res.files["summary_statistics"]),
            "best_configurations": str(res.files["best_configurations"]),
            "charts": {n: str(p["html"]) for n, p in res.charts.items()},
            "history_lines_added": res.history_lines_added, "notes": res.notes,
            "selected_on": selection_summary(res.best), "data_sources": res.data_sources,
            "artifact_scope": scope, "winners": winner_lines(res) + res.benchmark}


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

    from flows.server import api_server

    with api_server(out):  # PREFECT_API_URL, else a server with its database in OUTPUT_DIR/.prefect
        summary = analysis_flow(str(out), append_to_history=args.append_to_history, run_label=args.run_label)
    c = summary["counts"]
    print(f"{c['completed']} completed, {c['failed']} failed, {c['diverged']} diverged, {c['pending']} pending;"
          f" winners ranked on {summary['selected_on']}, test metrics reported;"
          f" data: {data_source_line(summary['data_sources'])}; report: {summary['report']}")
    for line in summary["winners"]:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
