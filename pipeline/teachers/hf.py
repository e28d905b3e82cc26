"""Any Hugging Face speech encoder (HuBERT, WavLM, wav2vec2, data2vec-audio, Whisper) as an Upstream.

Loaded by hub id or local path through `transformers`; with HF_HUB_OFFLINE set (or a local
path) nothing is fetched. Whisper checkpoints go through the unpadded encoder of whisper.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, WhisperFeatureExtractor

from .base import Upstream
from .whisper import WhisperUpstream

WAVEFORM_FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
EXACT_BATCHING = ("wav2vec2", "hubert", "wavlm")


def offline(model: str | Path) -> bool:
    """True when model is a local path or HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set."""
    flags = (os.environ.get(k, "").lower() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return Path(model).exists() or any(f not in ("", "0", "false", "no") for f in flags)


class HFWaveformUpstream(Upstream):
    """A wav2vec2-family encoder: waveform -> CNN (320x downsampling) -> transformer, all hidden states."""

    def __init__(self, model: torch.nn.Module, *, do_normalize: bool, name: str, source: str):
        super().__init__()
        self.model = model.eval()
        config = model.config
        self.do_normalize = do_normalize
        self.name, self.kind, self.source = name, "hf", source
        self.num_layers = config.num_hidden_layers + 1
        self.dim = config.hidden_size
        self.frame_rate = round(self.sample_rate / math.prod(config.conv_stride))
        self.min_samples = max(self.min_samples, self._receptive_field())
        # Padding leaks into real frames through group-norm CNNs (they normalise over time) and through
        # data2vec-audio's stacked positional convolutions; only the other layer-norm models batch exactly.
        self.batchable = config.model_type in EXACT_BATCHING and config.feat_extract_norm == "layer"

    def _receptive_field(self) -> int:
        """Samples needed for one output frame."""
        field = 1
        for kernel, stride in reversed(list(zip(self.model.config.conv_kernel, self.model.config.conv_stride,
                                                strict=True))):
            field = (field - 1) * stride + kernel
        return field

    def num_frames(self, num_samples: int) -> int:
        """Output length of the convolutional feature encoder for num_samples samples."""
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(num_samples)))

    def _prepare(self, wav: torch.Tensor) -> torch.Tensor:
        """Validate and, if the feature extractor asks for it, zero-mean unit-variance normalise."""
        wav = self.check_wav(wav)
        if self.do_normalize:
            wav = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
        return wav

    @torch.inference_mode()
    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """All hidden states of one clip: num_layers tensors (T, D)."""
        out = self.model(self._prepare(wav)[None], output_hidden_states=True)
        return [h[0] for h in out.hidden_states]

    @torch.inference_mode()
    def hidden_states_batch(self, wavs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """One padded, masked pass where that is exact (see `batchable`); a loop otherwise."""
        if not self.batchable or len(wavs) < 2:
            return [self.hidden_states(w) for w in wavs]
        prepared = [self._prepare(w) for w in wavs]
        lengths = [w.numel() for w in prepared]
        batch = torch.zeros(len(prepared), max(lengths), device=self.device)
        mask = torch.zeros(len(prepared), max(lengths), dtype=torch.long, device=self.device)
        for i, w in enumerate(prepared):
            batch[i, : w.numel()] = w
            mask[i, : w.numel()] = 1
        out = self.model(batch, attention_mask=mask, output_hidden_states=True)
        return [[h[i, : self.num_frames(n)] for h in out.hidden_states] for i, n in enumerate(lengths)]

    def fingerprint(self) -> dict[str, Any]:
        """Base fingerprint plus the model type and waveform normalisation."""
        fp = super().fingerprint()
        fp.update(model_type=self.model.config.model_type, do_normalize=self.do_normalize)
        return fp


def _default_normalize(config: Any) -> bool:
    """fairseq convention when no preprocessor config ships: layer-norm CNN models normalise input."""
    return getattr(config, "feat_extract_norm", "layer") == "layer"


def load_hf(model: str | Path, name: str | None = None) -> Upstream:
    """Load a Hugging Face speech encoder by hub id or local directory as an Upstream."""
    local = offline(model)
    try:
        config = AutoConfig.from_pretrained(str(model), local_files_only=local)
        net = AutoModel.from_pretrained(str(model), local_files_only=local, dtype=torch.float32)
    except OSError as err:
        raise OSError(
            f"cannot load Hugging Face model '{model}'" + (" offline (HF_HUB_OFFLINE is set or it is a path)"
                                                         if local else "")
            + "; give a local directory with config.json and weights, or download it beforehand "
            f"(`huggingface-cli download {model}`)"
        ) from err
    try:
        extractor = AutoFeatureExtractor.from_pretrained(str(model), local_files_only=local)
    except OSError:
        extractor = None
    name = name or Path(str(model)).name
    if config.model_type == "whisper":
        if not isinstance(extractor, WhisperFeatureExtractor):
            extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        return WhisperUpstream(net.get_encoder(), extractor, name=name, kind="hf", source=str(model))
    if config.model_type not in WAVEFORM_FAMILIES:
        known = (*WAVEFORM_FAMILIES, "whisper")
        raise ValueError(f"'{model}' is a {config.model_type} model; supported model types: {known}")
    normalize = getattr(extractor, "do_normalize", None)
    if normalize is None:
        normalize = _default_normalize(config)
    return HFWaveformUpstream(net, do_normalize=bool(normalize), name=name, source=str(model))
