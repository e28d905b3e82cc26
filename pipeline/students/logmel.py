"""Whisper-layout front end for students: log-mel spectrogram, two convolutions, sinusoidal positions.

It reads what the Whisper teachers read (arXiv 2212.04356: 80-bin log-mel at 100 Hz, conv k3, conv k3 stride
2 to 50 Hz) at a fraction of the waveform CNN's cost per second of audio, and has the teacher's layout, so a
student can start from the teacher's own front end (pipeline.students.init).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

N_FFT, MEL_HOP = 400, 160  # Whisper's STFT: 25 ms Hann window, 10 ms hop
MIN_SAMPLES = 2 * MEL_HOP  # one 50 Hz frame


def logmel_frames(num_samples: int) -> int:
    """50 Hz frames for `num_samples` samples: ceil(mel_frames / 2), mel_frames = num_samples // 160."""
    return math.ceil((num_samples // MEL_HOP) / 2)


def mel_filters(n_mels: int) -> torch.Tensor:
    """Whisper's Slaney-scale mel filter bank (n_fft // 2 + 1, n_mels), as its feature extractor builds it."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=8000.0, sampling_rate=16000, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(np.asarray(bank, np.float32))


def sinusoids(length: int, channels: int) -> torch.Tensor:
    """Whisper's fixed positional table (length, channels): sin | cos at geometric timescales up to 10,000."""
    inc = math.log(10000) / (channels // 2 - 1)
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * torch.exp(-inc * torch.arange(channels // 2))
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


class LogMelFrontEnd(nn.Module):
    """(B, samples) + lengths -> (B, frames, dim) at 50 Hz and a (B, frames) valid mask.

    Each clip's log-mel is computed on its own samples (Whisper's recipe: log10 power, floor at the clip's
    maximum - 8, (x + 4) / 4), and the first conv's output is zeroed past each clip's end, so a clip gives the
    same frames alone or in a padded batch.
    """

    def __init__(self, n_mels: int, dim: int, positions: bool = True) -> None:
        super().__init__()
        self.positions = positions
        self.register_buffer("filters", mel_filters(n_mels), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (n_mels, samples // 160), Whisper's normalised log-mel of one clip."""
        spec = torch.stft(wav, N_FFT, MEL_HOP, window=self.window, return_complex=True)[..., :-1].abs() ** 2
        mel = (self.filters.T @ spec).clamp_min(1e-10).log10()
        return (torch.maximum(mel, mel.max() - 8.0) + 4.0) / 4.0

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor,
                offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`offsets` (B,): the frame at which each clip starts in its utterance (a training crop), so a crop
        gets the positions it has in the whole utterance, which is what the student sees at inference."""
        n_mel = [int(n) // MEL_HOP for n in lengths]
        mel = torch.zeros(wav.shape[0], self.filters.shape[1], max(n_mel), device=wav.device)
        with torch.no_grad():
            for b, n in enumerate(lengths):
                mel[b, :, :n_mel[b]] = self.log_mel(wav[b, :int(n)].float())
        valid_mel = torch.arange(mel.shape[-1], device=wav.device)[None, :] < torch.tensor(n_mel,
                                                                                          device=wav.device)[:, None]
        x = F.gelu(self.conv1(mel)) * valid_mel[:, None, :]
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        frames = torch.tensor([logmel_frames(int(n)) for n in lengths], device=wav.device)
        mask = torch.arange(x.shape[1], device=wav.device)[None, :] < frames[:, None]
        steps = torch.arange(x.shape[1], device=wav.device)
        if not self.positions:
            return x, mask
        if offsets is None:
            return x + sinusoids(x.shape[1], x.shape[2]).to(x), mask
        table = sinusoids(int(offsets.max()) + x.shape[1], x.shape[2]).to(x)
        return x + table[offsets.to(wav.device)[:, None] + steps[None, :]], mask
