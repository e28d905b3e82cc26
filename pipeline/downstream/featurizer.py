"""The SUPERB featurizer: a learnable softmax-weighted sum over an upstream's hidden states."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightedSum(nn.Module):
    """(B, T, L, D) -> (B, T, D); weights start at 0 (a plain mean), optionally per-frame layer-norm first.

    Per-frame normalisation matters for Whisper, whose residual stream has a few frames with norms
    10-25x the median (DESIGN.md); it is parameter-free so the upstream stays frozen.
    """

    def __init__(self, num_layers: int, layer_norm: bool = True) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.layer_norm = layer_norm
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, states: torch.Tensor, normalised: bool = False) -> torch.Tensor:
        """Weighted sum of (..., L, D) states; `normalised` says `normalise` was already applied."""
        if states.shape[-2] != self.num_layers:
            raise ValueError(f"features have {states.shape[-2]} hidden states, featurizer expects "
                             f"{self.num_layers}; the head was trained on a different upstream")
        states = states.float() if normalised else self.normalise(states)
        lead, (layers, dim) = states.shape[:-2], states.shape[-2:]
        flat = states.reshape(-1, layers, dim)
        # one (1, L) x (L, D) product per frame: ~9x faster than the equivalent einsum, forward and backward,
        # on CPU (bench/step_kernels.py); the einsum was a third of a sequence head's step
        return torch.bmm(self.normalized().expand(flat.shape[0], 1, layers), flat).reshape(*lead, dim)

    def normalise(self, states: torch.Tensor) -> torch.Tensor:
        """The parameter-free part: float32, per-frame layer norm of each hidden state if enabled."""
        states = states.float()
        return F.layer_norm(states, states.shape[-1:]) if self.layer_norm else states

    def normalized(self) -> torch.Tensor:
        """Softmax of the layer weights (sums to 1)."""
        return torch.softmax(self.weights, dim=0)

    def layer_weights(self) -> list[float]:
        """The softmax layer weights as plain floats, for checkpoints and score JSONs."""
        return [float(w) for w in self.normalized().detach()]
