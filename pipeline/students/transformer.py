"""DistilHuBERT-style student (arXiv 2110.01900): a front end, positions, a few transformer layers.

Two layouts: `frontend: waveform` is DistilHuBERT's (7-layer waveform CNN, conv positional encoding, post-norm
layers); `frontend: logmel` is a Whisper encoder's (log-mel + 2 convs, sinusoidal positions, pre-norm layers,
a final layer norm), which a student of a Whisper teacher can start from (pipeline.students.init).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from pipeline.students.frontend import ConvFrontEnd, FrontEndFrames, frame_mask, scale_grad
from pipeline.students.logmel import LogMelFrontEnd

FRONTENDS = ("waveform", "logmel")


@dataclass(frozen=True)
class TransformerArch:
    """Architecture hyper-parameters; DistilHuBERT itself is conv 512, dim 768, 2 layers, 12 heads, ffn 3072."""

    conv_channels: int = 512
    dim: int = 768
    layers: int = 2
    heads: int = 12
    ffn: int = 3072
    pos_kernel: int = 128
    pos_groups: int = 16
    dropout: float = 0.1
    cnn_grad_scale: float = 0.1
    frontend: str = "waveform"
    n_mels: int = 80

    def __post_init__(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ValueError(f"arch.frontend must be one of {FRONTENDS}, got {self.frontend!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class ConvPositional(nn.Module):
    """Grouped convolutional relative positional encoding (wav2vec 2.0), added to its input."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        groups = groups if dim % groups == 0 else 1
        self.conv = nn.utils.parametrizations.weight_norm(
            nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups), dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, :-self.trim]
        return x + nn.functional.gelu(y).transpose(1, 2)


class TransformerStudent(FrontEndFrames, nn.Module):
    """Returns hidden states [transformer input, layer 1, ..., layer N], each (B, T, dim), plus a frame mask.
    With the log-mel front end the last state passes the final layer norm, as in Whisper's encoder."""

    def __init__(self, arch: TransformerArch) -> None:
        super().__init__()
        self.arch = arch
        logmel = arch.frontend == "logmel"
        if logmel:
            self.frontend = LogMelFrontEnd(arch.n_mels, arch.dim)
            self.final_norm = nn.LayerNorm(arch.dim)
        else:
            self.frontend = ConvFrontEnd(arch.conv_channels)
            self.proj = nn.Sequential(nn.LayerNorm(arch.conv_channels), nn.Linear(arch.conv_channels, arch.dim))
            self.pos = ConvPositional(arch.dim, arch.pos_kernel, arch.pos_groups)
            self.norm = nn.LayerNorm(arch.dim)
        self.dropout = nn.Dropout(arch.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(arch.dim, arch.heads, arch.ffn, arch.dropout, activation="gelu",
                                       batch_first=True, norm_first=logmel)
            for _ in range(arch.layers))

    @property
    def dim(self) -> int:
        return self.arch.dim

    @property
    def num_layers(self) -> int:
        return self.arch.layers + 1

    def embed(self, wav: torch.Tensor, lengths: torch.Tensor,
              offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer input (B, T, dim) and the valid-frame mask; `offsets` place training crops at their
        absolute positions (only the log-mel layout has absolute positions)."""
        if self.arch.frontend == "logmel":
            x, mask = self.frontend(wav, lengths, offsets)
            return self.dropout(scale_grad(x, self.arch.cnn_grad_scale)), mask
        feats = scale_grad(self.frontend(wav, lengths), self.arch.cnn_grad_scale)
        mask = frame_mask(lengths, feats.shape[1])
        # padded frames are zeroed before the positional convolution, which then sees what a lone clip's
        # zero padding gives it: valid frames do not depend on the other clips of a batch
        return self.dropout(self.norm(self.pos(self.proj(feats) * mask[..., None]))), mask

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor,
                offsets: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        x, mask = self.embed(wav, lengths, offsets)
        states = [x]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
            states.append(x)
        if self.arch.frontend == "logmel":
            states[-1] = self.final_norm(x)
        return states, mask
