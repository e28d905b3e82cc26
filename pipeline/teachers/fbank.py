"""Log-mel filterbank features, SUPERB's FBANK baseline row, as a parameter-free Upstream.

Kaldi-style fbank as s3prl's `fbank` upstream computes it (torchaudio.compliance.kaldi.fbank with 80 bins, then
deltas and delta-deltas, then utterance CMVN), with one change: SUPERB hops 10 ms, the upstream contract here is
50 Hz, so frames are 25 ms windows every 20 ms. Framing is Kaldi's snip_edges: frame t covers samples
[320 t, 320 t + 400), 1 + (n - 400) // 320 frames (HuBERT's and the students' count; Whisper's is at most one
more). Per frame: DC offset removed, pre-emphasis 0.97, Povey window, 512-point power spectrum, 80 triangular
Kaldi mel filters from 20 Hz to 8 kHz, natural log floored at float32 eps; no dither. Deltas and delta-deltas
over +-2 frames (torchaudio ComputeDeltas, win_length 5, edge frames repeated), then CMVN of all 240 dims over
the clip's own frames (mean 0, std 1), so a clip's features never depend on what else is in its batch; it also
removes the clip's gain and mean spectrum (a steady tone maps to zeros), as s3prl's CMVN does. One hidden state
(T, 240); no parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank, window_function

from .base import SAMPLE_RATE, Upstream

INPUT_RECIPE = "kaldi-fbank-snipedges-povey-log-deltas-uttcmvn-v1"  # changes here change every cached frame
LOG_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi's and torchaudio's floor before the log
CMVN_EPS = 1e-10  # added to the std, as s3prl's CMVN does


@dataclass(frozen=True)
class FbankSettings:
    """What determines the features; recorded in the fingerprint, so other settings refuse old caches."""

    n_mels: int = 80
    window: int = 400  # 25 ms
    hop: int = 320  # 20 ms: the 50 Hz contract (SUPERB's fbank hops 10 ms)
    n_fft: int = 512  # the window rounded up to a power of two, as Kaldi does
    low_hz: float = 20.0
    preemphasis: float = 0.97
    delta_order: int = 2  # deltas and delta-deltas
    delta_width: int = 2  # +-2 frames (win_length 5)
    cmvn: bool = True  # per utterance


def deltas(feats: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Time derivative of (T, D) features: sum_n n (x[t+n] - x[t-n]) / (2 sum_n n^2), edge frames repeated."""
    t = feats.shape[0]
    padded = torch.cat([feats[:1].expand(width, -1), feats, feats[-1:].expand(width, -1)])
    num = sum(n * (padded[width + n:width + n + t] - padded[width - n:width - n + t]) for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


class FbankUpstream(Upstream):
    """One hidden state: 80 log-mel bins + deltas + delta-deltas (T, 240) at 50 Hz, utterance-normalised."""

    kind = "fbank"

    def __init__(self, settings: FbankSettings | None = None, name: str = "fbank") -> None:
        super().__init__()
        settings = settings or FbankSettings()
        self.settings, self.name = settings, name
        self.num_layers, self.dim = 1, settings.n_mels * (1 + settings.delta_order)
        # plain tensors, not buffers: the features are computed on the CPU wherever the module is moved
        self.window_fn = torch.from_numpy(window_function(settings.window, "povey", periodic=False))
        self.mel_basis = torch.from_numpy(mel_filter_bank(
            num_frequency_bins=settings.n_fft // 2 + 1, num_mel_filters=settings.n_mels, min_frequency=settings.low_hz,
            max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, mel_scale="kaldi",
            triangularize_in_mel_space=True))  # (n_fft // 2 + 1, n_mels), float64

    def num_frames(self, num_samples: int) -> int:
        """1 + (n - 400) // 320 (Kaldi snip_edges framing), 0 for clips shorter than one window."""
        s = self.settings
        return 1 + (num_samples - s.window) // s.hop if num_samples >= s.window else 0

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """(T, n_mels) float64 Kaldi log-mel filterbank of one checked 1-D clip."""
        s = self.settings
        frames = wav.cpu().double().unfold(0, s.window, s.hop)
        frames = frames - frames.mean(1, keepdim=True)
        frames = torch.cat([frames[:, :1] * (1 - s.preemphasis), frames[:, 1:] - s.preemphasis * frames[:, :-1]], 1)
        power = torch.fft.rfft(frames * self.window_fn, n=s.n_fft).abs() ** 2
        return torch.log(torch.clamp(power @ self.mel_basis, min=LOG_FLOOR))

    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """[(num_frames(len(wav)), dim)] float32: log-mel, its deltas, then utterance CMVN."""
        s = self.settings
        feats = [self.log_mel(self.check_wav(wav))]
        for _ in range(s.delta_order):
            feats.append(deltas(feats[-1], s.delta_width))
        x = torch.cat(feats, 1)
        if s.cmvn:
            x = (x - x.mean(0)) / (x.std(0) + CMVN_EPS)
        return [x.float()]

    def fingerprint(self) -> dict[str, Any]:
        """Base fingerprint (the weights checksum is that of an empty state dict) plus the recipe and settings."""
        fp = super().fingerprint()
        fp.update(input=INPUT_RECIPE, fbank=asdict(self.settings))
        return fp
