"""Correlation-metric distillation loss for noise robustness (arXiv 2312.12153)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class AutoBalance(nn.Module):
    """Running weight for the self-correlation term (our heuristic; arXiv 2312.12153 does not publish one).

    Keeps exponential moving averages (momentum `momentum`, seeded with the first observation) of the
    detached cross term X = s_d * diag + lambda_c * s_o * off(C) and of the raw self term S = off(A),
    and returns the weight w = target_ratio * EMA(X) / EMA(S), so that w * S tracks `target_ratio` * X
    while both terms drift during training. The averages are buffers (saved with the method's state
    dict) and only move in training mode; in eval mode the last weight is reused.
    """

    def __init__(self, target_ratio: float = 0.1, momentum: float = 0.9, eps: float = 1e-12) -> None:
        super().__init__()
        self.target_ratio, self.momentum, self.eps = target_ratio, momentum, eps
        self.register_buffer("ema_cross", torch.zeros(()))
        self.register_buffer("ema_self", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, cross: torch.Tensor, self_term: torch.Tensor) -> torch.Tensor:
        """Update the averages with this step's (detached) terms and return the self-term weight."""
        cross, self_term = cross.detach().float(), self_term.detach().float()
        if self.training:
            m = self.momentum if int(self.steps) > 0 else 0.0
            self.ema_cross.mul_(m).add_((1.0 - m) * cross)
            self.ema_self.mul_(m).add_((1.0 - m) * self_term)
            self.steps += 1
        if int(self.steps) == 0:
            return self.target_ratio * cross / self_term.clamp_min(self.eps)
        return self.target_ratio * self.ema_cross / self.ema_self.clamp_min(self.eps)


def pool_time(x: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T, D) -> (B, length, D): adaptive average over each item's valid (prefix) frames, torch's bins."""
    n = mask.sum(1).long()
    pos = torch.arange(length, device=x.device)[None, :]
    start = torch.div(pos * n[:, None], length, rounding_mode="floor")
    end = torch.div((pos + 1) * n[:, None] + length - 1, length, rounding_mode="floor")
    t = torch.arange(x.shape[1], device=x.device)[None, None, :]
    weights = ((t >= start[..., None]) & (t < end[..., None])).to(x.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1.0)
    return torch.einsum("blt,btd->bld", weights, x)


def standardize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit (unbiased) variance per dim over all B * L samples (items x pooled positions) of (B, L, D)."""
    flat = x.reshape(-1, x.shape[-1])
    return (x - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=True) + eps)


def correlation(zp: torch.Tensor, zh: torch.Tensor) -> torch.Tensor:
    """D x D matrix Zp^T Zh / (N - 1) over the N = B * L samples, as one contraction (no outer products)."""
    b, length, _ = zp.shape
    return torch.einsum("bld,ble->de", zp, zh) / (b * length - 1)


def _off_diagonal_sq(m: torch.Tensor) -> torch.Tensor:
    return (m ** 2).sum() - (m.diagonal() ** 2).sum()


def correlation_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, pool_frames: int = 150,
                     s_d: float = 0.1, s_o: float = 0.01, lambda_c: float = 5e-3, lambda_s: float = 1.0,
                     s_s: float = 1 / 50000, weighting: Literal["fixed", "auto"] = "fixed",
                     state: AutoBalance | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross/self-correlation loss (arXiv 2312.12153) between (B, T, D) student and teacher features.

    Both are pooled to `pool_frames` positions, and every pooled position of every item is a sample: each dim is
    standardised over the N = B * L samples and C = P^T H / (N - 1), A = P^T P / (N - 1) are Pearson
    correlation matrices (diagonal of A = 1, C_ii in [-1, 1], so the diagonal term still targets 1). Loss =
    s_d * sum_i (C_ii - 1)^2 + lambda_c * s_o * sum_{i != j} C_ij^2 + w * sum_{i != j} A_ij^2 with
    w = lambda_s * s_s ("fixed", the reference constants) or w from `state` ("auto", see AutoBalance).

    Why positions are samples: crops start at random times, so pooled positions are exchangeable draws of the
    same features. Per position over a batch of 8 crops, every mean, variance and correlation comes from 8
    samples (spurious |C_ij| of independent dims ~0.31 per position); over all N = 8 x 25 = 200 pooled positions
    E|C_ij| is ~sqrt(2 / (pi (N - 1))) = 0.057. Positions of one crop are correlated in time, so the effective N
    is lower, and with N <= D the matrices have rank <= N - 1 (sum_{i != j} A_ij^2 >= D^2 / (N - 1) - D). Keep
    pool_frames at most the crop's frame count (50 per second), or positions repeat frames. No running estimate
    across steps: the gradient needs this batch's statistics.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")
    if pred.shape[0] < 2:
        raise ValueError("correlation_loss needs a batch of at least 2 utterances")
    zp = standardize(pool_time(pred.float(), mask, pool_frames))
    zh = standardize(pool_time(target.float(), mask, pool_frames))
    c, a = correlation(zp, zh), correlation(zp, zp)
    diag = ((c.diagonal() - 1.0) ** 2).sum()
    off_cross, off_self = _off_diagonal_sq(c), _off_diagonal_sq(a)
    cross = s_d * diag + lambda_c * s_o * off_cross
    if weighting == "fixed":
        weight = torch.tensor(lambda_s * s_s, device=pred.device)
    elif weighting == "auto":
        if state is None:
            raise ValueError("weighting='auto' needs an AutoBalance state module")
        weight = state(cross, off_self)
    else:
        raise ValueError(f"unknown weighting '{weighting}' (known: ['auto', 'fixed'])")
    loss = cross + weight * off_self
    logs = {"corr_diag": diag.item(), "corr_off": off_cross.item(), "self_off": off_self.item(),
            "self_weight": float(weight), "cross_term": cross.item(), "self_term": (weight * off_self).item()}
    return loss, logs
