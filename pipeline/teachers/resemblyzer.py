"""Resemblyzer's LSTM speaker encoder (GE2E, arXiv 1710.10467) as an Upstream, from its bundled pretrained.pt.

The package is never imported (its import chain needs pkg_resources); its weights file is located on disk.
Preprocessing re-implements resemblyzer/audio.py: volume normalised up (never down) to -30 dBFS, then a
40-channel mel power spectrogram (not log) with a 25 ms Hann window and a 10 ms hop, centred with zero
padding (librosa.feature.melspectrogram defaults). Its voice-activity trimming is skipped: cutting silences
would break the frame alignment every cached teacher shares. Hidden states are the outputs of the 3 LSTM
layers (256 wide) at 100 Hz, averaged over frame pairs to 50 Hz; `embed` gives the speaker embedding
(linear + ReLU + L2 norm of the last layer's final state), exactly what VoiceEncoder.forward returns.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Upstream

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms window (resemblyzer hparams.mel_window_length)
HOP = 160  # 10 ms hop (hparams.mel_window_step)
N_MELS = 40  # hparams.mel_n_channels
HIDDEN = 256  # hparams.model_hidden_size
N_LSTM = 3  # hparams.model_num_layers
TARGET_DBFS = -30.0  # hparams.audio_norm_target_dBFS
INT16_MAX = 2 ** 15 - 1
INPUT_RECIPE = "resemblyzer-mel40-volnorm-novad-pairmean50hz-v1"


def bundled_weights() -> Path:
    """Path of pretrained.pt inside the installed Resemblyzer package, found without importing it."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Resemblyzer package is not installed; `pip install Resemblyzer` or give "
                                "the teacher a `path` to its pretrained.pt")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Resemblyzer's bundled weights are missing; reinstall the package")
    return path


def mel_filterbank() -> torch.Tensor:
    """(40, 201) Slaney mel filterbank of librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)."""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32))


def normalize_volume(wav: torch.Tensor) -> torch.Tensor:
    """Scale a clip up to -30 dBFS (RMS of int16-scaled samples), never down; silence is left alone."""
    rms = torch.sqrt(torch.mean((wav.double() * INT16_MAX) ** 2))
    if rms == 0:
        return wav
    change = TARGET_DBFS - 20 * torch.log10(rms / INT16_MAX)
    return wav * float(10 ** (change / 20)) if change > 0 else wav


class ResemblyzerUpstream(Upstream):
    """Hidden states [LSTM 1, LSTM 2, LSTM 3] (T, 256) at 50 Hz of Resemblyzer's speaker encoder (no input state)."""

    kind = "resemblyzer"
    input_state = False  # state 0 is the first LSTM's output: depths 1/3, 2/3, 1 are states 0, 1, 2

    def __init__(self, state: dict[str, torch.Tensor], name: str = "resemblyzer", source: str = "") -> None:
        super().__init__()
        self.name, self.source = name, source
        self.num_layers, self.dim = N_LSTM, HIDDEN
        self.min_samples = 2 * HOP
        # the stacked nn.LSTM split into single layers, so every layer's outputs are visible
        self.lstms = nn.ModuleList(nn.LSTM(N_MELS if i == 0 else HIDDEN, HIDDEN, batch_first=True)
                                   for i in range(N_LSTM))
        for i, lstm in enumerate(self.lstms):
            lstm.load_state_dict({f"{k}_l0": state[f"lstm.{k}_l{i}"]
                                  for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        self.linear = nn.Linear(HIDDEN, HIDDEN)
        self.linear.load_state_dict({"weight": state["linear.weight"], "bias": state["linear.bias"]})
        self.register_buffer("mel_basis", mel_filterbank(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """ceil((num_samples // 160) / 2), the 50 Hz frame count Whisper also gives."""
        return math.ceil((num_samples // HOP) / 2)

    def mel(self, wavs: torch.Tensor) -> torch.Tensor:
        """(B, samples) zero-padded, volume-normalised clips -> (B, 1 + samples // 160, 40) mel power."""
        spec = torch.stft(wavs, N_FFT, HOP, N_FFT, self.window, center=True, pad_mode="constant",
                          return_complex=True)
        return (self.mel_basis @ spec.abs() ** 2).transpose(1, 2)

    def lstm_states(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """(B, T, 40) mel -> the 3 layers' outputs (B, T, 256) at 100 Hz (causal: padding never leaks back)."""
        states, x = [], mel
        for lstm in self.lstms:
            x, _ = lstm(x)
            states.append(x)
        return states

    @torch.inference_mode()
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Speaker embedding of one clip as one partial: relu(linear(h_T)) / ||.|| on the last 100 Hz frame."""
        wav = normalize_volume(self.check_wav(wav))
        last = self.lstm_states(self.mel(wav[None]))[-1][0, -1]
        raw = torch.relu(self.linear(last))
        return raw / raw.norm()

    @torch.inference_mode()
    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states of one clip: 3 tensors (num_frames(len(wav)), 256)."""
        return self.hidden_states_batch([wav])[0]

    @torch.inference_mode()
    def hidden_states_batch(self, wavs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Several clips in one zero-padded pass; equal to the unbatched ones (centred STFT pads with zeros)."""
        if not wavs:
            return []
        clips = [normalize_volume(self.check_wav(w)) for w in wavs]
        batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
        states = self.lstm_states(self.mel(batch))
        out = []
        for i, clip in enumerate(clips):
            n = self.num_frames(clip.numel())
            out.append([s[i, :2 * n].reshape(n, 2, HIDDEN).mean(1) for s in states])
        return out

    def fingerprint(self) -> dict[str, Any]:
        """Base fingerprint plus the input recipe (mel parameters, volume normalisation, 50 Hz pairing)."""
        fp = super().fingerprint()
        fp.update(input=INPUT_RECIPE, n_mels=N_MELS, n_fft=N_FFT, hop=HOP)
        return fp


def load_resemblyzer(path: str | Path | None = None, name: str = "resemblyzer") -> ResemblyzerUpstream:
    """Resemblyzer's speaker encoder from a pretrained.pt (default: the file the package bundles)."""
    weights = Path(path) if path else bundled_weights()
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no Resemblyzer weights file; give the path of a pretrained.pt")
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model_state" not in checkpoint:
        raise ValueError(f"{weights}: not a Resemblyzer checkpoint (no 'model_state')")
    return ResemblyzerUpstream(checkpoint["model_state"], name=name, source=str(weights))
