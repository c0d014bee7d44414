"""Prefect 3 flow `ddrsa-score`: score a fleet table with a model package and publish the units at risk.

    python flows/score.py --model parallel_experiments/fleet/packages/pumps --data pumps-today.csv

Thin wiring around `ddrsa.score.score` (the scores CSV) and `reports.fleet_charts` (survival curves):
a table artifact `ddrsa-fleet-risk-<data name>` of the `top_n` riskiest units and a markdown artifact
`ddrsa-fleet-survival-<data name>` with the summary line and their survival curves (inline PNG).
Deployed as `ddrsa-score/fleet-nightly` (prefect.yaml).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: repo root importable; a slow temporary server is OK
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.analysis import artifact_key
from flows.artifact_images import embedded_png


def score_run_name() -> str:
    """`score-<data name>-<MMDD-HHMM UTC>`."""
    from prefect.runtime import flow_run

    from ddrsa.config import dataset_name

    data = str((flow_run.parameters or {}).get("data_path") or "fleet.csv")
    return artifact_key(f"score-{dataset_name(data)}-{datetime.now(timezone.utc):%m%d-%H%M}")


@flow(name="ddrsa-score", flow_run_name=score_run_name)
def ddrsa_score(
    model_dir: str,
    data_path: str,
    output_dir: str = "fleet_scores",
    top_n: int = 10,
    window: int | None = None,
    threshold: float = 0.5,
) -> dict:
    """Score every unit of `data_path` at its last step with the package `model_dir`; write
    OUTPUT_DIR/<data name>-<UTC time>.csv (and <data name>-latest.csv) and the survival chart;
    publish the `top_n` riskiest units. Returns {"scores", "n_units", "n_intervene", "summary"}."""
    from ddrsa.atomic import write_data
    from ddrsa.config import dataset_name
    from ddrsa.package import load_package
    from ddrsa.score import score, summary_line
    from reports.charts import save_chart
    from reports.fleet_charts import survival_curves

    logger = get_run_logger()
    package = load_package(model_dir)
    df = score(package, data_path, window=window, threshold=threshold)
    name = dataset_name(str(data_path))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = df.to_csv(index=False, float_format="%.6g")
    stamped = write_data(out / f"{name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.csv", text)
    write_data(out / f"{name}-latest.csv", text)
    summary = summary_line(df, package, data_path)
    top = df.head(top_n)
    create_table_artifact(
        top.astype(object).where(top.notna(), None).to_dict(orient="records"),
        key=artifact_key(f"ddrsa-fleet-risk-{name}"),
        description=f"The {len(top)} units of {name} most at risk (riskiest first): {summary}",
    )
    chart = save_chart(survival_curves(df, top_n, title=f"{name}: units most at risk"), out, f"{name}-survival")
    create_markdown_artifact(
        f"{summary}\n\n{embedded_png(chart['png'], 'survival curves')}",
        key=artifact_key(f"ddrsa-fleet-survival-{name}"),
        description=f"Predicted survival curves of the {len(top)} riskiest units of {name}",
    )
    logger.info("%s; scores in %s", summary, stamped)
    return {
        "scores": str(stamped),
        "n_units": len(df),
        "n_intervene": int(df["intervene_now"].sum()),
        "summary": summary,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python flows/score.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model package folder")
    p.add_argument("--data", required=True, help="fleet table to score")
    p.add_argument("--output-dir", default="fleet_scores")
    p.add_argument("--top-n", type=int, default=10)
    args = p.parse_args(argv)
    result = ddrsa_score(model_dir=args.model, data_path=args.data, output_dir=args.output_dir, top_n=args.top_n)
    print(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
