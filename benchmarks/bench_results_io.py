"""Cost of rewriting all_results.json whole on every completion, against a cached full-grid re-run.

    python benchmarks/bench_results_io.py [--records 1296] [--rerun-n 48] [--root /tmp/ddrsa_bench_io]

1. Rewrite cost: a fresh `ResultsStore` in --root receives --records realistic result records one
   by one (`upsert`, exactly what the sweep does per completion: sort, strict JSON, temporary file,
   fsync, rename). Reported: total seconds, the last write's milliseconds and the file size.
2. Cached re-run: a tiny --rerun-n experiment sweep (synthetic turbofan, 1 epoch) is run, then run
   again with the same command (all cached). The second run's flow time per experiment, times
   --records, estimates a cached re-run of the full grid (the rewrites are part of that estimate
   only at --rerun-n records, so the estimate is slightly low, the share slightly high).

The share printed is rewrite total / (estimated cached re-run + rewrite total), for the former
whole-file rewrite and for the journal that replaced it (the issue's rule: above 5%, switch to an
append-only journal compacted at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fake_records(n: int) -> list[dict]:
    """n records as make_record writes them for completed experiments (all fields filled)."""
    from ddrsa.sweep.results import make_record

    metrics = {
        "rul_mae": 21.3,
        "rul_rmse": 28.7,
        "concordance_index": 0.812,
        "nasa_score": 1234.5,
        "val_loss": 2.31,
        "val_rul_mae": 20.1,
        "val_rul_rmse": 27.9,
        "val_concordance_index": 0.80,
        "val_nasa_score": 1100.2,
        "brier_score": 0.12,
        "train_seconds": 812.4,
        "data_source": "real",
        "data_version": "ab12cd34ef56ab12",
    }
    out = []
    for i in range(n):
        config = {
            "dataset": "turbofan",
            "subset": "FD001",
            "model": "lstm_basic",
            "batch_size": 32,
            "learning_rate": 0.001,
            "lambda_param": 0.75,
            "nasa_weight": 0.1,
            "dropout": 0.1,
            "seed": i % 5,
            "num_epochs": 100,
        }
        planned = {
            "experiment_id": f"{i:016x}",
            "index": i,
            "config": config,
            "name": f"turbofan/lstm_basic/bs32_lr0.001_lam0.75_nasa0.1_drop0.1_s{i}",
            "run_dir": f"logs/turbofan/lstm_basic/bs32_lr0.001_lam0.75_nasa0.1_drop0.1_id{i:016x}",
        }
        result = {
            "metrics": dict(metrics),
            "train_seconds": 812.4,
            "epochs_trained": 100,
            "best_epoch": 77,
            "device": "cuda",
            "data_source": "real",
            "peak_rss_mb": 2100.0,
            "peak_gpu_mb": 812.0,
        }
        out.append(
            make_record(
                planned, status="completed", result=result, worker="gpu0", started_at="2026-11-29T10:00:00.000+00:00"
            )
        )
    return out


def rewrite_cost(n: int, folder: Path, whole: bool) -> dict:
    """Seconds to record n completions: `whole` = the former store (atomic rewrite of the whole
    file per completion), else the current ResultsStore (fsynced journal line per completion,
    file compacted at intervals, and once at close)."""
    from ddrsa.atomic import write_json
    from ddrsa.sweep.results import RESULTS, ResultsStore

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    records = fake_records(n)
    store = ResultsStore(folder)
    kept: dict = {}
    t0 = time.perf_counter()
    last = 0.0
    for record in records:
        t = time.perf_counter()
        if whole:
            kept[record["experiment_id"]] = record
            write_json(folder / RESULTS, sorted(kept.values(), key=lambda r: r.get("index", 0)))
        else:
            store.upsert(record)
        last = time.perf_counter() - t
    store.close()
    total = time.perf_counter() - t0
    size = (folder / "all_results.json").stat().st_size
    assert len(json.loads((folder / "all_results.json").read_text())) == n
    return {"records": n, "total_s": total, "last_write_ms": 1000 * last, "file_mb": size / 2**20}


def cached_rerun(n: int, folder: Path) -> dict:
    """Seconds per experiment of a fully cached re-run (flow time from the sweep's own log line)."""
    batch = [str(b) for b in (16, 24, 32, 48, 64, 96, 128, 192)]
    seeds = [str(s) for s in range(1, max(1, n // (len(batch) * 3)) + 1)]
    cmd = [
        sys.executable,
        "flows/sweep.py",
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "gru_basic",
        "lstm_basic",
        "--batch-sizes",
        *batch,
        "--seeds",
        *seeds,
        "--data-source",
        "synthetic",
        "--max-units",
        "12",
        "--window-stride",
        "32",
        "--lookback-window",
        "32",
        "--pred-horizon",
        "16",
        "--num-epochs",
        "1",
        "--n-workers",
        "2",
        "--no-analysis",
        "--output-dir",
        str(folder),
    ]
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "DDRSA_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if first.returncode != 0:
        raise SystemExit(first.stderr[-2000:])
    t0 = time.monotonic()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    text = again.stdout + again.stderr
    m = re.search(r"(\d+) completed \((\d+) cached\)", text)
    flow = re.search(r"ddrsa-sweep finished in (\d+) s", text)
    done, cached = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    flow_s = float(flow.group(1)) if flow else wall
    return {
        "experiments": done,
        "cached": cached,
        "wall_s": wall,
        "flow_s": flow_s,
        "per_experiment_s": flow_s / max(done, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1296)
    p.add_argument("--rerun-n", type=int, default=48, help="experiments in the cached re-run sample (0: skip)")
    p.add_argument("--root", type=Path, default=Path("/tmp/ddrsa_bench_io"))
    args = p.parse_args()
    io = rewrite_cost(args.records, args.root / "store", whole=True)
    print(
        f"rewrite whole file per completion: {io['records']} records, {io['total_s']:.2f} s in all, "
        f"last write {io['last_write_ms']:.1f} ms, file {io['file_mb']:.2f} MiB"
    )
    journal = rewrite_cost(args.records, args.root / "journal", whole=False)
    print(f"journal + compaction (ResultsStore): {journal['records']} records, {journal['total_s']:.2f} s in all")
    result = {"rewrite": io, "journal": journal}
    if args.rerun_n:
        rr = cached_rerun(args.rerun_n, args.root / "sweep")
        estimate = rr["per_experiment_s"] * args.records
        share = io["total_s"] / (estimate + io["total_s"])
        share_journal = journal["total_s"] / (estimate + journal["total_s"])
        print(
            f"cached re-run: {rr['experiments']} experiments ({rr['cached']} cached) in {rr['flow_s']:.0f} s flow "
            f"({rr['wall_s']:.1f} s wall): {rr['per_experiment_s']:.3f} s per experiment; "
            f"{args.records} estimated at {estimate:.0f} s"
        )
        print(
            f"share of a cached {args.records}-experiment re-run spent recording results: "
            f"{100 * share:.1f}% rewriting whole, {100 * share_journal:.2f}% with the journal"
        )
        result.update(rerun=rr, estimate_s=estimate, share=share, share_journal=share_journal)
    (args.root / "bench_results_io.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
