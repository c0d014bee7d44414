"""DDRSA model zoo: `build_model(name, n_features, pred_horizon, dropout)` -> nn.Module.

forward(x: (B, K, F) float32, mask: (B, K) bool, True = real, False = front padding)
-> logits (B, L_max); hazard h(k) = sigmoid(logits[:, k]).
"""

from ..config import MODEL_NAMES
from .probsparse import set_random_key_sampling
from .registry import build_model, count_parameters, rnn_spec, transformer_spec, uses_attention
from .seeding import SeededDropout, reset_parameters_, set_generator

__all__ = [
    "MODEL_NAMES",
    "SeededDropout",
    "build_model",
    "count_parameters",
    "reset_parameters_",
    "rnn_spec",
    "set_generator",
    "set_random_key_sampling",
    "transformer_spec",
    "uses_attention",
]
