"""Deterministic distortions of 16 kHz mono audio and `apply_recipe`, which renders one view copy.

Every function is a pure numpy function of its arguments (randomness only through a passed-in
`numpy.random.Generator`), so a view copy is a pure function of (recipe, banks, clean audio).

Recipe (JSON-able dict; `{}`, or every step None, is the identity, used by the clean view):
    {"family": "indomain" | "ood",
     "noise": {"type": "pink", "source": "pink_01", "offset": 123456, "snr_db": 12.34} | None,
     "reverb": {"rir": 17} | None,         # index into the RIR bank of the recipe's family
     "pitch": -2.5 | None,                 # pitch shift in semitones, length kept (in-domain)
     "bandreject": [lo_hz, hi_hz] | None,  # Butterworth band-stop (in-domain)
     "codec": "telephone" | None,          # 300-3400 Hz, 8 kHz, 8-bit mu-law (out-of-domain channel)
     "clip": 0.3 | None}                   # clip at this fraction of the signal's peak
Order: reverb -> pitch -> noise (SNR against the reverberant or shifted speech) -> band-reject / codec
-> clip. The noise segment starts at `offset` modulo the source length and wraps around cyclically.
The output is divided by its peak only when the peak exceeds 1.0 (it would clip in 16-bit PCM);
otherwise the level of the clean input is kept. scipy.signal is imported where it is used (0.8 s).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio.io import SAMPLE_RATE, resample
from pipeline.audio.pitch import pitch_shift

MU = 255
TELEPHONE_BAND = (300.0, 3400.0)
TELEPHONE_RATE = 8000
STEPS = ("noise", "reverb", "pitch", "bandreject", "codec", "clip")  # recipe keys that change the audio


def stable_seed(*parts: object) -> int:
    """63-bit seed from a SHA-256 of the parts' text: stable across runs and Python versions."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def power(x: np.ndarray) -> float:
    """Mean square in float64 (the P in SNR = 10 log10(Ps / Pn))."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Scale `noise` (same length as `wav`) so that 10 log10(Ps/Pn) == snr_db exactly, and add it.

    Silent speech or silent noise has no defined SNR: the speech is returned unchanged.
    """
    if noise.shape != wav.shape:
        raise ValueError(f"noise has shape {noise.shape}, speech {wav.shape}; cut the noise to length first")
    ps, pn = power(wav), power(noise)
    if ps == 0.0 or pn == 0.0:
        return wav.astype(np.float32)
    gain = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (wav.astype(np.float64) + gain * noise.astype(np.float64)).astype(np.float32)


def segment(source: np.ndarray, offset: int, n: int) -> np.ndarray:
    """`n` samples of `source` starting at `offset` modulo its length, wrapping around."""
    return np.take(source, (offset + np.arange(n)) % len(source))


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with `rir`, aligned on its direct path (peak), same length and RMS as the input."""
    from scipy.signal import fftconvolve

    delay = int(np.argmax(np.abs(rir)))
    wet = fftconvolve(wav.astype(np.float64), rir.astype(np.float64))[delay:delay + len(wav)]
    p_in, p_out = power(wav), power(wet)
    if p_out > 0.0:
        wet *= np.sqrt(p_in / p_out)
    return wet.astype(np.float32)


def band_limit(wav: np.ndarray, low_hz: float, high_hz: float, sr: int = SAMPLE_RATE,
               order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (low-pass if low_hz <= 0, high-pass if high_hz >= sr/2)."""
    from scipy.signal import butter, sosfiltfilt

    nyq = sr / 2
    if low_hz <= 0 and high_hz >= nyq:
        return wav.astype(np.float32)
    if low_hz <= 0:
        sos = butter(order, high_hz, btype="lowpass", fs=sr, output="sos")
    elif high_hz >= nyq:
        sos = butter(order, low_hz, btype="highpass", fs=sr, output="sos")
    else:
        sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=sr, output="sos")
    return sosfiltfilt(sos, wav.astype(np.float64)).astype(np.float32)


def band_reject(wav: np.ndarray, low_hz: float, high_hz: float, sr: int = SAMPLE_RATE,
                order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-stop: removes [low_hz, high_hz] (0 < low < high < sr/2), keeps the rest."""
    from scipy.signal import butter, sosfiltfilt

    if not 0 < low_hz < high_hz < sr / 2:
        raise ValueError(f"band-reject edges {low_hz}-{high_hz} Hz must satisfy 0 < low < high < {sr / 2:g}; "
                         "regenerate the plan")
    sos = butter(order, [low_hz, high_hz], btype="bandstop", fs=sr, output="sos")
    return sosfiltfilt(sos, wav.astype(np.float64)).astype(np.float32)


def mu_law(wav: np.ndarray, bits: int = 8) -> np.ndarray:
    """Encode to `bits`-bit mu-law codes and decode again (saturates at +-1 like a real codec)."""
    levels = 2**bits - 1
    x = np.clip(wav.astype(np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    code = np.round((y + 1.0) / 2.0 * levels)
    y = code / levels * 2.0 - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)


def telephone(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Narrow-band telephone channel: 300-3400 Hz, 8 kHz, 8-bit mu-law, back to `sr`, same length."""
    narrow = resample(band_limit(wav, *TELEPHONE_BAND, sr=sr), sr, TELEPHONE_RATE)
    wide = resample(mu_law(narrow), TELEPHONE_RATE, sr)[: len(wav)]
    if len(wide) < len(wav):
        wide = np.pad(wide, (0, len(wav) - len(wide)))
    return band_limit(wide, *TELEPHONE_BAND, sr=sr)


def clip(wav: np.ndarray, level: float) -> np.ndarray:
    """Hard-clip at `level` times the signal's peak (0 < level <= 1), so the effect is gain-independent."""
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    return np.clip(wav, -level * peak, level * peak).astype(np.float32)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown); no DC."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    scale = np.zeros_like(f)
    scale[1:] = f[1:] ** (-exponent / 2.0)
    x = np.fft.irfft(spec * scale, n)
    return (x / np.sqrt(power(x))).astype(np.float32)


