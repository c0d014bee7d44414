"""Per-experiment random streams inside a model: seeded dropout and generator-driven initialisation.

Every random draw of a training run comes from the run's own `torch.Generator`s (see
`ddrsa.trainer.experiment_generators`), never from the process-global RNG, so experiments that
share a worker process as threads do not race, and a fused group member (ddrsa/fused) draws
exactly what its separate run draws.

- `SeededMultiheadAttention`: nn.MultiheadAttention whose attention-weight dropout is seeded the same way.
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


class SeededMultiheadAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (batch_first, packed q/k/v projection) whose attention-weight dropout
    draws from `self.generator` when set: in training with dropout > 0 it computes
    softmax(q k^T / sqrt(d_head) + key padding) -> seeded dropout -> @ v -> out_proj itself
    (PyTorch's kernel takes no generator); otherwise, and with no generator, PyTorch's own path."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, batch_first=True, **kwargs)
        self.generator: torch.Generator | None = None

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if not (self.training and self.dropout > 0.0 and self.generator is not None):
            return super().forward(
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
        if attn_mask is not None or is_causal or not self._qkv_same_embed_dim:
            raise NotImplementedError("SeededMultiheadAttention: key padding masks only, packed projections")
        return self.attend(
            query,
            key,
            value,
            key_padding_mask,
            need_weights,
            average_attn_weights,
            lambda w: dropout_with(w, self.dropout, self.generator),
        )

    def attend(self, query, key, value, key_padding_mask, need_weights, average_attn_weights, drop):
        """Scaled dot-product attention with `drop` applied to the (batch, heads, T, S) weights.
        query (batch, T, E), key/value (batch, S, E); key_padding_mask (batch, S): True or -inf = ignore."""
        batch, t, e = query.shape
        heads, d = self.num_heads, e // self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)

        def split(x, w, b):  # (batch, L, E) -> (batch, heads, L, d)
            return F.linear(x, w, b).view(batch, -1, heads, d).transpose(1, 2)

        q, k, v = split(query, w_q, b_q), split(key, w_k, b_k), split(value, w_v, b_v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        if key_padding_mask is not None:
            pad = key_padding_mask[:, None, None, :]
            scores = scores.masked_fill(pad, float("-inf")) if pad.dtype == torch.bool else scores + pad
        weights = torch.softmax(scores, dim=-1)
        out = (drop(weights) @ v).transpose(1, 2).reshape(batch, t, e)
        out = self.out_proj(out)
        if not need_weights:
            return out, None
        return out, (weights.mean(dim=1) if average_attn_weights else weights)


def set_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Make every SeededDropout (and every module with a `generator` attribute, e.g. ProbSparse key
    sampling) of `model` draw from `generator` (on the model's device)."""
    for module in model.modules():
        if hasattr(module, "generator"):
            module.generator = generator  # type: ignore[assignment]


def _linear_default_(weight: torch.Tensor, bias: torch.Tensor | None, g: torch.Generator) -> None:
    """nn.Linear / nn.Conv1d reset_parameters, drawn from `g`."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=g)
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound, generator=g)


def init_rnn_(rnn: nn.RNNBase, generator: torch.Generator | None = None) -> None:
    """Xavier input weights, orthogonal recurrent weights, zero biases (+1 LSTM forget gate);
    random draws from `generator` (None: the global RNG).

    Orthogonal recurrent matrices keep the hidden state from saturating or vanishing over the
    128-step lookback, one of the causes of deep RNNs collapsing to a constant prediction.
    """
    gates = 4 if isinstance(rnn, nn.LSTM) else 3
    for name, param in rnn.named_parameters():
        if name.startswith("weight_ih"):
            for chunk in param.data.chunk(gates, 0):
                nn.init.xavier_uniform_(chunk, generator=generator)
        elif name.startswith("weight_hh"):
            for chunk in param.data.chunk(gates, 0):
                nn.init.orthogonal_(chunk, generator=generator)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            if isinstance(rnn, nn.LSTM) and name.startswith("bias_ih"):
                hidden = param.shape[0] // 4
                param.data[hidden : 2 * hidden].fill_(1.0)  # forget gate (gate order i, f, g, o)


@torch.no_grad()
def reset_parameters_(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every parameter of `model` from `generator` alone (deterministic per seed)."""
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
