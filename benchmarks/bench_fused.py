"""Fused against separate training steps: aten operator calls and throughput per experiment.

    python benchmarks/bench_fused.py                       # paper and lstm_basic, group of 16, CPU
    python benchmarks/bench_fused.py --models paper --members 16 --threads 1 --json out.json
    python benchmarks/bench_fused.py --recurrences bmm     # one of the two fused recurrences only
    python benchmarks/bench_fused.py --probe-vmap transformer_basic probsparse_basic

One training step of the separate trainer (model forward, DDRSALoss, zero_grad, backward,
clip_grad_norm_, Adam step: ddrsa/trainer.py's inner loop) against one step of a fused group of M
members (ddrsa/fused: stacked forward, per-member loss, backward, per-member clipping, stacked Adam),
both including the batch gather, at the sweep's shapes (F=14 features, K=128, L=64, batch 128).
The fused step is measured with each recurrence (ddrsa/fused/stacked.py): "blockdiag" (one
block-diagonal torch.lstm/torch.gru call per layer) and "bmm" (one batched matmul per time step).

- Operator calls: torch.profiler counts the aten operators one step records, per experiment
  (fused / M). `all` counts every aten event (nested ones too); `top` only those not called from
  another aten operator (what the Python/autograd side dispatches); `compute` the top ones less
  view/allocation-only operators (METADATA_OPS): on a GPU each of these launches at least one kernel.
  Note `aten::to` of a tensor already on the device in its dtype and `item` are counted as metadata;
  a host->device copy inside `to` would be a nested `copy_` and is not in `compute` either: the
  batch indices (one small copy per step in both paths) are the only such copy.
- Throughput: wall time per step on this machine's CPU with --threads torch threads;
  experiments per hour ratio = M * t_separate / t_fused.
On a GPU (when one is visible and --device cuda) the same numbers come from CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from ddrsa.config import ExperimentConfig  # noqa: E402
from ddrsa.device import Split  # noqa: E402
from ddrsa.fused.engine import MemberStack, fused_spec, fused_step, new_member  # noqa: E402
from ddrsa.fused.stacked import RECURRENCES  # noqa: E402
from ddrsa.losses import DDRSALoss  # noqa: E402

F, K, L, B, N_WINDOWS, N_ROWS = 14, 128, 64, 128, 4096, 20000


def make_split(device) -> Split:
    g = torch.Generator().manual_seed(0)
    censored = torch.rand(N_WINDOWS, generator=g) < 0.3
    event = torch.randint(0, L, (N_WINDOWS,), generator=g)
    return Split(
        data=torch.randn(N_ROWS, F, generator=g).to(device),
        valid=(torch.rand(N_ROWS, generator=g) < 0.95).to(device),
        end=torch.randint(K - 1, N_ROWS, (N_WINDOWS,), generator=g).to(device),
        offsets=torch.arange(-K + 1, 1, device=device),
        event_index=event.to(device),
        censored=censored.to(device),
    )


def member_configs(model: str, m: int) -> list[ExperimentConfig]:
    lrs, lams, nasas, drops = [1e-3, 3e-3, 1e-4, 3e-4], [0.5, 0.75], [0.0, 0.1], [0.0, 0.1, 0.3]
    return [
        ExperimentConfig(
            model=model,
            batch_size=B,
            lookback_window=K,
            pred_horizon=L,
            seed=i,
            learning_rate=lrs[i % 4],
            lambda_param=lams[i % 2],
            nasa_weight=nasas[(i // 2) % 2],
            dropout=drops[i % 3],
            data_source="synthetic",
        )
        for i in range(m)
    ]


def separate_step(member, split: Split, device):
    model, opt, cfg = member.model, member.optimizer, member.config
    loss_fn = DDRSALoss(cfg.lambda_param, cfg.nasa_weight)
    model.train()
    g = torch.Generator().manual_seed(1)

    def step():
        idx = torch.randint(0, len(split), (B,), generator=g).to(device)
        x, mask = split.batch(idx)
        logits = model(x, mask)
        loss = loss_fn(logits.float(), split.event_index[idx], split.censored[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return loss.detach()

    return step


def fused_group_step(members, split: Split, device, recurrence: str):
    stack = MemberStack(members, device, recurrence)
    spec = fused_spec(members[0].config.model)
    g = torch.Generator().manual_seed(1)
    m = len(members)

    def step():  # the engine's own training step, on random windows
        idx = torch.randint(0, len(split), (m, B), generator=g).to(device)
        return fused_step(stack, spec, split, idx, device)

    return step


# aten operators that only make a new view or allocate (no kernel on a GPU)
METADATA_OPS = {
    f"aten::{n}"
    for n in (
        "view",
        "reshape",
        "_reshape_alias",
        "_unsafe_view",
        "permute",
        "transpose",
        "t",
        "unsqueeze",
        "squeeze",
        "expand",
        "as_strided",
        "select",
        "slice",
        "detach",
        "detach_",
        "alias",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "narrow",
        "lift_fresh",
        "empty",
        "empty_like",
        "empty_strided",
        "resize_",
        "to",
        "_to_copy_noop",
        "numpy_T",
        "result_type",
        "is_nonzero",
        "item",
        "_local_scalar_dense",
    )
}


def count_ops(step, device, steps: int = 3) -> dict:
    from torch.profiler import ProfilerActivity, profile

    step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    compute = [e for e in top if e.name not in METADATA_OPS]
    out = {"all": len(events) / steps, "top": len(top) / steps, "compute": len(compute) / steps}
    if device.type == "cuda":
        out["cuda_kernels"] = sum(1 for e in prof.events() if e.device_type.name == "CUDA") / steps
    return out


def time_step(step, device, min_seconds: float = 3.0, min_steps: int = 5) -> float:
    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < min_seconds:
        step()
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def bench(model: str, m: int, device, tmp: Path, recurrence: str, separate: dict | None = None) -> dict:
    """One row: separate vs a fused group of `m` with `recurrence`; `separate` reuses the separate
    step's figures of an earlier row of the same model (measured once per model)."""
    split = make_split(device)
    members = [new_member(c, tmp / f"{model}{i}", F, 1, device) for i, c in enumerate(member_configs(model, m))]
    fus = fused_group_step(members, split, device, recurrence)
    if separate is None:
        sep = separate_step(members[0], split, device)
        separate = {"ops": count_ops(sep, device), "seconds": time_step(sep, device)}
    ops_sep, t_sep = separate["ops"], separate["seconds"]
    ops_fus, t_fus = count_ops(fus, device), time_step(fus, device)
    per_exp = {k: v / m for k, v in ops_fus.items()}
    return {
        "model": model,
        "members": m,
        "recurrence": recurrence,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "ops_per_step_separate": ops_sep,
        "ops_per_step_fused_group": ops_fus,
        "ops_per_experiment_step_fused": per_exp,
        "op_reduction": {k: ops_sep[k] / per_exp[k] for k in ops_sep},
        "seconds_per_step_separate": t_sep,
        "seconds_per_step_fused_group": t_fus,
        "throughput_ratio": m * t_sep / t_fus,
    }


