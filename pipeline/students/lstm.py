"""LSTM student for HuBERT distillation (arXiv 2309.09920): CNN front end, projection, stacked BiLSTMs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.students.frontend import ConvFrontEnd, FrontEndFrames, frame_mask, scale_grad
from pipeline.students.logmel import LogMelFrontEnd


@dataclass(frozen=True)
class LSTMArch:
    """Architecture hyper-parameters; the paper's student is 4 BiLSTM layers of 384 units per direction.
    `frontend: logmel` reads Whisper's log-mel through two convolutions of `conv_channels` (the teacher's width
    when the student starts from a Whisper teacher's front end), with no positions: an LSTM needs none."""

    conv_channels: int = 512
    dim: int = 384
    layers: int = 4
    dropout: float = 0.1
    cnn_grad_scale: float = 0.1
    frontend: str = "waveform"
    n_mels: int = 80

    def __post_init__(self) -> None:
        if self.frontend not in ("waveform", "logmel"):
            raise ValueError(f"arch.frontend must be waveform or logmel, got {self.frontend!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class LSTMStudent(FrontEndFrames, nn.Module):
    """Hidden states [projection, BiLSTM 1, ..., BiLSTM N], each (B, T, 2 * arch.dim), plus a frame mask.

    `dim` is the hidden-state width 2 * arch.dim (both directions concatenated); the projection maps the CNN
    to that width so every state has one width. The front end's group norm takes statistics over each clip's
    valid samples and sequences are packed by length, so padding never reaches the valid frames (through the
    norm or the backward direction). Dropout is applied to each BiLSTM's input only.
    """

    def __init__(self, arch: LSTMArch) -> None:
        super().__init__()
        self.arch = arch
        width = 2 * arch.dim
        if arch.frontend == "logmel":
            self.frontend = LogMelFrontEnd(arch.n_mels, arch.conv_channels, positions=False)
        else:
            self.frontend = ConvFrontEnd(arch.conv_channels)
        self.proj = nn.Sequential(nn.LayerNorm(arch.conv_channels), nn.Linear(arch.conv_channels, width))
        self.dropout = nn.Dropout(arch.dropout)
        self.layers = nn.ModuleList(
            nn.LSTM(width, arch.dim, batch_first=True, bidirectional=True) for _ in range(arch.layers))

    @property
    def dim(self) -> int:
        return 2 * self.arch.dim

    @property
    def num_layers(self) -> int:
        return self.arch.layers + 1

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor,
                offsets: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """`offsets` are accepted for the common student interface and unused: an LSTM has no positions."""
        if self.arch.frontend == "logmel":
            feats, mask = self.frontend(wav, lengths)
            feats = scale_grad(feats, self.arch.cnn_grad_scale)
        else:
            feats = scale_grad(self.frontend(wav, lengths), self.arch.cnn_grad_scale)
            mask = frame_mask(lengths, feats.shape[1])
        frames = mask.sum(1).cpu()
        x = self.proj(feats)
        states = [x]
        for lstm in self.layers:
            packed = pack_padded_sequence(self.dropout(x), frames, batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=feats.shape[1])
            states.append(x)
        return states, mask
