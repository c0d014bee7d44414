"""DDRSA loss and the NASA-score auxiliary loss, as pure functions in log space.

Notation (per sample): logits x_k, hazard h(k) = sigmoid(x_k), k = 0..L-1 with L = L_max.
    log(1 - h(k)) = -softplus(x_k),  log h(k) = -softplus(-x_k)
    log S(k)      = sum_{m<=k} log(1 - h(m))
    log l_z(l)    = log h(l) + log S(l-1)              (event exactly at lag l, log S(-1) = 0)
    log l_u       = log(1 - S(L-1)) = logsumexp_k log l_z(k)   (event inside the horizon)
    log l_c(c)    = log S(min(c, L-1))                  (alive through censoring index c)
Every term is a finite sum/logsumexp of softplus values, so no inf/NaN for finite logits.

Labels: an uncensored sample needs 0 <= l < L (its event lies inside the horizon); an event at or
beyond the horizon must come censored (docs/CONTRACTS.md). Such labels are refused, not clamped:
clamping would train the model to put the event at lag L-1. `check_labels` validates a whole split
on the host once (the trainer does this before training); `ddrsa_loss` also checks every batch,
synchronously for CPU tensors (no device involved, microseconds) and with `torch._assert_async`
on an accelerator, which queues the check on the device without a host sync (a failure there
surfaces as a device-side assert at the next synchronisation, so the per-split check is the one
that gives the clear message).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddrsa.errors import DDRSAError


class LabelError(DDRSAError, ValueError):
    """Survival labels the DDRSA loss cannot use (uncensored event at or beyond the horizon)."""


def check_labels(event_index, censored, horizon: int, where: str = "labels") -> None:
    """Raise LabelError unless every event_index >= 0 and every uncensored one is < horizon.

    event_index (N,) int, censored (N,) bool: numpy arrays or tensors (a device tensor is copied
    to the host, so call this once per split, not per step). `where` names the data in the message.
    """
    idx = np.asarray(event_index.cpu() if isinstance(event_index, Tensor) else event_index)
    cens = np.asarray(censored.cpu() if isinstance(censored, Tensor) else censored, dtype=bool)
    if idx.size and idx.min() < 0:
        raise LabelError(
            f"{where}: {int((idx < 0).sum())} negative event_index value(s) "
            f"(min {int(idx.min())}); event indices are lags >= 0"
        )
    beyond = ~cens & (idx >= horizon)
    if beyond.any():
        raise LabelError(
            f"{where}: {int(beyond.sum())} uncensored label(s) with event_index >= "
            f"horizon {horizon} (max {int(idx[beyond].max())}); an event outside the "
            "horizon must be marked censored"
        )


def log_survival(logits: Tensor) -> Tensor:
    """log S(k) for k = 0..L-1. logits (N, L) -> (N, L)."""
    return -torch.cumsum(F.softplus(logits), dim=-1)


def log_event_probability(logits: Tensor) -> Tensor:
    """log P(T = k) = log h(k) + log S(k-1) for k = 0..L-1. (N, L) -> (N, L)."""
    log_s = log_survival(logits)
    log_s_prev = F.pad(log_s[..., :-1], (1, 0), value=0.0)
    return -F.softplus(-logits) + log_s_prev


def _per_member(weight, like: Tensor):
    """A loss weight as the loss multiplies it: a Python float as it is, a tensor (...) of one
    weight per member as `like`'s dtype with a trailing axis for the batch, (..., 1)."""
    if isinstance(weight, Tensor):
        return weight.to(like.dtype).unsqueeze(-1)
    return weight


def ddrsa_loss(logits: Tensor, event_index: Tensor, censored: Tensor, lambda_param: float | Tensor) -> Tensor:
    """Mean DDRSA loss over the batch, per member when there is a leading member axis.

    logits (..., N, L) float; event_index (..., N) int, lag of the event (uncensored, must be < L)
    or censoring index (censored; clipped to L-1); censored (..., N) bool. lambda_param a float,
    or a tensor (...) of one lambda per member (e.g. (M,) for logits (M, N, L)): give it in float64
    so that 1 - lambda is rounded once, as with a float. Returns the mean over N, shape (...):
    a scalar for logits (N, L), (M,) for (M, N, L).
    L = -lambda * log l_z - (1 - lambda) * [(1-c) log l_u + c log l_c], l_z only when c = 0.
    Raises LabelError (CPU tensors) for an uncensored event_index >= L or a negative one; on an
    accelerator the same check runs asynchronously (see the module docstring).
    """
    logits = logits.float()
    horizon = logits.shape[-1]
    cens = censored.bool()
    if event_index.device.type == "cpu" and cens.device.type == "cpu":
        check_labels(event_index, cens, horizon, where="ddrsa_loss")
    else:
        ok = (event_index >= 0).all() & ~(~cens & (event_index >= horizon)).any()
        torch._assert_async(ok, "ddrsa_loss: uncensored event_index >= horizon, or negative")
    idx = event_index.long().clamp(max=horizon - 1).unsqueeze(-1)  # clips censoring indices only
    log_pz = log_event_probability(logits)
    log_lz = log_pz.gather(-1, idx).squeeze(-1)
    log_lu = torch.logsumexp(log_pz, dim=-1)
    log_lc = log_survival(logits).gather(-1, idx).squeeze(-1)
    lam = _per_member(lambda_param, logits)
    one_minus_lam = _per_member(1.0 - lambda_param, logits)
    uncensored_term = -lam * log_lz - one_minus_lam * log_lu
    censored_term = -one_minus_lam * log_lc
    return torch.where(cens, censored_term, uncensored_term).mean(-1)