def peak_guard(wav: np.ndarray) -> np.ndarray:
    """Divide by the peak only if it exceeds 1.0 (would clip in PCM); otherwise leave the level alone."""
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    return (wav / peak).astype(np.float32) if peak > 1.0 else wav.astype(np.float32)


@dataclass(frozen=True)
class Banks:
    """RIRs per family and noise sources by name, as read from the two bank .npz files."""

    rirs: dict[str, list[np.ndarray]]
    noises: dict[str, np.ndarray]
    sha256: str = ""

    @classmethod
    def load(cls, rir_bank: str | Path, noise_bank: str | Path) -> Banks:
        """Read `rir-bank` and `noise-bank` outputs; sha256 hashes their arrays, not the zip bytes."""
        rir = _read_npz(rir_bank, "rir-bank")
        noise = _read_npz(noise_bank, "noise-bank")
        families = [k[: -len("_rir")] for k in rir if k.endswith("_rir")]
        rirs = {f: [h[:n] for h, n in zip(rir[f"{f}_rir"], rir[f"{f}_len"], strict=True)] for f in families}
        noises = {k: v for k, v in noise.items() if k != "meta"}
        return cls(rirs, noises, _arrays_sha256({**{f"rir/{k}": v for k, v in rir.items()},
                                                 **{f"noise/{k}": v for k, v in noise.items()}}))

    def rir(self, family: str, index: int) -> np.ndarray:
        """RIR `index` of `family`, or a ValueError saying to rebuild the bank."""
        if family not in self.rirs or not 0 <= index < len(self.rirs[family]):
            known = {f: len(v) for f, v in self.rirs.items()}
            raise ValueError(f"RIR bank has no {family} RIR #{index} (has {known}); rebuild it with "
                             "`python -m pipeline rir-bank` and re-render the view")
        return self.rirs[family][index]

    def noise(self, name: str) -> np.ndarray:
        """Noise source `name`, or a ValueError saying to rebuild the bank."""
        if name not in self.noises:
            raise ValueError(f"noise bank has no source '{name}' (has {sorted(self.noises)}); rebuild it "
                             "with `python -m pipeline noise-bank` and re-render the view")
        return self.noises[name]


def _read_npz(path: str | Path, verb: str) -> dict[str, np.ndarray]:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: bank not found; build it with `python -m pipeline {verb}`")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(json.dumps([key, a.dtype.str, a.shape]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def is_identity(recipe: dict) -> bool:
    """Whether the recipe leaves the audio as it is (`{}`, or a copy that drew "none" for every step)."""
    return not any(recipe.get(step) for step in STEPS)


def apply_recipe(wav: np.ndarray, recipe: dict, banks: Banks | None) -> np.ndarray:
    """Render one view copy: a pure function of (clean wav, recipe, banks); an identity recipe returns the input."""
    out = wav.astype(np.float32)
    unknown = sorted(set(recipe) - {"family", *STEPS})
    if unknown:
        raise ValueError(f"recipe key(s) {unknown} are unknown (known: family, {', '.join(STEPS)}); "
                         "the plan was made by another version: regenerate it with view-plan")
    if is_identity(recipe):
        return out
    family = recipe["family"]
    if recipe.get("reverb"):
        out = reverberate(out, banks.rir(family, int(recipe["reverb"]["rir"])))
    if recipe.get("pitch"):
        out = pitch_shift(out, float(recipe["pitch"]))
    if recipe.get("noise"):
        spec = recipe["noise"]
        out = add_noise(out, segment(banks.noise(spec["source"]), int(spec["offset"]), len(out)),
                        float(spec["snr_db"]))
    out = peak_guard(out)
    if recipe.get("bandreject"):
        out = band_reject(out, *map(float, recipe["bandreject"]))
    if recipe.get("codec") == "telephone":
        out = telephone(out)
    elif recipe.get("codec"):
        raise ValueError(f"recipe codec '{recipe['codec']}' is unknown (known: telephone); "
                         "regenerate the plan")
    if recipe.get("clip"):
        out = clip(out, float(recipe["clip"]))
    return peak_guard(out)
