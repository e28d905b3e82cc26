"""Frame-level distillation losses; every loss takes a validity mask so padded frames never count."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize_targets(target: torch.Tensor) -> torch.Tensor:
    """Per-frame layer norm without affine parameters: Whisper's residual stream has frames with norms
    10-25x the median (DESIGN.md), which would dominate an L1 loss on raw features."""
    return F.layer_norm(target.float(), target.shape[-1:])


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T) values over True positions of mask."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def l1_cosine(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              cos_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """DistilHuBERT loss (arXiv 2110.01900): mean |P - H| + lambda * mean(-log sigmoid(cos(P_t, H_t)))."""
    l1 = masked_mean((pred - target).abs().mean(-1), mask)
    cos = F.cosine_similarity(pred, target, dim=-1)
    cos_term = masked_mean(-F.logsigmoid(cos), mask)
    return l1 + cos_weight * cos_term, {"l1": l1.item(), "cos": masked_mean(cos, mask).item()}
