"""Waveform CNN front end of the students: 7 convolutions, 320x downsampling to 50 Hz; and the frame arithmetic
of either front end a student may have (this one, or the log-mel one of pipeline.students.logmel)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.students.logmel import MIN_SAMPLES, logmel_frames

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

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, samples) -> (B, frames, channels). With `lengths` (samples per row of a zero-padded batch)
        the first layer's group norm takes its statistics over each row's valid steps only, so padding
        does not change the valid frames (a batch gives the same frames as each clip alone)."""
        x = wav.unsqueeze(1)
        if lengths is None or bool((lengths >= wav.shape[1]).all()):
            return self.layers(x).transpose(1, 2)
        conv, norm, act = self.layers[0]
        x = conv(x)
        k, s = KERNELS[0]
        valid = torch.arange(x.shape[-1], device=x.device)[None, :] < ((lengths - k) // s + 1)[:, None]
        w = valid[:, None, :].to(x.dtype)
        count = w.sum(-1, keepdim=True).clamp_min(1.0)
        mean = (x * w).sum(-1, keepdim=True) / count
        var = (((x - mean) * w) ** 2).sum(-1, keepdim=True) / count
        x = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None]
        return self.layers[1:](act(x)).transpose(1, 2)


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, frames) bool mask, True on valid frames, from per-utterance sample counts."""
    valid = torch.tensor([conv_frames(int(n)) for n in lengths], device=lengths.device)
    return torch.arange(frames, device=lengths.device)[None, :] < valid[:, None]


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient multiplied by `scale` (DistilHuBERT scales CNN gradients by 0.1); 0 freezes."""
    if scale == 0:
        return x.detach()
    return x * scale + x.detach() * (1.0 - scale)


class FrontEndFrames:
    """Frame count and shortest input of a student, by its `arch.frontend` ("waveform" or "logmel")."""

    arch: object

    @property
    def min_samples(self) -> int:
        return MIN_SAMPLES if self.arch.frontend == "logmel" else RECEPTIVE_FIELD

    def num_frames(self, num_samples: int) -> int:
        """Frames of the hidden states for a clip of `num_samples` samples."""
        return logmel_frames(num_samples) if self.arch.frontend == "logmel" else conv_frames(num_samples)
