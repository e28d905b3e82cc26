"""Training loop: lr schedule, frame-aligned crops, a tiny end-to-end run and exact resume."""

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from cache_fixtures import NEVER_LOADED, teacher_fingerprint
from safetensors.torch import load_file

from pipeline.cache.index import FeatureCache, build_index
from pipeline.cache.store import Store, StoreWriter
from pipeline.corpus.manifest import write_manifest
from pipeline.distill import train as train_mod
from pipeline.distill.data import HOP, DistillBatches, DomainLabels, utt_of
from pipeline.distill.train import lr_at, train_student
from pipeline.students.frontend import conv_frames

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- learning-rate schedule

@pytest.mark.parametrize("steps,warmup", [(100, 0.07), (1000, 0.1), (10, 0.0), (7, 0.5)])
def test_lr_schedule(steps, warmup):
    peak = 3e-4
    lrs = np.array([lr_at(s, steps, peak, warmup) for s in range(steps)])
    warm = max(1, int(warmup * steps))
    assert np.all(lrs > 0) and np.all(lrs <= peak * (1 + 1e-12))
    assert lrs.max() == pytest.approx(peak)
    assert np.all(np.diff(lrs[:warm]) > 0)  # strictly increasing warm-up ...
    assert lrs[warm - 1] == pytest.approx(peak)  # ... reaching the peak at its last step
    assert np.all(np.diff(lrs[warm - 1:]) <= 1e-15)  # then non-increasing
    assert np.all(np.diff(lrs[warm:]) < 0)  # strictly decaying
    assert lrs[-1] <= peak / max(1, steps - warm) + 1e-15  # ~0 at the end
    assert lr_at(steps, steps, peak, warmup) == 0.0
    if warm > 1:
        assert lrs[0] == pytest.approx(peak / warm)
        # linear warm-up: equal increments
        np.testing.assert_allclose(np.diff(lrs[:warm]), peak / warm, rtol=1e-9)
    # linear decay: equal decrements after warm-up
    if steps - warm > 2:
        d = np.diff(lrs[warm:])
        np.testing.assert_allclose(d, d[0], rtol=1e-9)


# ---------------------------------------------------------------- crops


def _store(path, arrays, fp, dtype="float32"):
    with StoreWriter(path, fp, dtype=dtype) as w:
        for k, a in arrays.items():
            w.add(k, a)
    return str(path)


def _coded_caches(tmp_path, lengths, frame_delta, copies=2):
    """Audio sample j of utt u, copy c: u*1e5 + j + c/4; target frame t, layer l: u*1e4 + t+1 + c/2 + l/8."""
    audio, feats = {}, {}
    for u, (n, delta) in enumerate(zip(lengths, frame_delta, strict=True)):
        frames = max(conv_frames(n) + delta, 1)
        for c in range(copies):
            audio[f"u{u}@{c}"] = (u * 100000 + np.arange(n) + c / 4).astype(np.float32)
            t = np.arange(frames)[:, None, None]
            layer = np.arange(3)[None, :, None]
            code = u * 10000 + t + 1 + c / 2 + layer / 8
            feats[f"u{u}@{c}"] = np.broadcast_to(code, (frames, 3, 2)).astype(np.float32)
    a = _store(tmp_path / "audio.zarr", audio, {"kind": "view_audio"})
    f = _store(tmp_path / "feats.zarr", feats, teacher_fingerprint("tiny", name="tiny", num_layers=3, dim=2))
    return FeatureCache([Store(a)]), FeatureCache([Store(f)])


