"""Transformer encoder + DDRSA hazard decoder.

Input Linear projection to d_model, fixed sinusoidal positions, nn.TransformerEncoder (pre-norm,
batch_first) with `src_key_padding_mask = ~mask` so attention never reads the front padding.
Pooling: the output at the last position (the current time j, always real), which attends to the
whole real history; a final LayerNorm, dropout, then a GRU hazard decoder.
The encoder layers' dropouts are SeededDropout and their self-attention a SeededMultiheadAttention
(attention-weight dropout included): every draw comes from the run's own generator.
"""

from __future__ import annotations

import torch
from torch import nn

from .decoder import HazardDecoder, PositionalEncoding, masked_inputs
from .seeding import SeededDropout, SeededMultiheadAttention


class TransformerSurvival(nn.Module):
    def __init__(
        self,
        n_features: int,
        pred_horizon: int,
        dropout: float,
        *,
        d_model: int,
        layers: int,
        heads: int,
        ff: int,
        dec_hidden: int,
        dec_layers: int,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        self.in_proj = nn.Linear(n_features, d_model)
        self.pos = PositionalEncoding(d_model, max_len)
        self.emb_drop = SeededDropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=ff, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        for attr in ("dropout", "dropout1", "dropout2"):  # the run's own generator, not the global RNG
            setattr(layer, attr, SeededDropout(dropout))
        layer.self_attn = SeededMultiheadAttention(d_model, heads, dropout=dropout)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.z_drop = SeededDropout(dropout)
        self.decoder = HazardDecoder(d_model, dec_hidden, dec_layers, pred_horizon, dropout, cell="gru")

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.emb_drop(self.pos(self.in_proj(masked_inputs(x, mask))))
        h = self.encoder(h, src_key_padding_mask=~mask)
        return self.z_drop(h[:, -1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x, mask))
