"""Noise bank: container parsing, babble, disjoint families; Debian-backed parts skip when absent."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.signal import chirp

from pipeline.audio import noise
from pipeline.audio.io import write_wav
from pipeline.cli import VERBS
from pipeline.corpus.manifest import write_manifest

HAVE_SFX = noise.OPENSFX.exists()
HAVE_MUSIC = bool(list(noise.MOH_DIR.glob("*.g722"))) and shutil.which("ffmpeg") is not None
NEEDS_SFX = pytest.mark.skipif(not HAVE_SFX, reason="Debian package openttd-opensfx is not installed")
NEEDS_MUSIC = pytest.mark.skipif(not HAVE_MUSIC,
                                 reason="Debian package asterisk-moh-opsound-g722 or ffmpeg is not installed")


@pytest.fixture
def manifest(tmp_path):
    """Four train chirps by three speakers and one test chirp, with silence around them."""
    rows = []
    for i in range(5):
        t = np.arange(24000) / 16000
        wav = 0.3 * chirp(t, 200 + 40 * i, t[-1], 1500 + 200 * i) * np.hanning(len(t))
        wav = np.concatenate([np.zeros(4000), wav, np.zeros(4000)])
        path = tmp_path / f"u{i}.wav"
        write_wav(path, wav)
        rows.append({"utt_id": f"u{i}", "path": str(path), "num_samples": len(wav), "sample_rate": 16000,
                     "split": "train" if i < 4 else "test", "speaker": f"s{i % 3}"})
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.tsv")
    return str(tmp_path / "manifest.tsv")


def test_verb_is_registered():
    assert VERBS["noise-bank"] == "pipeline.audio.noise:build_noise_bank"


def test_families_share_no_type():
    kinds = {f: set(spec) for f, spec in noise.NOISE_SOURCES.items()}
    assert kinds["indomain"].isdisjoint(kinds["ood"])


def test_trim_silence():
    wav = np.concatenate([np.zeros(3200), np.ones(1600), np.zeros(3200)]).astype(np.float32)
    assert len(noise.trim_silence(wav)) == 1600
    assert len(noise.trim_silence(np.zeros(3200, np.float32))) == 0


def test_babble_mixes_train_utterances_only(manifest):
    tracks = noise.babble_sources(manifest, np.random.default_rng(0), 3)
    again = noise.babble_sources(manifest, np.random.default_rng(0), 3)
    for (wav, origin), (wav2, _) in zip(tracks, again, strict=True):
        assert wav.tobytes() == wav2.tobytes()
        assert len(wav) == noise.BABBLE_SECONDS * 16000
        assert np.sqrt(noise.power(wav)) == pytest.approx(1.0, rel=1e-4)
        talkers = origin.removeprefix("babble: ").split(", ")
        assert 3 <= len(talkers) <= 4 and "u4" not in talkers


def test_missing_packages_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(noise, "MOH_DIR", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="asterisk-moh-opsound-g722"):
        noise.music_sources(np.random.default_rng(0), 1)
    with pytest.raises(FileNotFoundError, match="openttd-opensfx"):
        noise.read_opensfx(tmp_path / "opensfx.cat")


@NEEDS_SFX
def test_read_opensfx():
    sounds = noise.read_opensfx()
    assert len(sounds) > 20
    name, wav, sr = sounds[0]
    assert "License" in name and sr == 44100 and wav.ndim == 1 and len(wav) > 1000


@NEEDS_SFX
@NEEDS_MUSIC
def test_build_noise_bank(config_path, manifest, tmp_path):
    out = tmp_path / "noise.npz"
    noise.build_noise_bank(config_path, manifest, str(out))
    meta = noise.read_meta(out)
    bank = np.load(out)
    names = {n for f in noise.NOISE_SOURCES for _, n in noise.source_names(f)}
    assert set(bank.files) - {"meta"} == names == set(meta["sources"])
    for name, info in meta["sources"].items():
        assert info["type"] in noise.NOISE_SOURCES[info["family"]]
        wav = bank[name]
        assert wav.dtype == np.float32 and np.sqrt(noise.power(wav)) == pytest.approx(1.0, rel=1e-3)
    seconds = {f: sum(s["seconds"] for s in meta["sources"].values() if s["family"] == f)
               for f in noise.NOISE_SOURCES}
    assert all(20 <= s <= 60 for s in seconds.values()), seconds
    assert out.stat().st_size < 10_000_000
