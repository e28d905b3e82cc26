"""Method registry: a method is prediction heads plus a loss over (student states, cached targets).

Every method has the signature forward(states, mask, targets) -> (loss, logs) and a `student`
attribute naming the architecture it trains; the training loop knows nothing else about it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.distill.correlation import AutoBalance, correlation_loss
from pipeline.distill.losses import l1_cosine, normalize_targets


class PredictionHead(nn.Module):
    """Small MLP mapping the student's last hidden state to one teacher layer."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_in), nn.GELU(), nn.Linear(dim_in, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DistilHuBERT(nn.Module):
    """One head per target layer on the last student layer; L1 + cosine loss summed over heads
    (arXiv 2110.01900). With input and target views that differ this is cross-distortion mapping
    (arXiv 2210.07978)."""

    student = "transformer"

    def __init__(self, student_dim: int, target_dims: list[int], options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.options = dict(options or {})
        self.cos_weight = float(self.options.get("cos_weight", 1.0))
        self.heads = nn.ModuleList(PredictionHead(student_dim, d) for d in target_dims)

    def head_loss(self, i: int, pred: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts = l1_cosine(pred, target, mask, self.cos_weight)
        return loss, {"cos": parts["cos"]}

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                targets: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total, logs = 0.0, {}
        for i, (head, target) in enumerate(zip(self.heads, targets, strict=True)):
            loss, parts = self.head_loss(i, head(states[-1]), normalize_targets(target), mask)
            total = total + loss
            logs[f"loss_{i}"] = loss.item()
            logs.update({f"{k}_{i}": v for k, v in parts.items()})
        return total, logs


class CorrelationMetric(DistilHuBERT):
    """Correlation-metric distillation (arXiv 2312.12153): cross-correlation to identity plus student
    self-correlation minimisation, optionally with the L1 + cosine term; options.weighting "fixed"
    uses the reference weights, "auto" our AutoBalance heuristic (pipeline/distill/correlation.py)."""

    def __init__(self, student_dim: int, target_dims: list[int], options: dict[str, Any] | None = None) -> None:
        super().__init__(student_dim, target_dims, options)
        self.weighting = self.options.get("weighting", "fixed")
        self.with_l1_cos = bool(self.options.get("l1_cos", True))
        self.balance = nn.ModuleList(AutoBalance() for _ in target_dims)

    def head_loss(self, i: int, pred: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, logs = correlation_loss(pred, target, mask, weighting=self.weighting, state=self.balance[i])
        if self.with_l1_cos:
            l1c, parts = l1_cosine(pred, target, mask, self.cos_weight)
            loss = loss + l1c
            logs = {**logs, "cos": parts["cos"]}
        return loss, logs


METHODS: dict[str, type[nn.Module]] = {
    "distilhubert": DistilHuBERT,
    "correlation": CorrelationMetric,
}


def get_method(name: str) -> type[nn.Module]:
    """The registered method class; unknown names raise with the known ones."""
    if name not in METHODS:
        raise KeyError(f"unknown distillation method '{name}' (known: {sorted(METHODS)})")
    return METHODS[name]


def build_method(name: str, student_dim: int, target_dims: list[int],
                 options: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate a registered method (its heads and loss)."""
    return get_method(name)(student_dim, target_dims, options)
