"""Waveform CNN front end shared by all students: 7 convolutions, 320x downsampling to 50 Hz."""

from __future__ import annotations

import torch
from torch import nn

KERNELS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))  # wav2vec 2.0 / HuBERT layout
RECEPTIVE_FIELD = 400


def conv_frames(num_samples: int) -> int:
    """Frames the CNN produces for `num_samples` samples (same arithmetic as the conv stack)."""
    n = num_samples
    for k, s in KERNELS:
        n = (n - k) // s + 1
    return max(n, 0)


class ConvFrontEnd(nn.Module):
    """Conv stack with group norm on the first layer (wav2vec 2.0 arXiv 2006.11477), GELU activations."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, (k, s) in enumerate(KERNELS):
            block = [nn.Conv1d(c_in, channels, k, stride=s, bias=False)]
            if i == 0:
                block.append(nn.GroupNorm(channels, channels))
            block.append(nn.GELU())
            layers.append(nn.Sequential(*block))
            c_in = channels
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, frames, channels)."""
        return self.layers(wav.unsqueeze(1)).transpose(1, 2)


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, frames) bool mask, True on valid frames, from per-utterance sample counts."""
    valid = torch.tensor([conv_frames(int(n)) for n in lengths], device=lengths.device)
    return torch.arange(frames, device=lengths.device)[None, :] < valid[:, None]


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient multiplied by `scale` (DistilHuBERT scales CNN gradients by 0.1)."""
    return x * scale + x.detach() * (1.0 - scale)
