"""Read and write 16 kHz mono float audio; every reader validates what it returns.

Two readers, for two situations:
- `load_audio` (adapters, importing a corpus): any rate, any channel count; down-mixed and resampled
  to 16 kHz. Refuses unreadable, empty, truncated, non-finite and too-short audio (AudioError).
- `load_listed_audio` (stages that read a manifest, e.g. rendering views): the file must be what its
  manifest row says: its own rate (the row's `source_rate`, else 16000 and mono) and, after loading,
  exactly `num_samples` samples. A manifest that claims 16 kHz for an 8 kHz file is an error here,
  while the same file imported through an adapter is converted.
`inspect_audio` runs the cheap checks (header, truncation, non-finite float data, length) without
resampling, for screening a whole corpus when its manifest is prepared (pipeline/corpus/screen.py).
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
# Shortest clip every upstream accepts: the teachers refuse clips under 0.1 s (Upstream.min_samples);
# the students' CNN front end needs 400 samples (RECEPTIVE_FIELD). Checked against both in tests/faults.
MIN_SAMPLES = SAMPLE_RATE // 10
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_UNKNOWN_SIZE = 0xFFFFFFFF  # RIFF size field of streamed / RF64 files: the length is not in the header


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and what to do, `reason` is a short code."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds: its own rate, channel count and frames, and its length at 16 kHz."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    subtype: str

    @property
    def num_samples(self) -> int:
        """Samples after down-mixing and resampling to 16 kHz (what load_audio returns)."""
        return resampled_length(self.frames, self.sample_rate)


def resampled_length(frames: int, sr_in: int, sr_out: int = SAMPLE_RATE) -> int:
    """Output length of `resample` (scipy resample_poly: ceil(frames * up / down))."""
    if sr_in == sr_out:
        return frames
    g = gcd(sr_in, sr_out)
    return -(-frames * (sr_out // g) // (sr_in // g))  # integer ceil


def resample(wav: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (band-limited), exact for integer rate ratios."""
    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    g = gcd(sr_in, sr_out)
    from scipy.signal import resample_poly  # imported here: 0.8 s that every pipeline job would pay

    return resample_poly(wav, sr_out // g, sr_in // g).astype(np.float32)


def _riff_shortfall(path: Path) -> tuple[int, int] | None:
    """(declared, present) data bytes of a RIFF/RIFX WAVE file whose data chunk is cut short, else None."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        fmt = "<I" if head[:4] == b"RIFF" else ">I"
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            (length,) = struct.unpack(fmt, chunk[4:])
            if chunk[:4] == b"data":
                present = size - pos - 8
                if length != _UNKNOWN_SIZE and length > present:
                    return length, present
                return None
            pos += 8 + length + (length & 1)
    return None


def _probe(path: Path) -> AudioInfo:
    """Header checks without decoding the data: present, non-empty, readable, not truncated."""
    if not path.is_file():
        raise AudioError(f"{path}: file not found; fix the path or remove the row", "missing")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); replace or remove it", "empty")
    try:
        with sf.SoundFile(str(path)) as f:
            info = AudioInfo(str(path), int(f.samplerate), int(f.channels), int(f.frames), str(f.subtype))
            _check_tail(f, path)
    except AudioError:
        raise
    except Exception as exc:  # soundfile raises several types for unreadable input
        raise AudioError(f"{path}: not readable as audio ({exc}); replace or remove the file", "unreadable") from exc
    short = _riff_shortfall(path)
    if short:
        raise AudioError(f"{path}: truncated WAV: its header declares {short[0]} data bytes but the file holds "
                         f"{short[1]}; re-copy or re-export the file", "truncated")
    if info.frames == 0:
        raise AudioError(f"{path}: holds no samples (a header only); replace or remove the file", "empty")
    return info


def _too_short(path: Path, n: int, min_samples: int, rate: int = SAMPLE_RATE) -> AudioError:
    return AudioError(f"{path}: {n} samples at {rate} Hz ({n / rate:.3f} s), shorter than the "
                      f"{min_samples}-sample minimum the upstreams' receptive fields need; drop the file or pad it",
                      "too_short")


def inspect_audio(path: str | Path, min_samples: int = MIN_SAMPLES) -> AudioInfo:
    """Cheap integrity checks of one file, or AudioError naming it: readable, not empty, not truncated,
    finite (float formats only: integer PCM cannot hold NaN), at least `min_samples` samples at 16 kHz."""
    path = Path(path)
    info = _probe(path)
    if info.subtype in _FLOAT_SUBTYPES:
        _check_finite(_read_all(path), path)
    if info.num_samples < min_samples:
        raise _too_short(path, info.num_samples, min_samples)
    return info


def _check_tail(f: sf.SoundFile, path: Path) -> None:
    """Read the last frames of an open file; AudioError if the data ends before the header says (truncated)."""
    if f.frames == 0:
        return
    n = min(f.frames, 1024)
    try:
        f.seek(f.frames - n)
        got = f.read(n, dtype="float32", always_2d=True).shape[0]
    except Exception as exc:  # the decoder cannot reach the end the header promises
        raise AudioError(f"{path}: truncated: its header declares {f.frames} frames but the data cannot be "
                         f"read to the end ({exc}); re-copy or re-export the file", "truncated") from exc
    if got != n:
        raise AudioError(f"{path}: truncated: its header declares {f.frames} frames but the data ends "
                         "earlier; re-copy or re-export the file", "truncated")


def _read_all(path: Path) -> np.ndarray:
    try:
        return sf.read(str(path), dtype="float32", always_2d=True)[0]
    except Exception as exc:  # a decoder error part-way through the data
        raise AudioError(f"{path}: data cannot be decoded ({exc}); re-copy or re-export the file",
                         "unreadable") from exc


def _check_finite(wav: np.ndarray, path: Path) -> None:
    bad = ~np.isfinite(wav)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise AudioError(f"{path}: {int(bad.sum())} NaN or Inf sample value(s) (the first at frame {first}); "
                         "re-export the file", "non_finite")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, min_samples: int = 400) -> np.ndarray:
    """Load any soundfile-readable file as mono float32 at `sample_rate` (down-mixed, resampled), or raise
    AudioError: unreadable, empty, truncated, NaN/Inf, or shorter than `min_samples` after resampling."""
    path = Path(path)
    wav = _decode(path, _probe(path), sample_rate)
    if wav.shape[0] < min_samples:
        raise _too_short(path, wav.shape[0], min_samples, sample_rate)
    return wav


def _decode(path: Path, info: AudioInfo, sample_rate: int) -> np.ndarray:
    """All of a probed file, checked finite, down-mixed and resampled."""
    wav = _read_all(path)
    _check_finite(wav, path)
    return resample(wav.mean(axis=1), info.sample_rate, sample_rate)


def load_listed_audio(path: str | Path, num_samples: int, source_rate: int | None = None,
                      min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Load the audio of one manifest row, checking the file is what the row claims (see module doc)."""
    path = Path(path)
    info = _probe(path)
    expect = int(source_rate) if source_rate else SAMPLE_RATE
    if info.sample_rate != expect or (not source_rate and info.channels != 1):
        listed = f"{source_rate} Hz (source_rate)" if source_rate else f"{SAMPLE_RATE} Hz mono"
        raise AudioError(
            f"{path}: the file is {info.sample_rate} Hz with {info.channels} channel(s), but its manifest row "
            f"lists it as {listed}; prepare the corpus through an adapter (it records source_rate, and "
            "audio is resampled and down-mixed on reading) or convert the file to 16 kHz mono", "rate_mismatch")
    wav = _decode(path, info, SAMPLE_RATE)
    if len(wav) < min_samples:
        raise _too_short(path, len(wav), min_samples)
    if len(wav) != num_samples:
        raise AudioError(f"{path}: {len(wav)} samples at {SAMPLE_RATE} Hz, but its manifest row says "
                         f"{num_samples}; the file changed since the manifest was written: prepare the "
                         "manifest again", "length_mismatch")
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
