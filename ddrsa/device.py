"""The training device: which one, autocast on it, its peak memory, and a split's windows kept on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddrsa.errors import DDRSAError
from ddrsa.settings import Settings


def resolve_device(settings: Settings) -> torch.device:
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            raise DDRSAError("DDRSA_DEVICE=cuda but torch sees no CUDA device")
        return torch.device("cuda")
    if settings.device == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (fp16 where the GPU has no bf16) when `enabled`; off otherwise."""
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def peak_gpu_mb(device: torch.device) -> float | None:
    """Peak allocated GPU memory in MiB since the last reset; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


@dataclass
class Split:
    """One split on the training device in flat storage: window i reads rows end[i]-K+1..end[i].

    Keeping `data` (R, F) instead of dense windows (N, K, F) saves a factor of about K in
    device memory, so many experiments fit on one GPU; a batch is one gather.
    """

    data: torch.Tensor  # float32 (R, F)
    valid: torch.Tensor  # bool (R,)
    end: torch.Tensor  # int64 (N,)
    offsets: torch.Tensor  # int64 (K,) = -K+1 .. 0
    event_index: torch.Tensor  # int64 (N,)
    censored: torch.Tensor  # bool (N,)

    @classmethod
    def from_windows(cls, windows, device: torch.device) -> Split:
        def put(array, dtype):
            return torch.tensor(np.asarray(array), dtype=dtype, device=device)

        k = windows.lookback
        return cls(
            put(windows.data, torch.float32),
            put(windows.valid, torch.bool),
            put(windows.end, torch.long),
            torch.arange(-k + 1, 1, device=device),
            put(windows.event_index, torch.long),
            put(windows.censored, torch.bool),
        )

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (..., K, F), mask (..., K)) for window indices `idx` (tensor of any shape, or slice)."""
        rows = self.end[idx].unsqueeze(-1) + self.offsets
        return self.data[rows], self.valid[rows]

    @property
    def n_features(self) -> int:
        return self.data.shape[-1]

    def __len__(self) -> int:
        return self.end.shape[0]
