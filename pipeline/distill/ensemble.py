"""Ensemble distillation from several teachers (arXiv 2302.12757): layer map, PCA widths, aggregation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from pipeline.teachers.registry import relative_depth_layers


def map_layers(num_layers_per_teacher: Sequence[int], fractions: Sequence[float] = (1 / 3, 2 / 3, 1.0),
               input_states: Sequence[bool] | None = None) -> list[list[int]]:
    """Hidden-state indices at the same relative depths for each teacher (arXiv 2302.12757).

    Counts are Upstream.num_layers; input_states (default all True) say whether a teacher's state 0 is its input
    (a 12-layer HuBERT has 13 states) or its first layer's output (Resemblyzer's 3 LSTMs: 0, 1, 2).
    """
    flags = [True] * len(num_layers_per_teacher) if input_states is None else list(input_states)
    return [relative_depth_layers(n, fractions, flag) for n, flag in zip(num_layers_per_teacher, flags, strict=True)]


def fit_projection(features: torch.Tensor, d_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of (N, D_in) features to d_out dims (arXiv 2302.12757): (mean, (D_in, d_out) components).

    Identity (zero mean, eye) when D_in == d_out. Components come from the SVD of the D_in x D_in
    covariance (memory independent of N), signs fixed so each column's largest entry is positive.
    """
    n, d_in = features.shape
    if d_out == d_in:
        return torch.zeros(d_in), torch.eye(d_in)
    if not 0 < d_out < d_in:
        raise ValueError(f"PCA cannot map width {d_in} to {d_out}; d_out must be in [1, {d_in}]")
    if n <= d_out:
        raise ValueError(f"need more than {d_out} frames to fit a {d_out}-dim projection, got {n}")
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    _, _, vh = torch.linalg.svd(centred.T @ centred / (n - 1))
    components = vh[:d_out].T
    idx = components.abs().argmax(0)
    components = components * torch.sign(components[idx, torch.arange(d_out)])
    return mean.float(), components.float()


def project(x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """(..., D_in) -> (..., d_out) with a projection from fit_projection."""
    return (x.float() - mean) @ components


def aggregate(targets_per_teacher: Sequence[torch.Tensor],
              mode: Literal["average", "concat"] = "average") -> torch.Tensor:
    """Combine per-teacher (B, T, D_k) targets of one layer: average or concatenation (arXiv 2302.12757).

    Teachers' scales differ; normalise each target (losses.normalize_targets) before averaging.
    """
    if not targets_per_teacher:
        raise ValueError("aggregate needs at least one teacher's targets")
    frames = {tuple(t.shape[:-1]) for t in targets_per_teacher}
    if len(frames) != 1:
        raise ValueError(f"teachers' targets disagree on (batch, frames): {sorted(frames)}")
    if mode == "concat":
        return torch.cat(list(targets_per_teacher), -1)
    if mode == "average":
        widths = {t.shape[-1] for t in targets_per_teacher}
        if len(widths) != 1:
            raise ValueError(f"cannot average widths {sorted(widths)}; project them first (fit_projection)")
        return torch.stack(list(targets_per_teacher)).mean(0)
    raise ValueError(f"unknown aggregation '{mode}' (known: ['average', 'concat'])")
