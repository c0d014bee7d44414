"""RNN encoders (LSTM / GRU, basic / deep, and the paper's 16-unit LSTM) + the hazard decoder.

Front padding: histories shorter than K are zero-padded at the front, so the last step is always
real and the encoder state Z_j is the top layer's output at the last step. The RNN does run over
the padded steps (no packed sequences: they would cost a host sync per batch for lengths and
padding at the front already leaves the informative steps last). To keep the padding from
dominating, the padded steps are forced to zero (whatever the caller put there) and the mask is
appended as an extra input channel, so the network can tell "padding" from "a real reading of 0"
and count how long the real history is.
"""

from __future__ import annotations

import torch
from torch import nn

from .decoder import HazardDecoder, masked_inputs, run_rnn
from .seeding import SeededDropout, init_rnn_


class ResidualRNNBlock(nn.Module):
    """Pre-norm residual RNN layer: x + Dropout(RNN(LayerNorm(x)))."""

    def __init__(self, cell: str, size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(size)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(size, size, batch_first=True)
        init_rnn_(self.rnn)
        self.drop = SeededDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = run_rnn(self.rnn, self.norm(x))
        return x + self.drop(out)


class RNNSurvival(nn.Module):
    """DDRSA with an RNN encoder.

    basic (`deep=False`): one RNN layer over [x, mask] with `hidden` units.
    deep (`deep=True`): Linear input projection to `hidden`, then `layers` pre-norm residual RNN
    blocks (residual paths + LayerNorm keep a 3-layer stack from collapsing to a constant).
    Z = LayerNorm(last output) (`z_norm`), then dropout, then the decoder.
    """

    def __init__(
        self,
        cell: str,
        n_features: int,
        pred_horizon: int,
        dropout: float,
        *,
        hidden: int,
        layers: int,
        deep: bool,
        dec_hidden: int,
        dec_layers: int,
        z_norm: bool = True,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.deep = deep
        in_size = n_features + 1  # + mask channel
        if deep:
            self.in_proj = nn.Linear(in_size, hidden)
            self.blocks = nn.ModuleList(ResidualRNNBlock(cell, hidden, dropout) for _ in range(layers))
        else:
            if layers != 1:
                raise ValueError("basic RNN encoders have one layer")
            self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(in_size, hidden, batch_first=True)
            init_rnn_(self.rnn)
        self.z_norm = nn.LayerNorm(hidden) if z_norm else nn.Identity()
        self.z_drop = SeededDropout(dropout)
        self.decoder = HazardDecoder(hidden, dec_hidden, dec_layers, pred_horizon, dropout, cell=cell)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.cat([masked_inputs(x, mask), mask.unsqueeze(-1).to(x.dtype)], dim=-1)
        if self.deep:
            h = self.in_proj(x)
            for block in self.blocks:
                h = block(h)
            last = h[:, -1]
        else:
            out = run_rnn(self.rnn, x)
            last = out[:, -1]
        return self.z_drop(self.z_norm(last))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x, mask))
