"""Read and write 16 kHz mono float audio; every reader validates what it returns."""

from __future__ import annotations

import os
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and what to do."""


def resample(wav: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (band-limited), exact for integer rate ratios."""
    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    g = gcd(sr_in, sr_out)
    return resample_poly(wav, sr_out // g, sr_in // g).astype(np.float32)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, min_samples: int = 400) -> np.ndarray:
    """Load any soundfile-readable file as mono float32 at `sample_rate`, or raise AudioError."""
    path = Path(path)
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable input
        raise AudioError(f"{path}: cannot be read as audio ({exc}); replace or remove the file") from exc
    if wav.shape[0] == 0:
        raise AudioError(f"{path}: audio file is empty (0 samples); replace or remove the file")
    wav = wav.mean(axis=1)
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: contains NaN or Inf samples; re-export the file")
    wav = resample(wav, sr, sample_rate)
    if wav.shape[0] < min_samples:
        raise AudioError(
            f"{path}: only {wav.shape[0]} samples at {sample_rate} Hz, shorter than the "
            f"{min_samples}-sample receptive field; drop the file or pad it"
        )
    return wav


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM atomically (temp file + rename) so a killed job leaves no partial WAV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".wav.tmp")
    os.close(fd)
    try:
        sf.write(tmp, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
