"""GPU benchmark, one prepared script for a session that has a GPU (see BENCHMARKS.md).

    python benchmarks/bench_gpu.py [--out DIR] [--quick] [--sections fused packing ...]

1. Every model variant on real FD001 (K=128, L=64, batch 128): seconds per epoch, windows per
   second and peak GPU memory over a few epochs (AMP on, bf16 where supported).
2. `lstm_basic` on FD001 for 100 epochs (patience 1000 so it never stops early): wall seconds
   (target: under 60 s on one H200).
3. Packing: the same 8 `lstm_basic` experiments (20 epochs) with --gpus-per-experiment 1, 0.5,
   0.25 and 0.125 on one GPU: experiments per hour and the speed-up over 1 per GPU (target >= 3x).
4. Fused training (issue 12): 16 experiments each of `paper` and `lstm_basic` (seeds 0-15, one
   fusion group per model) as sweeps with `--fuse off --gpus-per-experiment 1` (one per GPU),
   `--fuse off --gpus-per-experiment 0.125` (packing) and `--fuse on`: experiments per hour, the
   fused speed-ups (targets >= 10x over one per GPU, >= 3x over packing) and the mean NVML GPU
   utilisation of each sweep (its gpu_utilization.csv).
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

VARIANTS = [
    "paper",
    "lstm_basic",
    "gru_basic",
    "lstm_deep",
    "gru_deep",
    "transformer_basic",
    "transformer_deep",
    "probsparse_basic",
    "probsparse_deep",
]


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
        rows.append(
            {
                "model": name,
                "seconds_per_epoch": per_epoch,
                "windows_per_second": n_train / per_epoch,
                "peak_gpu_mb": result.peak_gpu_mb,
                "device": result.device,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "test_rmse": result.metrics.get("rul_rmse"),
            }
        )
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


def packing(epochs: int, extra: list[str] | None = None) -> list[dict]:
    rows = []
    for share in (1.0, 0.5, 0.25, 0.125):
        with tempfile.TemporaryDirectory() as tmp:
            wall, records, rc, tail = _sweep(
                [
                    "--datasets",
                    "turbofan",
                    "--models",
                    "lstm_basic",
                    "--seeds",
                    *[str(s) for s in range(8)],
                    "--num-epochs",
                    str(epochs),
                    "--patience",
                    "1000",
                    "--gpus-per-experiment",
                    str(share),
                    "--n-workers",
                    "1",
                    *(extra or []),
                ],
                tmp,
            )
        records = records if rc == 0 else []
        rows.append(
            {
                "gpus_per_experiment": share,
                "wall_seconds": wall,
                "experiments": len(records),
                "experiments_per_hour": 3600 * len(records) / wall if records else 0,
                "peak_gpu_mb": max((r.get("peak_gpu_mb") or 0) for r in records) if records else None,
                "rc": rc,
                "stderr_tail": tail,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["experiments_per_hour"] or 1
    for row in rows:
        row["speedup_vs_one_per_gpu"] = row["experiments_per_hour"] / base
    return rows


def _sweep(args: list[str], out: str) -> tuple[float, list[dict], int, str]:
    """Run `python flows/sweep.py ARGS --output-dir OUT`: (wall s, records, exit code, stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "flows/sweep.py", *args, "--no-analysis", "--output-dir", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    path = Path(out) / "all_results.json"
    records = json.loads(path.read_text()) if path.is_file() else []
    return wall, records, proc.returncode, (proc.stdout[-300:] + proc.stderr[-500:]) if proc.returncode else ""


def mean_utilization(out: str) -> float | None:
    """Mean of the sweep's NVML utilisation samples (flows/gpu_monitor.py), in %; None without any."""
    from reports.tables import load_gpu_samples

    samples = load_gpu_samples(out)
    util = None if samples is None else samples["utilization_pct"].dropna()
    return float(util.mean()) if util is not None and len(util) else None


FUSED_MODES = {
    "one per GPU": ["--fuse", "off", "--gpus-per-experiment", "1"],
    "packed 0.125": ["--fuse", "off", "--gpus-per-experiment", "0.125"],
    "fused": ["--fuse", "on", "--gpus-per-experiment", "1"],
}


def fused(epochs: int, members: int = 16, models=("paper", "lstm_basic"), extra: list[str] | None = None) -> list[dict]:
    """Section 4: the same `members` experiments per model as one-per-GPU, packed and fused sweeps."""
    rows = []
    for model in models:
        by_mode = {}
        for mode, flags in FUSED_MODES.items():
            with tempfile.TemporaryDirectory() as tmp:
                wall, records, rc, tail = _sweep(
                    [
                        "--datasets",
                        "turbofan",
                        "--models",
                        model,
                        "--seeds",
                        *[str(s) for s in range(members)],
                        "--num-epochs",
                        str(epochs),
                        "--patience",
                        "1000",
                        "--n-workers",
                        "1",
                        *flags,
                        *(extra or []),
                    ],
                    tmp,
                )
                done = [r for r in records if r.get("status") == "completed"]
                row = {
                    "model": model,
                    "mode": mode,
                    "experiments": len(done),
                    "wall_seconds": wall,
                    "experiments_per_hour": 3600 * len(done) / wall if done else 0.0,
                    "gpu_utilization_pct": mean_utilization(tmp),
                    "rc": rc,
                    "tail": tail,
                }
            by_mode[mode] = row
            rows.append(row)
            print(json.dumps(row), flush=True)
        fused_rate = by_mode["fused"]["experiments_per_hour"]
        for mode in ("one per GPU", "packed 0.125"):
            base = by_mode[mode]["experiments_per_hour"]
            by_mode["fused"][f"speedup_vs_{mode.replace(' ', '_')}"] = fused_rate / base if base else None
    return rows


SECTIONS = ("variants", "lstm100", "packing", "fused")


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_bench"))
    p.add_argument("--quick", action="store_true", help="fewer epochs everywhere")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to measure")
    p.add_argument(
        "--extra",
        nargs=argparse.REMAINDER,
        default=[],
        help="more sweep flags for the packing and fused sections (a CPU try-out: --data-source synthetic ...)",
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=2))

    if "variants" in args.sections:
        results["variants"] = variant_throughput(2 if args.quick else 4)
        save()
    if "lstm100" in args.sections:
        results["lstm_basic_100_epochs"] = lstm_100_epochs()
        save()
    if "packing" in args.sections:
        results["packing"] = packing(5 if args.quick else 20, extra=args.extra)
        save()
    if "fused" in args.sections:
        results["fused"] = fused(2 if args.quick else 5, extra=args.extra)
        save()
    lines = []
    if "variants" in results:
        lines += ["| model | s/epoch | windows/s | peak GPU MB |", "|---|---|---|---|"]
        lines += [
            f"| {r['model']} | {r['seconds_per_epoch']:.2f} | {r['windows_per_second']:.0f} | {r['peak_gpu_mb']} |"
            for r in results["variants"]
        ] + [""]
    if "lstm_basic_100_epochs" in results:
        lines += [f"lstm_basic 100 epochs: {results['lstm_basic_100_epochs']['wall_seconds']:.1f} s", ""]
    if "packing" in results:
        lines += ["| GPUs per experiment | experiments/h | speed-up |", "|---|---|---|"]
        lines += [
            f"| {r['gpus_per_experiment']} | {r['experiments_per_hour']:.0f} | {r['speedup_vs_one_per_gpu']:.2f}x |"
            for r in results["packing"]
        ] + [""]
    if "fused" in results:
        lines += [
            "| model | sweep | experiments | wall s | experiments/h | GPU util % | fused speed-up |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["fused"]:
            ups = ", ".join(
                f"{k[len('speedup_vs_') :].replace('_', ' ')} {v:.1f}x"
                for k, v in r.items()
                if k.startswith("speedup_vs_") and v is not None
            )
            util = "" if r["gpu_utilization_pct"] is None else f"{r['gpu_utilization_pct']:.0f}"
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['experiments']} | {r['wall_seconds']:.0f} | "
                f"{r['experiments_per_hour']:.0f} | {util} | {ups} |"
            )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
