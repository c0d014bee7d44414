"""Name -> architecture table and `build_model`."""

from __future__ import annotations

import torch
from torch import nn

from ..config import MODEL_NAMES
from .probsparse import ProbSparseSurvival
from .rnn import RNNSurvival
from .seeding import reset_parameters_
from .transformer import TransformerSurvival

# Sizes. basic: < 100k parameters, deep: < 1M (at F = 14, L_max = 64).
_RNN_SPECS = {
    "lstm_basic": dict(cell="lstm", hidden=64, layers=1, deep=False, dec_hidden=64, dec_layers=1),
    "lstm_deep": dict(cell="lstm", hidden=128, layers=3, deep=True, dec_hidden=128, dec_layers=2),
    "gru_basic": dict(cell="gru", hidden=64, layers=1, deep=False, dec_hidden=64, dec_layers=1),
    "gru_deep": dict(cell="gru", hidden=128, layers=3, deep=True, dec_hidden=128, dec_layers=2),
    # the paper's reported setting: LSTM encoder and decoder, 16 units, 1 layer each, no LayerNorm
    "paper": dict(cell="lstm", hidden=16, layers=1, deep=False, dec_hidden=16, dec_layers=1, z_norm=False),
}
_ATTENTION_SPECS = {
    "transformer_basic": (
        TransformerSurvival,
        dict(d_model=64, layers=2, heads=4, ff=128, dec_hidden=64, dec_layers=1),
    ),
    "transformer_deep": (
        TransformerSurvival,
        dict(d_model=128, layers=4, heads=8, ff=256, dec_hidden=128, dec_layers=2),
    ),
    "probsparse_basic": (ProbSparseSurvival, dict(d_model=64, layers=2, heads=4, ff=128, dec_hidden=32, dec_layers=1)),
    "probsparse_deep": (ProbSparseSurvival, dict(d_model=128, layers=3, heads=8, ff=256, dec_hidden=128, dec_layers=2)),
}
assert set(_RNN_SPECS) | set(_ATTENTION_SPECS) == set(MODEL_NAMES)


def uses_attention(name: str) -> bool:
    """True for transformer_* / probsparse_* (the trainer picks a warm-up schedule for them)."""
    return name.startswith(("transformer_", "probsparse_"))


def build_model(
    name: str,
    n_features: int,
    pred_horizon: int,
    dropout: float,
    lookback_window: int | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A fresh model; forward(x (B, K, F) float, mask (B, K) bool) -> logits (B, pred_horizon).

    With `generator`, every parameter is drawn from it alone (`reset_parameters_`), not from the
    global RNG: the same generator state gives the same model in any thread or process."""
    model = _build(name, n_features, pred_horizon, dropout, lookback_window)
    if generator is not None:
        reset_parameters_(model, generator)
    return model


def _build(name: str, n_features: int, pred_horizon: int, dropout: float, lookback_window: int | None) -> nn.Module:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    if n_features < 1 or pred_horizon < 1:
        raise ValueError(f"n_features and pred_horizon must be >= 1 (got {n_features}, {pred_horizon})")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1) (got {dropout})")
    if name in _RNN_SPECS:
        return RNNSurvival(n_features=n_features, pred_horizon=pred_horizon, dropout=dropout, **_RNN_SPECS[name])  # type: ignore[arg-type]
    cls, spec = _ATTENTION_SPECS[name]
    max_len = max(512, lookback_window or 0)
    return cls(n_features, pred_horizon, dropout, max_len=max_len, **spec)


def rnn_spec(name: str) -> dict | None:
    """The RNN architecture table entry of `name` (a copy), None for attention models."""
    return dict(_RNN_SPECS[name]) if name in _RNN_SPECS else None


def transformer_spec(name: str) -> dict | None:
    """The architecture table entry of a transformer_* model (a copy), None for the others."""
    if not name.startswith("transformer_"):
        return None
    return dict(_ATTENTION_SPECS[name][1])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
