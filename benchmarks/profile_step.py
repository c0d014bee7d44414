"""Where one training step of a model variant spends its time on this machine (torch.profiler).

    python benchmarks/profile_step.py [--model lstm_basic] [--threads 1] [--batch-size 128]

Random inputs of the FD001 shape (K=128 history steps, 15 features, L=64 horizon), the project's
model, loss (DDRSALoss, lambda 0.75, NASA weight 0.1) and Adam; 3 warm-up steps, 5 timed steps,
then a profile of 2 steps sorted by self CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lstm_basic")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from ddrsa.losses import DDRSALoss
    from ddrsa.models import build_model

    torch.set_num_threads(args.threads)
    batch, lookback, horizon, features = args.batch_size, 128, 64, 15
    model = build_model(args.model, n_features=features, pred_horizon=horizon, dropout=0.1, lookback_window=lookback)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = DDRSALoss(0.75, 0.1)
    x, mask = torch.randn(batch, lookback, features), torch.ones(batch, lookback, dtype=torch.bool)
    event_index, censored = torch.randint(0, horizon, (batch,)), torch.rand(batch) < 0.5

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x, mask), event_index, censored).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    print(
        f"# {args.model}: {1000 * (time.perf_counter() - t0) / 5:.0f} ms/step, batch {batch}, "
        f"{args.threads} thread(s), torch {torch.__version__}, oneDNN {torch.backends.mkldnn.is_available()}"
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
