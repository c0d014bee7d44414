"""Single training run: `python -m ddrsa.train --dataset turbofan --model lstm_basic ...`.

Its flags are the fields of `ExperimentConfig` (one definition, ddrsa/config.py), plus where to
write and how to report. Charts of the run: `python -m reports.run_charts RUN_DIR`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from ddrsa.cli import OneLineParser, add_model_arguments, field_flag, model_from_args, run_cli
from ddrsa.config import TRAINING_ONLY_FIELDS, ExperimentConfig, is_baseline
from ddrsa.errors import DDRSAError
from ddrsa.status import COMPLETED

__all__ = ["train", "main", "build_parser", "config_from_args"]


def train(config, run_dir, **kwargs):
    """`ddrsa.trainer.train` (imported lazily so that `--help` and input errors answer at once)."""
    from ddrsa.trainer import train as _train

    return _train(config, run_dir, **kwargs)


def build_parser(config_model: type[ExperimentConfig] = ExperimentConfig) -> OneLineParser:
    """Every field of `config_model` as a flag, then the run's own options."""
    p = OneLineParser(
        prog="python -m ddrsa.train",
        description="Train one DDRSA model (or fit a baseline: gbm, cox, km) and write its run "
        "folder (config, training log, checkpoints, test metrics, predictions).",
    )
    add_model_arguments(p.add_argument_group("experiment (ExperimentConfig fields)"), config_model)
    run = p.add_argument_group("run")
    run.add_argument("--output-dir", required=True, help="run folder to write (resumes if it holds this run)")
    run.add_argument(
        "--create-visualization",
        action="store_true",
        help="print the command for the charts of the run (`python -m reports.run_charts "
        "OUTPUT_DIR`, from OUTPUT_DIR/test_predictions.npz, which every finished run writes)",
    )
    run.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return p


def config_from_args(
    args: argparse.Namespace, config_model: type[ExperimentConfig] = ExperimentConfig
) -> ExperimentConfig:
    return model_from_args(args, config_model)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)  # ValidationError -> one line
    ignored = [
        field_flag(f, ExperimentConfig.model_fields[f])
        for f in TRAINING_ONLY_FIELDS
        if is_baseline(config.model) and getattr(args, f) != getattr(config, f)
    ]
    if ignored:
        print(
            f"python -m ddrsa.train: note: {config.model} is fitted, not trained: {', '.join(ignored)} ignored",
            file=sys.stderr,
        )
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise DDRSAError(f"--output-dir {out} is a file, not a folder")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    existed = out.exists()
    try:
        result = train(config, out)
    except Exception:
        if not existed and out.exists() and not (out / "checkpoint_last.pt").exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-written run
        raise
    if args.create_visualization and result.status == "completed":
        print(f"charts: python -m reports.run_charts {out}", file=sys.stderr)
    print(json.dumps({"status": result.status, "run_dir": str(out), **result.metrics}, indent=2))
    return 0 if result.status == COMPLETED else 1


if __name__ == "__main__":
    sys.exit(run_cli("python -m ddrsa.train", main))
