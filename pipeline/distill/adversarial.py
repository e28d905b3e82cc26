"""Domain-adversarial training by gradient reversal for robust distillation (arXiv 2210.07978)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -lambd (arXiv 2210.07978, from 1409.7495)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Gradient reversal layer (arXiv 2210.07978): x forward, -lambd * dL/dx backward."""
    return GradReverse.apply(x, lambd)


def dann_lambda(progress: float, max_lambda: float = 1.0, gamma: float = 10.0) -> float:
    """Ramp lambda from 0 to max_lambda over training progress in [0, 1] (schedule of arXiv 1409.7495)."""
    return max_lambda * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class DomainClassifier(nn.Module):
    """Domain classifier (arXiv 2210.07978; shape unpublished, ours): masked mean pool, Linear-GELU-Linear."""

    def __init__(self, dim: int, n_domains: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_domains))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) states and (B, T) mask -> (B, n_domains) logits from the mean of valid frames."""
        m = mask.to(states.dtype)[..., None]
        pooled = (states * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.net(pooled)


def domain_adversarial_loss(classifier: DomainClassifier, states: torch.Tensor, mask: torch.Tensor,
                            domains: torch.Tensor, lambd: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the domain classifier on gradient-reversed student states (arXiv 2210.07978).

    Adding it to the distillation loss trains the classifier to minimise it while the student, through the
    reversal, minimises L_distill - lambd * L_domain.
    """
    logits = classifier(grad_reverse(states, lambd), mask)
    ce = F.cross_entropy(logits, domains.long())
    acc = (logits.argmax(-1) == domains).float().mean()
    return ce, {"domain_ce": ce.item(), "domain_acc": acc.item()}
