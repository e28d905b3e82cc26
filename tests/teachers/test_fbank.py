"""Log-mel filterbank baseline: against a frame-by-frame numpy Kaldi fbank, tone and delta properties, contract."""

import hashlib

import numpy as np
import pytest
import torch

from pipeline.students.frontend import conv_frames
from pipeline.teachers.base import align_lengths
from pipeline.teachers.fbank import FbankSettings, FbankUpstream, deltas
from pipeline.teachers.registry import load_upstream


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)


def _kaldi_banks(n_mels: int = 80) -> np.ndarray:
    """torchaudio.compliance.kaldi.get_mel_banks written out: triangles in mel space over 20 Hz-8 kHz,
    FFT bins 0..255 of 512 (the Nyquist bin gets no weight)."""
    lo, hi = _mel(20.0), _mel(8000.0)
    step = (hi - lo) / (n_mels + 1)
    bins = _mel(np.arange(256) * 16000 / 512)
    out = np.zeros((257, n_mels))
    for m in range(n_mels):
        left, centre, right = lo + m * step, lo + (m + 1) * step, lo + (m + 2) * step
        out[:256, m] = np.maximum(0.0, np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)))
    return out


def _centres_hz(n_mels: int = 80) -> np.ndarray:
    lo, hi = _mel(20.0), _mel(8000.0)
    mels = lo + (np.arange(n_mels) + 1) * (hi - lo) / (n_mels + 1)
    return 700.0 * (np.exp(mels / 1127.0) - 1.0)


def _reference(wav: np.ndarray) -> np.ndarray:
    """Kaldi fbank one frame at a time (snip_edges, 25 ms / 20 ms), deltas over +-2 frames, utterance CMVN."""
    i = np.arange(400)
    povey = (0.5 - 0.5 * np.cos(2 * np.pi * i / 399)) ** 0.85
    banks = _kaldi_banks()
    rows = []
    for t in range(1 + (len(wav) - 400) // 320):
        x = wav[320 * t:320 * t + 400].astype(np.float64)
        x = x - x.mean()
        x = np.concatenate([[x[0] * 0.03], x[1:] - 0.97 * x[:-1]])
        power = np.abs(np.fft.rfft(x * povey, 512)) ** 2
        rows.append(np.log(np.maximum(power @ banks, np.finfo(np.float32).eps)))
    feats = [np.array(rows)]
    for _ in range(2):
        p = np.pad(feats[-1], ((2, 2), (0, 0)), mode="edge")
        feats.append((p[3:-1] - p[1:-3] + 2 * (p[4:] - p[:-4])) / 10)
    x = np.concatenate(feats, axis=1)
    return (x - x.mean(0)) / (x.std(0, ddof=1) + 1e-10)


def _speechlike(seconds: float, seed: int = 0, level: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    return (level * voiced + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def fb():
    return FbankUpstream()


def test_matches_numpy_kaldi_fbank(fb):
    wav = _speechlike(1.37, seed=1)
    (ours,) = fb.hidden_states(torch.from_numpy(wav))
    ref = _reference(wav)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape == (fb.num_frames(len(wav)), 240)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_tone_peaks_in_its_mel_bin(fb):
    """A pure tone at a filter's centre frequency puts the frame's largest log-mel energy in that filter."""
    t = np.arange(16000) / 16000
    centres = _centres_hz()
    for m in (5, 30, 55, 75):
        mel = fb.log_mel(torch.from_numpy(0.3 * np.sin(2 * np.pi * centres[m] * t)))
        assert (mel.argmax(1) == m).all(), (m, mel.argmax(1).unique())


def test_deltas_of_stationary_and_linear_features():
    """A 1 kHz tone repeats every hop (20 periods of 16 samples): identical frames, zero deltas; deltas of a
    linear ramp equal its slope away from the edges."""
    fb = FbankUpstream()
    mel = fb.log_mel(torch.from_numpy(0.3 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000)))
    assert torch.allclose(mel, mel[:1].expand_as(mel), atol=1e-9)
    assert deltas(mel).abs().max() < 1e-9
    ramp = 0.5 * torch.arange(10, dtype=torch.float64)[:, None].expand(10, 3)
    torch.testing.assert_close(deltas(ramp)[2:-2], torch.full((6, 3), 0.5, dtype=torch.float64))


def test_frame_count_is_the_50hz_contract(fb):
    for n in (1600, 1919, 1920, 16000, 16159, 16399, 16400, 40001):
        (states,) = fb.hidden_states(torch.from_numpy(_speechlike(3.0)[:n]))
        assert states.shape == (fb.num_frames(n), 240) and fb.num_frames(n) == 1 + (n - 400) // 320
        assert fb.num_frames(n) == conv_frames(n)  # the students' count (and HuBERT's)
        whisper = -(-(n // 160) // 2)
        assert len(align_lengths([torch.zeros(fb.num_frames(n)), torch.zeros(whisper)])[0]) == min(
            fb.num_frames(n), whisper)
    assert fb.num_frames(399) == 0
    with pytest.raises(ValueError, match="shorter"):
        fb.hidden_states(torch.zeros(1599))


def test_batch_equals_single_and_cmvn_is_per_utterance(fb):
    wavs = [torch.from_numpy(_speechlike(s, seed=i, level=lv))
            for i, (s, lv) in enumerate(((0.7, 0.05), (2.3, 0.8), (1.1, 0.001)))]
    batched = fb.hidden_states_batch(wavs)
    for wav, states in zip(wavs, batched, strict=True):
        assert torch.equal(fb.hidden_states(wav)[0], states[0])
        assert states[0].mean(0).abs().max() < 1e-5 and (states[0].std(0) - 1).abs().max() < 1e-4
    louder = fb.hidden_states(wavs[0] * 10)[0]
    torch.testing.assert_close(louder, batched[0][0], atol=1e-4, rtol=0)  # gain is a log offset: CMVN removes it


def test_registry_no_parameters_and_fingerprint():
    up = load_upstream("fb", {"kind": "fbank"})
    assert (up.name, up.kind, up.num_layers, up.dim) == ("fb", "fbank", 1, 240)
    assert sum(p.numel() for p in up.parameters()) == 0 and up.device == torch.device("cpu")
    fp = up.fingerprint()
    assert fp["sha256"] == hashlib.sha256(b"").hexdigest()  # an empty state dict: the settings identify it
    assert fp["fbank"] == {"n_mels": 80, "window": 400, "hop": 320, "n_fft": 512, "low_hz": 20.0,
                           "preemphasis": 0.97, "delta_order": 2, "delta_width": 2, "cmvn": True}
    other = FbankUpstream(FbankSettings(n_mels=40, delta_order=0), name="fb")
    assert other.dim == 40 and other.fingerprint() != fp and other.fingerprint()["sha256"] == fp["sha256"]
    assert load_upstream("fb", {"kind": "fbank", "layers": [0]}).num_layers == 1
