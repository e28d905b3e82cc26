"""Whisper encoder (arXiv:2212.04356) as an Upstream, run on the unpadded log-mel spectrogram.

Whisper pads every input to 30 s (3000 mel frames); here the encoder runs on the clip's own
N = ceil(mel_frames / 2) frames with embed_positions[:N] (15-40x less compute, DESIGN.md).
Clips longer than 30 s are cut into 30 s windows of the whole-clip log-mel (as Whisper's own
long-form transcription does) and the frames concatenated. Weights come from CTranslate2
model.bin files (`load_whisper_ct2`) or a transformers WhisperEncoder (`hf.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .base import Upstream
from .ct2 import CT2Model, package_model_files, read_ct2

HOP = 160  # samples per mel frame; the encoder halves the mel rate to 50 Hz
INPUT_RECIPE = "unpadded-logmel-v1"  # changes here change every cached frame


class WhisperUpstream(Upstream):
    """Hidden states [input to layer 1, after layer 1, ..., final layer + layer norm] of a Whisper encoder."""

    def __init__(self, encoder: WhisperEncoder, feature_extractor: WhisperFeatureExtractor, *,
                 name: str, kind: str, source: str, extra: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder.eval()
        self.features = feature_extractor
        self.name, self.kind, self.source = name, kind, source
        self.num_layers = len(encoder.layers) + 1
        self.dim = encoder.config.d_model
        self.window = encoder.config.max_source_positions * 2  # mel frames per encoder window (3000)
        self.extra = dict(extra or {})

    def num_frames(self, num_samples: int) -> int:
        """N = ceil(mel_frames / 2), mel_frames = num_samples // 160."""
        return math.ceil((num_samples // HOP) / 2)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Whisper log-mel (n_mels, num_samples // 160) of one clip, without the 30 s padding."""
        audio = self.check_wav(wav).cpu().numpy()
        mel = self.features(audio, sampling_rate=self.sample_rate, padding="longest", truncation=False,
                            return_tensors="np")["input_features"][0]
        return torch.from_numpy(np.ascontiguousarray(mel))

    @torch.inference_mode()
    def encode_mel(self, mel: torch.Tensor, lengths: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Run the encoder on a mel batch (B, n_mels, L <= 3000) whose clip i has lengths[i] frames.

        Returns num_layers tensors (B, ceil(L / 2), D). Padding is masked twice so padded
        frames cannot leak into real ones: the first conv's output is zeroed past each clip's end
        (as the zero padding of an unbatched conv would be) and padded keys are masked in attention.
        """
        enc = self.encoder
        mel = mel.to(self.device, torch.float32)
        batch, _, size = mel.shape
        if size > self.window:
            raise ValueError(f"{self.name}: {size} mel frames exceed the encoder window of {self.window}")
        lengths_t = torch.as_tensor(lengths if lengths is not None else [size] * batch, device=mel.device)
        padded = bool((lengths_t < size).any())
        x = F.gelu(enc.conv1(mel))
        if padded:
            x = x * (torch.arange(size, device=mel.device) < lengths_t[:, None]).unsqueeze(1)
        x = F.gelu(enc.conv2(x)).transpose(1, 2)
        n = x.shape[1]
        x = x + enc.embed_positions.weight[:n]
        mask = None
        if padded:
            frames = torch.div(lengths_t + 1, 2, rounding_mode="floor")
            keep = torch.arange(n, device=mel.device) < frames[:, None]
            mask = torch.zeros(batch, 1, 1, n, device=mel.device)
            mask.masked_fill_(~keep[:, None, None, :], torch.finfo(mask.dtype).min)
        states = [x]
        for layer in enc.layers:
            x = layer(x, mask)
            states.append(x)
        states[-1] = enc.layer_norm(x)
        return states

    @torch.inference_mode()
    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states of one clip: num_layers tensors (num_frames(len(wav)), D)."""
        return self.hidden_states_batch([wav])[0]

    @torch.inference_mode()
    def hidden_states_batch(self, wavs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Hidden states of several clips in one padded, masked pass (equal to the unbatched ones)."""
        if not wavs:
            return []
        windows: list[torch.Tensor] = []
        owner: list[int] = []
        for i, wav in enumerate(wavs):
            mel = self.log_mel(wav)
            for start in range(0, mel.shape[1], self.window):
                windows.append(mel[:, start:start + self.window])
                owner.append(i)
        lengths = [w.shape[1] for w in windows]
        batch = torch.zeros(len(windows), windows[0].shape[0], max(lengths))
        for j, w in enumerate(windows):
            batch[j, :, : w.shape[1]] = w
        states = self.encode_mel(batch, lengths)
        out: list[list[list[torch.Tensor]]] = [[[] for _ in range(self.num_layers)] for _ in wavs]
        for j, (i, length) in enumerate(zip(owner, lengths, strict=True)):
            for k, s in enumerate(states):
                out[i][k].append(s[j, : math.ceil(length / 2)])
        return [[torch.cat(parts) for parts in per_clip] for per_clip in out]

    def fingerprint(self) -> dict[str, Any]:
        """Base fingerprint plus the input recipe and mel parameters."""
        fp = super().fingerprint()
        fp.update(input=INPUT_RECIPE, n_mels=int(self.features.feature_size), **self.extra)
        return fp


def _dense(variables: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """One CT2 variable as float32, dequantising int8/int16 weights (stored as round(w * scale))."""
    value = variables[name]
    scale = variables.get(name + "_scale")
    if value.dtype in (np.int8, np.int16) and scale is not None:
        value = value.astype(np.float32) / np.asarray(scale, np.float32).reshape(-1, *[1] * (value.ndim - 1))
    return torch.from_numpy(np.asarray(value, dtype=np.float32).copy())


def encoder_from_ct2(model: CT2Model) -> WhisperEncoder:
    """Build a transformers WhisperEncoder holding the encoder weights of a CT2 WhisperSpec model."""
    if model.spec != "WhisperSpec":
        raise ValueError(f"CTranslate2 model has spec '{model.spec}', expected 'WhisperSpec'")
    v = model.variables

    def get(name: str) -> torch.Tensor:
        return _dense(v, "encoder/" + name)

    n_layers = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    d_model, n_mels, _ = v["encoder/conv1/weight"].shape
    heads = int(v["encoder/num_heads"]) if "encoder/num_heads" in v else d_model // 64
    config = WhisperConfig(
        d_model=d_model, num_mel_bins=n_mels, encoder_layers=n_layers, encoder_attention_heads=heads,
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
    )
    state = {
        "conv1.weight": get("conv1/weight"), "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"), "conv2.bias": get("conv2/bias"),
        "embed_positions.weight": get("position_encodings/encodings"),
        "layer_norm.weight": get("layer_norm/gamma"), "layer_norm.bias": get("layer_norm/beta"),
    }
    for i in range(n_layers):
        src, dst = f"layer_{i}/", f"layers.{i}."
        wq, wk, wv = get(src + "self_attention/linear_0/weight").split(d_model)
        bq, _bk, bv = get(src + "self_attention/linear_0/bias").split(d_model)
        # HF has no key bias: it adds the same logit to every key of a query, which softmax ignores.
        state.update({
            dst + "self_attn.q_proj.weight": wq, dst + "self_attn.q_proj.bias": bq,
            dst + "self_attn.k_proj.weight": wk,
            dst + "self_attn.v_proj.weight": wv, dst + "self_attn.v_proj.bias": bv,
            dst + "self_attn.out_proj.weight": get(src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": get(src + "self_attention/linear_1/bias"),
            dst + "self_attn_layer_norm.weight": get(src + "self_attention/layer_norm/gamma"),
            dst + "self_attn_layer_norm.bias": get(src + "self_attention/layer_norm/beta"),
            dst + "fc1.weight": get(src + "ffn/linear_0/weight"),
            dst + "fc1.bias": get(src + "ffn/linear_0/bias"),
            dst + "fc2.weight": get(src + "ffn/linear_1/weight"),
            dst + "fc2.bias": get(src + "ffn/linear_1/bias"),
            dst + "final_layer_norm.weight": get(src + "ffn/layer_norm/gamma"),
            dst + "final_layer_norm.bias": get(src + "ffn/layer_norm/beta"),
        })
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


def ct2_files(package: str | Sequence[str] | None = None, path: str | Path | None = None) -> list[Path]:
    """model.bin file(s) from installed package(s) or a path (a model directory or model.bin file)."""
    if (package is None) == (path is None):
        raise ValueError("give exactly one of 'package' (installed distribution name or list) and 'path'")
    if package is not None:
        return package_model_files(package)
    p = Path(path)
    files = [p / "model.bin"] if p.is_dir() else [p]
    if not files[0].is_file():
        raise FileNotFoundError(f"no CTranslate2 model.bin at {files[0]}; give a model directory or file")
    return files


def load_whisper_ct2(package: str | Sequence[str] | None = None, path: str | Path | None = None,
                     name: str = "whisper") -> WhisperUpstream:
    """Load the encoder of a CTranslate2 Whisper model (package name(s) in byte order, or a path)."""
    files = ct2_files(package, path)
    model = read_ct2(files, keep=lambda n: n.startswith("encoder/"))
    encoder = encoder_from_ct2(model)
    features = WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins)
    source = ",".join(package if isinstance(package, (list, tuple)) else [str(package or path)])
    return WhisperUpstream(encoder, features, name=name, kind="whisper_ct2", source=source,
                           extra={"file_sha256": model.sha256})
