"""Informer-style encoder (Zhou et al., AAAI 2021) + DDRSA hazard decoder.

ProbSparse self-attention, per batch element and head:
- sample U = min(L_K, c * ceil(ln L_K)) keys per query; sparsity measure
  M(q) = max_j(q.k_j / sqrt(d)) - mean_j(q.k_j / sqrt(d)) over the sampled *real* keys;
- the top u = min(L_Q, c * ceil(ln L_Q)) real queries get full (masked) softmax attention;
- every other query gets the mean of V over the real positions.
Sampling: random (the run's generator, see seeding.set_generator; else the global RNG) in train mode, a deterministic strided pattern (query i
takes keys (i + s * L_K // U) mod L_K) in eval mode, so evaluation is reproducible. Set
`random_sampling = False` on the attention modules (`set_random_key_sampling`) for a fully
deterministic train-mode forward.

Implementation note: at the lookbacks used here (K <= a few hundred) one batched L x L matmul is
cheaper than gathering U sampled keys per query (U * d_head > L), so the scores are computed
once and the sampled entries / top-u rows are gathered from them. The output is the same as
Informer's ProbSparse attention; the O(L log L) saving is not realised (it does not matter at
L = 128).

Distilling between attention layers: Conv1d(k=3, zero padding) -> LayerNorm -> ELU ->
MaxPool1d(3, stride 2, padding 1), halving the length. Padded positions are zeroed before the
convolution (so padding values never leak into real positions), and the mask is max-pooled the
same way (a pooled position is real if any of its inputs is). LayerNorm replaces Informer's
BatchNorm, whose batch statistics would mix in the padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import HazardDecoder, PositionalEncoding, masked_inputs
from .seeding import SeededDropout


def _n_top(length: int, factor: int) -> int:
    return max(1, min(length, factor * math.ceil(math.log(max(length, 2)))))


class ProbSparseSelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float, factor: int = 5) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError("d_model must be divisible by heads")
        self.heads = heads
        self.d_head = d_model // heads
        self.factor = factor
        self.random_sampling = True
        self.generator: torch.Generator | None = None  # the run's own stream (set_generator)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.attn_drop = SeededDropout(dropout)

    def _sample_index(self, length: int, n_sample: int, device) -> torch.Tensor:
        if self.training and self.random_sampling:
            return torch.randint(length, (length, n_sample), device=device, generator=self.generator)
        offsets = torch.arange(n_sample, device=device) * length // n_sample
        return (torch.arange(length, device=device).unsqueeze(1) + offsets.unsqueeze(0)) % length

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d_head))  # (B,H,L,L)

        # sparsity measurement on U sampled keys per query (float32; padding excluded)
        n_sample = _n_top(length, self.factor)
        n_top = _n_top(length, self.factor)
        idx = self._sample_index(length, n_sample, x.device)  # (L, U)
        sampled = scores.float().gather(-1, idx.expand(batch, self.heads, length, n_sample))
        key_real = mask[:, idx].unsqueeze(1)  # (B,1,L,U)
        neg32 = torch.finfo(torch.float32).min
        s_max = sampled.masked_fill(~key_real, neg32).amax(-1)
        n_real = key_real.sum(-1)
        s_mean = sampled.masked_fill(~key_real, 0.0).sum(-1) / n_real.clamp(min=1)
        usable = (n_real > 0) & mask.unsqueeze(1)  # real query, >=1 real key
        measure = torch.where(usable, s_max - torch.where(usable, s_mean, 0.0), neg32)
        top = measure.topk(n_top, dim=-1).indices  # (B,H,u)

        # full masked attention for the selected queries
        rows = scores.gather(2, top.unsqueeze(-1).expand(batch, self.heads, n_top, length))
        rows = rows.masked_fill(~mask[:, None, None, :], torch.finfo(rows.dtype).min)
        attn = self.attn_drop(torch.softmax(rows.float(), dim=-1)).to(v.dtype)
        top_out = torch.matmul(attn, v)  # (B,H,u,D)

        # lazy queries: mean of V over the real positions
        real = mask[:, None, :, None].to(v.dtype)
        v_mean = (v * real).sum(2) / real.sum(2).clamp(min=1)  # (B,H,D)
        context = v_mean.unsqueeze(2).expand(batch, self.heads, length, self.d_head)
        context = context.scatter(
            2, top.unsqueeze(-1).expand(batch, self.heads, n_top, self.d_head), top_out.to(context.dtype)
        )
        return self.out(context.transpose(1, 2).reshape(batch, length, d_model))


class ProbSparseEncoderLayer(nn.Module):
    """Pre-norm: x + Drop(Attn(LN(x))); x + Drop(FF(LN(x)))."""

    def __init__(self, d_model: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = ProbSparseSelfAttention(d_model, heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), SeededDropout(dropout), nn.Linear(ff, d_model))
        self.drop = SeededDropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ff(self.norm2(x)))


class DistilLayer(nn.Module):
    """Conv1d -> LayerNorm -> ELU -> MaxPool(stride 2): (B, L, d) -> (B, ceil(L/2), d), mask pooled."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(masked_inputs(x, mask).transpose(1, 2)).transpose(1, 2)
        y = F.elu(self.norm(y))
        y = F.max_pool1d(y.transpose(1, 2), kernel_size=3, stride=2, padding=1).transpose(1, 2)
        pooled = F.max_pool1d(mask.unsqueeze(1).float(), kernel_size=3, stride=2, padding=1)
        return y, pooled.squeeze(1) > 0


class ProbSparseSurvival(nn.Module):
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
        self.layers = nn.ModuleList(ProbSparseEncoderLayer(d_model, heads, ff, dropout) for _ in range(layers))
        self.distils = nn.ModuleList(DistilLayer(d_model) for _ in range(layers - 1))
        self.norm = nn.LayerNorm(d_model)
        self.z_drop = SeededDropout(dropout)
        self.decoder = HazardDecoder(d_model, dec_hidden, dec_layers, pred_horizon, dropout, cell="gru")

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.emb_drop(self.pos(self.in_proj(masked_inputs(x, mask))))
        for i, layer in enumerate(self.layers):
            h = layer(h, mask)
            if i < len(self.distils):
                h, mask = self.distils[i](h, mask)
        return self.z_drop(self.norm(h[:, -1]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x, mask))


def set_random_key_sampling(model: nn.Module, enabled: bool) -> None:
    """Switch train-mode random key sampling of every ProbSparse attention in `model`."""
    for module in model.modules():
        if isinstance(module, ProbSparseSelfAttention):
            module.random_sampling = enabled
