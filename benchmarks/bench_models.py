"""Training throughput per model variant on real C-MAPSS FD001, CPU (markdown table).

    python benchmarks/bench_models.py [--quick] [--models M ...] [--threads 2] [--repeats 3]
                                      [--max-steps 40] [--via-trainer]

Config: K=128, L=64, batch 128, default split (10,195 training windows, 4,146 validation windows).
Default mode times the trainer's own building blocks (`ddrsa.device.Split` flat storage + gather,
`build_model`, `DDRSALoss`, Adam, grad-norm clipping, `predict_logits` for validation), exactly the
hot loop of `ddrsa.trainer.train`, split into phases:
  - train: `--max-steps` optimiser steps (after 3 warm-up steps), repeated `--repeats` times; the
    median ms/step gives windows/s and the extrapolated seconds per full epoch.
  - val: one `predict_logits` pass over the validation split (timed on at most --max-val windows
    and extrapolated when that is smaller than the split).
  s/epoch = steps_per_epoch * median step time + validation time.
`--via-trainer` instead runs `ddrsa.trainer.train(num_epochs=2)` per variant and reads the seconds
of training_log.json (includes validation and checkpoint writes).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = (
    "lstm_basic",
    "lstm_deep",
    "gru_basic",
    "gru_deep",
    "transformer_basic",
    "transformer_deep",
    "probsparse_basic",
    "probsparse_deep",
    "paper",
)


def load_env():
    import platform

    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return f"torch {torch.__version__}, {os.cpu_count()} cores ({cpu}), python {platform.python_version()}"


def bench_variant(name: str, data, args) -> dict:
    import torch

    from ddrsa.config import ExperimentConfig
    from ddrsa.device import Split
    from ddrsa.evaluation import predict_logits
    from ddrsa.losses import DDRSALoss
    from ddrsa.models import build_model, count_parameters
    from ddrsa.trainer import seed_everything

    cfg = ExperimentConfig(model=name, batch_size=args.batch_size)
    device = torch.device("cpu")
    seed_everything(0, False)
    train_split = Split.from_windows(data.train, device)
    val_split = Split.from_windows(data.val, device)
    model = build_model(
        name,
        n_features=train_split.n_features,
        pred_horizon=cfg.pred_horizon,
        dropout=cfg.dropout,
        lookback_window=cfg.lookback_window,
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    loss_fn = DDRSALoss(cfg.lambda_param, cfg.nasa_weight)
    n = len(train_split)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    gen = torch.Generator().manual_seed(0)

    def steps(k: int) -> float:
        model.train()
        order = torch.randperm(n, generator=gen)
        total = torch.zeros(())
        t0 = time.perf_counter()
        for s in range(k):
            idx = order[(s * cfg.batch_size) % n :][: cfg.batch_size]
            x, mask = train_split.batch(idx)
            loss = loss_fn(model(x, mask).float(), train_split.event_index[idx], train_split.censored[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.detach() * len(idx)
        float(total)  # one read per phase, as the trainer does once per epoch
        return time.perf_counter() - t0

    steps(3)  # warm-up
    k = min(args.max_steps, steps_per_epoch)
    per_step = [steps(k) / k for _ in range(args.repeats)]
    step_s = statistics.median(per_step)
    n_val = len(val_split)
    sub = (
        val_split
        if n_val <= args.max_val
        else Split(
            val_split.data,
            val_split.valid,
            val_split.end[: args.max_val],
            val_split.offsets,
            val_split.event_index[: args.max_val],
            val_split.censored[: args.max_val],
        )
    )
    t0 = time.perf_counter()
    predict_logits(model, sub, device, False)
    val_s = (time.perf_counter() - t0) * n_val / len(sub)
    return {
        "model": name,
        "params": count_parameters(model),
        "ms_per_step": 1000 * step_s,
        "train_windows_per_s": cfg.batch_size / step_s,
        "val_s": val_s,
        "s_per_epoch": steps_per_epoch * step_s + val_s,
        "timed_steps": f"{args.repeats}x{k}/{steps_per_epoch}",
        "spread": f"{min(per_step) * 1000:.0f}-{max(per_step) * 1000:.0f}",
        "load": os.getloadavg()[0],
    }


def bench_via_trainer(name: str, args) -> dict:
    from ddrsa.config import ExperimentConfig
    from ddrsa.trainer import train

    cfg = ExperimentConfig(model=name, batch_size=args.batch_size, num_epochs=2, patience=5)
    with tempfile.TemporaryDirectory() as tmp:
        res = train(cfg, Path(tmp) / "run")
        import json

        secs = [e["seconds"] for e in json.loads((Path(tmp) / "run" / "training_log.json").read_text())["epochs"]]
    return {
        "model": name,
        "epoch_seconds": secs,
        "s_per_epoch": statistics.median(secs),
        "train_windows_per_s": None,
        "train_seconds_incl_test": res.train_seconds,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 models, 1 repeat of 8 steps")
    p.add_argument("--models", nargs="+", default=list(VARIANTS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=40, help="timed optimiser steps per repeat")
    p.add_argument("--max-val", type=int, default=4146, help="validation windows timed (extrapolated)")
    p.add_argument("--via-trainer", action="store_true", help="ddrsa.trainer.train, 2 epochs, training_log seconds")
    args = p.parse_args()
    if args.quick:
        args.models, args.repeats, args.max_steps, args.max_val = (
            ["paper", "lstm_basic", "transformer_basic"],
            1,
            8,
            1024,
        )
    os.environ["DDRSA_TORCH_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from ddrsa.config import ExperimentConfig
    from ddrsa.data import load_dataset

    data = load_dataset(ExperimentConfig().data_config())
    print(
        f"# FD001 {data.data_source}, K=128 L=64 batch {args.batch_size}, train {len(data.train)} / val "
        f"{len(data.val)} windows, torch threads {args.threads}; {load_env()}",
        flush=True,
    )
    rows = []
    for name in args.models:
        row = bench_via_trainer(name, args) if args.via_trainer else bench_variant(name, data, args)
        rows.append(row)
        print("  ", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    if args.via_trainer:
        print("| model | epoch seconds (training_log) | median s/epoch | load avg 1m |\n|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['model']} | {', '.join(f'{s:.1f}' for s in r['epoch_seconds'])} | {r['s_per_epoch']:.1f} "
                f"| {r['load']:.2f} |"
            )
        return
    print(
        "| model | params | ms/step (median; min-max) | train windows/s | val pass s | s/epoch (train+val) "
        "| timed steps | load avg 1m |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['model']} | {r['params']:,} | {r['ms_per_step']:.0f} ({r['spread']}) | {r['train_windows_per_s']:.0f} "
            f"| {r['val_s']:.1f} | {r['s_per_epoch']:.1f} | {r['timed_steps']} | {r['load']:.2f} |"
        )


if __name__ == "__main__":
    main()
