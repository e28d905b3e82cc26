"""Resemblyzer speaker encoder: mel, volume, layer outputs and embedding against independent computations."""

import runpy
import warnings

import librosa
import numpy as np
import pytest
import torch

from pipeline.teachers.registry import load_upstream
from pipeline.teachers.resemblyzer import bundled_weights, load_resemblyzer, normalize_volume

HPARAMS = runpy.run_path(str(bundled_weights().parent / "hparams.py"))  # the package's own constants


def _speechlike(seconds: float, seed: int = 0, level: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.9 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 15))
    env = 0.4 + 0.6 * np.sin(2 * np.pi * 2.5 * t) ** 2
    return (level * voiced * env + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def enc():
    return load_resemblyzer()


@pytest.fixture(scope="module")
def reference():
    """The original stacked modules of VoiceEncoder, loaded straight from pretrained.pt."""
    state = torch.load(bundled_weights(), map_location="cpu", weights_only=True)["model_state"]
    lstm = torch.nn.LSTM(HPARAMS["mel_n_channels"], HPARAMS["model_hidden_size"], HPARAMS["model_num_layers"],
                         batch_first=True)
    lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
    linear = torch.nn.Linear(HPARAMS["model_hidden_size"], HPARAMS["model_embedding_size"])
    linear.load_state_dict({"weight": state["linear.weight"], "bias": state["linear.bias"]})
    return lstm.eval(), linear.eval(), state


def _librosa_mel(wav: np.ndarray) -> np.ndarray:
    """resemblyzer.audio.wav_to_mel_spectrogram, written out from the package's hparams."""
    sr = HPARAMS["sampling_rate"]
    return librosa.feature.melspectrogram(
        y=wav, sr=sr, n_fft=int(sr * HPARAMS["mel_window_length"] / 1000),
        hop_length=int(sr * HPARAMS["mel_window_step"] / 1000), n_mels=HPARAMS["mel_n_channels"]).T


def _ref_volume(wav: np.ndarray) -> np.ndarray:
    """resemblyzer.audio.normalize_volume(wav, -30, increase_only=True), written out."""
    rms = np.sqrt(np.mean((wav.astype(np.float64) * (2 ** 15 - 1)) ** 2))
    change = HPARAMS["audio_norm_target_dBFS"] - 20 * np.log10(rms / (2 ** 15 - 1))
    return wav * (10 ** (change / 20)) if change > 0 else wav


def test_shapes_and_frame_count(enc):
    assert (enc.num_layers, enc.dim, enc.kind) == (3, 256, "resemblyzer")
    for n in (1600, 16000, 16159, 16160, 25599, 40001):
        states = enc.hidden_states(torch.from_numpy(_speechlike(n / 16000)[:n]))
        assert len(states) == 3
        assert all(s.shape == (enc.num_frames(n), 256) for s in states)
        assert enc.num_frames(n) == -(-(n // 160) // 2)  # the count Whisper gives: ceil(mel frames / 2)


def test_volume_normalisation_matches_reference():
    quiet = _speechlike(1.0, level=0.002)
    loud = _speechlike(1.0, level=0.5)
    for wav in (quiet, loud):
        np.testing.assert_allclose(normalize_volume(torch.from_numpy(wav)).numpy(), _ref_volume(wav), rtol=1e-5)
    assert not np.allclose(_ref_volume(quiet), quiet)  # quiet clips are raised ...
    np.testing.assert_array_equal(normalize_volume(torch.from_numpy(loud)).numpy(), loud)  # ... loud ones kept
    assert torch.equal(normalize_volume(torch.zeros(800)), torch.zeros(800))


def test_mel_matches_librosa(enc):
    wav = _speechlike(1.3, seed=2)
    ours = enc.mel(torch.from_numpy(wav)[None])[0].numpy()
    ref = _librosa_mel(wav)
    assert ours.shape == ref.shape == (1 + len(wav) // 160, 40)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * ref.max())


def test_layers_match_stacked_lstm(enc, reference):
    """Layer k of ours = the output of the original stacked LSTM cut to k layers, pair-averaged to 50 Hz."""
    _, _, state = reference
    wav = _speechlike(2.1, seed=3)
    mel = torch.from_numpy(_librosa_mel(_ref_volume(wav)))[None]
    ours = enc.hidden_states(torch.from_numpy(wav))
    n = enc.num_frames(len(wav))
    for k in (1, 2, 3):
        stacked = torch.nn.LSTM(40, 256, k, batch_first=True)
        stacked.load_state_dict({f"{w}_l{i}": state[f"lstm.{w}_l{i}"] for i in range(k)
                                 for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        with torch.no_grad():
            out = stacked(mel)[0][0]
        want = 0.5 * (out[0:2 * n:2] + out[1:2 * n:2])
        torch.testing.assert_close(ours[k - 1], want, atol=2e-4, rtol=1e-3)


def test_embedding_equals_voice_encoder_partial(enc, reference):
    """A 160-frame (1.6 s) partial: ours equals VoiceEncoder.forward run from the file's modules."""
    lstm, linear, _ = reference
    wav = _speechlike(1.6, seed=4)[:160 * 160 - 1]  # 1 + n // 160 = 160 mel frames: one full partial
    mel = torch.from_numpy(_librosa_mel(_ref_volume(wav)))[None]
    assert mel.shape == (1, HPARAMS["partials_n_frames"], 40)
    with torch.no_grad():
        _, (hidden, _) = lstm(mel)
        raw = torch.relu(linear(hidden[-1]))
        want = (raw / raw.norm(dim=1, keepdim=True))[0]
    got = enc.embed(torch.from_numpy(wav))
    assert got.shape == (256,) and got.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.dot(got, want).item() > 0.99999
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)


def test_embedding_equals_installed_voice_encoder(enc):
    """The same check against the installed package's own VoiceEncoder and mel code, when it imports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resemblyzer = pytest.importorskip("resemblyzer")
    voice = resemblyzer.VoiceEncoder(device="cpu", verbose=False)
    wav = _speechlike(1.6, seed=5)[:160 * 160 - 1]
    mel = resemblyzer.wav_to_mel_spectrogram(resemblyzer.normalize_volume(wav, -30, increase_only=True))
    with torch.no_grad():
        want = voice(torch.from_numpy(mel)[None])[0]
    torch.testing.assert_close(enc.embed(torch.from_numpy(wav)), want, atol=1e-4, rtol=1e-3)


def test_batch_equals_single(enc):
    wavs = [torch.from_numpy(_speechlike(s, seed=i)) for i, s in enumerate((0.7, 2.3, 1.1))]
    batched = enc.hidden_states_batch(wavs)
    for wav, states in zip(wavs, batched, strict=True):
        for a, b in zip(enc.hidden_states(wav), states, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_registry_kind_and_fingerprint():
    up = load_upstream("spk", {"kind": "resemblyzer"})
    fp = up.fingerprint()
    assert up.name == "spk" and fp["kind"] == "resemblyzer" and fp["num_layers"] == 3 and fp["dim"] == 256
    assert fp["input"].startswith("resemblyzer-mel40") and fp["source"].endswith("pretrained.pt")
    assert len(fp["sha256"]) == 64


def test_no_input_state_so_relative_depths_use_every_layer():
    """State 0 is the first LSTM's output, not an input: depths 1/3, 2/3, 1 select LSTM 1, 2, 3."""
    up = load_upstream("spk", {"kind": "resemblyzer", "layers": {"relative": [1 / 3, 2 / 3, 1.0]}})
    assert up.layers == [0, 1, 2]
    assert up.inner.input_state is False and up.fingerprint()["input_state"] is False
    wav = torch.from_numpy(_speechlike(1.0))
    full = up.inner.hidden_states(wav)
    for a, b in zip(up.hidden_states(wav), full, strict=True):
        torch.testing.assert_close(a, b)


def test_bad_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained.pt"):
        load_resemblyzer(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="model_state"):
        load_resemblyzer(bad)
