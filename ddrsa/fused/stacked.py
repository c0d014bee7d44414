"""Stacked (horizontally fused) forward pass of the RNN and transformer models (the per-member loss
is ddrsa/losses.py's DDRSALoss over a leading member axis).

M members of one architecture (ddrsa/fused/engine.py `fused_spec`: paper, lstm_basic, gru_basic,
lstm_deep, gru_deep, transformer_basic, transformer_deep; not ProbSparse, whose key sampling is
random) run as one computation. Attention is batched matmuls over a members dimension (as
SeededMultiheadAttention.attend computes it per model). Parameters are a dict
`name -> (M, *shape)` with the separate model's parameter names (`model.named_parameters()`), so
member m's slice is exactly its separate model's tensor.

Recurrences (`torch.func.vmap` does not batch nn.LSTM/nn.GRU), two interchangeable ways
(RECURRENCES; BENCHMARKS.md, fused training, measures both):
- "blockdiag": each RNN layer of the M members is ONE call of the same fused kernel the separate
  model uses (`torch.lstm` / `torch.gru`: cuDNN on GPU, oneDNN/native on CPU) with block-diagonal
  weights: hidden size M*H, input size M*I, member m in block m of every gate. Blocks do not
  interact (off-block weights are exact zeros, and their gradients are discarded by construction).
  Fewest operators (one per layer), but M times the recurrent arithmetic of M separate RNNs (the
  zeros are multiplied too): what a GPU, bound by kernel launches, wants.
- "bmm": the cell equations written out per time step (autograd records them), one batched matmul
  over the members dimension per step (`baddbmm`: (M, B, H) @ (M, H, G*H)), the input projection
  of all steps in one batched matmul before the loop. No wasted arithmetic, ~8 operators per time
  step for the whole group. Faster than "blockdiag" on a CPU, still slower there than separate
  oneDNN RNNs (a hand-written backward pass was tried and was no faster: the time goes to the
  arithmetic and memory traffic of the small per-step tensors, not to autograd).
Either way member m computes what its separate RNN computes (PyTorch's gate order and equations:
LSTM i, f, g, o; GRU r, z, n with n = tanh(W_in x + b_in + r * (W_hn h + b_hn))), up to
floating-point summation order.

Dropout: member m's masks are drawn from member m's own generator with the separate model's call
(`empty(shape).bernoulli_(1 - p, generator)`, same shape, same order of dropout sites), so a fused
member draws exactly the masks of its separate run.

Shapes: x (M, B, K, F) float, mask (M, B, K) bool -> logits (M, B, L).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ddrsa.models.decoder import sinusoidal_positions


class StackedDropout:
    """Dropout of an (M, ...) tensor: member m uses rate ps[m] and generator gens[m] on x[m]."""

    def __init__(self, ps: list[float], gens: list[torch.Generator], device: torch.device) -> None:
        self.ps = [float(p) for p in ps]
        self.gens = gens
        self.training = True
        self.scale = torch.tensor([1.0 / (1.0 - p) for p in self.ps], dtype=torch.float32, device=device)
        self.any = any(p > 0 for p in self.ps)
        self._ones: dict = {}

    def __call__(self, x: Tensor) -> Tensor:
        if not self.training or not self.any:
            return x
        shape = x.shape[1:]
        key = (shape, x.dtype, x.device)
        if key not in self._ones:  # members without dropout: one cached all-ones mask
            self._ones[key] = torch.ones(shape, dtype=x.dtype, device=x.device)
        masks = [
            torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=g)
            if p > 0
            else self._ones[key]
            for p, g in zip(self.ps, self.gens)
        ]
        return x * torch.stack(masks) * self.scale.to(x.dtype).view(-1, *([1] * len(shape)))


def block_diagonal(w: Tensor, gates: int) -> Tensor:
    """(M, G*H, I) per-member gate weights -> (G*M*H, M*I): gate g of member m in block (g, m)."""
    m, gh, i = w.shape
    h = gh // gates
    big = w.new_zeros(m, gates, h, m, i)
    ar = torch.arange(m, device=w.device)
    big[ar, :, :, ar, :] = w.view(m, gates, h, i)  # (M, G, H, I) on the diagonal
    return big.permute(1, 0, 2, 3, 4).reshape(gates * m * h, m * i)


def block_bias(b: Tensor, gates: int) -> Tensor:
    """(M, G*H) -> (G*M*H), the layout of `block_diagonal`."""
    m, gh = b.shape
    return b.view(m, gates, gh // gates).transpose(0, 1).reshape(-1)


RECURRENCES = ("blockdiag", "bmm")


def default_recurrence(device: torch.device) -> str:
    """cuDNN's one-kernel block-diagonal RNN on a GPU; per-step batched matmuls on a CPU, where
    benchmarks/bench_fused.py measured them faster (BENCHMARKS.md, fused training)."""
    return "blockdiag" if device.type == "cuda" else "bmm"


def stacked_rnn(
    cell: str, params: dict, prefix: str, x: Tensor, hx=None, recurrence: str = "blockdiag", steps: int | None = None
) -> Tensor:
    """One RNN layer for M members. x (M, B, T, I), or (M, B, I) fed at each of `steps` time steps
    (the decoder's constant input); hx (M, B, H) or (h, c) for an LSTM, or None.
    Returns the output sequence (M, B, T, H) in float32 (autocast off, like `run_rnn`)."""
    if recurrence == "bmm":
        return _rnn_steps(cell, params, prefix, x, hx, steps)
    if recurrence != "blockdiag":
        raise ValueError(f"recurrence must be one of {', '.join(RECURRENCES)} (got {recurrence!r})")
    if steps is not None:
        x = x.unsqueeze(2).expand(*x.shape[:2], steps, x.shape[-1])
    gates = 4 if cell == "lstm" else 3
    m, b, t, i = x.shape
    w_ih, w_hh = params[prefix + "weight_ih_l0"], params[prefix + "weight_hh_l0"]
    h = w_hh.shape[-1]
    flat = [
        block_diagonal(w_ih, gates),
        block_diagonal(w_hh, gates),
        block_bias(params[prefix + "bias_ih_l0"], gates),
        block_bias(params[prefix + "bias_hh_l0"], gates),
    ]
    with torch.autocast(device_type=x.device.type, enabled=False):
        inp = x.float().permute(1, 2, 0, 3).reshape(b, t, m * i)

        def state(s: Tensor) -> Tensor:  # (M, B, H) -> (1, B, M*H)
            return s.float().permute(1, 0, 2).reshape(1, b, m * h)

        if hx is None:
            zeros = inp.new_zeros(1, b, m * h)
            hx = (zeros, zeros) if cell == "lstm" else zeros
        else:
            hx = (state(hx[0]), state(hx[1])) if cell == "lstm" else state(hx)
        if cell == "lstm":
            out = torch.lstm(inp, hx, flat, True, 1, 0.0, True, False, True)[0]
        else:
            out = torch.gru(inp, hx, flat, True, 1, 0.0, True, False, True)[0]
    return out.view(b, t, m, h).permute(2, 0, 1, 3)


def _rnn_steps(cell: str, params: dict, prefix: str, x: Tensor, hx, steps: int | None) -> Tensor:
    """The "bmm" recurrence: PyTorch's LSTM/GRU cell equations per time step for M members."""
    w_ih, w_hh = params[prefix + "weight_ih_l0"], params[prefix + "weight_hh_l0"]
    b_ih, b_hh = params[prefix + "bias_ih_l0"], params[prefix + "bias_hh_l0"]
    m, b = x.shape[:2]
    h_size = w_hh.shape[-1]
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        whh_t = w_hh.float().transpose(1, 2)  # (M, H, G*H)
        bias = b_ih + b_hh if cell == "lstm" else b_ih  # GRU: b_hn stays inside r * (.)
        proj = batched_linear(x, w_ih.float(), bias.float())  # (M, B, T, G*H) or (M, B, G*H)
        if steps is None:  # unbind, not a slice per step: a slice's backward fills a zero
            steps = x.shape[2]  # tensor of the whole sequence's size for every step
            per_step: tuple[Tensor, ...] | list[Tensor] = proj.unbind(2)
        else:
            per_step = [proj] * steps
        if cell == "lstm":
            h, c = (x.new_zeros(m, b, h_size),) * 2 if hx is None else (hx[0].float(), hx[1].float())
        else:
            h = x.new_zeros(m, b, h_size) if hx is None else hx.float()
            b_hh = b_hh.float().unsqueeze(1)
        outs = []
        for t in range(steps):
            if cell == "lstm":
                gates = torch.baddbmm(per_step[t], h, whh_t)  # (M, B, 4H): i, f, g, o
                sig = torch.sigmoid(gates)
                i, f, o = sig[..., :h_size], sig[..., h_size : 2 * h_size], sig[..., 3 * h_size :]
                g = torch.tanh(gates[..., 2 * h_size : 3 * h_size])
                c = torch.addcmul(f * c, i, g)
                h = o * torch.tanh(c)
            else:
                hh = torch.baddbmm(b_hh, h, whh_t)  # (M, B, 3H): r, z, n
                xt = per_step[t]
                rz = torch.sigmoid(xt[..., : 2 * h_size] + hh[..., : 2 * h_size])
                r, z = rz[..., :h_size], rz[..., h_size:]
                n = torch.tanh(torch.addcmul(xt[..., 2 * h_size :], r, hh[..., 2 * h_size :]))
                h = torch.addcmul(n, z, h - n)  # (1 - z) * n + z * h
            outs.append(h)
        return torch.stack(outs, dim=2)


def stacked_linear(params: dict, prefix: str, x: Tensor) -> Tensor:
    """The members' nn.Linear `prefix`: x (M, ..., I) @ W[m]^T + b[m] -> (M, ..., O)."""
    return batched_linear(x, params[prefix + "weight"], params[prefix + "bias"])


def batched_linear(x: Tensor, w: Tensor, bias: Tensor) -> Tensor:
    """x (M, ..., I), w (M, O, I), bias (M, O) -> x[m] @ w[m]^T + bias[m], (M, ..., O); one baddbmm."""
    m = x.shape[0]
    flat = x.reshape(m, -1, x.shape[-1])
    out = torch.baddbmm(bias.unsqueeze(1).to(flat.dtype), flat, w.transpose(1, 2).to(flat.dtype))
    return out.view(*x.shape[:-1], w.shape[1])


def stacked_layer_norm(params: dict, prefix: str, x: Tensor, eps: float = 1e-5) -> Tensor:
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    y = F.layer_norm(x, (x.shape[-1],), eps=eps)
    return y * params[prefix + "weight"].view(shape) + params[prefix + "bias"].view(shape)


def stacked_forward(
    spec: dict,
    params: dict,
    x: Tensor,
    mask: Tensor,
    drop: StackedDropout,
    pred_horizon: int,
    recurrence: str = "blockdiag",
) -> Tensor:
    """The model's forward for M members (same operations, same dropout sites in the same order):
    RNNSurvival for spec kind "rnn", TransformerSurvival for kind "transformer"
    (ddrsa/fused/engine.py `fused_spec`), then the HazardDecoder."""
    if spec["kind"] == "transformer":
        z = _transformer_encode(spec, params, x, mask, drop)
    else:
        z = _rnn_encode(spec, params, x, mask, drop, recurrence)
    return _decode(spec, params, z, drop, pred_horizon, recurrence)


def _rnn_encode(spec: dict, params: dict, x: Tensor, mask: Tensor, drop: StackedDropout, recurrence: str) -> Tensor:
    """RNNSurvival.encode for M members: (M, B, K, F) -> z (M, B, H)."""
    cell = spec["cell"]
    maskf = mask.unsqueeze(-1).to(x.dtype)
    xin = torch.cat([x * maskf, maskf], dim=-1)  # (M, B, K, F+1)
    if spec["deep"]:
        h = stacked_linear(params, "in_proj.", xin)
        for i in range(spec["layers"]):
            y = stacked_layer_norm(params, f"blocks.{i}.norm.", h)
            h = h + drop(stacked_rnn(cell, params, f"blocks.{i}.rnn.", y, recurrence=recurrence))
        last = h[:, :, -1]
    else:
        last = stacked_rnn(cell, params, "rnn.", xin, recurrence=recurrence)[:, :, -1]
    if spec.get("z_norm", True):
        last = stacked_layer_norm(params, "z_norm.", last)
    return drop(last)


def _transformer_encode(spec: dict, params: dict, x: Tensor, mask: Tensor, drop: StackedDropout) -> Tensor:
    """TransformerSurvival.encode for M members: input projection, sinusoidal positions, pre-norm
    encoder layers (self-attention with the key padding mask, GELU feed-forward), final LayerNorm,
    the last position -> z (M, B, d_model). Dropout sites in nn.TransformerEncoderLayer's order:
    embedding; per layer the attention weights (inside self-attention), dropout1, the feed-forward's
    inner dropout, dropout2; then z."""
    k = x.shape[2]
    h = stacked_linear(params, "in_proj.", x * mask.unsqueeze(-1).to(x.dtype))
    h = drop(h + _positions(k, h.shape[-1], h.device).to(h.dtype))
    # the float form nn.TransformerEncoder gives a boolean padding mask: -inf where padded
    pad = torch.zeros(mask.shape, dtype=h.dtype, device=h.device).masked_fill(~mask, float("-inf"))
    for i in range(spec["layers"]):
        prefix = f"encoder.layers.{i}."
        y = stacked_layer_norm(params, prefix + "norm1.", h)
        h = h + drop(_stacked_attention(params, prefix + "self_attn.", y, pad, spec["heads"], drop))
        y = stacked_layer_norm(params, prefix + "norm2.", h)
        inner = drop(F.gelu(stacked_linear(params, prefix + "linear1.", y)))
        h = h + drop(stacked_linear(params, prefix + "linear2.", inner))
    h = stacked_layer_norm(params, "encoder.norm.", h)
    return drop(h[:, :, -1])


@functools.lru_cache(maxsize=8)
def _positions(length: int, d_model: int, device: torch.device) -> Tensor:
    """PositionalEncoding's table, computed once per shape and device (not on every step)."""
    return sinusoidal_positions(length, d_model, device=device)


def _stacked_attention(params: dict, prefix: str, x: Tensor, pad: Tensor, heads: int, drop: StackedDropout) -> Tensor:
    """SeededMultiheadAttention.attend for M members: x (M, B, T, E), pad (M, B, T) additive ->
    (M, B, T, E); `drop` acts on the (M, B, heads, T, T) attention weights."""
    m, b, t, e = x.shape
    d = e // heads
    qkv = batched_linear(x, params[prefix + "in_proj_weight"], params[prefix + "in_proj_bias"])
    q, k, v = qkv.view(m, b, t, 3, heads, d).permute(3, 0, 1, 4, 2, 5)  # each (M, B, heads, T, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d) + pad[:, :, None, None, :]
    out = (drop(torch.softmax(scores, dim=-1)) @ v).transpose(2, 3).reshape(m, b, t, e)
    return stacked_linear(params, prefix + "out_proj.", out)


def _decode(spec: dict, params: dict, z: Tensor, drop: StackedDropout, pred_horizon: int, recurrence: str) -> Tensor:
    """HazardDecoder.forward for M members: z (M, B, In) -> logits (M, B, L) float32."""
    cell, layers, hd = spec["cell"], spec["dec_layers"], spec["dec_hidden"]
    m, b = z.shape[:2]
    steps: int | None
    out, steps = drop(z), pred_horizon  # (M, B, In), fed at every step
    states = stacked_linear(params, "decoder.init_proj.", z).view(m, b, -1, layers, hd)
    for i in range(layers):
        if i:
            out, steps = drop(out), None
        hx: Tensor | tuple[Tensor, Tensor]
        if cell == "lstm":
            hx = (torch.tanh(states[:, :, 0, i]), states[:, :, 1, i])
        else:
            hx = torch.tanh(states[:, :, 0, i])
        out = stacked_rnn(cell, params, f"decoder.rnns.{i}.", out, hx, recurrence, steps)
    return stacked_linear(params, "decoder.head.", drop(out)).squeeze(-1).float()