def probe_vmap(model: str, m: int, device) -> str:
    """Can `torch.func.vmap` train a group of `m` members of `model` (the way attention models
    would fuse)? One vmapped grad of the DDRSA loss over stacked parameters (dropout 0, so no
    random draw is involved); the outcome, or the error, in one line."""
    import copy
    import warnings

    from torch.func import functional_call, grad, stack_module_state, vmap

    from ddrsa.models import build_model

    models = [
        build_model(model, F, L, 0.0, lookback_window=K, generator=torch.Generator().manual_seed(i)).to(device)
        for i in range(m)
    ]
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    loss_fn = DDRSALoss(0.5, 0.0)
    x, mask = torch.randn(m, B, K, F, device=device), torch.ones(m, B, K, dtype=torch.bool, device=device)
    event, censored = torch.randint(0, L, (m, B), device=device), torch.rand(m, B, device=device) < 0.3

    def member_loss(p, b, x, mask, event, censored):
        return loss_fn(functional_call(skeleton, (p, b), (x, mask)).float(), event, censored)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vmap(grad(member_loss))(params, buffers, x, mask, event, censored)
            outcome = "vmap(grad) ran"
        except Exception as exc:  # the finding: what stops it
            outcome = f"vmap(grad) failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    fallbacks = sorted(
        {
            str(w.message).split("batching rule for ")[1].split(".")[0]
            for w in caught
            if "batching rule for" in str(w.message)
        }
    )
    return f"{model} M={m} {device}: {outcome}" + (
        f"; no vmap batching rule (per-member loop) for {', '.join(fallbacks)}" if fallbacks else ""
    )


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def group_memory(model: str, m: int, recurrence: str, device) -> dict:
    """Peak memory a fused group of `m` adds for training (stacked parameters, Adam moments,
    activations saved for backward, gradients) over 2 steps, in MiB: on CUDA
    `max_memory_allocated` above what was allocated before; on a CPU the process's peak resident
    set (ru_maxrss) above its resident set before (run one per process: `--memory` does)."""
    import resource

    split = make_split(device)
    with tempfile.TemporaryDirectory() as tmp:
        members = [
            new_member(c, Path(tmp) / f"{model}{i}", F, 1, device) for i, c in enumerate(member_configs(model, m))
        ]
        if device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated(device) / 2**20
            torch.cuda.reset_peak_memory_stats(device)
        else:
            before = _rss_mb()
        step = fused_group_step(members, split, device, recurrence)
        step(), step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": model,
        "members": m,
        "recurrence": recurrence,
        "device": str(device),
        "group_mb": peak - before,
        "per_member_mb": (peak - before) / m,
    }


