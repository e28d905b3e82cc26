"""View plans (copies, seeds, disjoint families) and bit-identical rendering into view-audio stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.signal import chirp

from pipeline.audio import noise, rir
from pipeline.audio.distortions import STEPS, coloured_noise, is_identity
from pipeline.audio.io import load_audio, write_wav
from pipeline.cache.store import Store
from pipeline.corpus import views
from pipeline.corpus.manifest import shard_range, write_manifest

SNR = {"indomain": [10, 19], "ood": [0, 10]}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_path(tmp_path):
    """Views with 2 in-domain and 3 out-of-domain copies (overrides the shared minimal config)."""
    cfg = {"seed": 3, "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0, "sentence": 0}},
           "views": {"shards": 2, "indomain": {"copies": 2, "snr_db": SNR["indomain"]},
                     "ood": {"copies": 3, "snr_db": SNR["ood"]}},
           "teachers": {"t": {"kind": "hf", "model": "none"}}, "cache": {}, "students": {}, "downstream": {}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def write_corpus(tmp_path, n: int, audio: bool = True) -> str:
    """A manifest of `n` chirps (written as WAVs only if `audio`)."""
    rows = []
    for i in range(n):
        t = np.arange(12000 + 1000 * (i % 5)) / 16000
        path = tmp_path / f"utt{i:03d}.wav"
        if audio:
            write_wav(path, 0.4 * chirp(t, 150 + 30 * i, t[-1], 3000) * np.hanning(len(t)))
        rows.append({"utt_id": f"utt{i:03d}", "path": str(path), "num_samples": len(t), "sample_rate": 16000,
                     "split": "train", "speaker": f"s{i % 2}"})
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.tsv")
    return str(tmp_path / "manifest.tsv")


def write_banks(tmp_path) -> tuple[str, str]:
    """Small banks with the real layout and every source name the plan can choose."""
    rng = np.random.default_rng(0)
    arrays = {}
    for family in rir.ROOM_FAMILIES:
        decay = np.exp(-np.arange(1600) / (200 if family == "indomain" else 600))
        h = np.zeros((rir.RIRS_PER_FAMILY, 1600), np.float32)
        h[:, 0] = 1.0
        h[:, 1:] = 0.3 * rng.standard_normal((rir.RIRS_PER_FAMILY, 1599)) * decay[1:]
        arrays |= {f"{family}_rir": h, f"{family}_len": np.full(rir.RIRS_PER_FAMILY, 1600)}
    rir.save_npz(tmp_path / "rir.npz", arrays, {"test": True})
    sources = {name: coloured_noise(8000 + 100 * i, i % 3, rng)
               for i, (_, name) in enumerate(noise.source_names("indomain") + noise.source_names("ood"))}
    rir.save_npz(tmp_path / "noise.npz", sources, {"test": True})
    return str(tmp_path / "rir.npz"), str(tmp_path / "noise.npz")


def plan_for(config_path, manifest, view, tmp_path) -> pd.DataFrame:
    out = tmp_path / f"{view}.tsv"
    views.make_view_plan(config_path, manifest, view, str(out))
    return views.read_view_plan(out)


def test_plan_copies_keys_and_seeds(config_path, tmp_path):
    manifest = write_corpus(tmp_path, 4, audio=False)
    for view, copies in [("clean", 1), ("indomain", 2), ("ood", 3)]:
        df = plan_for(config_path, manifest, view, tmp_path)
        assert len(df) == 4 * copies
        assert sorted(df["copy"].unique()) == list(range(copies))
        assert (df["key"] == df["utt_id"] + "@" + df["copy"].astype(str)).all()
        assert df["seed"].is_unique
    clean = plan_for(config_path, manifest, "clean", tmp_path)
    assert (clean["recipe"] == "{}").all()
    first = (tmp_path / "ood.tsv").read_bytes()
    views.make_view_plan(config_path, manifest, "ood", str(tmp_path / "again.tsv"))
    assert (tmp_path / "again.tsv").read_bytes() == first
    with pytest.raises(ValueError, match="known: clean"):
        views.make_view_plan(config_path, manifest, "noisy", str(tmp_path / "x.tsv"))


def recipes_of(config_path, tmp_path, n: int = 150) -> dict[str, list[dict]]:
    manifest = write_corpus(tmp_path, n, audio=False)
    return {view: [json.loads(r) for r in plan_for(config_path, manifest, view, tmp_path)["recipe"]]
            for view in ("indomain", "ood")}


def test_plan_families_are_disjoint(config_path, tmp_path):
    recipes = recipes_of(config_path, tmp_path)
    types_used = {view: {r["noise"]["type"] for r in rs if r["noise"]} for view, rs in recipes.items()}
    assert types_used == {v: set(noise.NOISE_SOURCES[v]) for v in recipes}
    assert types_used["indomain"].isdisjoint(types_used["ood"])
    for view, rs in recipes.items():
        assert all(r["family"] == view and set(r) == {"family", *STEPS} for r in rs)
        snrs = [r["noise"]["snr_db"] for r in rs if r["noise"]]
        assert SNR[view][0] <= min(snrs) and max(snrs) <= SNR[view][1]
    assert all(r["codec"] is None and r["clip"] is None for r in recipes["indomain"])  # out-of-domain kinds
    assert all(r["pitch"] is None and r["bandreject"] is None for r in recipes["ood"])  # in-domain kinds
    assert all(r["noise"] for r in recipes["ood"])
    assert 0.4 < np.mean([r["reverb"] is not None for r in recipes["ood"]]) < 0.6
    codec = np.mean([r["codec"] == "telephone" for r in recipes["ood"]])
    assert 0.2 < codec < 0.4


def test_indomain_plan_is_the_double_recipe(config_path, tmp_path):
    """One additive distortion (a noise type or none) and one non-additive one (reverberation, pitch shift,
    band-reject or none) per copy, each drawn uniformly (arXiv 2210.07978)."""
    rs = recipes_of(config_path, tmp_path)["indomain"]
    additive = [r["noise"]["type"] if r["noise"] else "none" for r in rs]
    effects = [[k for k in ("reverb", "pitch", "bandreject") if r[k]] for r in rs]
    assert all(len(e) <= 1 for e in effects)
    effect = [e[0] if e else "none" for e in effects]
    choices = {"additive": (additive, [*noise.NOISE_SOURCES["indomain"], "none"]),
               "non-additive": (effect, ["reverb", "pitch", "bandreject", "none"])}
    for drawn, options in choices.values():
        assert set(drawn) == set(options)
        shares = [drawn.count(o) / len(drawn) for o in options]
        assert all(abs(s - 1 / len(options)) < 0.08 for s in shares), shares
    assert 0 < sum(a == e == "none" for a, e in zip(additive, effect, strict=True)) < 0.12 * len(rs)
    assert all(is_identity(r) == (a == e == "none") for r, a, e in zip(rs, additive, effect, strict=True))
    pitches = [r["pitch"] for r in rs if r["pitch"]]
    assert min(pitches) >= views.PITCH_SEMITONES[0] and max(pitches) <= views.PITCH_SEMITONES[1]
    assert min(pitches) < -2.5 and max(pitches) > 2.5
    for lo, hi in (r["bandreject"] for r in rs if r["bandreject"]):
        assert views.BANDREJECT_RANGE_HZ[0] <= lo < hi <= views.BANDREJECT_RANGE_HZ[1]


def test_default_config_uses_the_paper_snr_range():
    for path in ("config.yaml", "config/paper.yaml"):
        assert yaml.safe_load((ROOT / path).read_text())["views"]["indomain"]["snr_db"] == [10, 19], path


def render(config_path, manifest, plan, banks, out, shard=0, shards=2):
    views.render_view_shard(config_path, manifest, str(plan), shard, shards, str(out), *banks)
    return Store(out)


@pytest.mark.parametrize("view", ["indomain", "ood"])
def test_render_is_bit_identical(config_path, tmp_path, view):
    manifest = write_corpus(tmp_path, 3)
    banks = write_banks(tmp_path)
    plan_for(config_path, manifest, view, tmp_path)
    plan = tmp_path / f"{view}.tsv"
    a = render(config_path, manifest, plan, banks, tmp_path / "a.zarr")
    b = render(config_path, manifest, plan, banks, tmp_path / "b.zarr")
    start, end = shard_range(3, 2, 0)
    utts = [f"utt{i:03d}" for i in range(start, end)]
    copies = 2 if view == "indomain" else 3
    assert a.ids == b.ids == [f"{u}@{c}" for u in utts for c in range(copies)]
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint["kind"] == "view_audio" and a.fingerprint["view"] == view
    assert a.fingerprint["banks_sha256"] and a.fingerprint["sample_rate"] == 16000
    recipes = dict(zip(views.read_view_plan(plan)["key"], map(json.loads, views.read_view_plan(plan)["recipe"]),
                       strict=True))
    for key in a.ids:
        wav = a.get(key)
        assert wav.dtype == np.float32 and wav.ndim == 1
        assert wav.tobytes() == b.get(key).tobytes()
        clean = load_audio(tmp_path / f"{key.split('@')[0]}.wav")
        assert len(wav) == len(clean) and np.array_equal(wav, clean) == is_identity(recipes[key])
    other = render(config_path, manifest, plan, banks, tmp_path / "c.zarr", shard=1)
    assert other.fingerprint["plan_sha256"] != a.fingerprint["plan_sha256"]


def test_render_clean_needs_no_banks(config_path, tmp_path):
    manifest = write_corpus(tmp_path, 2)
    plan_for(config_path, manifest, "clean", tmp_path)
    store = render(config_path, manifest, tmp_path / "clean.tsv", ("absent", "absent"),
                   tmp_path / "clean.zarr", shard=0, shards=1)
    assert store.fingerprint["banks_sha256"] is None and store.fingerprint["view"] == "clean"
    assert store.get("utt001@0").tobytes() == load_audio(tmp_path / "utt001.wav").tobytes()


def test_render_rejects_a_plan_for_another_manifest(config_path, tmp_path):
    manifest = write_corpus(tmp_path, 3)
    df = plan_for(config_path, manifest, "indomain", tmp_path)
    df[df["utt_id"] != "utt000"].to_csv(tmp_path / "short.tsv", sep="\t", index=False, quoting=3)
    with pytest.raises(ValueError, match="no rows for utt_id.*utt000.*regenerate"):
        render(config_path, manifest, tmp_path / "short.tsv", write_banks(tmp_path), tmp_path / "x.zarr")
