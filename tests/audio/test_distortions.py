"""Distortion primitives measured against their definitions, and recipe rendering determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from pipeline.audio import distortions as d

SR = 16000


def speech_like(n: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonic tone with an envelope: a deterministic stand-in for voiced speech."""
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    harmonics = enumerate([180, 360, 720, 1440], 1)
    wav = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in harmonics)
    return (0.2 * wav * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def band_energy(wav: np.ndarray, lo: float, hi: float) -> float:
    """Energy in [lo, hi) Hz as a fraction of the total, from a Hann-windowed FFT (little leakage)."""
    spec = np.abs(np.fft.rfft(wav.astype(np.float64) * np.hanning(len(wav)))) ** 2
    f = np.fft.rfftfreq(len(wav), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def test_stable_seed_is_pinned():
    assert d.stable_seed(1234, "indomain", "u0", 0) == 5568099965232050110
    assert d.stable_seed(1234, "indomain", "u0", 1) != d.stable_seed(1234, "indomain", "u0", 0)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.3, 20.0])
def test_add_noise_hits_the_snr_exactly(snr_db):
    wav = speech_like()
    noise = d.coloured_noise(len(wav), 1.0, np.random.default_rng(1)) * 3.0
    mixed = d.add_noise(wav, noise, snr_db)
    added = mixed.astype(np.float64) - wav.astype(np.float64)
    measured = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2) / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=1e-4)
    assert mixed.dtype == np.float32 and mixed.shape == wav.shape


def test_add_noise_leaves_silence_alone_and_checks_length():
    silent = np.zeros(800, np.float32)
    assert np.array_equal(d.add_noise(silent, np.ones(800, np.float32), 10.0), silent)
    with pytest.raises(ValueError, match="cut the noise"):
        d.add_noise(silent, np.ones(10, np.float32), 10.0)


def test_segment_wraps_cyclically():
    src = np.arange(5, dtype=np.float32)
    assert d.segment(src, 13, 7).tolist() == [3, 4, 0, 1, 2, 3, 4]


def test_reverberate_keeps_length_level_and_alignment():
    rng = np.random.default_rng(2)
    wav = d.coloured_noise(SR, 0.0, rng)
    tail = 0.3 * rng.standard_normal(3000) * np.exp(-np.arange(3000) / 600)
    rir = np.concatenate([np.zeros(30), [1.0], tail])
    wet = d.reverberate(wav, rir)
    assert wet.shape == wav.shape
    assert d.power(wet) == pytest.approx(d.power(wav), rel=1e-5)
    lags = np.arange(-50, 51)
    xcorr = [np.dot(np.roll(wav, k), wet) for k in lags]
    assert lags[int(np.argmax(xcorr))] == 0


