"""Length-preserving pitch shift: a phase-vocoder time stretch, then resampling back to the input length.

Stretching by r = 2**(semitones / 12) keeps the pitch and makes the signal r times longer; resampling that to
the original number of samples plays it r times faster, which scales every frequency by r. Pure numpy plus
scipy's FFT resampler: deterministic, no randomness (arXiv 2210.07978 lists pitch shift among its
non-additive distortions).
"""

from __future__ import annotations

import numpy as np

N_FFT = 1024  # 64 ms at 16 kHz: resolves the harmonics of low voices
HOP = N_FFT // 4


def _window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1]  # periodic Hann: overlap-adds to a constant at hop N_FFT / 4


def stft(wav: np.ndarray) -> np.ndarray:
    """(frames, N_FFT // 2 + 1) complex spectra of Hann-windowed frames, the signal centred by padding."""
    x = np.pad(wav.astype(np.float64), (N_FFT // 2, N_FFT))
    starts = np.arange(0, len(x) - N_FFT + 1, HOP)
    return np.fft.rfft(x[starts[:, None] + np.arange(N_FFT)] * _window(), axis=1)


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of `stft`, cut to `length` samples."""
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * _window()
    total = HOP * (len(frames) - 1) + N_FFT
    out, norm = np.zeros(total), np.zeros(total)
    for i, frame in enumerate(frames):
        out[i * HOP:i * HOP + N_FFT] += frame
        norm[i * HOP:i * HOP + N_FFT] += _window() ** 2
    out /= np.maximum(norm, 1e-8)
    return out[N_FFT // 2:N_FFT // 2 + length]


def time_stretch(wav: np.ndarray, factor: float) -> np.ndarray:
    """`wav` made `factor` times longer at the same pitch (phase vocoder: magnitudes interpolated between
    frames, phases advanced by each bin's measured frequency)."""
    spec = stft(wav)
    spec = np.vstack([spec, np.zeros_like(spec[:1])])
    steps = np.arange(0, len(spec) - 1, 1.0 / factor)
    i, frac = steps.astype(int), (steps % 1.0)[:, None]
    mag = (1 - frac) * np.abs(spec[i]) + frac * np.abs(spec[i + 1])
    expected = 2 * np.pi * HOP * np.arange(spec.shape[1]) / N_FFT
    delta = np.angle(spec[i + 1]) - np.angle(spec[i]) - expected
    delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
    phase = np.angle(spec[0]) + np.vstack([np.zeros_like(expected), np.cumsum(expected + delta, axis=0)[:-1]])
    return istft(mag * np.exp(1j * phase), int(round(len(wav) * factor)))


def pitch_shift(wav: np.ndarray, semitones: float) -> np.ndarray:
    """Every frequency scaled by 2**(semitones / 12); same length and RMS as the input."""
    if semitones == 0 or len(wav) == 0:
        return wav.astype(np.float32)
    from scipy.signal import resample  # imported here, where it is used, like pipeline.audio.io.resample

    stretched = time_stretch(wav, 2.0 ** (semitones / 12.0))
    out = resample(stretched, len(wav))
    p_in, p_out = float(np.mean(np.square(wav, dtype=np.float64))), float(np.mean(np.square(out)))
    if p_out > 0.0:
        out *= np.sqrt(p_in / p_out)
    return out.astype(np.float32)
