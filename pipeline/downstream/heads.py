"""Small downstream heads over featurized frames; each maps (B, T, D) + a (B, T) valid mask to logits."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.downstream.featurizer import WeightedSum


class PooledClassifier(nn.Module):
    """Utterance classifier (SUPERB KS/IC/SID/ER): Linear(D, hidden) -> mean over valid frames -> Linear."""

    def __init__(self, dim: int, n_out: int, hidden: int = 256) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.proj(x) * mask.unsqueeze(-1)
        pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return self.out(pooled)


class DownstreamModel(nn.Module):
    """Featurizer + head: (B, T, L, D) frozen-upstream states and a (B, T) mask -> head logits."""

    def __init__(self, featurizer: WeightedSum, head: nn.Module) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.head = head

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.featurizer(states), mask)
