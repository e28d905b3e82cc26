"""The Whisper-layout student: its log-mel, its start from a Whisper teacher, padding and crop positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from pipeline.students.checkpoint import StudentUpstream
from pipeline.students.init import init_from_teacher, init_from_whisper
from pipeline.students.logmel import logmel_frames, sinusoids
from pipeline.students.lstm import LSTMArch, LSTMStudent
from pipeline.students.transformer import TransformerArch, TransformerStudent
from pipeline.teachers.whisper import WhisperUpstream

ARCH = {"frontend": "logmel", "dim": 32, "heads": 2, "ffn": 64, "layers": 2, "dropout": 0.0}


def _teacher(layers: int = 4) -> WhisperUpstream:
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=layers, encoder_attention_heads=2, encoder_ffn_dim=64,
                           num_mel_bins=80, max_source_positions=1500)
    encoder = WhisperEncoder(config).eval()
    encoder.embed_positions.weight.data.copy_(sinusoids(1500, 32))  # Whisper's table (random in a fresh model)
    return WhisperUpstream(encoder, WhisperFeatureExtractor(feature_size=80), name="teacher", kind="hf",
                           source="tiny")


def _student(**arch) -> TransformerStudent:
    return TransformerStudent(TransformerArch(**{**ARCH, **arch})).eval()


def _wav(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_log_mel_equals_whisper_feature_extractor():
    wav = _wav(23456)
    ours = _student().frontend.log_mel(wav)
    theirs = WhisperFeatureExtractor(feature_size=80)(wav.numpy(), sampling_rate=16000, padding="longest",
                                                      truncation=False, return_tensors="np")["input_features"][0]
    assert ours.shape == theirs.shape == (80, 23456 // 160)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_started_student_reproduces_the_teachers_first_layers():
    teacher, student = _teacher(), _student()
    done = init_from_teacher(student, teacher)
    assert done["teacher_layers"] == [1, 2]
    wav = _wav(20000)
    with torch.no_grad():
        ref = teacher.hidden_states(wav)
        states, mask = student(wav[None], torch.tensor([wav.numel()]))
        last = teacher.encoder.layer_norm(ref[2])
    assert states[0].shape[1] == ref[0].shape[0] == logmel_frames(20000) and bool(mask.all())
    for mine, theirs in ((states[0][0], ref[0]), (states[1][0], ref[1]), (states[2][0], last)):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_batched_equals_alone_and_upstream_frames():
    student = _student()
    init_from_whisper(student, _teacher().encoder)
    up = StudentUpstream(student, "s", "here")
    wavs = [_wav(16000, 2), _wav(9000, 3), _wav(12345, 4)]
    batched = up.hidden_states_batch(wavs)
    for wav, states in zip(wavs, batched, strict=True):
        alone = up.hidden_states(wav)
        assert alone[-1].shape[0] == up.num_frames(wav.numel()) == logmel_frames(wav.numel())
        for a, b in zip(alone, states, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_crop_offset_gives_the_crops_positions_in_the_utterance():
    """The front end is local, so a crop placed at its offset gives the whole clip's frames there."""
    student = _student()
    wav = _wav(32000)
    start, frames = 30, 20
    crop = wav[start * 320:(start + frames) * 320 + 80]
    with torch.no_grad():
        whole, _ = student.embed(wav[None], torch.tensor([wav.numel()]))
        placed, _ = student.embed(crop[None], torch.tensor([crop.numel()]), torch.tensor([start]))
        at_zero, _ = student.embed(crop[None], torch.tensor([crop.numel()]))
    inner = slice(2, frames - 2)  # away from the convolutions' edges
    torch.testing.assert_close(placed[0, inner], whole[0, start + 2:start + frames - 2], atol=1e-4, rtol=1e-4)
    assert (at_zero[0, inner] - whole[0, start + 2:start + frames - 2]).abs().max() > 0.1


def test_init_refuses_a_student_of_another_shape():
    with pytest.raises(ValueError, match="dim: 32"):
        init_from_whisper(_student(dim=64, ffn=64), _teacher().encoder)
    with pytest.raises(ValueError, match="only 4"):
        init_from_whisper(_student(layers=5), _teacher().encoder)
    with pytest.raises(ValueError, match="only from Whisper teachers"):
        init_from_teacher(_student(), torch.nn.Linear(2, 2))


def test_lstm_student_reads_the_teachers_front_end_without_positions():
    teacher = _teacher()
    student = LSTMStudent(LSTMArch(frontend="logmel", conv_channels=32, dim=8, layers=1, dropout=0.0)).eval()
    done = init_from_teacher(student, teacher)
    assert done["front_end"] and done["teacher_layers"] == []
    wav = _wav(20000)
    with torch.no_grad():
        ref = teacher.hidden_states(wav)[0]
        feats, mask = student.frontend(wav[None], torch.tensor([wav.numel()]))
        states, _ = student(wav[None], torch.tensor([wav.numel()]))
    positions = teacher.encoder.embed_positions.weight[:ref.shape[0]]
    torch.testing.assert_close(feats[0], ref - positions, atol=1e-4, rtol=1e-4)
    assert states[-1].shape == (1, logmel_frames(20000), 16) and student.num_frames(20000) == ref.shape[0]
    with pytest.raises(ValueError, match="conv_channels: 32"):
        init_from_teacher(LSTMStudent(LSTMArch(frontend="logmel", conv_channels=16, dim=8, layers=1)), teacher)
