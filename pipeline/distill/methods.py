"""Method registry: a method is prediction heads plus a loss over (student states, cached targets)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.distill.losses import l1_cosine, normalize_targets


class PredictionHead(nn.Module):
    """Small MLP mapping the student's last hidden state to one teacher layer."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_in), nn.GELU(), nn.Linear(dim_in, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DistilHuBERT(nn.Module):
    """One head per target layer on the last student layer; L1 + cosine loss summed over heads."""

    student = "transformer"

    def __init__(self, student_dim: int, target_dims: list[int], options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cos_weight = float((options or {}).get("cos_weight", 1.0))
        self.heads = nn.ModuleList(PredictionHead(student_dim, d) for d in target_dims)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                targets: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total, logs = 0.0, {}
        for i, (head, target) in enumerate(zip(self.heads, targets, strict=True)):
            loss, parts = l1_cosine(head(states[-1]), normalize_targets(target), mask, self.cos_weight)
            total = total + loss
            logs[f"loss_{i}"] = loss.item()
            logs[f"cos_{i}"] = parts["cos"]
        return total, logs


METHODS: dict[str, type[nn.Module]] = {
    "distilhubert": DistilHuBERT,
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
