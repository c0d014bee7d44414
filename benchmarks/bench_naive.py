"""The project's trainer against a naive reference loop (the tool it replaces), same run, same config.

    python benchmarks/bench_naive.py [--quick] [--epochs 2] [--repeats 1] [--num-workers 2] [--threads 2]

Config (both): `--model` (default lstm_basic) on real FD001, K=128, L=64, batch 128, lr 1e-3, lambda 0.75, nasa 0.1,
dropout 0.1, seed 42, Adam, grad-norm clip 1.0, `--epochs` epochs, torch threads `--threads`.
Same model (`ddrsa.models.build_model`), same loss (`ddrsa.losses.DDRSALoss`), same windows.

project  `ddrsa.trainer.train(config, run_dir)`: flat (R, F) storage resident on the device, each batch
         one gather; losses summed on the device and read once per epoch; validation each epoch =
         one `predict_logits` pass (batches of 4,096) + DDRSA loss; checkpoint_last/best + training_log
         written each epoch; at the end the test split is evaluated once (C-index with lifelines).
naive    a `torch.utils.data.DataLoader` (shuffle, `--num-workers` worker processes) over a
         `TensorDataset` of DENSE windows (N, K, F); `loss.item()` after every batch; validation each
         epoch in batches of 128 with `loss.item()` per batch, then Harrell's C-index over all
         validation windows as a pure-Python O(n^2) double loop (as the old tool did every epoch);
         at the end the test split is evaluated once with the same Python C-index.
One-time imports (torch._dynamo via the first Adam(), lifelines) are done before either loop runs.
Reported: seconds per epoch (median over epochs and repeats; both include validation) and the
whole run wall clock (data already loaded; includes the final test evaluation), and their ratios.
The two are run alternately (project, naive, project, naive, ...) so load drifts hit both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def python_cindex(times, preds, observed) -> float:
    """Harrell's C over all windows, pure Python, O(n^2): the old tool's implementation."""
    times, preds, observed = list(map(float, times)), list(map(float, preds)), list(map(bool, observed))
    n = len(times)
    num = den = 0.0
    for i in range(n):
        if not observed[i]:
            continue
        ti, pi = times[i], preds[i]
        for j in range(n):
            if ti < times[j]:
                den += 1
                if pi < preds[j]:
                    num += 1
                elif pi == preds[j]:
                    num += 0.5
    return num / den if den else float("nan")


def naive_run(config, data, num_workers: int) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from ddrsa.losses import DDRSALoss
    from ddrsa.metrics import expected_time, survival_from_logits
    from ddrsa.models import build_model
    from ddrsa.trainer import seed_everything

    t_start = time.perf_counter()
    seed_everything(config.seed, False)

    def dataset(w):
        return TensorDataset(
            torch.from_numpy(np.ascontiguousarray(w.x, dtype=np.float32)),
            torch.from_numpy(np.array(w.mask)),
            torch.from_numpy(np.array(w.event_index)),
            torch.from_numpy(np.array(w.censored)),
        )

    train_ds, val_ds, test_ds = dataset(data.train), dataset(data.val), dataset(data.test)
    loader_kw = dict(batch_size=config.batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)
    train_dl = DataLoader(train_ds, shuffle=True, **loader_kw)
    val_dl = DataLoader(val_ds, shuffle=False, **loader_kw)
    model = build_model(
        config.model,
        n_features=train_ds.tensors[0].shape[-1],
        pred_horizon=config.pred_horizon,
        dropout=config.dropout,
        lookback_window=config.lookback_window,
    )
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = DDRSALoss(config.lambda_param, config.nasa_weight)
    horizon = config.pred_horizon

    def evaluate(dl):
        model.eval()
        losses, preds = [], []
        with torch.no_grad():
            for x, m, e, c in dl:
                logits = model(x, m)
                losses.append(loss_fn(logits, e, c).item() * len(x))
                preds.append(expected_time(survival_from_logits(logits.numpy())))
        pred = np.concatenate(preds)
        e, c = dl.dataset.tensors[2].numpy(), dl.dataset.tensors[3].numpy()
        times = np.where(c, np.minimum(e, horizon), e)
        return sum(losses) / len(dl.dataset), python_cindex(times, pred, ~c)

    epochs = []
    for epoch in range(config.num_epochs):
        t0 = time.perf_counter()
        model.train()
        total = 0.0
        for x, m, e, c in train_dl:
            loss = loss_fn(model(x, m), e, c)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            total += loss.item() * len(x)
        t_train = time.perf_counter() - t0
        val_loss, val_c = evaluate(val_dl)
        epochs.append(
            {
                "seconds": time.perf_counter() - t0,
                "train_seconds": t_train,
                "val_seconds": time.perf_counter() - t0 - t_train,
                "train_loss": total / len(train_ds),
                "val_loss": val_loss,
                "val_cindex": val_c,
            }
        )
    t0 = time.perf_counter()
    _, test_c = evaluate(DataLoader(test_ds, shuffle=False, **{**loader_kw, "persistent_workers": False}))
    return {
        "epochs": epochs,
        "wall": time.perf_counter() - t_start,
        "test_eval_seconds": time.perf_counter() - t0,
        "test_cindex": test_c,
    }


def project_run(config) -> dict:
    from ddrsa.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(config, Path(tmp) / "run")
        wall = time.perf_counter() - t0
        log = json.loads((Path(tmp) / "run" / "training_log.json").read_text())
    return {"epochs": log["epochs"], "wall": wall, "test_cindex": res.metrics.get("concordance_index")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch, window stride 8 (smoke test)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="alternating project/naive pairs")
    p.add_argument("--num-workers", type=int, default=2, help="naive DataLoader worker processes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="lstm_basic", help="model variant (both loops)")
    args = p.parse_args()
    os.environ["DDRSA_TORCH_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from ddrsa.config import ExperimentConfig
    from ddrsa.data import load_dataset

    config = ExperimentConfig(
        model=args.model,
        num_epochs=1 if args.quick else args.epochs,
        patience=100,
        window_stride=8 if args.quick else 1,
    )
    data = load_dataset(config.data_config())
    load_dataset(config.data_config())  # cached: the trainer's own load_dataset call is then free as well
    # One-time imports that whichever loop runs first would otherwise pay alone (measured: the first
    # torch.optim.Adam() imports torch._dynamo, ~3 s; lifelines ~2 s). A sweep worker pays them once
    # per process, not per experiment, so both loops are timed warm.
    import lifelines  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    print(
        f"# {args.model} FD001 {data.data_source}: train {len(data.train)} / val {len(data.val)} / test "
        f"{len(data.test)} windows, {config.num_epochs} epochs, batch {config.batch_size}, torch threads "
        f"{args.threads}, naive num_workers {args.num_workers}; torch {torch.__version__}",
        flush=True,
    )
    runs = {"project": [], "naive": []}
    for r in range(args.repeats):
        for kind in ("project", "naive"):
            load = os.getloadavg()[0]
            res = project_run(config) if kind == "project" else naive_run(config, data, args.num_workers)
            res["load"] = load
            runs[kind].append(res)
            print(
                f"  {kind} repeat {r}: wall {res['wall']:.1f}s epochs "
                f"{[round(e['seconds'], 1) for e in res['epochs']]} load {load:.2f} "
                + (
                    f"naive val C-index per epoch {[round(e['val_cindex'], 4) for e in res['epochs']]} "
                    f"(val part {[round(e['val_seconds'], 1) for e in res['epochs']]}s)"
                    if kind == "naive"
                    else ""
                ),
                flush=True,
            )

    def med_epoch(kind):
        return statistics.median(e["seconds"] for r in runs[kind] for e in r["epochs"])

    def med_wall(kind):
        return statistics.median(r["wall"] for r in runs[kind])

    def loads(kind):
        return ", ".join(f"{r['load']:.2f}" for r in runs[kind])

    pe, ne = med_epoch("project"), med_epoch("naive")
    pw, nw = med_wall("project"), med_wall("naive")
    nval = statistics.median(e["val_seconds"] for r in runs["naive"] for e in r["epochs"])
    print("| loop | s/epoch (median, incl. validation) | run wall s (median) | load avg 1m |\n|---|---|---|---|")
    print(f"| project `ddrsa.trainer.train` | {pe:.1f} | {pw:.1f} | " + loads("project") + " |")
    print(
        f"| naive DataLoader + .item() + Python C-index (val part {nval:.1f}s/epoch) | {ne:.1f} | {nw:.1f} | "
        + loads("naive")
        + " |"
    )
    print(f"| **ratio naive/project** | **{ne / pe:.2f}x** | **{nw / pw:.2f}x** | |")
    print(
        f"test C-index: project (lifelines) {[r['test_cindex'] for r in runs['project']]}, naive (python) "
        f"{[round(r['test_cindex'], 4) for r in runs['naive']]}"
    )


if __name__ == "__main__":
    main()
