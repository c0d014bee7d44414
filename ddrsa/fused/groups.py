"""Fusion groups of a sweep: which planned experiments train together, and under what name.

Pure functions of the planned experiments (dicts as `PlannedExperiment.as_dict()`), the `fuse`
choice and the device type; flows/sweep.py submits each group as one Prefect task.
"""

from __future__ import annotations

import math

from ddrsa.config import ExperimentConfig, is_baseline

from .engine import fusable, fused_spec, group_key

FUSE_CHOICES = ("auto", "on", "off")
# `--fuse auto` on a CPU: fuse only where benchmarks/bench_fused.py measured a throughput gain
# (BENCHMARKS.md, fused training). It measured a loss with either recurrence (block-diagonal RNNs
# multiply M times the recurrent arithmetic; the per-step batched matmuls reach 0.5-0.8x for the
# LSTMs and parity, within noise, for gru_basic; CPU steps are bound by arithmetic): no fusion.
CPU_FUSION_PAYS = False
# Default cap: the block-diagonal hidden size M * H stays <= 1024 (paper 64, basic 16, deep 8
# members): a block-diagonal layer's arithmetic grows as (M * H)^2, so beyond that the zeros it
# multiplies dominate. Memory is far from binding at these caps, measured (BENCHMARKS.md section
# 12, `python benchmarks/bench_fused.py --memory ...`, CPU, batch 128, K 128, L 64): the peak a
# training group adds grows linearly, ~21-25 MiB per paper member, ~80-95 per lstm_basic/gru_basic
# member, ~430-530 per lstm_deep member, with either recurrence: a default-size group needs 1.3-1.5
# GiB (paper x64, lstm_basic x16) or 3.5-3.7 GiB (lstm_deep x8). The same tensors on a GPU (cuDNN's
# workspace aside) fit any 8 GB card; a GPU session should confirm with `--device cuda`.
MAX_BLOCK_HIDDEN = 1024


def fuse_enabled(fuse: str, device_type: str) -> bool:
    if fuse not in FUSE_CHOICES:
        raise ValueError(f"fuse must be one of {', '.join(FUSE_CHOICES)} (got {fuse!r})")
    if fuse == "auto":
        return device_type == "cuda" or CPU_FUSION_PAYS
    return fuse == "on"


# Transformers: the attention weights saved for backward grow as members x heads x layers (x batch
# x K^2); measured (`bench_fused.py --memory`, CPU, batch 128, K 128): ~400 MiB per transformer_basic
# member (4 heads x 2 layers; 16 members 6.4 GiB), ~1.5 GiB per transformer_deep member (8 x 4;
# 4 members 6.2 GiB). Capping members x heads x layers at 128 keeps a group near 6.5 GiB.
MAX_ATTENTION_MAPS = 128


def default_max_fused(model: str) -> int:
    spec = fused_spec(model)
    assert spec is not None, f"{model} does not fuse"
    cap = MAX_BLOCK_HIDDEN // max(spec["hidden"], spec["dec_hidden"])
    if spec["kind"] == "transformer":
        cap = min(cap, MAX_ATTENTION_MAPS // (spec["heads"] * spec["layers"]))
    return max(1, cap)


def group_name(config: ExperimentConfig, n: int) -> str:
    """`turbofan/paper/bs128 x24` (the head as in `display_name`)."""
    head = config.display_name().split("/")[0]
    return f"{head}/{config.model}/bs{config.batch_size} x{n}"


def plan_groups(
    items: list[dict], fuse: str, device_type: str, max_fused: int | None = None
) -> tuple[list[dict], list[dict]]:
    """(groups, singles). A group is {"name", "experiment_id": "fused-<first member's id>", "members":
    [items]} of 2 or more fusable experiments with one group key, at most `max_fused` (default
    `default_max_fused`) per group, split evenly; everything else (baselines among them: they are
    fitted, not trained, `fusable` is False for them) is a single experiment."""
    if not fuse_enabled(fuse, device_type):
        return [], list(items)
    buckets: dict[str, list[dict]] = {}
    singles = []
    for item in items:
        config = ExperimentConfig(**item["config"])
        if fusable(config):
            buckets.setdefault(group_key(config), []).append(item)
        else:
            singles.append(item)
    groups = []
    for members in buckets.values():
        config = ExperimentConfig(**members[0]["config"])
        cap = max_fused or default_max_fused(config.model)
        n_groups = math.ceil(len(members) / cap)
        size = math.ceil(len(members) / n_groups)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            if len(chunk) < 2:
                singles.extend(chunk)
                continue
            groups.append(
                {
                    "name": group_name(config, len(chunk)),
                    "experiment_id": "fused-" + chunk[0]["experiment_id"],
                    "members": chunk,
                }
            )
    return groups, singles


def describe(groups: list[dict], singles: list[dict]) -> list[str]:
    """Dry-run lines: one per group (with its member indices), then why the rest run alone."""
    lines = [f"  fused  {g['name']}: experiments {' '.join(str(m['index']) for m in g['members'])}" for g in groups]
    baselines = [s for s in singles if is_baseline(s["config"]["model"])]
    if baselines:
        models = sorted({s["config"]["model"] for s in baselines})
        lines.append(
            f"  baselines: {len(baselines)} experiment(s) of {', '.join(models)} (fitted, not trained: "
            "one per dataset, subset and seed, never fused)"
        )
    alone = [
        s for s in singles if not fusable(ExperimentConfig(**s["config"])) and not is_baseline(s["config"]["model"])
    ]
    if alone:
        models = sorted({s["config"]["model"] for s in alone})
        lines.append(
            f"  unfused: {len(alone)} experiment(s) of {', '.join(models)} (ProbSparse models and "
            "--compile train separately)"
        )
    rest = len(singles) - len(alone) - len(baselines)
    if rest:
        lines.append(f"  unfused: {rest} experiment(s) without a partner in their group")
    return lines
