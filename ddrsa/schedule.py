"""Learning-rate schedules: ReduceLROnPlateau for the RNNs, warm-up + cosine for attention models."""

from __future__ import annotations

import math

import torch

from ddrsa.config import ExperimentConfig
from ddrsa.models import uses_attention


def steps_per_batch(scheduler) -> bool:
    """True for the attention models' warm-up + cosine schedule (stepped after every training
    step), False for the RNNs' ReduceLROnPlateau (stepped once per epoch on validation loss)."""
    return not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def make_scheduler(config: ExperimentConfig, optimizer, steps_per_epoch: int):
    """Plateau for RNNs (stepped on validation loss), warm-up + cosine for attention (per step)."""
    if not uses_attention(config.model):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    total = max(config.num_epochs * steps_per_epoch, 1)
    warmup = max(min(total // 20, 5 * steps_per_epoch), 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
