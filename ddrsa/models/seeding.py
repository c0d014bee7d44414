"""Per-experiment random streams inside a model: seeded dropout and generator-driven initialisation.

Every random draw of a training run comes from the run's own `torch.Generator`s (see
`ddrsa.trainer.experiment_generators`), never from the process-global RNG, so experiments that
share a worker process as threads do not race, and a fused group member (ddrsa/fused) draws
exactly what its separate run draws.

- `SeededDropout(p)`: nn.Dropout whose mask comes from `module.generator` when set (the trainer
  sets it with `set_generator`), else from the global RNG. The mask is
  `empty(x.shape).bernoulli_(1 - p, generator)` and the output `x * mask * (1 / (1 - p))`; the fused
  engine draws each member's mask with the same call, shape and order.
- `reset_parameters_(model, generator)`: re-draws every parameter with the layer's usual scheme
  (PyTorch defaults for Linear/Conv1d/MultiheadAttention, `init_rnn_` for LSTM/GRU, constants for
  norms), then runs each module's `post_init_()` (constant biases such as the hazard head's).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def dropout_with(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout of `x` with keep probability 1 - p, the mask drawn from `generator`."""
    # a fresh contiguous tensor: the mask is filled in logical order whatever x's strides
    keep = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=generator)
    return x * keep * (1.0 / (1.0 - p))


class SeededDropout(nn.Module):
    """Dropout with an optional own generator (not saved in state_dict; the trainer checkpoints it)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {p})")
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            return F.dropout(x, self.p, True)
        return dropout_with(x, self.p, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def set_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Make every SeededDropout (and every module with a `generator` attribute, e.g. ProbSparse key
    sampling) of `model` draw from `generator` (on the model's device)."""
    for module in model.modules():
        if hasattr(module, "generator"):
            module.generator = generator


def _linear_default_(weight: torch.Tensor, bias: torch.Tensor | None, g: torch.Generator) -> None:
    """nn.Linear / nn.Conv1d reset_parameters, drawn from `g`."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=g)
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound, generator=g)


@torch.no_grad()
def reset_parameters_(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every parameter of `model` from `generator` alone (deterministic per seed)."""
    from .decoder import init_rnn_

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            _linear_default_(module.weight, module.bias, generator)
        elif isinstance(module, nn.RNNBase):
            init_rnn_(module, generator)
        elif isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                nn.init.xavier_uniform_(module.in_proj_weight, generator=generator)
            else:
                for w in (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight):
                    nn.init.xavier_uniform_(w, generator=generator)
            if module.in_proj_bias is not None:
                nn.init.zeros_(module.in_proj_bias)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            module.reset_parameters()
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention) and module.out_proj.bias is not None:
            nn.init.zeros_(module.out_proj.bias)  # as MultiheadAttention._reset_parameters
        post = getattr(module, "post_init_", None)
        if callable(post):
            post()