def nasa_score_terms(d: Tensor) -> Tensor:
    """PHM08 score per prediction, d = predicted - true (steps): exp(-d/13)-1 early, exp(d/10)-1 late."""
    return torch.where(d < 0, torch.expm1(-d / 13.0), torch.expm1(d / 10.0))


# Which NASA auxiliary loss a run was trained with (written into test_metrics.json as `nasa_loss`).
# Records without the key were trained with version 1: the unbounded expected score averaged over
# uncensored windows only (docs/GUIDE.md "The NASA auxiliary loss").
NASA_LOSS_VERSION = 2


def log_nasa_score_terms(d: Tensor) -> Tensor:
    """log s(d) for the PHM08 score s (see `nasa_score_terms`), -inf where d == 0; computed as
    x + log(1 - exp(-x)) with x = |d|/13 (early) or d/10 (late), finite for any |d| up to float max."""
    x = torch.where(d < 0, -d / 13.0, d / 10.0)
    return torch.where(x > 0, x + torch.log(-torch.expm1(-x.clamp_min(1e-30))), torch.full_like(x, float("-inf")))


def nasa_expected_loss(logits: Tensor, event_index: Tensor, censored: Tensor) -> Tensor:
    """log1p of the expected NASA score per window, mean over all windows (version 2).

    logits (..., N, L), event_index and censored (..., N) -> shape (...) (per member with a
    leading member axis). The predicted event lag K is k < L with probability P(T=k), and L with
    probability S(L-1) (mass beyond the horizon scored at lag L, the distribution of min(T, L)
    whose mean is the point estimate E[min(T, L)] the metrics score; it is also the smallest
    late penalty consistent with an event beyond the horizon). Per window:
      uncensored, true lag l < L:  E = sum_{k=0}^{L} P(K=k) s(k - l)
      censored, index c:           known T >= t = min(c, L-1) + 1 (alive through lag c, as the
                                   DDRSA loss reads it); E = sum_{k<t} P(K=k) s(k - t), the early
                                   penalty known for certain; lags k >= t carry nothing (unknown).
    loss = log1p(E): 0 for a sharp correct prediction, bounded by L/10 (s <= exp(L/10) - 1),
    monotone in E (a window's minimiser is that of the expected score), computed in log space
    (logsumexp), finite with finite gradients for any finite logits.
    """
    logits = logits.float()
    horizon = logits.shape[-1]
    log_p = torch.cat([log_event_probability(logits), log_survival(logits)[..., -1:]], dim=-1)
    lags = torch.arange(horizon + 1, device=logits.device, dtype=logits.dtype)
    cens = censored.bool()
    idx = event_index.to(logits.dtype)
    truth = torch.where(cens, idx.clamp(max=horizon - 1) + 1, idx)  # t (censored) or l
    d = lags - truth.unsqueeze(-1)  # (..., N, L+1)
    log_s = log_nasa_score_terms(d)
    known = ~(cens.unsqueeze(-1) & (d >= 0))  # censored: only k < t
    log_s = torch.where(known, log_s, torch.full_like(log_s, float("-inf")))
    log_expected = torch.logsumexp(log_p + log_s, dim=-1)  # log E, -inf when E = 0
    return F.softplus(log_expected).mean(-1)  # log1p(E)


class DDRSALoss(nn.Module):
    """DDRSA loss plus `nasa_weight` times `nasa_expected_loss` (log1p of the expected NASA score;
    0 disables it).

    With floats: logits (N, L) -> a scalar. With one weight per member, lambda_param a float64
    tensor (M,) and nasa_weight a tensor (M,) on the logits' device: logits (M, N, L), labels
    (M, N) -> (M,), member m's loss exactly DDRSALoss(lambda_m, nasa_m) of its own batch (a member
    with NASA weight 0 gets the DDRSA loss alone, as the float form does).
    """

    def __init__(self, lambda_param: float | Tensor = 0.75, nasa_weight: float | Tensor = 0.0):
        super().__init__()
        per_member = isinstance(lambda_param, Tensor) or isinstance(nasa_weight, Tensor)
        self.lambda_param = lambda_param if isinstance(lambda_param, Tensor) else float(lambda_param)
        self.nasa_weight = nasa_weight if isinstance(nasa_weight, Tensor) else float(nasa_weight)
        self.per_member = per_member
        self.use_nasa = bool((torch.as_tensor(self.nasa_weight) > 0).any())

    def forward(self, logits: Tensor, event_index: Tensor, censored: Tensor) -> Tensor:
        loss = ddrsa_loss(logits, event_index, censored, self.lambda_param)
        if not self.use_nasa:
            return loss
        term = nasa_expected_loss(logits, event_index, censored)
        if not self.per_member:
            return loss + self.nasa_weight * term
        nasa = torch.as_tensor(self.nasa_weight, device=loss.device).to(loss.dtype)
        return torch.where(nasa > 0, loss + nasa * term, loss)
