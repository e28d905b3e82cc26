"""DistilHuBERT-style student (arXiv 2110.01900): CNN front end, conv positional encoding, transformer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from pipeline.students.frontend import ConvFrontEnd, frame_mask, scale_grad


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


class TransformerStudent(nn.Module):
    """Returns hidden states [transformer input, layer 1, ..., layer N], each (B, T, dim), plus a frame mask."""

    def __init__(self, arch: TransformerArch) -> None:
        super().__init__()
        self.arch = arch
        self.frontend = ConvFrontEnd(arch.conv_channels)
        self.proj = nn.Sequential(nn.LayerNorm(arch.conv_channels), nn.Linear(arch.conv_channels, arch.dim))
        self.pos = ConvPositional(arch.dim, arch.pos_kernel, arch.pos_groups)
        self.norm = nn.LayerNorm(arch.dim)
        self.dropout = nn.Dropout(arch.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(arch.dim, arch.heads, arch.ffn, arch.dropout, activation="gelu",
                                       batch_first=True)
            for _ in range(arch.layers))

    @property
    def dim(self) -> int:
        return self.arch.dim

    @property
    def num_layers(self) -> int:
        return self.arch.layers + 1

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats = scale_grad(self.frontend(wav, lengths), self.arch.cnn_grad_scale)
        mask = frame_mask(lengths, feats.shape[1])
        # padded frames are zeroed before the positional convolution, which then sees what a lone clip's
        # zero padding gives it: valid frames do not depend on the other clips of a batch
        x = self.dropout(self.norm(self.pos(self.proj(feats) * mask[..., None])))
        states = [x]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
            states.append(x)
        return states, mask
