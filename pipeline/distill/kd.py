"""KD over teacher cluster posteriors (arXiv 2309.09920) and decoupled KD (arXiv 2203.08679)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from pipeline.distill.losses import masked_mean

MASK_VALUE = 1e4  # subtracted from the target logit so it drops out of the non-target softmax (DKD)


def posterior_logits(features: torch.Tensor, codebook: torch.Tensor, temperature: float,
                     form: Literal["distance", "cosine"] = "distance") -> torch.Tensor:
    """(..., D) features, (K, D) codebook -> (..., K) logits -||h - mu_k||^2 / T or cos(h, mu_k) / T."""
    h, mu = features.float(), codebook.float()
    if form == "distance":
        sq = (h ** 2).sum(-1, keepdim=True) - 2 * h @ mu.T + (mu ** 2).sum(-1)
        return -sq / temperature
    if form == "cosine":
        return F.normalize(h, dim=-1) @ F.normalize(mu, dim=-1).T / temperature
    raise ValueError(f"unknown posterior form '{form}' (known: ['cosine', 'distance'])")


def teacher_posteriors(features: torch.Tensor, codebook: torch.Tensor, temperature: float,
                       form: Literal["distance", "cosine"] = "distance") -> torch.Tensor:
    """Teacher cluster distribution (arXiv 2309.09920): softmax of posterior_logits over the K clusters."""
    return posterior_logits(features, codebook, temperature, form).softmax(-1)


def _teacher_log_probs(teacher: torch.Tensor, tau: float, from_logits: bool) -> torch.Tensor:
    """log softmax(z / tau) from logits z, or log softmax(log p / tau) from probabilities p."""
    log_p = teacher.float().log_softmax(-1) if from_logits else teacher.float().clamp_min(1e-30).log()
    return (log_p / tau).log_softmax(-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last axis from finite log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, tau: float, mask: torch.Tensor,
            from_logits: bool = False) -> torch.Tensor:
    """tau^2 * KL(p_T || p_S), p = softmax(. / tau), masked mean over (B, T) frames (arXiv 2309.09920)."""
    log_t = _teacher_log_probs(teacher_probs, tau, from_logits)
    log_s = (student_logits.float() / tau).log_softmax(-1)
    return tau ** 2 * masked_mean(_kl(log_t, log_s), mask)


def dkd_terms(student_logits: torch.Tensor, teacher_probs: torch.Tensor, target: torch.Tensor, tau: float,
              from_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame TCKD = KL(b_T || b_S), b = [p_t, 1 - p_t], and non-target NCKD (arXiv 2203.08679)."""
    log_t = _teacher_log_probs(teacher_probs, tau, from_logits)
    log_s = (student_logits.float() / tau).log_softmax(-1)
    onehot = F.one_hot(target.long(), log_s.shape[-1]).bool()

    def binary(log_p: torch.Tensor) -> torch.Tensor:
        log_target = log_p.gather(-1, target.long()[..., None])[..., 0]
        log_rest = torch.logsumexp(log_p.masked_fill(onehot, float("-inf")), -1)
        return torch.stack([log_target, log_rest], -1)

    def non_target(log_p: torch.Tensor) -> torch.Tensor:
        return (log_p - MASK_VALUE * onehot).log_softmax(-1)

    return _kl(binary(log_t), binary(log_s)), _kl(non_target(log_t), non_target(log_s))


def dkd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, target: torch.Tensor,
             alpha: float | torch.Tensor, beta: float | torch.Tensor, tau: float, mask: torch.Tensor,
             from_logits: bool = False) -> torch.Tensor:
    """Decoupled KD (arXiv 2203.08679): tau^2 * (alpha * TCKD + beta * NCKD), masked mean over frames.

    alpha and beta may be (B, T) tensors; beta = 1 - p_T(target) (at temperature tau) recovers kd_loss.
    """
    tckd, nckd = dkd_terms(student_logits, teacher_probs, target, tau, from_logits)
    return tau ** 2 * masked_mean(alpha * tckd + beta * nckd, mask)
