"""A sweep output folder with KNOWN metric values, for the analysis tests.

turbofan/FD001: lstm_basic and gru_basic, batch_size {64, 128} x learning_rate {0.001, 0.01},
seeds {1, 2, 3}; azure_pm: lstm_basic, batch_size 64, learning_rate {0.001, 0.01}, seeds {1, 2}.
lambda_param, nasa_weight and dropout are fixed (0.75, 0.1, 0.1). Plus one failed, one diverged
and one collapsed (constant prediction) record, and two manifest experiments with no record.
Metric formulas (steps / unitless):
  mae  = 10 + 2*[bs==128] + 5*[lr==0.01] + MODEL_OFF + NOISE[seed]     -> best: bs64, lr0.001
  rmse = 1.3*mae + 0.1*seed
  c    = 0.8 - 0.02*[bs==128] + 0.01*[lr==0.01] + C_NOISE[seed]         -> best: bs64, lr0.01
  nasa = 100 - 10*[bs==128] + 20*[lr==0.01] + seed                       -> best: bs128, lr0.001
Validation metrics (same checkpoint, validation units) are built so that EVERY criterion's
validation winner differs from its test winner:
  val_mae  = 10 + 1*[bs==128] + 3*[lr==0.001] + MODEL_OFF + VAL_NOISE[seed] -> best: bs64, lr0.01
  val_rmse = 1.3*val_mae + 0.05*seed
  val_c    = 0.75 + 0.02*[bs==128] - 0.01*[lr==0.01] + C_NOISE[seed]      -> best: bs128, lr0.001
  val_nasa = 90 + 15*[bs==128] - 5*[lr==0.01] + seed                      -> best: bs64, lr0.01
  val_loss = 2 + 0.01*val_mae
`with_validation=False` writes records as before validation metrics existed (old folders).
data_source: turbofan "real", azure_pm "real-no-telemetry" unless `sources` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

NOISE = {1: -0.5, 2: 0.0, 3: 0.7}
C_NOISE = {1: 0.003, 2: -0.004, 3: 0.0}
MODEL_OFF = {"lstm_basic": 0.0, "gru_basic": 1.0}
VAL_NOISE = {1: 0.4, 2: -0.3, 3: 0.1}
SOURCES = {"turbofan": "real", "azure_pm": "real-no-telemetry"}


def validation_metrics(model: str, bs: int, lr: float, seed: int) -> dict:
    """The val_* keys of a record (formulas in the module docstring)."""
    vmae = 10 + 1 * (bs == 128) + 3 * (lr == 0.001) + MODEL_OFF[model] + VAL_NOISE[seed]
    return {
        "val_loss": 2 + 0.01 * vmae,
        "val_rul_mae": vmae,
        "val_rul_rmse": 1.3 * vmae + 0.05 * seed,
        "val_concordance_index": 0.75 + 0.02 * (bs == 128) - 0.01 * (lr == 0.01) + C_NOISE[seed],
        "val_nasa_score": 90 + 15 * (bs == 128) - 5 * (lr == 0.01) + seed,
    }


def make_record(
    index: int,
    dataset: str,
    model: str,
    bs: int,
    lr: float,
    seed: int,
    status: str = "completed",
    with_validation: bool = True,
    sources: dict | None = None,
    **extra,
) -> dict:
    """One result record per docs/CONTRACTS.md with the formula metrics above."""
    mae = 10 + 2 * (bs == 128) + 5 * (lr == 0.01) + MODEL_OFF[model] + NOISE[seed]
    source = (sources or SOURCES)[dataset]
    metrics = {
        "rul_mae": mae,
        "rul_rmse": 1.3 * mae + 0.1 * seed,
        "concordance_index": 0.8 - 0.02 * (bs == 128) + 0.01 * (lr == 0.01) + C_NOISE[seed],
        "nasa_score": 100 - 10 * (bs == 128) + 20 * (lr == 0.01) + seed,
        "nasa_score_mean": 1.0,
        "integrated_brier_score": 0.1,
        "n_test_units": 10,
        "n_test_windows": 100,
        "n_uncensored_windows": 50,
        "data_source": source,
        "constant_prediction": False,
    }
    if with_validation:
        metrics.update(validation_metrics(model, bs, lr, seed))
    subset = "FD001"
    leaf = f"bs{bs}_lr{lr:g}_lam0.75_nasa0.1_drop0.1_id{index}"
    rec = {
        "experiment_id": f"{index:012x}",
        "index": index,
        "name": f"{dataset}/{model}/bs{bs}_lr{lr:g}_lam0.75_nasa0.1_drop0.1_s{seed}",
        "dataset": dataset,
        "subset": subset,
        "model": model,
        "batch_size": bs,
        "learning_rate": lr,
        "lambda_param": 0.75,
        "nasa_weight": 0.1,
        "dropout": 0.1,
        "seed": seed,
        "num_epochs": 20,
        "status": status,
        "metrics": metrics if status == "completed" else {},
        "train_seconds": 30.0 + bs / 16 + seed,
        "epochs_trained": 20,
        "best_epoch": 15,
        "diverged_epoch": None,
        "worker": "gpu0",
        "device": "cpu",
        "attempts": 1,
        "error": None,
        "run_dir": f"logs/{dataset}/{model}/{leaf}",
        "data_source": source if status == "completed" else None,
        "peak_rss_mb": 500.0,
        "peak_gpu_mb": None,
        "finished_at": "2026-01-01T03:00:00+00:00",
    }
    rec.update(extra)
    return rec


def known_records(with_validation: bool = True, sources: dict | None = None) -> list[dict]:
    """The records of the known folder (completed ones first, then failed/diverged/collapsed)."""
    recs, i = [], 0
    kw = {"with_validation": with_validation, "sources": sources}
    for model in ("lstm_basic", "gru_basic"):
        for bs in (64, 128):
            for lr in (0.001, 0.01):
                for seed in (1, 2, 3):
                    recs.append(make_record(i, "turbofan", model, bs, lr, seed, **kw))
                    i += 1
    for lr in (0.001, 0.01):
        for seed in (1, 2):
            recs.append(make_record(i, "azure_pm", "lstm_basic", 64, lr, seed, **kw))
            i += 1
    recs.append(
        make_record(
            i,
            "turbofan",
            "lstm_basic",
            256,
            0.001,
            1,
            status="failed",
            error="CUDA out of memory <script>alert(1)</script>",
            **kw,
        )
    )
    i += 1
    recs.append(
        make_record(
            i,
            "turbofan",
            "gru_basic",
            64,
            0.1,
            2,
            status="diverged",
            diverged_epoch=3,
            error="loss became NaN at epoch 3",
            **kw,
        )
    )
    i += 1
    collapsed = make_record(i, "azure_pm", "gru_basic", 64, 0.001, 1, **kw)
    collapsed["metrics"]["constant_prediction"] = True
    recs.append(collapsed)
    return recs


def write_training_log(root: Path, rec: dict, n_epochs: int = 5) -> None:
    run = root / rec["run_dir"]
    run.mkdir(parents=True, exist_ok=True)
    epochs = [
        {
            "epoch": e,
            "train_loss": 3.0 / e,
            "val_loss": 2.0 + 1.0 / e,
            "learning_rate": rec["learning_rate"],
            "seconds": 1.5,
        }
        for e in range(1, n_epochs + 1)
    ]
    (run / "training_log.json").write_text(
        json.dumps(
            {
                "epochs": epochs,
                "best_epoch": n_epochs,
                "best_val_loss": epochs[-1]["val_loss"],
                "stopped_early": False,
                "status": rec["status"],
                "diverged_epoch": rec["diverged_epoch"],
            }
        )
    )


def write_manifest(root: Path, records: list[dict], n_pending: int = 2, **extra) -> dict:
    experiments = [
        {
            "experiment_id": r["experiment_id"],
            "index": r["index"],
            "name": r["name"],
            "run_dir": r["run_dir"],
            "config": {},
        }
        for r in records
    ]
    base = len(records)
    experiments += [
        {
            "experiment_id": f"{base + k:012x}",
            "index": base + k,
            "name": f"pending{k}",
            "run_dir": f"logs/p{k}",
            "config": {},
        }
        for k in range(n_pending)
    ]
    manifest = {
        "created_at": "2026-01-01T00:00:00+00:00",
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T03:00:00+00:00",
        "grid": {
            "model": ["lstm_basic", "gru_basic"],
            "batch_size": [64, 128, 256],
            "learning_rate": [0.001, 0.01, 0.1],
        },
        "code_version": "abc123",
        "data_versions": {"turbofan": "deadbeef"},
        "n_experiments": len(experiments),
        "experiments": experiments,
    }
    manifest.update(extra)
    (root / "experiment_manifest.json").write_text(json.dumps(manifest))
    return manifest


def write_known_folder(
    root: Path, results: str = "full", n_pending: int = 2, with_validation: bool = True, sources: dict | None = None
) -> list[dict]:
    """Write the known folder into `root`. results: 'full', 'missing' (no all_results.json),
    'empty' (an empty list) or 'partial' (only the first 10 records). Returns the records written."""
    root.mkdir(parents=True, exist_ok=True)
    recs = known_records(with_validation, sources)
    write_manifest(root, recs, n_pending)
    for rec in recs:
        if rec["status"] == "completed":
            write_training_log(root, rec)
    written = {"full": recs, "missing": [], "empty": [], "partial": recs[:10]}[results]
    if results != "missing":
        (root / "all_results.json").write_text(json.dumps(written))
    return written
