"""Size and precision of a run's test_predictions.npz (docs/CONTRACTS.md, per-window predictions).

    DDRSA_DATA_DIR=/work/shared/data python benchmarks/bench_predictions.py [--models paper km] [--epochs 1]

For each setting (FD001 held-out at the library defaults K 128 / L 64 with every window; FD001
official at the benchmark preset's K 30 / L 125; the synthetic quick settings of the default preset
and of the full-grid benchmark) trains or fits each model into a temporary folder and prints the
file's size, its windows, the bytes per window and the float16 storage error (largest |S16 - S64|
and largest |stored expected time - sum_k S64(k)|).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddrsa.config import ExperimentConfig
from ddrsa.metrics import expected_time
from ddrsa.run_predictions import FILE_NAME, load_predictions
from ddrsa.trainer import train

SETTINGS = {
    "FD001 held-out K128 L64 (real)": {"dataset": "turbofan", "data_source": "real"},
    "FD001 official K30 L125 (real)": {
        "dataset": "turbofan",
        "data_source": "real",
        "test_split": "official",
        "lookback_window": 30,
        "pred_horizon": 125,
    },
    "synthetic turbofan, default preset (stride 32)": {
        "dataset": "turbofan",
        "data_source": "synthetic",
        "window_stride": 32,
    },
    "synthetic azure_pm, default preset (stride 32)": {
        "dataset": "azure_pm",
        "data_source": "synthetic",
        "window_stride": 32,
    },
    "synthetic turbofan, full-grid bench (6 units)": {
        "dataset": "turbofan",
        "data_source": "synthetic",
        "max_units": 6,
    },
    "synthetic azure_pm, full-grid bench (6 units)": {
        "dataset": "azure_pm",
        "data_source": "synthetic",
        "max_units": 6,
    },
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["paper", "km"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="substrings of the settings to run")
    args = p.parse_args()
    os.environ.setdefault("DDRSA_TORCH_THREADS", "1")
    print(
        f"{'setting':48s} {'model':6s} {'windows':>7s} {'L':>4s} {'bytes':>9s} {'B/window':>8s} "
        f"{'max|dS|':>8s} {'max|dE|':>8s} {'s':>6s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, fields in SETTINGS.items():
            if args.only and not any(o in name for o in args.only):
                continue
            for model in args.models:
                config = ExperimentConfig(model=model, num_epochs=args.epochs, **fields)
                run_dir = Path(tmp) / f"{abs(hash(name))}-{model}"
                t0 = time.perf_counter()
                result = train(config, run_dir, return_predictions=True)
                seconds = time.perf_counter() - t0
                exact = result.predictions["test_survival"]
                stored = load_predictions(run_dir)
                size = (run_dir / FILE_NAME).stat().st_size
                n = len(stored["test_unit"])
                d_s = float(np.abs(stored["test_survival"] - exact).max())
                d_e = float(np.abs(stored["test_expected_time"] - expected_time(exact)).max())
                print(
                    f"{name:48s} {model:6s} {n:7d} {exact.shape[1]:4d} {size:9d} {size / n:8.1f} "
                    f"{d_s:8.1e} {d_e:8.1e} {seconds:6.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
