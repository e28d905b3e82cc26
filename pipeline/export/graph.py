"""The students' forward pass for one unpadded clip in plain tensor operations, the graph the ONNX export traces.

No masks, packed sequences or data-dependent Python: a clip alone needs none, and this is what `torch.onnx.export`
can trace with a dynamic number of samples. The log-mel is a convolution with a windowed DFT basis (ONNX runtimes
have no complex numbers). Each function here equals the student's own forward on one clip (tests/export).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.students.logmel import MEL_HOP, N_FFT, LogMelFrontEnd
from pipeline.students.lstm import LSTMStudent
from pipeline.students.transformer import TransformerStudent


class DFTLogMel(nn.Module):
    """LogMelFrontEnd.log_mel of one clip, (1, samples) -> (1, n_mels, samples // 160), without torch.stft."""

    def __init__(self, frontend: LogMelFrontEnd) -> None:
        super().__init__()
        bins = N_FFT // 2 + 1
        phase = 2 * math.pi * torch.arange(bins, dtype=torch.float64)[:, None] * torch.arange(N_FFT) / N_FFT
        window = frontend.window.double()
        basis = torch.cat([phase.cos() * window, -phase.sin() * window])  # real rows, then imaginary rows
        self.register_buffer("basis", basis.float()[:, None, :], persistent=False)
        self.register_buffer("filters", frontend.filters.T.contiguous(), persistent=False)
        self.bins = bins

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.pad(wav[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")  # torch.stft(center=True)
        spec = F.conv1d(x, self.basis, stride=MEL_HOP)[..., :-1]
        power = spec[:, :self.bins] ** 2 + spec[:, self.bins:] ** 2
        mel = torch.log10(torch.clamp(self.filters @ power, min=1e-10))
        return (torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0) + 4.0) / 4.0


def sinusoid_table(frames: int, timescales: torch.Tensor) -> torch.Tensor:
    """pipeline.students.logmel.sinusoids for a traced number of frames; `timescales` (channels // 2,) are its
    exp(-inc * i), a constant, so that runtimes only multiply (exactly) and take sin / cos: an Exp of another
    runtime differing in the last bit moved positions near 1,500 by 1e-4."""
    steps = torch.arange(frames, device=timescales.device).to(timescales.dtype)[:, None]
    scaled = steps * timescales[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


def encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """torch's TransformerEncoderLayer (eval, no mask) on (1, T, D) with explicit attention."""
    attn = layer.self_attn
    heads, dim, width = attn.num_heads, attn.embed_dim, attn.head_dim

    def attend(h: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(1, -1, heads, width).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width), dim=-1)
        return attn.out_proj((weights @ v).transpose(1, 2).reshape(1, -1, dim))

    def feed_forward(h: torch.Tensor) -> torch.Tensor:
        return layer.linear2(F.gelu(layer.linear1(h)))

    if layer.norm_first:
        x = x + attend(layer.norm1(x))
        return x + feed_forward(layer.norm2(x))
    x = layer.norm1(x + attend(x))
    return layer.norm2(x + feed_forward(x))


class ClipGraph(nn.Module):
    """A student's hidden states for one clip: (1, samples) -> tuple of (1, frames, dim), as the student gives."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        if not isinstance(student, (TransformerStudent, LSTMStudent)):
            raise TypeError(f"no export graph for a {type(student).__name__}")
        self.student = student.eval()
        self.logmel = student.arch.frontend == "logmel"
        if self.logmel:
            self.mel = DFTLogMel(student.frontend)
            half = student.frontend.conv1.out_channels // 2
            inc = math.log(10000) / (half - 1)
            self.register_buffer("timescales", torch.exp(-inc * torch.arange(half)), persistent=False)

    def frontend(self, wav: torch.Tensor) -> torch.Tensor:
        """(1, samples) -> (1, frames, channels): the conv front end (plus positions where the student has them)."""
        front = self.student.frontend
        if not self.logmel:
            return front.layers(wav[:, None, :]).transpose(1, 2)
        x = F.gelu(front.conv2(F.gelu(front.conv1(self.mel(wav))))).transpose(1, 2)
        if front.positions:
            x = x + sinusoid_table(x.shape[1], self.timescales)
        return x

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s = self.student
        x = self.frontend(wav)
        if isinstance(s, LSTMStudent):
            x = s.proj(x)
            states = [x]
            for lstm in s.layers:
                x = lstm(x)[0]
                states.append(x)
            return tuple(states)
        if not self.logmel:
            x = s.norm(s.pos(s.proj(x)))
        states = [x]
        for layer in s.layers:
            x = encoder_layer(layer, x)
            states.append(x)
        if self.logmel:
            states[-1] = s.final_norm(x)
        return tuple(states)
