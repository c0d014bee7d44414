"""When to intervene on FD001: OTI against the two heuristics, per engine, on the held-out split.

    python benchmarks/policy_fd001.py [--root /tmp/ddrsa_policy] [--seeds 1 2 3] [--epochs 10]
                                      [--dataset turbofan|azure_pm] [--out results.json]

Trains DDRSA (`paper` model: 16-unit LSTM, lr 0.01, batch 512, the paper's settings; K 128, L 64) on
real data (DDRSA_DATA_DIR) for each seed (a finished run folder is re-read, not retrained), then for
each policy (oti, tte, window w = L/4) and each target miss rate alpha picks the threshold whose
VALIDATION miss rate is closest to alpha (ties: the safer one) and reports the TEST miss rate and mean
/ median time left at intervention (steps) over the held-out engines, per seed and pooled. Also writes
every policy's whole test curve (ddrsa.policy.trade_off) to the JSON output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR))

from ddrsa import policy
from ddrsa.config import ExperimentConfig
from ddrsa.data import load_dataset
from ddrsa.device import Split
from ddrsa.evaluation import predict_logits
from ddrsa.metrics import survival_from_logits
from ddrsa.models import build_model
from ddrsa.settings import Settings
from ddrsa.trainer import train

ALPHAS = (0.05, 0.1, 0.2)


def survival_of(config, run_dir: Path, windows) -> np.ndarray:
    """S (N, L) of the run's best checkpoint on `windows` (CPU)."""
    data = load_dataset(config.data_config(), Settings())
    model = build_model(
        config.model,
        n_features=data.train.n_features,
        pred_horizon=config.pred_horizon,
        dropout=config.dropout,
        lookback_window=config.lookback_window,
    )
    model.load_state_dict(torch.load(run_dir / "checkpoint_best.pt", map_location="cpu", weights_only=True)["model"])
    logits = predict_logits(model, Split.from_windows(windows, torch.device("cpu")), torch.device("cpu"), False)
    return survival_from_logits(logits.numpy())


def pick(rows: list[dict], alpha: float) -> dict:
    """The row whose miss rate is closest to alpha; ties: the lower miss rate, then less time left."""
    ok = [r for r in rows if np.isfinite(r["miss_rate"])]
    return min(ok, key=lambda r: (abs(r["miss_rate"] - alpha), r["miss_rate"], np.nan_to_num(r["mean_tte"], nan=1e9)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/ddrsa_policy")
    ap.add_argument("--dataset", default="turbofan", choices=("turbofan", "azure_pm"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    results, curves = [], []
    for seed in args.seeds:
        config = ExperimentConfig(
            dataset=args.dataset,
            subset="FD001",
            model="paper",
            learning_rate=0.01,
            batch_size=512,
            num_epochs=args.epochs,
            patience=5,
            seed=seed,
            data_source="real",
            nasa_weight=0.0,
        )
        run_dir = Path(args.root) / f"{args.dataset}_paper_s{seed}_e{args.epochs}"
        t0 = time.perf_counter()
        res = train(config, run_dir)
        print(
            f"seed {seed}: {res.status}, {res.epochs_trained} epochs, {time.perf_counter() - t0:.0f} s, "
            f"test rmse {res.metrics.get('rul_rmse'):.2f}",
            flush=True,
        )
        data = load_dataset(config.data_config(), Settings())
        sv, st = survival_of(config, run_dir, data.val), survival_of(config, run_dir, data.test)
        qv, qt = policy.windows_sequences(data.val), policy.windows_sequences(data.test)
        for name in policy.POLICIES:
            val_rows = policy.evaluate_policy(sv, qv, name)
            test_rows = policy.evaluate_policy(st, qt, name)
            curves += [dict(r, seed=seed) for r in test_rows]
            for alpha in ALPHAS:
                chosen = pick(val_rows, alpha)
                test = next(r for r in test_rows if r["threshold"] == chosen["threshold"])
                results.append(
                    {
                        "seed": seed,
                        "policy": name,
                        "alpha": alpha,
                        "threshold": chosen["threshold"],
                        "val_miss_rate": chosen["miss_rate"],
                        "val_mean_tte": chosen["mean_tte"],
                        "test_miss_rate": test["miss_rate"],
                        "test_mean_tte": test["mean_tte"],
                        "test_median_tte": test["median_tte"],
                        "n_test_engines": test["n_failures"],
                        "false_alarms": test["false_alarms"],
                        "n_censored": test["n_censored"],
                    }
                )
    print("\n| alpha | policy | threshold (per seed) | val miss | test miss | test mean time left | test median |")
    print("|---|---|---|---|---|---|---|")
    for alpha in ALPHAS:
        for name in policy.POLICIES:
            rs = [r for r in results if r["alpha"] == alpha and r["policy"] == name]
            f = lambda k, rs=rs: np.nanmean([r[k] for r in rs])
            each = lambda k, fmt, rs=rs: ", ".join(format(r[k], fmt) for r in rs)
            print(
                f"| {alpha:.2f} | {name} | {each('threshold', '.3g')} | {f('val_miss_rate'):.3f} "
                f"| {f('test_miss_rate'):.3f} ({each('test_miss_rate', '.2f')}) "
                f"| {f('test_mean_tte'):.1f} ({each('test_mean_tte', '.1f')}) | {f('test_median_tte'):.1f} |"
            )
    if args.out:
        Path(args.out).write_text(json.dumps({"chosen": results, "curves": curves}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
