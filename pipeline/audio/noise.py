"""A cached bank of additive noise sources in two disjoint families, saved as one .npz.

In-domain: coloured noise (white / pink / brown, generated from the config seed) and babble
(3-6 train-split utterances of the distillation corpus mixed: `corpus.distill`, synthetic by default).
Out-of-domain: real sound effects (Debian `openttd-opensfx`) and music (Debian
`asterisk-moh-opsound-g722`, decoded with ffmpeg); with a MUSAN manifest (config `corpus.noise`) the
sfx and music come from MUSAN's noise and music files instead. Each source is a 1-D float32 array at
16 kHz with unit RMS, named `{type}_{index:02d}`; `meta` (JSON) records each source's family, type,
origin and duration. About 45 s per family.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from pipeline.audio.distortions import coloured_noise, power, segment, stable_seed
from pipeline.audio.io import SAMPLE_RATE, load_audio, resample
from pipeline.audio.rir import save_npz
from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest

log = logging.getLogger(__name__)

NOISE_SOURCES: dict[str, dict[str, int]] = {
    "indomain": {"white": 2, "pink": 2, "brown": 2, "babble": 4},
    "ood": {"sfx": 10, "music": 6},
}
EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
COLOURED_SECONDS = 4.0
BABBLE_SECONDS = 5.0
BABBLE_TALKERS = (3, 6)
SFX_SECONDS = (1.0, 4.0)  # shortest usable and longest kept, after trimming silence
MUSIC_SECONDS = 4.0
OPENSFX = Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat")
MOH_DIR = Path("/usr/share/asterisk/moh")


def source_names(family: str) -> list[tuple[str, str]]:
    """(type, name) of every source of `family`, in bank order."""
    return [(t, f"{t}_{i:02d}") for t, n in NOISE_SOURCES[family].items() for i in range(n)]


def trim_silence(wav: np.ndarray, rel_db: float = -40.0, frame: int = 320) -> np.ndarray:
    """Cut leading/trailing frames quieter than `rel_db` below the loudest frame."""
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(np.square(wav[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (rel_db / 20))
    if len(loud) == 0:
        return wav[:0]
    return wav[loud[0] * frame: (loud[-1] + 1) * frame]


def unit_rms(wav: np.ndarray) -> np.ndarray:
    """Scale to unit RMS (the SNR gain sets the level when mixing)."""
    return (wav / np.sqrt(power(wav))).astype(np.float32)


def read_opensfx(path: Path = OPENSFX) -> list[tuple[str, np.ndarray, int]]:
    """(name, samples, sample rate) of every non-empty sound in an OpenTTD .cat container.

    Layout: a table of (offset, size) uint32 pairs (the first offset has bit 31 set and gives
    the table size), then at each offset a name-length byte, the name, and `size` bytes of RIFF WAV.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the Debian package openttd-opensfx "
                                "(scripts/bootstrap.sh installs it)")
    data = path.read_bytes()
    count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    sounds = []
    for i in range(count):
        offset, size = struct.unpack_from("<II", data, 8 * i)
        offset &= 0x7FFFFFFF
        name_len = data[offset]
        name = data[offset + 1: offset + 1 + name_len].rstrip(b"\0").decode("utf-8", "replace")
        riff = data[offset + 1 + name_len: offset + 1 + name_len + size]
        if riff[:4] != b"RIFF":
            raise ValueError(f"{path}: entry {i} is not RIFF WAV data; the file is not an OpenTTD sound set")
        wav, sr = sf.read(BytesIO(riff), dtype="float32", always_2d=True)
        if len(wav):
            sounds.append((name, wav.mean(axis=1), sr))
    return sounds


def decode_g722(path: Path) -> np.ndarray:
    """Decode a raw G.722 file to 16 kHz mono float32 with ffmpeg."""
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg not found: install the Debian package ffmpeg (scripts/bootstrap.sh)")
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "g722", "-i", str(path),
           "-ar", str(SAMPLE_RATE), "-ac", "1", "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"{path}: ffmpeg could not decode it: {proc.stderr.decode(errors='replace')}")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def sfx_sources(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, str]]:
    """`n` distinct sound effects at least SFX_SECONDS[0] long after trimming, cut to SFX_SECONDS[1]."""
    usable = []
    for name, wav, sr in read_opensfx():
        wav = trim_silence(resample(wav, sr))
        if len(wav) >= SFX_SECONDS[0] * SAMPLE_RATE:
            usable.append((unit_rms(wav[: int(SFX_SECONDS[1] * SAMPLE_RATE)]), f"opensfx: {name}"))
    if len(usable) < n:
        raise ValueError(f"{OPENSFX}: only {len(usable)} usable sounds, {n} needed; "
                         "reinstall openttd-opensfx")
    return [usable[i] for i in sorted(rng.choice(len(usable), size=n, replace=False))]


def music_sources(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, str]]:
    """`n` MUSIC_SECONDS excerpts from random positions, cycling over the sorted music files."""
    files = sorted(MOH_DIR.glob("*.g722"))
    if not files:
        raise FileNotFoundError(f"no {MOH_DIR}/*.g722 music: install the Debian package "
                                "asterisk-moh-opsound-g722 (scripts/bootstrap.sh installs it)")
    decoded = {f: decode_g722(f) for f in files[:n]}
    length = int(MUSIC_SECONDS * SAMPLE_RATE)
    out = []
    for i in range(n):
        f = files[i % len(files)]
        start = int(rng.integers(0, max(len(decoded[f]) - length, 1)))
        out.append((unit_rms(decoded[f][start:start + length]), f"{f.name} @ {start / SAMPLE_RATE:.2f} s"))
    return out


