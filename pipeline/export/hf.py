"""A transformer student as the transformers class whose layout it has: `HubertModel` (waveform front end) or
`WhisperModel` (log-mel front end; the student is the encoder, the decoder an empty placeholder).

Both load with `AutoModel` / `AutoFeatureExtractor` offline and without remote code. Their hidden states
(`output_hidden_states=True`) are the student's: [transformer input, layer 1, ..., layer N] for HuBERT,
[input, layer 1, ..., final norm(layer N)] for Whisper, as `TransformerStudent.forward` returns them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    HubertConfig,
    HubertModel,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)
from transformers.feature_extraction_utils import FeatureExtractionMixin

from pipeline.export import HF_FILES
from pipeline.students.frontend import KERNELS
from pipeline.students.logmel import sinusoids
from pipeline.students.transformer import TransformerStudent

WHISPER_POSITIONS = 1500  # Whisper's 30 s window: what transformers' WhisperEncoder.forward insists on
NO_DROPOUT = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "feat_proj_dropout": 0.0,
              "final_dropout": 0.0, "layerdrop": 0.0}


def _attention(prefix: str, layer: torch.nn.TransformerEncoderLayer, key_bias: bool) -> dict[str, torch.Tensor]:
    """torch's fused in_proj split into q, k, v projections (without the key bias where the layout has none: it
    adds one logit to every key of a query, which softmax ignores)."""
    attn = layer.self_attn
    w, b = attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)
    out = {f"{prefix}{n}_proj.weight": w[i] for i, n in enumerate("qkv")}
    out |= {f"{prefix}{n}_proj.bias": b[i] for i, n in enumerate("qkv") if key_bias or n != "k"}
    return out | {f"{prefix}out_proj.weight": attn.out_proj.weight, f"{prefix}out_proj.bias": attn.out_proj.bias}


def hubert(student: TransformerStudent) -> tuple[HubertModel, Wav2Vec2FeatureExtractor]:
    """A waveform student as a HubertModel (group-norm CNN, post-norm layers) and its raw-waveform extractor."""
    a = student.arch
    config = HubertConfig(
        hidden_size=a.dim, num_hidden_layers=a.layers, num_attention_heads=a.heads, intermediate_size=a.ffn,
        hidden_act="gelu", conv_dim=(a.conv_channels,) * len(KERNELS), conv_kernel=[k for k, _ in KERNELS],
        conv_stride=[s for _, s in KERNELS], conv_bias=False, feat_extract_norm="group",
        feat_extract_activation="gelu", feat_proj_layer_norm=True, num_conv_pos_embeddings=a.pos_kernel,
        num_conv_pos_embedding_groups=student.pos.conv.groups, do_stable_layer_norm=False, layer_norm_eps=1e-5,
        apply_spec_augment=False, mask_time_prob=0.0, mask_feature_prob=0.0, **NO_DROPOUT)
    s = student.state_dict()
    state = {f"feature_extractor.conv_layers.{i}.conv.weight": s[f"frontend.layers.{i}.0.weight"]
             for i in range(len(KERNELS))}
    for p in ("weight", "bias"):
        state |= {f"feature_extractor.conv_layers.0.layer_norm.{p}": s[f"frontend.layers.0.1.{p}"],
                  f"feature_projection.layer_norm.{p}": s[f"proj.0.{p}"],
                  f"feature_projection.projection.{p}": s[f"proj.1.{p}"], f"encoder.layer_norm.{p}": s[f"norm.{p}"]}
    state |= {f"encoder.pos_conv_embed.{k[4:]}": v for k, v in s.items() if k.startswith("pos.conv.")}
    for i, layer in enumerate(student.layers):
        dst = f"encoder.layers.{i}."
        state |= _attention(dst + "attention.", layer, key_bias=True)
        for p in ("weight", "bias"):
            state |= {dst + f"layer_norm.{p}": getattr(layer.norm1, p), dst + f"final_layer_norm.{p}":
                      getattr(layer.norm2, p), dst + f"feed_forward.intermediate_dense.{p}": getattr(layer.linear1, p),
                      dst + f"feed_forward.output_dense.{p}": getattr(layer.linear2, p)}
    model = HubertModel(config)
    model.load_state_dict(state, strict=True)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False,
                                         return_attention_mask=False)
    return model.eval(), extractor


def whisper(student: TransformerStudent) -> tuple[WhisperModel, WhisperFeatureExtractor]:
    """A log-mel student as the encoder of a WhisperModel whose decoder has no layers, a one-token vocabulary and
    zero weights (AutoModel maps Whisper configs to this encoder-decoder class; nothing here decodes)."""
    a = student.arch
    config = WhisperConfig(
        d_model=a.dim, encoder_layers=a.layers, encoder_attention_heads=a.heads, encoder_ffn_dim=a.ffn,
        num_mel_bins=a.n_mels, max_source_positions=WHISPER_POSITIONS, decoder_layers=0,
        decoder_attention_heads=a.heads, decoder_ffn_dim=a.ffn, vocab_size=1, max_target_positions=1,
        pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=0, activation_function="gelu",
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        scale_embedding=False, use_cache=False)
    front = student.frontend
    state = {f"encoder.{c}.{p}": getattr(getattr(front, c), p) for c in ("conv1", "conv2") for p in ("weight", "bias")}
    state["encoder.embed_positions.weight"] = sinusoids(WHISPER_POSITIONS, a.dim)
    state |= {f"encoder.layer_norm.{p}": getattr(student.final_norm, p) for p in ("weight", "bias")}
    for i, layer in enumerate(student.layers):
        dst = f"encoder.layers.{i}."
        state |= _attention(dst + "self_attn.", layer, key_bias=False)
        for p in ("weight", "bias"):
            state |= {dst + f"self_attn_layer_norm.{p}": getattr(layer.norm1, p),
                      dst + f"final_layer_norm.{p}": getattr(layer.norm2, p),
                      dst + f"fc1.{p}": getattr(layer.linear1, p), dst + f"fc2.{p}": getattr(layer.linear2, p)}
    model = WhisperModel(config)
    decoder = {k: torch.zeros_like(v) for k, v in model.state_dict().items() if k.startswith("decoder.")}
    decoder["decoder.layer_norm.weight"] = torch.ones(a.dim)
    model.load_state_dict(state | decoder, strict=True)
    return model.eval(), WhisperFeatureExtractor(feature_size=a.n_mels)


def to_transformers(student: torch.nn.Module) -> tuple[PreTrainedModel, FeatureExtractionMixin]:
    """The transformers model and feature extractor of a transformer student, by its front end."""
    if not isinstance(student, TransformerStudent):
        raise TypeError(f"a {type(student).__name__} has no transformers layout; only transformer students do "
                        "(export it to ONNX)")
    return whisper(student) if student.arch.frontend == "logmel" else hubert(student)


def save_transformers(student: torch.nn.Module, out_dir: str | Path) -> list[Path]:
    """Write config.json, model.safetensors and preprocessor_config.json into `out_dir`."""
    out = Path(out_dir)
    model, extractor = to_transformers(student)
    model.save_pretrained(out)
    extractor.save_pretrained(out)
    return [out / f for f in HF_FILES]
