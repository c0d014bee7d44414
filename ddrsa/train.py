"""Single training run: `python -m ddrsa.train --dataset turbofan --model lstm_basic ...`."""
from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

from ddrsa.cli import OneLineParser, run_cli
from ddrsa.config import ExperimentConfig
from ddrsa.errors import DDRSAError

__all__ = ["train", "main", "build_parser"]


def train(config, run_dir, **kwargs):
    """`ddrsa.trainer.train` (imported lazily so that `--help` and input errors answer at once)."""
    from ddrsa.trainer import train as _train

    return _train(config, run_dir, **kwargs)


def build_parser() -> OneLineParser:
    d = ExperimentConfig()
    p = OneLineParser(prog="python -m ddrsa.train",
                      description="Train one DDRSA model and write its run folder "
                                  "(config, training log, checkpoints, test metrics).")
    p.add_argument("--dataset", default=d.dataset, help="turbofan (NASA C-MAPSS) or azure_pm")
    p.add_argument("--subset", default=d.subset, help="C-MAPSS subset FD001-FD004 (turbofan only)")
    p.add_argument("--model", default=d.model, help="model variant, e.g. lstm_basic, gru_deep, paper")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per optimiser step")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam learning rate (> 0)")
    p.add_argument("--lambda-param", type=float, default=d.lambda_param,
                   help="DDRSA loss weight of the event-time term, in [0, 1]")
    p.add_argument("--nasa-weight", type=float, default=d.nasa_weight,
                   help="weight of the expected-NASA-score auxiliary loss (0 disables)")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout rate in [0, 1)")
    p.add_argument("--num-epochs", type=int, default=d.num_epochs, help="maximum epochs")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    p.add_argument("--lookback-window", type=int, default=d.lookback_window, help="K, history steps")
    p.add_argument("--pred-horizon", type=int, default=d.pred_horizon, help="L_max, future steps")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed of the run")
    p.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the unit split")
    p.add_argument("--downsample-hours", type=int, default=d.downsample_hours,
                   help="Azure PM: hours per time step")
    p.add_argument("--data-source", choices=["auto", "real", "synthetic"], default=None,
                   help="override DDRSA_DATA_SOURCE")
    p.add_argument("--max-units", type=int, default=None, help="use only this many units (quick runs)")
    p.add_argument("--window-stride", type=int, default=d.window_stride, help="keep every n-th window")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower)")
    p.add_argument("--output-dir", required=True, help="run folder to write (resumes if it holds this run)")
    p.add_argument("--create-visualization", action="store_true",
                   help="write Altair charts of the run (HTML and PNG) into OUTPUT_DIR/plots")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return p


def config_from_args(args) -> ExperimentConfig:
    fields = dict(dataset=args.dataset, subset=args.subset, model=args.model,
                  batch_size=args.batch_size, learning_rate=args.learning_rate,
                  lambda_param=args.lambda_param, nasa_weight=args.nasa_weight,
                  dropout=args.dropout, num_epochs=args.num_epochs, patience=args.patience,
                  lookback_window=args.lookback_window, pred_horizon=args.pred_horizon,
                  seed=args.seed, split_seed=args.split_seed, downsample_hours=args.downsample_hours,
                  data_source=args.data_source, max_units=args.max_units,
                  window_stride=args.window_stride, amp=not args.no_amp, compile=args.compile,
                  deterministic=args.deterministic)
    return ExperimentConfig(**fields)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)  # ValidationError -> one line
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise DDRSAError(f"--output-dir {out} is a file, not a folder")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    existed = out.exists()
    try:
        result = train(config, out, return_predictions=args.create_visualization)
    except Exception:
        if not existed and out.exists() and not (out / "checkpoint_last.pt").exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-written run
        raise
    if args.create_visualization:
        from reports.run_charts import write_run_charts

        write_run_charts(out, result.predictions, config)
    print(json.dumps({"status": result.status, "run_dir": str(out), **result.metrics}, indent=2))
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(run_cli("python -m ddrsa.train", main))
