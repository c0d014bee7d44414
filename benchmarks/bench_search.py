"""Grid vs successive halving vs TPE on a 72-configuration grid of real C-MAPSS FD001 (issue 13).

    nice -n 19 python benchmarks/bench_search.py [--root /tmp/ddrsa_bench_search] [--epochs 9]
        [--parts grid halving tpe] [--n-trials 72]

Grid: paper, gru_basic x learning rate 1e-4 3e-4 1e-3 3e-3 1e-2 3e-2 x batch 64 256 x dropout 0 0.2 0.4
(72 configurations, seed 42), real FD001 held-out split, made cheap per epoch for a shared 2-core
machine: the first --max-units units, every --window-stride-th window, K=30, L=64.
Each part is one `python flows/sweep.py ... --no-analysis` subprocess with its own output folder
(fresh), wall clock measured from outside (start-up of its Prefect server and Dask cluster counts):
  grid     --search grid, every configuration to --epochs epochs
  halving  --search halving --min-epochs 1 --reduction-factor 3 (rungs 1, 3, 9 for 9 epochs)
  tpe      --search tpe --n-trials N over the same flags (each with 6/2/3 values: categorical), pruned
           on the same rungs
Selection is on validation only, as in the report: the grid's pick is the completed configuration
with the lowest validation loss; halving's and TPE's picks likewise among their completed (top-rung)
configurations. Printed and written to ROOT/bench_search.json: test RMSE of each pick, the grid's
best test RMSE (oracle, for reference), epochs trained against the full grid's 72 x epochs, wall.
With one seed per configuration there is no across-seed confidence interval: the criterion is
"within 5% of the grid pick's test RMSE".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = [
    "--datasets",
    "turbofan",
    "--models",
    "paper",
    "gru_basic",
    "--learning-rates",
    "1e-4",
    "3e-4",
    "1e-3",
    "3e-3",
    "1e-2",
    "3e-2",
    "--batch-sizes",
    "64",
    "256",
    "--dropout-rates",
    "0",
    "0.2",
    "0.4",
    "--seeds",
    "42",
]


def data_args(a) -> list[str]:
    return [
        "--data-source",
        "real",
        "--subset",
        "FD001",
        "--max-units",
        str(a.max_units),
        "--window-stride",
        str(a.window_stride),
        "--lookback-window",
        "30",
        "--pred-horizon",
        "64",
        "--num-epochs",
        str(a.epochs),
        "--patience",
        str(a.epochs + 1),
    ]


def snapshot_tree(dest: Path) -> Path:
    """Copy the checkout's code (not .venv, not outputs) so edits made to the working tree while
    the benchmark runs cannot change or break it."""
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "parallel_experiments*", "tests")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def run_part(name: str, tree: Path, out: Path, extra: list[str], a, env: dict) -> dict:
    args = [
        sys.executable,
        "flows/sweep.py",
        *GRID,
        *data_args(a),
        "--n-workers",
        "1",
        "--gpus-per-experiment",
        "0.5",
        "--no-analysis",
        "--fresh",
        "--output-dir",
        str(out),
        *extra,
    ]
    log = out.parent / f"{name}.log"
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(args, cwd=tree, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    print(f"[{name}] exit {proc.returncode} in {wall:.0f} s (log {log})", flush=True)
    return {"wall_seconds": wall, "exit": proc.returncode, "command": " ".join(args[1:])}


def summarise(out: Path, a) -> dict:
    records = json.loads((out / "all_results.json").read_text())
    done = [r for r in records if r["status"] == "completed" and r.get("metrics")]
    epochs = sum(r.get("epochs_trained") or 0 for r in records)
    pick = min(done, key=lambda r: r["metrics"]["val_loss"]) if done else None
    oracle = min(done, key=lambda r: r["metrics"]["rul_rmse"]) if done else None
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "configurations": len(records),
        "statuses": statuses,
        "epochs_trained": epochs,
        "full_grid_epochs": 72 * a.epochs,
        "epoch_fraction": epochs / (72 * a.epochs),
        "train_seconds": sum(r.get("train_seconds") or 0 for r in records),
        "pick": None
        if pick is None
        else {"name": pick["name"], "val_loss": pick["metrics"]["val_loss"], "test_rmse": pick["metrics"]["rul_rmse"]},
        "best_test_rmse": None
        if oracle is None
        else {"name": oracle["name"], "test_rmse": oracle["metrics"]["rul_rmse"]},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="/tmp/ddrsa_bench_search")
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--max-units", type=int, default=50)
    p.add_argument("--window-stride", type=int, default=8)
    p.add_argument("--n-trials", type=int, default=72)
    p.add_argument("--parts", nargs="+", default=["grid", "halving", "tpe"])
    a = p.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    tree = snapshot_tree(root / "tree")
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DDRSA_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "DDRSA_DATA_DIR": os.environ.get("DDRSA_DATA_DIR", str(ROOT.parent / "shared" / "data")),
    }
    env.pop("PREFECT_API_URL", None)  # each sweep starts its own server in its output folder
    extra = {
        "grid": [],
        "halving": ["--search", "halving", "--min-epochs", "1", "--reduction-factor", "3"],
        "tpe": ["--search", "tpe", "--n-trials", str(a.n_trials), "--min-epochs", "1", "--reduction-factor", "3"],
    }
    result_path = root / "bench_search.json"
    results = json.loads(result_path.read_text()) if result_path.exists() else {}
    results["settings"] = {
        "epochs": a.epochs,
        "max_units": a.max_units,
        "window_stride": a.window_stride,
        "n_trials": a.n_trials,
        "machine": platform.node(),
        "cpus": os.cpu_count(),
    }
    for part in a.parts:
        out = root / part
        load0 = os.getloadavg()[0]
        run = run_part(part, tree, out, extra[part], a, env)
        run.update(
            load_before=load0,
            load_after=os.getloadavg()[0],
            finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        )
        if (out / "all_results.json").exists():
            run.update(summarise(out, a))
        results[part] = run
        result_path.write_text(json.dumps(results, indent=2))
        print(json.dumps({part: {k: v for k, v in run.items() if k != "command"}}, indent=1), flush=True)
    grid = results.get("grid", {}).get("pick")
    for part in ("halving", "tpe"):
        pick = results.get(part, {}).get("pick")
        if grid and pick:
            ratio = pick["test_rmse"] / grid["test_rmse"]
            print(
                f"{part}: test RMSE {pick['test_rmse']:.2f} vs grid pick {grid['test_rmse']:.2f} "
                f"({100 * (ratio - 1):+.1f}%), {100 * results[part]['epoch_fraction']:.0f}% of the grid's epochs, "
                f"wall {results[part]['wall_seconds']:.0f} s vs {results['grid']['wall_seconds']:.0f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
