"""GPU benchmark, one prepared script for a session that has a GPU (see BENCHMARKS.md).

    python benchmarks/bench_gpu.py [--out DIR] [--quick]

1. Every model variant on real FD001 (K=128, L=64, batch 128): seconds per epoch, windows per
   second and peak GPU memory over a few epochs (AMP on, bf16 where supported).
2. `lstm_basic` on FD001 for 100 epochs (patience 1000 so it never stops early): wall seconds
   (target: under 60 s on one H200).
3. Packing: the same 8 `lstm_basic` experiments (20 epochs) with --gpus-per-experiment 1, 0.5,
   0.25 and 0.125 on one GPU: experiments per hour and the speed-up over 1 per GPU (target >= 3x).
Writes results.json and results.md into --out (default $OUT or ./gpu_bench).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ["paper", "lstm_basic", "gru_basic", "lstm_deep", "gru_deep", "transformer_basic",
            "transformer_deep", "probsparse_basic", "probsparse_deep"]


def variant_throughput(epochs: int) -> list[dict]:
    import torch

    from ddrsa.config import ExperimentConfig
    from ddrsa.data import load_dataset
    from ddrsa.trainer import train

    rows = []
    for name in VARIANTS:
        config = ExperimentConfig(model=name, num_epochs=epochs, patience=1000, data_source="real")
        n_train = len(load_dataset(config.data_config()).train)
        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, Path(tmp) / "run")
            log = json.loads((Path(tmp) / "run" / "training_log.json").read_text())
        seconds = [e["seconds"] for e in log["epochs"]][1:] or [log["epochs"][0]["seconds"]]  # skip warm-up
        per_epoch = sum(seconds) / len(seconds)
        rows.append({"model": name, "seconds_per_epoch": per_epoch, "windows_per_second": n_train / per_epoch,
                     "peak_gpu_mb": result.peak_gpu_mb, "device": result.device,
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "test_rmse": result.metrics.get("rul_rmse")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def lstm_100_epochs() -> dict:
    from ddrsa.config import ExperimentConfig
    from ddrsa.trainer import train

    config = ExperimentConfig(model="lstm_basic", num_epochs=100, patience=1000, data_source="real")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train(config, Path(tmp) / "run")
        wall = time.perf_counter() - t0
    out = {"wall_seconds": wall, "train_seconds": result.train_seconds, "metrics": result.metrics}
    print(json.dumps({"lstm_basic_100_epochs_s": wall}), flush=True)
    return out


def packing(epochs: int) -> list[dict]:
    rows = []
    for share in (1.0, 0.5, 0.25, 0.125):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "flows/sweep.py", "--datasets", "turbofan", "--models", "lstm_basic",
                   "--seeds", *[str(s) for s in range(8)], "--num-epochs", str(epochs), "--patience", "1000",
                   "--gpus-per-experiment", str(share), "--n-workers", "1", "--no-analysis",
                   "--output-dir", tmp]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            records = json.loads((Path(tmp) / "all_results.json").read_text()) if proc.returncode == 0 else []
        rows.append({"gpus_per_experiment": share, "wall_seconds": wall, "experiments": len(records),
                     "experiments_per_hour": 3600 * len(records) / wall if records else 0,
                     "peak_gpu_mb": max((r.get("peak_gpu_mb") or 0) for r in records) if records else None,
                     "rc": proc.returncode, "stderr_tail": proc.stderr[-500:] if proc.returncode else ""})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["experiments_per_hour"] or 1
    for row in rows:
        row["speedup_vs_one_per_gpu"] = row["experiments_per_hour"] / base
    return rows


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_bench"))
    p.add_argument("--quick", action="store_true", help="fewer epochs everywhere")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"variants": variant_throughput(2 if args.quick else 4)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    results["lstm_basic_100_epochs"] = lstm_100_epochs()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    results["packing"] = packing(5 if args.quick else 20)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| model | s/epoch | windows/s | peak GPU MB |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['seconds_per_epoch']:.2f} | {r['windows_per_second']:.0f} | {r['peak_gpu_mb']} |"
              for r in results["variants"]]
    lines += ["", f"lstm_basic 100 epochs: {results['lstm_basic_100_epochs']['wall_seconds']:.1f} s", "",
              "| GPUs per experiment | experiments/h | speed-up |", "|---|---|---|"]
    lines += [f"| {r['gpus_per_experiment']} | {r['experiments_per_hour']:.0f} | {r['speedup_vs_one_per_gpu']:.2f}x |"
              for r in results["packing"]]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