def test_crops_are_frame_aligned(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(400, 16000, 14)] + [400, 719, 720, 8000]
    deltas = [int(x) for x in rng.integers(-2, 3, len(lengths))]  # teacher frame counts differ by 1-2
    audio, targets = _coded_caches(tmp_path, lengths, deltas)
    train = [f"u{u}" for u in range(len(lengths)) if u != 3]
    crop = 20
    batches = DistillBatches(audio, targets, [0, 2], train + ["not_cached"], crop, seed=1)
    assert batches.utts == sorted(train)
    seen_in, seen_tgt, pairs = set(), set(), set()
    for _ in range(40):
        batch = batches.next(5)
        wav, lens, tgts = batch.wav, batch.lengths, batch.targets[0]
        assert wav.shape[0] == 5 and lens.shape == (5,) and len(tgts) == 2
        assert tgts[0].shape == tgts[1].shape and tgts[0].shape[0] == 5 and tgts[0].shape[2] == 2
        for b in range(5):
            n_samples = int(lens[b])
            a = wav[b, :n_samples].double().numpy()
            assert torch.all(wav[b, n_samples:] == 0)
            u = int(a[0] // 100000)
            first = a[0] - u * 100000
            j0, c_in = int(first), round((first % 1) * 4)
            np.testing.assert_array_equal(a - a[0], np.arange(n_samples))  # one contiguous crop
            assert j0 % HOP == 0
            k = j0 // HOP
            rows = tgts[0][b].double().numpy()[:, 0]
            n_frames = int((rows != 0).sum())
            assert np.all(rows[n_frames:] == 0)  # padding only at the end
            assert conv_frames(n_samples) == n_frames  # the alignment contract
            assert n_samples == n_frames * HOP + 80
            assert 1 <= n_frames <= crop
            full = min(conv_frames(lengths[u]), max(conv_frames(lengths[u]) + deltas[u], 1))
            assert n_frames == min(crop, full)  # as long as the crop allows
            assert k + n_frames <= full  # inside both the audio and the cached targets
            assert j0 + n_samples <= lengths[u]
            for li, layer in enumerate([0, 2]):
                vals = tgts[li][b, :n_frames, 0].double().numpy()
                assert np.all(vals // 10000 == u)  # same utterance as the audio
                rest = vals - u * 10000 - 1
                t = np.floor(rest)
                np.testing.assert_array_equal(t, np.arange(k, k + n_frames))  # frames k .. k+F-1
                frac = rest - t
                c_tgt = int(frac[0] // 0.5)
                np.testing.assert_allclose(frac - c_tgt * 0.5, layer / 8)  # the requested layer
                seen_tgt.add((u, c_tgt))
            assert f"u{u}" in train
            seen_in.add((u, c_in))
            pairs.add((c_in, c_tgt))
    # both copies are drawn, for input and for targets, independently of each other
    assert {c for _, c in seen_in} == {0, 1}
    assert {c for _, c in seen_tgt} == {0, 1}
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert {u for u, _ in seen_in} == {int(x[1:]) for x in train}


def test_crops_are_seeded(tmp_path):
    audio, targets = _coded_caches(tmp_path, [5000, 9000, 12000], [0, -1, 1])
    ids = ["u0", "u1", "u2"]
    a = DistillBatches(audio, targets, [1], ids, 10, seed=3)
    b = DistillBatches(audio, targets, [1], ids, 10, seed=3)
    c = DistillBatches(audio, targets, [1], ids, 10, seed=4)
    xa, xb, xc = a.next(4), b.next(4), c.next(4)
    assert torch.equal(xa.wav, xb.wav) and torch.equal(xa.targets[0][0], xb.targets[0][0])
    assert not (xa.wav.shape == xc.wav.shape and torch.equal(xa.wav, xc.wav))


def test_no_train_utterance_cached(tmp_path):
    audio, targets = _coded_caches(tmp_path, [5000], [0])
    with pytest.raises(ValueError, match="no training utterance"):
        DistillBatches(audio, targets, [0], ["other"], 10, seed=0)


def test_utt_of():
    assert utt_of("a@b@3") == "a@b"
    assert utt_of("x@0") == "x"


# ---------------------------------------------------------------- end-to-end training


def _dataset(tmp_path, num_layers=3, dim=16, n_utts=6, spec=None, drop=()):
    """A view-audio index, a feature index of a fake teacher (config entry `spec`, fingerprint keys `drop` left
    out as an older store lacks them) whose targets depend on the audio, a manifest."""
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((num_layers, dim, 4))
    bias = rng.standard_normal((num_layers, dim)) * 2
    audio, feats, rows = {}, {}, []
    for u in range(n_utts):
        n = int(rng.integers(9600, 24000))
        t = np.arange(n) / 16000
        f0 = rng.uniform(120, 300)
        amp = 0.1 + 0.3 * np.abs(np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        wav = (amp * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)
        frames = conv_frames(n)
        env = amp[::HOP][:frames]
        basis = np.stack([env, env ** 2, np.full(frames, f0 / 300), np.ones(frames)], axis=1)
        x = np.einsum("lde,te->tld", proj, basis) + bias[None]
        audio[f"utt{u}@0"] = wav
        feats[f"utt{u}@0"] = x.astype(np.float16)
        rows.append({"utt_id": f"utt{u}", "path": f"/nonexistent/utt{u}.wav", "num_samples": n,
                     "sample_rate": 16000, "split": "train" if u < n_utts - 1 else "test", "speaker": "s0"})
    half = n_utts // 2
    a0 = _store(tmp_path / "views" / "shard0.zarr", dict(list(audio.items())[:half]), {"kind": "view_audio"})
    a1 = _store(tmp_path / "views" / "shard1.zarr", dict(list(audio.items())[half:]), {"kind": "view_audio"})
    fp = teacher_fingerprint("tiny", spec, name="tiny", num_layers=num_layers, dim=dim, frame_rate=50)
    fp = {k: v for k, v in fp.items() if k not in drop}
    f0_ = _store(tmp_path / "cache" / "shard0.zarr", dict(list(feats.items())[:half]), fp, "float16")
    f1_ = _store(tmp_path / "cache" / "shard1.zarr", dict(list(feats.items())[half:]), fp, "float16")
    build_index([a0, a1], str(tmp_path / "views" / "index.tsv"))
    build_index([f0_, f1_], str(tmp_path / "cache" / "index.tsv"))
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.tsv")
    return {"manifest": str(tmp_path / "manifest.tsv"), "audio": str(tmp_path / "views" / "index.tsv"),
            "targets": str(tmp_path / "cache" / "index.tsv")}


def _no_downstream(cfg):
    cfg["downstream"]["upstreams"] = []
    for task in cfg["downstream"].get("tasks", {}).values():
        task.pop("upstreams", None)


def _config(path, steps, method="distilhubert", spec=None, **train):
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["teachers"] = {"tiny": dict(spec or NEVER_LOADED)}
    cfg["students"] = {"st": {
        "method": method, "teacher": "tiny",
        "arch": {"conv_channels": 16, "dim": 32, "layers": 1, "heads": 2, "ffn": 64},
        "train": {"steps": steps, "batch_size": 4, "crop_seconds": 0.5, "lr": 1e-3, "warmup": 0.1, **train}}}
    _no_downstream(cfg)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("num_layers,expect", [(13, [4, 8, 12]), (7, [2, 4, 6]), (5, [1, 3, 4])])
def test_target_layers_relative_depth(tmp_path, num_layers, expect):
    """METHODS.md: hidden states 4, 8, 12 of a 12-layer teacher (index 0 = transformer input)."""
    data = _dataset(tmp_path, num_layers=num_layers, dim=4, n_utts=3)
    config = _config(tmp_path / "config.yaml", steps=1)
    out = tmp_path / "out"
    train_student(config, "st", data["manifest"], data["audio"], data["targets"], str(out),
                  resume_dir=str(tmp_path / "resume"))
    assert json.loads((out / "config.json").read_text())["target_layers"] == expect


RESEMBLYZER = {"kind": "resemblyzer", "path": "never-loaded"}


@pytest.mark.parametrize(("spec", "drop", "expect"), [
    (RESEMBLYZER, (), [0, 1, 2]),  # 3 LSTM outputs, no input state: each one a target once
    (None, (), [1, 1, 2]),  # 3 states of which state 0 is the input (input + 2 layers)
    (None, ("input_state",), [1, 1, 2]),  # a store written before the key existed: an input state
])
def test_target_layers_follow_the_caches_input_state(tmp_path, spec, drop, expect):
    data = _dataset(tmp_path, num_layers=3, dim=4, n_utts=3, spec=spec, drop=drop)
    config = _config(tmp_path / "config.yaml", steps=1, spec=spec)
    out = tmp_path / "out"
    train_student(config, "st", data["manifest"], data["audio"], data["targets"], str(out),
                  resume_dir=str(tmp_path / "resume"))
    assert json.loads((out / "config.json").read_text())["target_layers"] == expect


def test_train_refuses_a_resemblyzer_cache_without_input_state(tmp_path):
    """A Resemblyzer cache written before stores recorded input_state reads as having one: refused, not
    silently mapped to states 1, 1, 2."""
    data = _dataset(tmp_path, num_layers=3, dim=4, n_utts=3, spec=RESEMBLYZER, drop=("input_state",))
    config = _config(tmp_path / "config.yaml", steps=1, spec=RESEMBLYZER)
    from pipeline.cache.store import CacheMismatchError

    with pytest.raises(CacheMismatchError, match="input_state"):
        train_student(config, "st", data["manifest"], data["audio"], data["targets"], str(tmp_path / "out"),
                      resume_dir=str(tmp_path / "resume"))


def test_train_refuses_other_teachers_cache(tmp_path):
    data = _dataset(tmp_path, n_utts=3)
    cfg = yaml.safe_load(Path(_config(tmp_path / "config.yaml", steps=1)).read_text())
    cfg["teachers"]["other"] = {"kind": "hf", "model": "x"}
    cfg["students"]["st"]["teacher"] = "other"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    from pipeline.cache.store import CacheMismatchError

    with pytest.raises(CacheMismatchError, match="name"):
        train_student(str(tmp_path / "config.yaml"), "st", data["manifest"], data["audio"], data["targets"],
                      str(tmp_path / "out"), resume_dir=str(tmp_path / "resume"))


class _Killed(RuntimeError):
    pass


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, monkeypatch, caplog):
    data = _dataset(tmp_path)
    steps = 60  # checkpoint every max(50, steps // 10) = 50 steps
    config = _config(tmp_path / "config.yaml", steps=steps)
    run = dict(manifest=data["manifest"], audio=data["audio"], targets=data["targets"])

    train_student(config, "st", out_dir=str(tmp_path / "full"), resume_dir=str(tmp_path / "r_full"), **run)

    real_next = DistillBatches.next
    calls = {"n": 0}

    def dying_next(self, batch_size):
        calls["n"] += 1
        if calls["n"] > 55:  # killed during step 55, after the checkpoint at step 50
            raise _Killed("simulated kill")
        return real_next(self, batch_size)

    monkeypatch.setattr(DistillBatches, "next", dying_next)
    with pytest.raises(_Killed):
        train_student(config, "st", out_dir=str(tmp_path / "resumed"), resume_dir=str(tmp_path / "r"), **run)
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    assert (tmp_path / "r" / "st.pt").exists()
    state = torch.load(tmp_path / "r" / "st.pt", weights_only=True)
    assert state["step"] == 50

    def counting_next(self, batch_size):
        calls["n"] += 1
        return real_next(self, batch_size)

    calls["n"] = 0
    monkeypatch.setattr(DistillBatches, "next", counting_next)
    with caplog.at_level(logging.INFO, logger=train_mod.__name__):
        train_student(config, "st", out_dir=str(tmp_path / "resumed"), resume_dir=str(tmp_path / "r"), **run)
    assert steps - 50 <= calls["n"] <= steps - 50 + 2  # only the remaining steps ran (+ the prefetcher's lead)
    assert "resuming from step 50" in caplog.text
    assert not (tmp_path / "r" / "st.pt").exists()

    full = load_file(tmp_path / "full" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    cf = pd.read_csv(tmp_path / "full" / "curve.tsv", sep="\t")
    cr = pd.read_csv(tmp_path / "resumed" / "curve.tsv", sep="\t")
    assert cr["step"].tolist() == cf["step"].tolist()
    np.testing.assert_array_equal(cr["train_loss"].to_numpy(), cf["train_loss"].to_numpy())


def test_same_view_pairs_distinct_copies(tmp_path):
    """Cross-distortion setup 2: input and target from one view never pair a copy with itself."""
    audio, targets = _coded_caches(tmp_path, [16000] * 4, [0] * 4, copies=2)
    batches = DistillBatches(audio, targets, [0], [f"u{u}" for u in range(4)], 20, seed=3, distinct_copies=True)
    for _ in range(20):
        batch = batches.next(4)
        wav, tgts = batch.wav, batch.targets[0]
        for b in range(4):
            copy_in = round((float(wav[b, 0]) % 1) * 4)  # audio encodes copy / 4
            copy_tgt = round((float(tgts[0][b, 0, 0]) % 1) * 2)  # target encodes copy / 2
            assert {copy_in, copy_tgt} == {0, 1}, (copy_in, copy_tgt)


def test_input_mix_draws_both_views_and_labels_follow_the_drawn_copy(tmp_path):
    """Domain-adversarial inputs: clean with probability p, else the distorted view; labels from that copy."""
    clean_dir, noisy_dir = tmp_path / "clean", tmp_path / "noisy"
    clean_dir.mkdir()
    noisy_dir.mkdir()
    clean, targets = _coded_caches(clean_dir, [16000] * 4, [0] * 4, copies=1)
    noisy, _ = _coded_caches(noisy_dir, [16000] * 4, [0] * 4, copies=2)
    plans = {"clean": pd.DataFrame({"key": clean.keys, "recipe": ["{}"] * len(clean.keys)}),
             "indomain": pd.DataFrame({"key": noisy.keys, "recipe": ['{"noise": {"type": "pink"}}'] * len(noisy.keys)})}
    labels = DomainLabels(plans, "clean_vs_distorted")
    batches = DistillBatches({"indomain": noisy, "clean": clean}, [targets], [[0]], [f"u{u}" for u in range(4)], 10,
                             seed=0, extras=[labels], input_mix={"indomain": 0.7, "clean": 0.3}, target_view="clean")
    seen = []
    for _ in range(40):
        batch = batches.next(5)
        for b in range(5):
            copy_in = round((float(batch.wav[b, 0]) % 1) * 4)
            seen.append(int(batch.domains[b]))
            if batch.domains[b] == 0:
                assert copy_in == 0  # the clean view has one copy
    share = np.mean(seen)
    assert 0.55 < share < 0.85  # about 70 % distorted


def test_whole_utterances_without_targets(tmp_path):
    audio, _ = _coded_caches(tmp_path, [5000, 9000, 12000], [0, 0, 0], copies=1)
    batches = DistillBatches(audio, [], [], ["u0", "u1", "u2"], None, seed=0)
    batch = batches.next(3)
    assert batch.targets == [] and batch.frames is None
    for b in range(3):
        u = int(float(batch.wav[b, 0]) // 100000)
        n = [5000, 9000, 12000][u]
        assert int(batch.lengths[b]) == conv_frames(n) * HOP + 80  # the whole utterance, frame-aligned


def test_whole_utterance_batches_group_similar_lengths(tmp_path):
    lengths = [4000 + 1000 * i for i in range(30)]
    audio, _ = _coded_caches(tmp_path, lengths, [0] * 30, copies=1)
    ids = [f"u{u}" for u in range(30)]
    batches = DistillBatches(audio, [], [], ids, None, seed=0)
    seen = set()
    for _ in range(50):
        batch = batches.next(4)
        us = [int(float(batch.wav[b, 0]) // 100000) for b in range(4)]
        assert len(set(us)) == 4 and max(us) - min(us) < 8  # within a window of 2 * batch_size by length
        seen.update(us)
    assert len(seen) > 20  # every length range is visited


def test_sweep_covers_every_utterance_once_shortest_first(tmp_path):
    """The whole-utterance dev set: each utterance exactly once, by length, whole, in batches of the size asked."""
    lengths = [4000 + 1000 * ((7 * i) % 11) for i in range(11)]  # shuffled lengths
    audio, _ = _coded_caches(tmp_path, lengths, [0] * 11, copies=1)
    batches = DistillBatches(audio, [], [], [f"u{u}" for u in range(11)], None, seed=0)
    swept = batches.sweep(4)
    assert [len(b.lengths) for b in swept] == [4, 4, 3]
    order = [int(float(b.wav[i, 0]) // 100000) for b in swept for i in range(len(b.lengths))]
    assert sorted(order) == list(range(11))
    assert [lengths[u] for u in order] == sorted(lengths)
    for b in swept:
        for i in range(len(b.lengths)):
            assert int(b.lengths[i]) == conv_frames(lengths[int(float(b.wav[i, 0]) // 100000)]) * HOP + 80
    assert [int(x) for b in batches.sweep(4) for x in b.lengths] == [int(x) for b in swept for x in b.lengths]
    capped = [int(float(b.wav[i, 0]) // 100000) for b in batches.sweep(2, limit=4) for i in range(len(b.lengths))]
    by_length = sorted(range(11), key=lambda u: lengths[u])
    assert capped == [by_length[i] for i in (0, 3, 7, 10)]  # shortest, longest and evenly between


def test_prefetcher_hands_out_the_synchronous_batches_and_rng_states(tmp_path):
    """The background loader changes when a batch is drawn, never which: same batches, same order, and after
    each one the sampler state a synchronous loader would have (what a checkpoint saves)."""
    from pipeline.distill.data import Prefetcher

    lengths = [4000 + 900 * u for u in range(8)]
    audio, targets = _coded_caches(tmp_path, lengths, [0] * len(lengths))
    utts = [f"u{u}" for u in range(len(lengths))]
    sync = DistillBatches(audio, targets, [0, 2], utts, 20, seed=3)
    with Prefetcher(DistillBatches(audio, targets, [0, 2], utts, 20, seed=3), batch_size=4) as loader:
        assert loader.rng_state == sync.rng.bit_generator.state
        for _ in range(12):
            want, got = sync.next(4), loader.next()
            assert torch.equal(want.wav, got.wav) and torch.equal(want.lengths, got.lengths)
            assert all(torch.equal(a, b) for a, b in zip(want.targets[0], got.targets[0], strict=True))
            assert loader.rng_state == sync.rng.bit_generator.state
    assert not loader._thread.is_alive()


def test_prefetcher_raises_the_loader_error_in_the_caller(tmp_path):
    from pipeline.distill.data import Prefetcher

    audio, targets = _coded_caches(tmp_path, [4000, 5000], [0, 0])
    batches = DistillBatches(audio, targets, [0, 2], ["u0", "u1"], 20, seed=0)
    batches.next = lambda size: (_ for _ in ()).throw(OSError("disk gone"))
    loader = Prefetcher(batches, batch_size=2)
    with pytest.raises(OSError, match="disk gone"):
        loader.next()
    loader.close()
