"""DDRSA model zoo: `build_model(name, n_features, pred_horizon, dropout)` -> nn.Module.

forward(x: (B, K, F) float32, mask: (B, K) bool, True = real, False = front padding)
-> logits (B, L_max); hazard h(k) = sigmoid(logits[:, k]).
"""
from ..config import MODEL_NAMES
from .probsparse import set_random_key_sampling
from .registry import build_model, count_parameters, uses_attention

__all__ = ["MODEL_NAMES", "build_model", "count_parameters", "set_random_key_sampling", "uses_attention"]
