"""Corrupt inputs in a corpus (truncated WAV, zero-length file, non-audio file, NaN/Inf samples, 8 kHz
stereo, a clip shorter than the receptive field) under corpus.on_bad_audio: error names the file and the
key; skip leaves it out, lists it in <manifest>.rejects.tsv, and leaves the other utterances unaffected.
Validation points (pipeline/corpus/screen.py): manifest preparation (adapters incl. the generic TSV import,
Asterisk, screen-manifest) and, before extraction, view rendering (the file must match its row)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from faults.helpers import base_config, tiny_teacher, write_config
from pipeline.audio.io import MIN_SAMPLES, AudioError, inspect_audio, load_audio, load_listed_audio
from pipeline.cache.extract import extract_shard
from pipeline.cache.store import Store
from pipeline.corpus import asterisk
from pipeline.corpus.adapters import run_adapter
from pipeline.corpus.manifest import read_manifest, write_manifest
from pipeline.corpus.screen import REJECT_COLUMNS, read_rejects, rejects_path, screen_manifest
from pipeline.corpus.views import make_view_plan, render_view_shard
from pipeline.students.frontend import RECEPTIVE_FIELD
from pipeline.teachers.base import Upstream

GOOD = ("good0", "good1", "good2")
# corrupt file -> the reason code it is rejected with
BAD = {"truncated": "truncated", "zero_length": "empty", "not_audio": "unreadable", "nan": "non_finite",
       "inf": "non_finite", "short": "too_short"}


def _tone(n: int, f0: float, rate: int = 16000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * f0 * np.arange(n) / rate)).astype(np.float32)


def make_corpus(root: Path, bad: tuple[str, ...] = tuple(BAD), stereo: bool = True) -> Path:
    """WAVs under root/audio (3 good, the chosen corrupt ones, an 8 kHz stereo clip) and root/list.tsv."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    for i, name in enumerate(GOOD):
        sf.write(audio / f"{name}.wav", _tone(16000 + 4000 * i, 200 + 50 * i), 16000, subtype="PCM_16")
    if "truncated" in bad:  # header promises 1 s, the copy stopped half-way
        sf.write(audio / "truncated.wav", _tone(16000, 300), 16000, subtype="PCM_16")
        data = (audio / "truncated.wav").read_bytes()
        (audio / "truncated.wav").write_bytes(data[: len(data) // 2])
    if "zero_length" in bad:
        (audio / "zero_length.wav").write_bytes(b"")
    if "not_audio" in bad:
        (audio / "not_audio.wav").write_text("<html>404 not found</html>\n" * 20)
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        if name in bad:
            wav = _tone(16000, 250)
            wav[1234] = value
            sf.write(audio / f"{name}.wav", wav, 16000, subtype="FLOAT")
    if "short" in bad:  # 0.05 s: below every upstream's minimum
        sf.write(audio / "short.wav", _tone(MIN_SAMPLES // 2, 400), 16000, subtype="PCM_16")
    if stereo:
        left = _tone(8000, 220, rate=8000)
        sf.write(audio / "stereo8k.wav", np.stack([left, 0.5 * left[::-1]], axis=1), 8000, subtype="PCM_16")
    names = sorted(p.stem for p in audio.iterdir())
    pd.DataFrame({"utt_id": names, "path": [f"audio/{n}.wav" for n in names], "split": "train",
                  "speaker": "s0"}).to_csv(root / "list.tsv", sep="\t", index=False)
    return root


def import_tsv(root: Path, out: Path, policy: str) -> pd.DataFrame:
    """The generic 'TSV of path + labels' import (an adapter), with the bad-audio policy."""
    return run_adapter("tsv", str(root), str(out), {"tsv": "list.tsv", "on_bad_audio": policy})


# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_corrupt_file_is_refused_naming_it(tmp_path, name):
    path = make_corpus(tmp_path, bad=(name,), stereo=False) / "audio" / f"{name}.wav"
    for check in (inspect_audio, load_audio, lambda p: load_listed_audio(p, 16000)):
        with pytest.raises(AudioError) as err:
            check(path) if check is not load_audio else check(path, min_samples=MIN_SAMPLES)
        assert err.value.reason == BAD[name]
        msg = str(err.value)
        assert str(path) in msg
        assert any(todo in msg for todo in ("re-copy", "re-export", "replace or remove", "drop the file")), msg


def test_minimum_length_is_what_the_models_need(tmp_path):
    """MIN_SAMPLES covers the students' CNN and every teacher's minimum; shorter clips are refused by them."""
    teacher = tiny_teacher(tmp_path / "teacher")
    from pipeline.teachers.registry import load_upstream

    up = load_upstream("t", {"kind": "hf", "model": str(teacher)})
    assert RECEPTIVE_FIELD <= MIN_SAMPLES and Upstream.min_samples <= MIN_SAMPLES and up.min_samples <= MIN_SAMPLES
    up.hidden_states(np.zeros(MIN_SAMPLES, np.float32))  # the shortest accepted clip runs
    with pytest.raises(ValueError, match="shorter than the minimum"):
        up.hidden_states(np.zeros(MIN_SAMPLES // 2, np.float32))  # what the screen refuses


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_listed_length_is_the_resampled_length(rate):
    """num_samples of a converted file (AudioInfo.num_samples) is what scipy's polyphase resampler returns."""
    from math import gcd

    from pipeline.audio.io import resampled_length

    g = gcd(rate, 16000)
    for n in (1, 2, 399, 8000, 12345, 160001):
        assert resampled_length(n, rate) == len(resample_poly(np.zeros(n), 16000 // g, rate // g))


# ---------------------------------------------------------------- policy at manifest preparation


@pytest.mark.parametrize("name", sorted(BAD))
def test_policy_error_stops_naming_file_and_key(tmp_path, name):
    root = make_corpus(tmp_path / "corpus", bad=(name,))
    out = tmp_path / "prepared" / "manifest.tsv"
    with pytest.raises(AudioError) as err:
        import_tsv(root, out, "error")
    msg = str(err.value)
    assert str(root / "audio" / f"{name}.wav") in msg and "corpus.on_bad_audio" in msg and "'skip'" in msg
    assert not out.exists()  # nothing half-written: no manifest (the error comes before any write)
    assert not out.parent.exists() or not list(out.parent.glob("*tmp*"))


def test_policy_skip_lists_rejects_and_keeps_the_rest(tmp_path):
    clean = import_tsv(make_corpus(tmp_path / "only_good", bad=()), tmp_path / "a" / "manifest.tsv", "error")
    root = make_corpus(tmp_path / "corpus")
    out = tmp_path / "b" / "manifest.tsv"
    kept = import_tsv(root, out, "skip")

    rejects = read_rejects(out)
    assert rejects_path(out) == out.parent / "manifest.rejects.tsv"
    assert list(rejects.columns) == REJECT_COLUMNS
    assert dict(zip(rejects["utt_id"], rejects["reason"], strict=True)) == BAD
    for row in rejects.itertuples():
        assert Path(row.path) == root / "audio" / f"{row.utt_id}.wav" and row.path in row.detail
    # the other utterances: exactly the rows an import of the good files alone gives (8 kHz stereo converted)
    assert sorted(kept["utt_id"]) == [*GOOD, "stereo8k"]
    cols = ["utt_id", "num_samples", "sample_rate", "split", "speaker", "source_rate"]
    pd.testing.assert_frame_equal(kept[cols].reset_index(drop=True), clean[cols].reset_index(drop=True))
    stereo = kept.set_index("utt_id").loc["stereo8k"]
    assert (stereo["sample_rate"], stereo["num_samples"], int(stereo["source_rate"])) == (16000, 16000, 8000)
    # a clean import writes a header-only rejects file, so "nothing rejected" is visible too
    assert read_rejects(tmp_path / "a" / "manifest.tsv").empty


def test_skipped_corpus_renders_and_extracts(tmp_path, config_path):
    """Downstream of a skip import, views render and a teacher extracts every kept utterance; the good
    utterances' audio equals that of a corpus without the bad files, and the 8 kHz stereo clip is resampled
    and down-mixed exactly as scipy's polyphase filter does on the channel mean."""
    teacher = tiny_teacher(tmp_path / "teacher")
    config = write_config(tmp_path / "config.yaml", base_config(teacher, batch_seconds=2))
    stores = {}
    for name, bad in (("good", ()), ("mixed", tuple(BAD))):
        root = make_corpus(tmp_path / name, bad=bad)
        import_tsv(root, root / "manifest.tsv", "skip")
        make_view_plan(config, str(root / "manifest.tsv"), "clean", str(root / "plan.tsv"))
        render_view_shard(config, str(root / "manifest.tsv"), str(root / "plan.tsv"), 0, 1,
                          str(root / "view.zarr"))
        extract_shard(config, "t", str(root / "view.zarr"), str(root / "feats.zarr"))
        stores[name] = (Store(root / "view.zarr"), Store(root / "feats.zarr"))
        assert read_rejects(root / "manifest.tsv")["utt_id"].tolist() == sorted(bad)
    (good_audio, good_feats), (mixed_audio, mixed_feats) = stores["good"], stores["mixed"]
    assert sorted(mixed_audio.ids) == sorted(good_audio.ids) == sorted(f"{u}@0" for u in [*GOOD, "stereo8k"])
    for key in good_audio.ids:
        assert mixed_audio.get(key).tobytes() == good_audio.get(key).tobytes()
        assert mixed_feats.get(key).tobytes() == good_feats.get(key).tobytes()
    stereo, _ = sf.read(tmp_path / "good" / "audio" / "stereo8k.wav", dtype="float32")
    expect = resample_poly(stereo.mean(axis=1), 2, 1).astype(np.float32)
    np.testing.assert_array_equal(good_audio.get("stereo8k@0"), expect)


# ---------------------------------------------------------------- 8 kHz stereo: converted vs mislabelled


def test_manifest_claiming_16k_for_8k_audio_is_an_error(tmp_path, config_path):
    """The same 8 kHz stereo file: an adapter records source_rate and converts it; a manifest that lists it
    as 16 kHz (no source_rate) is refused when views are rendered, whatever the policy, naming the file."""
    root = make_corpus(tmp_path / "corpus", bad=())
    wav = root / "audio" / "stereo8k.wav"
    rows = [{"utt_id": u, "path": str(root / "audio" / f"{u}.wav"), "num_samples": n, "sample_rate": 16000,
             "split": "train", "speaker": "s0"} for u, n in (("good0", 16000), ("stereo8k", 16000))]
    manifest = tmp_path / "hand" / "manifest.tsv"
    write_manifest(pd.DataFrame(rows), manifest)
    make_view_plan(config_path, str(manifest), "clean", str(tmp_path / "plan.tsv"))
    out = tmp_path / "view.zarr"
    with pytest.raises(AudioError) as err:
        render_view_shard(config_path, str(manifest), str(tmp_path / "plan.tsv"), 0, 1, str(out))
    msg = str(err.value)
    assert str(wav) in msg and "8000 Hz with 2 channel(s)" in msg and "16000 Hz mono" in msg
    assert str(manifest) in msg and "screen-manifest" in msg
    assert err.value.reason == "rate_mismatch"
    assert not out.exists() and not list(tmp_path.glob(".view.zarr.tmp-*"))  # nothing half-written

    # screening that hand-written manifest applies the policy: skip keeps good0, lists stereo8k
    cfg = Path(config_path)
    cfg.write_text(cfg.read_text().replace("corpus:", "corpus:\n  on_bad_audio: skip", 1))
    screened = tmp_path / "screened" / "manifest.tsv"
    screen_manifest(config_path, str(manifest), str(screened))
    assert read_manifest(screened)["utt_id"].tolist() == ["good0"]
    rejected = read_rejects(screened)
    assert rejected["utt_id"].tolist() == ["stereo8k"] and rejected["reason"].tolist() == ["rate_mismatch"]


def test_view_rendering_refuses_a_file_changed_after_preparation(tmp_path, config_path):
    root = make_corpus(tmp_path / "corpus", bad=(), stereo=False)
    import_tsv(root, root / "manifest.tsv", "error")
    make_view_plan(config_path, str(root / "manifest.tsv"), "clean", str(root / "plan.tsv"))
    target = root / "audio" / "good1.wav"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) - 3000])  # truncated after the manifest was written
    with pytest.raises(AudioError, match="truncated") as err:
        render_view_shard(config_path, str(root / "manifest.tsv"), str(root / "plan.tsv"), 0, 1,
                          str(tmp_path / "view.zarr"))
    assert str(target) in str(err.value) and "prepare the manifest again" in str(err.value)
    assert not (tmp_path / "view.zarr").exists()


# ---------------------------------------------------------------- the Asterisk preparation follows the policy


@pytest.mark.skipif(shutil.which("ffmpeg") is None or not asterisk.SOUNDS.is_dir(),
                    reason="ffmpeg or Debian asterisk-core-sounds-en-g722 not installed")
@pytest.mark.parametrize("policy", ["error", "skip"])
def test_asterisk_preparation_follows_policy(tmp_path, monkeypatch, policy):
    broken = tmp_path / "broken.g722"
    broken.write_bytes(b"")
    prompts = [{"utt_id": "ast-digits-1", "name": "digits/1", "text": "one", "keyword": "one", "family": "keyword",
                "source": asterisk.SOUNDS / "digits" / "1.g722"},
               {"utt_id": "ast-broken", "name": "broken", "text": "x", "keyword": "", "family": "sentence",
                "source": broken}]
    monkeypatch.setattr(asterisk, "select_prompts", lambda transcripts: prompts)
    monkeypatch.setattr(asterisk, "transcript_file", lambda: tmp_path / "unused.txt")
    monkeypatch.setattr(asterisk, "parse_transcripts", lambda path: {})
    cfg = base_config()
    cfg["corpus"]["on_bad_audio"] = policy
    config = write_config(tmp_path / "config.yaml", cfg)
    out = tmp_path / "asterisk" / "manifest.tsv"
    if policy == "error":
        with pytest.raises(AudioError, match="corpus.on_bad_audio") as err:
            asterisk.prepare_asterisk(config, str(tmp_path / "wav"), str(out))
        assert str(broken) in str(err.value) and not out.exists()
        return
    asterisk.prepare_asterisk(config, str(tmp_path / "wav"), str(out))
    assert read_manifest(out)["utt_id"].tolist() == ["ast-digits-1"]
    rejected = read_rejects(out)
    assert rejected["utt_id"].tolist() == ["ast-broken"] and str(broken) in rejected["detail"].iloc[0]
