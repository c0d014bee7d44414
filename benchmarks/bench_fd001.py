"""Real C-MAPSS test metrics: train to early stopping with `python -m ddrsa.train`, then tabulate.

    python benchmarks/bench_fd001.py [--quick] [--queue default|protocol|subsets|all]
                                     [--root /tmp/ddrsa_fd001] [--threads 1] [--report-only]

Two protocols (see BENCHMARKS.md):
  default   K=128, L=64 (the project's defaults), `paper` and `lstm_basic` on FD001: window-level
            test metrics (rul_mae, rul_rmse, concordance_index, nasa_score, integrated_brier_score).
  protocol  the literature's benchmark: lookback 30, horizon 125 (>= the RUL cap of 125), the last
            window of each test_FD00x unit against RUL_FD00x.txt -> benchmark_rmse / benchmark_nasa_score.
  subsets   the best protocol setting again on FD002-FD004.

Each run is one subprocess `python -m ddrsa.train ... --output-dir ROOT/<name>` (it resumes from its
checkpoint when rerun, and a finished run is only re-read). Runs are long on 2 CPU cores: start this
in the background (`nohup nice -n 10 python benchmarks/bench_fd001.py --queue protocol &`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR))

EPOCHS, PATIENCE = 30, 5
DEFAULT_RUNS = [  # (name, extra flags)
    ("fd001_paper_K128_L64", ["--model", "paper"]),
    ("fd001_lstm_basic_K128_L64", ["--model", "lstm_basic"]),
]
PROTO = ["--lookback-window", "30", "--pred-horizon", "125"]
PROTOCOL_RUNS = [
    (
        "proto_FD001_lstm_basic_lr0.001_bs128",
        ["--model", "lstm_basic", "--learning-rate", "0.001", "--batch-size", "128"],
    ),
    (
        "proto_FD001_gru_basic_lr0.003_bs256",
        ["--model", "gru_basic", "--learning-rate", "0.003", "--batch-size", "256"],
    ),
    (
        "proto_FD001_lstm_basic_lr0.003_bs256",
        ["--model", "lstm_basic", "--learning-rate", "0.003", "--batch-size", "256"],
    ),
    (
        "proto_FD001_gru_basic_lr0.001_bs128",
        ["--model", "gru_basic", "--learning-rate", "0.001", "--batch-size", "128"],
    ),
    (
        "proto_FD001_lstm_basic_lr0.005_bs256",
        ["--model", "lstm_basic", "--learning-rate", "0.005", "--batch-size", "256"],
    ),
]
SUBSET_RUNS = [
    (
        f"proto_{s}_gru_basic_lr0.003_bs256",
        ["--subset", s, "--model", "gru_basic", "--learning-rate", "0.003", "--batch-size", "256"],
    )
    for s in ("FD002", "FD003", "FD004")
]
METRICS = (
    "rul_mae",
    "rul_rmse",
    "concordance_index",
    "nasa_score",
    "integrated_brier_score",
    "benchmark_rmse",
    "benchmark_nasa_score",
    "constant_prediction",
)


def runs_for(queue: str) -> list[tuple[str, list[str]]]:
    default = DEFAULT_RUNS
    protocol = [(n, PROTO + f) for n, f in PROTOCOL_RUNS]
    subsets = [(n, PROTO + f) for n, f in SUBSET_RUNS]
    return {"default": default, "protocol": protocol, "subsets": subsets, "all": default + protocol + subsets}[queue]


def command(name: str, flags: list[str], root: Path, epochs: int, patience: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ddrsa.train",
        "--dataset",
        "turbofan",
        *flags,
        "--num-epochs",
        str(epochs),
        "--patience",
        str(patience),
        "--output-dir",
        str(root / name),
        "--quiet",
    ]


def summarize(name: str, run_dir: Path) -> dict | None:
    metrics_path, log_path = run_dir / "test_metrics.json", run_dir / "training_log.json"
    if not metrics_path.exists():
        if log_path.exists() and (run_dir / "checkpoint_best.pt").exists():
            return partial(name, run_dir)
        return None
    m = json.loads(metrics_path.read_text())
    log = json.loads(log_path.read_text())
    secs = [e["seconds"] for e in log["epochs"]]
    return {
        "name": name,
        "status": log.get("status"),
        "epochs": len(secs),
        "best_epoch": log.get("best_epoch"),
        "stopped_early": log.get("stopped_early"),
        "s_per_epoch": sorted(secs)[len(secs) // 2],
        **{k: m.get(k) for k in METRICS},
    }


def partial(name: str, run_dir: Path) -> dict:
    """An unfinished run: test metrics of its checkpoint_best.pt so far (the trainer's own metrics_on_test)."""
    import torch

    from ddrsa.config import ExperimentConfig
    from ddrsa.data import load_dataset
    from ddrsa.evaluation import metrics_on_test
    from ddrsa.models import build_model

    log = json.loads((run_dir / "training_log.json").read_text())
    config = ExperimentConfig(**json.loads((run_dir / "config.json").read_text()))
    data = load_dataset(config.data_config())
    model = build_model(
        config.model,
        n_features=data.train.n_features,
        pred_horizon=config.pred_horizon,
        dropout=config.dropout,
        lookback_window=config.lookback_window,
    )
    best = torch.load(run_dir / "checkpoint_best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    m, _ = metrics_on_test(model, data, torch.device("cpu"), config)
    secs = [e["seconds"] for e in log["epochs"]]
    return {
        "name": name,
        "status": f"UNFINISHED: best of {len(secs)} epochs",
        "epochs": len(secs),
        "best_epoch": best.get("epoch"),
        "s_per_epoch": sorted(secs)[len(secs) // 2],
        **{k: m.get(k) for k in METRICS},
    }


def table(rows: list[dict]) -> str:
    cols = ["name", "status", "epochs", "best_epoch", "s_per_epoch", *METRICS]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v if v is not None else ""))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 epochs, window stride 8 (smoke test, not a result)")
    p.add_argument("--queue", default="default", choices=["default", "protocol", "subsets", "all"])
    p.add_argument("--root", default="/tmp/ddrsa_fd001", help="where run folders go (outside the repo)")
    p.add_argument("--threads", type=int, default=None, help="DDRSA_TORCH_THREADS for the runs")
    p.add_argument("--report-only", action="store_true", help="only tabulate what ROOT already holds")
    args = p.parse_args()
    root = Path(args.root)
    epochs, patience = (2, 2) if args.quick else (EPOCHS, PATIENCE)
    env = dict(os.environ)
    if args.threads:
        env["DDRSA_TORCH_THREADS"] = str(args.threads)
    runs = runs_for(args.queue)
    if args.quick:
        runs = [(n + "_quick", f + ["--window-stride", "8"]) for n, f in runs[:2]]
    rows = []
    for name, flags in runs:
        cmd = command(name, flags, root, epochs, patience)
        if not args.report_only and not (root / name / "test_metrics.json").exists():
            print("$", shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            rc = subprocess.run(cmd, cwd=ROOT_DIR, env=env).returncode
            print(f"  rc={rc} wall={time.perf_counter() - t0:.0f}s load={os.getloadavg()}", flush=True)
        row = summarize(name, root / name)
        if row:
            rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    main()
