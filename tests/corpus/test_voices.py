"""The voice bank: enough distinct voices, each audibly different, all through one synthesize call."""

import numpy as np
import pytest

from pipeline.corpus.voices import VoiceError, select_voices, synthesize, voice_bank


def test_bank_has_distinct_voices_from_all_engines():
    bank = voice_bank()
    assert len({(v.engine, v.name, v.pitch, v.rate) for v in bank}) >= 28
    assert len({v.speaker for v in bank}) == len(bank)
    assert {v.engine for v in select_voices(4)} == {"espeak", "flite", "festival", "piper"}
    with pytest.raises(VoiceError, match="voice bank has"):
        select_voices(len(bank) + 1)


def _ltas(wav: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(wav, 512)[::256] * np.hanning(512)
    spec = np.log(np.abs(np.fft.rfft(frames)).mean(axis=0) + 1e-6)
    return spec - spec.mean()


def test_all_voices_sound_different():
    wavs = {v.speaker: synthesize(v, "seven") for v in voice_bank()}
    for speaker, wav in wavs.items():
        assert wav.dtype == np.float32 and np.isfinite(wav).all(), speaker
        assert 1600 < len(wav) < 32000 and abs(np.abs(wav).max() - 0.9) < 1e-3, speaker
    spectra = {k: _ltas(w) for k, w in wavs.items()}
    names = list(spectra)
    closest = min(np.sqrt(((spectra[a] - spectra[b]) ** 2).mean())
                  for i, a in enumerate(names) for b in names[i + 1:])
    assert closest > 0.1  # RMS log-spectral distance; the nearest pair measured ~0.23


def test_rate_and_pitch_scale_take_effect():
    for voice in select_voices(4):
        slow = synthesize(voice, "turn on the lights", rate_scale=0.8)
        fast = synthesize(voice, "turn on the lights", rate_scale=1.25)
        assert len(slow) > 1.2 * len(fast), voice.speaker