def test_band_limit_attenuates_out_of_band_energy():
    white = d.coloured_noise(2 * SR, 0.0, np.random.default_rng(3))
    out = d.band_limit(white, 300.0, 3000.0)
    for lo, hi in [(0, 100), (6000, SR // 2)]:
        gain = band_energy(out, lo, hi) * d.power(out) / (band_energy(white, lo, hi) * d.power(white))
        assert gain < 1e-6  # below -60 dB
    assert band_energy(out, 300, 3000) > 0.95
    low = d.band_limit(white, 0.0, 2000.0)
    assert band_energy(low, 4000, SR / 2) < 1e-6


def gain_db(out: np.ndarray, ref: np.ndarray, lo: float, hi: float) -> float:
    """Power of `out` over power of `ref` in [lo, hi) Hz, in dB (FFT power)."""
    return 10 * np.log10(band_energy(out, lo, hi) * d.power(out) / (band_energy(ref, lo, hi) * d.power(ref)))


def test_band_reject_attenuates_the_stop_band_and_keeps_the_rest():
    white = d.coloured_noise(4 * SR, 0.0, np.random.default_rng(8))
    out = d.band_reject(white, 1000.0, 2000.0)
    assert out.shape == white.shape and out.dtype == np.float32
    assert gain_db(out, white, 1200, 1800) < -40
    for lo, hi in [(100, 600), (3000, 7500)]:
        assert abs(gain_db(out, white, lo, hi)) < 0.5
    with pytest.raises(ValueError, match="regenerate the plan"):
        d.band_reject(white, 0.0, 500.0)


def peak_hz(wav: np.ndarray) -> float:
    """Frequency of the strongest FFT bin, refined by a parabola through the log magnitudes around it."""
    spec = np.abs(np.fft.rfft(wav.astype(np.float64) * np.hanning(len(wav))))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / len(wav)


@pytest.mark.parametrize("semitones", [-5.0, -1.5, 2.0, 4.25])
def test_pitch_shift_scales_the_fundamental(semitones):
    t = np.arange(2 * SR) / SR
    sine = (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    out = d.pitch_shift(sine, semitones)
    assert out.shape == sine.shape and out.dtype == np.float32
    assert peak_hz(out) / peak_hz(sine) == pytest.approx(2 ** (semitones / 12), rel=1e-3)
    assert d.power(out) == pytest.approx(d.power(sine), rel=1e-4)
    assert d.pitch_shift(sine, semitones).tobytes() == out.tobytes()
    assert d.pitch_shift(sine, 0.0).tobytes() == sine.tobytes()


def test_telephone_removes_energy_above_4khz():
    white = 0.1 * d.coloured_noise(2 * SR, 0.0, np.random.default_rng(4))
    out = d.telephone(white)
    assert out.shape == white.shape and out.dtype == np.float32
    assert band_energy(out, 4000, SR / 2) < 1e-5
    assert band_energy(out, 300, 3400) > 0.99


def test_mu_law_is_8_bit_and_saturates():
    x = np.linspace(-1.5, 1.5, 10001).astype(np.float32)
    y = d.mu_law(x)
    assert len(np.unique(y)) <= 256
    assert np.abs(y).max() <= 1.0 + 1e-6
    small = np.abs(x) < 0.5
    assert np.max(np.abs(y[small] - x[small])) < 0.02


def test_clip_is_relative_to_peak():
    wav = speech_like()
    out = d.clip(wav, 0.25)
    assert np.abs(out).max() == pytest.approx(0.25 * np.abs(wav).max())


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_slope_matches_exponent(exponent):
    noise = d.coloured_noise(4 * SR, exponent, np.random.default_rng(5))
    assert np.sqrt(d.power(noise)) == pytest.approx(1.0, rel=1e-5)
    f, p = welch(noise, SR, nperseg=4096)
    keep = (f > 50) & (f < 6000)
    slope = np.polyfit(np.log(f[keep]), np.log(p[keep]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


def toy_banks() -> d.Banks:
    rng = np.random.default_rng(6)
    decay = np.exp(-np.arange(1999) / 300)
    rirs = {f: [np.concatenate([[1.0], 0.2 * rng.standard_normal(1999) * decay]).astype(np.float32)
                for _ in range(3)] for f in ("indomain", "ood")}
    noises = {"pink_00": d.coloured_noise(SR, 1.0, rng), "sfx_00": d.coloured_noise(7000, 0.5, rng)}
    return d.Banks(rirs, noises)


STEPS = dict.fromkeys(d.STEPS)
PINK = {"type": "pink", "source": "pink_00", "offset": 12345, "snr_db": 10.0}
RECIPES = [
    {**STEPS, "family": "indomain", "noise": PINK, "reverb": {"rir": 2}},
    {**STEPS, "family": "indomain", "noise": PINK, "pitch": -3.5},
    {**STEPS, "family": "indomain", "bandreject": [900, 1700]},
    {**STEPS, "family": "ood", "noise": {"type": "sfx", "source": "sfx_00", "offset": 99, "snr_db": -3.0},
     "codec": "telephone", "clip": 0.3},
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_apply_recipe_is_deterministic(recipe):
    wav, banks = speech_like(), toy_banks()
    a, b = d.apply_recipe(wav, recipe, banks), d.apply_recipe(wav.copy(), dict(recipe), banks)
    assert a.tobytes() == b.tobytes()
    assert a.shape == wav.shape and a.dtype == np.float32
    assert np.abs(a).max() <= 1.0
    assert not np.array_equal(a, wav)


def test_apply_recipe_identity_and_peak_guard():
    wav = speech_like()
    assert d.apply_recipe(wav, {}, None).tobytes() == wav.tobytes()
    loud = 0.9 * wav / np.abs(wav).max()
    recipe = {**RECIPES[0], "noise": {**RECIPES[0]["noise"], "snr_db": -10.0}}
    out = d.apply_recipe(loud, recipe, toy_banks())
    assert np.abs(out).max() == pytest.approx(1.0, abs=1e-6)
    undistorted = {**STEPS, "family": "indomain"}  # drew "none" for both distortions
    assert d.is_identity(undistorted) and d.is_identity({}) and not d.is_identity(RECIPES[2])
    assert d.apply_recipe(wav, undistorted, None).tobytes() == wav.tobytes()


def test_apply_recipe_refuses_a_plan_of_another_version():
    old = {**RECIPES[0], "band": [120, 5000]}  # the band-pass of earlier in-domain plans
    with pytest.raises(ValueError, match=r"\['band'\] are unknown.*regenerate it"):
        d.apply_recipe(speech_like(), old, toy_banks())


def test_apply_recipe_names_missing_bank_entries():
    recipe = {**RECIPES[0], "noise": {**RECIPES[0]["noise"], "source": "pink_07"}}
    with pytest.raises(ValueError, match="pink_07.*noise-bank"):
        d.apply_recipe(speech_like(), recipe, toy_banks())
    recipe = {**RECIPES[0], "reverb": {"rir": 40}}
    with pytest.raises(ValueError, match="rir-bank"):
        d.apply_recipe(speech_like(), recipe, toy_banks())
