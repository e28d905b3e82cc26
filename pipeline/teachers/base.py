"""The upstream contract every teacher and student implements (s3prl-like, DESIGN.md "Contracts")."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

SAMPLE_RATE = 16_000


class Upstream(torch.nn.Module):
    """A frozen speech encoder: 16 kHz waveform -> list of layerwise hidden states (T, D) at frame_rate Hz.

    Subclasses set `name`, `kind`, `source`, `num_layers`, `dim` and implement `hidden_states`
    and `num_frames`; `hidden_states_batch` defaults to a loop. Outputs are float32 tensors on
    the model's device; the last one is the final layer. `input_state` says what index 0 is: the
    input to the first layer (True: transformers' embeddings, students' projected CNN features) or the
    first layer's output (False: Resemblyzer's LSTMs); relative depths are mapped accordingly.
    """

    name: str = "upstream"
    kind: str = "upstream"
    source: str = ""
    input_state: bool = True
    frame_rate: int = 50
    sample_rate: int = SAMPLE_RATE
    min_samples: int = SAMPLE_RATE // 10
    num_layers: int
    dim: int

    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states of one 1-D 16 kHz waveform: num_layers tensors of shape (T, dim)."""
        raise NotImplementedError

    def hidden_states_batch(self, wavs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Hidden states of several waveforms; equal to calling hidden_states on each."""
        return [self.hidden_states(w) for w in wavs]

    def num_frames(self, num_samples: int) -> int:
        """Number of frames T that hidden_states returns for a waveform of num_samples samples."""
        raise NotImplementedError

    def states_for(self, wavs: Sequence[torch.Tensor], keys: Sequence[str],
                   view: dict[str, Any]) -> list[list[torch.Tensor]]:
        """What extraction stores for clips `keys` of view `view`: hidden states of `wavs` unless looked up."""
        return self.hidden_states_batch(wavs)

    def forward(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """Alias of hidden_states, so an Upstream can be called like any module."""
        return self.hidden_states(wav)

    @property
    def device(self) -> torch.device:
        """Device of the first parameter (cpu for parameter-free upstreams)."""
        return next((p.device for p in self.parameters()), torch.device("cpu"))

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able identity of everything that determines the outputs (for cache fingerprints)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "sha256": weights_sha256(self),
            "num_layers": self.num_layers,
            "dim": self.dim,
            "frame_rate": self.frame_rate,
            "input_state": self.input_state,
        }

    def check_wav(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Validate a waveform (1-D, finite, long enough) and return it as float32 on the model device."""
        wav = torch.as_tensor(wav)
        if wav.dim() != 1:
            raise ValueError(f"{self.name}: expected a 1-D mono waveform, got shape {tuple(wav.shape)}")
        if wav.numel() < self.min_samples:
            raise ValueError(
                f"{self.name}: waveform of {wav.numel()} samples is shorter than the minimum "
                f"{self.min_samples} ({self.min_samples / self.sample_rate:.2f} s at 16 kHz); drop or pad it"
            )
        if not torch.isfinite(wav).all():
            raise ValueError(f"{self.name}: waveform contains NaN or inf samples")
        return wav.to(self.device, torch.float32)


def weights_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over the module's state dict (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def align_lengths(tensors: Sequence[torch.Tensor], max_diff: int | None = 2) -> list[torch.Tensor]:
    """Truncate tensors along dim 0 to the shortest; refuse differences above max_diff frames."""
    if not tensors:
        return []
    lengths = [t.shape[0] for t in tensors]
    shortest = min(lengths)
    if max_diff is not None and max(lengths) - shortest > max_diff:
        raise ValueError(
            f"frame counts {lengths} differ by more than {max_diff}; the upstreams do not share a frame rate"
        )
    return [t[:shortest] for t in tensors]