def babble_sources(manifest: str, rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, str]]:
    """`n` babble tracks, each the sum of 3-6 train utterances from different speakers where possible."""
    df = read_manifest(manifest)
    train = df[df["split"] == "train"]
    if len(train) < BABBLE_TALKERS[0]:
        raise ValueError(f"{manifest}: {len(train)} train utterances, babble needs at least "
                         f"{BABBLE_TALKERS[0]}; synthesise a larger corpus")
    by_speaker = {s: list(g["utt_id"]) for s, g in train.groupby("speaker", sort=True)}
    paths = dict(zip(train["utt_id"], train["path"], strict=True))
    length = int(BABBLE_SECONDS * SAMPLE_RATE)
    out = []
    for _ in range(n):
        k = min(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)), len(train))
        queues = [list(rng.permutation(by_speaker[s])) for s in rng.permutation(sorted(by_speaker))]
        picks = [q[j] for j in range(max(map(len, queues))) for q in queues if j < len(q)][:k]
        mix = np.zeros(length, dtype=np.float64)
        for utt in picks:
            talker = unit_rms(trim_silence(load_audio(paths[utt])))
            mix += segment(talker, int(rng.integers(len(talker))), length)
        out.append((unit_rms(mix), "babble: " + ", ".join(picks)))
    return out


def musan_sources(manifest: str, kind: str, rng: np.random.Generator, n: int,
                  seconds: float) -> list[tuple[np.ndarray, str]]:
    """`n` excerpts of `seconds` (or the whole file if shorter, at least SFX_SECONDS[0] after trimming silence)
    from distinct MUSAN files of type `kind` ('noise' or 'music'), files visited in a seeded random order."""
    df = read_manifest(manifest)
    if "type" not in df.columns:
        raise ValueError(f"{manifest}: no 'type' column; prepare MUSAN with the musan corpus adapter")
    rows = df[df["type"] == kind].reset_index(drop=True)
    length, out = int(seconds * SAMPLE_RATE), []
    for i in rng.permutation(len(rows)):
        wav = trim_silence(load_audio(rows["path"][i]))
        if len(wav) < SFX_SECONDS[0] * SAMPLE_RATE:
            continue
        start = int(rng.integers(0, max(len(wav) - length, 0) + 1))
        out.append((unit_rms(wav[start:start + length]), f"musan {rows['utt_id'][i]} from sample {start}"))
        if len(out) == n:
            return out
    raise ValueError(f"{manifest}: {len(out)} MUSAN {kind} file(s) of at least {SFX_SECONDS[0]} s, {n} needed")


def build_noise_bank(config: str, manifest: str, out: str, musan: str = "") -> None:
    """Build the in-domain (coloured, babble) and out-of-domain (sfx, music) noise sources as one .npz.

    With `musan` (a MUSAN manifest, config corpus.noise) the sfx and music sources are MUSAN noise and music."""
    seed = load_config(config)["seed"]
    makers = {
        "white": lambda rng, n: _coloured(rng, n, "white"),
        "pink": lambda rng, n: _coloured(rng, n, "pink"),
        "brown": lambda rng, n: _coloured(rng, n, "brown"),
        "babble": lambda rng, n: babble_sources(manifest, rng, n),
        "sfx": (lambda rng, n: musan_sources(musan, "noise", rng, n, SFX_SECONDS[1])) if musan else sfx_sources,
        "music": (lambda rng, n: musan_sources(musan, "music", rng, n, MUSIC_SECONDS)) if musan else music_sources,
    }
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"seed": seed, "sample_rate": SAMPLE_RATE, "ood_origin": "musan" if musan else "debian",
                  "sources": {}}
    types = [(f, t, n) for f, spec in NOISE_SOURCES.items() for t, n in spec.items()]
    for family, kind, n in tqdm(types, desc="noise-bank", unit="type"):
        rng = np.random.default_rng(stable_seed(seed, "noise", family, kind))
        for i, (wav, origin) in enumerate(makers[kind](rng, n)):
            name = f"{kind}_{i:02d}"
            arrays[name] = wav
            meta["sources"][name] = {"family": family, "type": kind, "origin": origin,
                                     "seconds": round(len(wav) / SAMPLE_RATE, 3)}
    save_npz(out, arrays, meta)
    for family in NOISE_SOURCES:
        secs = sum(s["seconds"] for s in meta["sources"].values() if s["family"] == family)
        log.info("%s: %d sources, %.1f s", family, len(source_names(family)), secs)
    log.info("wrote %s (%d bytes)", out, Path(out).stat().st_size)


def _coloured(rng: np.random.Generator, n: int, kind: str) -> list[tuple[np.ndarray, str]]:
    length = int(COLOURED_SECONDS * SAMPLE_RATE)
    return [(coloured_noise(length, EXPONENTS[kind], rng), f"{kind} noise 1/f^{EXPONENTS[kind]:g}")
            for _ in range(n)]


def read_meta(path: str | Path) -> dict:
    """The `meta` JSON of a bank .npz (sources' family, type, origin, seconds)."""
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))
