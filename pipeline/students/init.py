"""Start a student from its teacher's first layers, as DistilHuBERT does (arXiv 2110.01900, section 3).

A log-mel transformer student has a Whisper encoder's layout, so it takes the teacher's front end (both
convolutions) and its first `arch.layers` layers; the final layer norm is the teacher's too. Training then
only has to learn what the deeper teacher layers add, which is why it learns several times more per
CPU-second than a student from random weights (bench/README.md).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.students.lstm import LSTMStudent
from pipeline.students.transformer import TransformerStudent


def _require(arch: object, want: dict[str, object], what: str) -> None:
    """Refuse an architecture whose fields differ from the teacher's, naming each field and both values."""
    wrong = {k: (getattr(arch, k), v) for k, v in want.items() if getattr(arch, k) != v}
    if wrong:
        raise ValueError(f"to start from this Whisper teacher {what} needs "
                         + ", ".join(f"{k}: {v} (has {have})" for k, (have, v) in wrong.items()))


def whisper_layer_state(layer: nn.Module) -> dict[str, torch.Tensor]:
    """A transformers WhisperEncoderLayer's weights under torch's TransformerEncoderLayer names (pre-norm):
    q, k, v fused into in_proj (Whisper's key projection has no bias: zero)."""
    attn = layer.self_attn
    bias_k = torch.zeros_like(attn.q_proj.bias)
    return {
        "self_attn.in_proj_weight": torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
        "self_attn.in_proj_bias": torch.cat([attn.q_proj.bias, bias_k, attn.v_proj.bias]),
        "self_attn.out_proj.weight": attn.out_proj.weight, "self_attn.out_proj.bias": attn.out_proj.bias,
        "linear1.weight": layer.fc1.weight, "linear1.bias": layer.fc1.bias,
        "linear2.weight": layer.fc2.weight, "linear2.bias": layer.fc2.bias,
        "norm1.weight": layer.self_attn_layer_norm.weight, "norm1.bias": layer.self_attn_layer_norm.bias,
        "norm2.weight": layer.final_layer_norm.weight, "norm2.bias": layer.final_layer_norm.bias,
    }


def init_from_whisper(student: TransformerStudent, encoder: nn.Module) -> dict[str, object]:
    """Copy a transformers WhisperEncoder's front end, first layers and final norm into `student` (in place).

    Returns what was copied, for the student's config.json. Shapes must match: the student's `dim`, `heads`,
    `ffn` and `n_mels` are the teacher's."""
    arch, cfg = student.arch, encoder.config
    _require(arch, {"frontend": "logmel", "dim": cfg.d_model, "heads": cfg.encoder_attention_heads,
                    "ffn": cfg.encoder_ffn_dim, "n_mels": cfg.num_mel_bins}, "the student's arch")
    if arch.layers > len(encoder.layers):
        raise ValueError(f"student has {arch.layers} layers, the teacher only {len(encoder.layers)}")
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(student.frontend, name).load_state_dict(getattr(encoder, name).state_dict())
        for mine, theirs in zip(student.layers, encoder.layers, strict=False):
            mine.load_state_dict({k: v.detach().clone() for k, v in whisper_layer_state(theirs).items()})
        student.final_norm.load_state_dict(encoder.layer_norm.state_dict())
    return {"teacher_layers": list(range(1, arch.layers + 1)), "front_end": True, "final_norm": True}


def init_frontend_from_whisper(student: LSTMStudent, encoder: nn.Module) -> dict[str, object]:
    """Copy a WhisperEncoder's two convolutions into a log-mel LSTM student's front end (in place): an LSTM has
    no layer of the teacher's kind to take, but it can read what the teacher's first layer reads."""
    arch, cfg = student.arch, encoder.config
    _require(arch, {"frontend": "logmel", "conv_channels": cfg.d_model, "n_mels": cfg.num_mel_bins},
             "the LSTM student's arch")
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(student.frontend, name).load_state_dict(getattr(encoder, name).state_dict())
    return {"teacher_layers": [], "front_end": True, "final_norm": False}


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, object]:
    """Initialise `student` from a loaded teacher Upstream; only Whisper encoders share a student layout."""
    encoder = getattr(teacher, "encoder", None)
    name = getattr(teacher, "name", type(teacher).__name__)
    if encoder is None or not hasattr(encoder, "embed_positions"):
        raise ValueError(f"cannot start a {type(student).__name__} from teacher '{name}' "
                         f"({type(teacher).__name__}): only from Whisper teachers")
    if isinstance(student, LSTMStudent):
        return {"teacher": name, **init_frontend_from_whisper(student, encoder)}
    if not isinstance(student, TransformerStudent):
        raise ValueError(f"cannot start a {type(student).__name__} from teacher '{name}'")
    return {"teacher": name, **init_from_whisper(student, encoder)}