def row_line(row: dict) -> str:
    sep, fus = row["ops_per_step_separate"], row["ops_per_experiment_step_fused"]
    red = row["op_reduction"]
    return (
        f"{row['model']:10s} M={row['members']} {row['recurrence']:9s} {row['device']}: aten ops/experiment/step "
        f"separate {sep['all']:.0f} (top {sep['top']:.0f}, compute {sep['compute']:.0f}), fused {fus['all']:.1f} "
        f"(top {fus['top']:.1f}, compute {fus['compute']:.1f}) -> {red['all']:.1f}x (top {red['top']:.1f}x, "
        f"compute {red['compute']:.1f}x); step separate {row['seconds_per_step_separate'] * 1e3:.1f} ms, "
        f"fused group {row['seconds_per_step_fused_group'] * 1e3:.1f} ms -> experiments/hour fused/separate "
        f"{row['throughput_ratio']:.2f}x"
    )


def memory_table(args, device) -> int:
    """`--memory M...`: each (model, M, recurrence) in a fresh process, so one peak does not hide another."""
    import subprocess

    rows = []
    for model in args.models:
        for recurrence in args.recurrences:
            for m in args.memory:
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--memory-one",
                        model,
                        str(m),
                        recurrence,
                        "--device",
                        str(device),
                        "--threads",
                        str(args.threads),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{model:10s} {recurrence:9s} M={m:3d} {device}: group {row['group_mb']:8.1f} MiB, "
                    f"{row['per_member_mb']:6.1f} MiB per member",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}, indent=1)
        )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["paper", "lstm_basic"])
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--recurrences", nargs="+", choices=RECURRENCES, default=list(RECURRENCES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="write the results here")
    p.add_argument(
        "--probe-vmap", nargs="+", metavar="MODEL", help="only try vmap-fusing these models and say what happens"
    )
    p.add_argument(
        "--memory",
        nargs="+",
        type=int,
        metavar="M",
        help="only measure the peak memory of fused groups of these sizes (one process each)",
    )
    p.add_argument("--memory-one", nargs=3, metavar=("MODEL", "M", "RECURRENCE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_one:
        model, m, recurrence = args.memory_one
        print(json.dumps(group_memory(model, int(m), recurrence, device)))
        return 0
    if args.memory:
        return memory_table(args, device)
    if args.probe_vmap:
        for model in args.probe_vmap:
            print(probe_vmap(model, args.members, device), flush=True)
        return 0
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            separate = None  # measured with the first recurrence, reused for the others
            for recurrence in args.recurrences:
                row = bench(model, args.members, device, Path(tmp), recurrence, separate)
                separate = {"ops": row["ops_per_step_separate"], "seconds": row["seconds_per_step_separate"]}
                rows.append(row)
                print(row_line(row), flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": load,
        "load_after": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    print(json.dumps(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
