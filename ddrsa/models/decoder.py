"""Shared DDRSA hazard decoder and small helpers used by every encoder.

The decoder is the DRSA part of DDRSA: an RNN fed the encoder state Z_j at each of the L_max
future steps (its initial hidden state is also a projection of Z_j), followed by a Linear layer
that emits one hazard logit per step: logits (B, L_max), h(k) = sigmoid(logit_k).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .seeding import SeededDropout, init_rnn_


def initial_hazard_bias(pred_horizon: int) -> float:
    """Logit of a hazard 1/L_max: at init S(L_max-1) ~ e^-1, neither all-event nor all-censored."""
    p = 1.0 / max(pred_horizon, 2)
    return math.log(p / (1.0 - p))


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, hx=None) -> torch.Tensor:
    """Run `rnn` in float32 with autocast off; returns the output sequence (float32).

    Recurrences over 64-128 steps are where bf16 rounding accumulates, these RNNs are small
    enough that low precision buys little, and bf16 LSTM/GRU kernels are not available on every
    backend (oneDNN on CPUs without AVX512-BF16 refuses them). The surrounding Linear/attention
    layers still run under autocast.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        if hx is not None:
            hx = tuple(h.float() for h in hx) if isinstance(hx, tuple) else hx.float()
        out, _ = rnn(x, hx)
    return out


def masked_inputs(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the padded steps, so the output never depends on what the padding holds."""
    return x * mask.unsqueeze(-1).to(x.dtype)


class HazardDecoder(nn.Module):
    """RNN decoder: Z (B, In) -> logits (B, L_max).

    Z is projected to the initial hidden state (tanh; for an LSTM the cell state is a second,
    linear projection) and also fed, after dropout, as the input at every one of the L_max steps.
    Dropout acts on the decoder input and on the RNN outputs before the head (and between
    stacked layers), so it is active even for a 1-layer RNN. Stacked layers are separate
    1-layer RNNs (`rnns[i]`) with a SeededDropout between them (what nn.LSTM's `dropout` does,
    but drawn from the run's own generator instead of the global RNG).
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, pred_horizon: int, dropout: float, cell: str = "lstm"
    ) -> None:
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"unknown decoder cell {cell!r}")
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.pred_horizon = pred_horizon
        n_states = 2 if cell == "lstm" else 1
        self.init_proj = nn.Linear(input_size, n_states * num_layers * hidden_size)
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnns = nn.ModuleList(
            rnn_cls(input_size if i == 0 else hidden_size, hidden_size, batch_first=True) for i in range(num_layers)
        )
        for rnn in self.rnns:
            init_rnn_(rnn)  # type: ignore[arg-type]  # nn.LSTM or nn.GRU
        self.in_drop = SeededDropout(dropout)
        self.layer_drop = SeededDropout(dropout if num_layers > 1 else 0.0)
        self.out_drop = SeededDropout(dropout)
        self.head = nn.Linear(hidden_size, 1)
        self.post_init_()

    def post_init_(self) -> None:
        nn.init.constant_(self.head.bias, initial_hazard_bias(self.pred_horizon))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        inp = self.in_drop(z).unsqueeze(1).expand(batch, self.pred_horizon, z.shape[-1]).contiguous()
        states = self.init_proj(z).view(batch, -1, self.num_layers, self.hidden_size)
        states = states.permute(1, 2, 0, 3)  # (n_states, layers, B, H)
        out = inp
        for i, rnn in enumerate(self.rnns):
            if i:
                out = self.layer_drop(out)
            hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
            if self.cell == "lstm":
                hx = (torch.tanh(states[0, i : i + 1]).contiguous(), states[1, i : i + 1].contiguous())
            else:
                hx = torch.tanh(states[0, i : i + 1]).contiguous()
            out = run_rnn(rnn, out, hx)  # type: ignore[arg-type]  # nn.LSTM or nn.GRU
        # float32 logits even under autocast: the survival loss sums log(1 - h) over L_max steps
        return self.head(self.out_drop(out)).squeeze(-1).float()


def sinusoidal_positions(length: int, d_model: int, device=None) -> torch.Tensor:
    """(length, d_model) fixed sinusoidal position encoding (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d_model // 2])
    return pe


class PositionalEncoding(nn.Module):
    """Adds a sinusoidal encoding; the cache grows on demand and is not saved in checkpoints."""

    pe: torch.Tensor  # (max_len, d_model), a non-persistent buffer

    def __init__(self, d_model: int, max_len: int = 512) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("pe", sinusoidal_positions(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.pe.shape[0]:
            self.pe = sinusoidal_positions(length, self.d_model, device=x.device)
        return x + self.pe[:length].to(x.dtype)
