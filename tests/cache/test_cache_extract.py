"""extract_shard: a tiny random Hugging Face teacher over a view-audio store -> feature store."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import HubertConfig, HubertModel

from pipeline.cache.extract import _batches, extract_shard, upstream_spec
from pipeline.cache.store import CacheMismatchError, Store, StoreWriter
from pipeline.teachers.base import weights_sha256
from pipeline.teachers.registry import load_upstream

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _teacher(path, **extra):
    torch.manual_seed(0)
    HubertModel(HubertConfig(**TINY, **extra)).save_pretrained(path)
    return path


def _audio(path, n=5, seed=0, prefix="u"):
    rng = np.random.default_rng(seed)
    wavs = {}
    for i in range(n):
        t = np.arange(int(rng.integers(8000, 32000))) / 16000
        wavs[f"{prefix}{i}@0"] = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
                           + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    fp = {"kind": "view_audio", "corpus": "synthetic", "view": "clean", "shard": 0}
    with StoreWriter(path, fp, dtype="float32") as w:
        for k, v in wavs.items():
            w.add(k, v)
    return wavs


def _config(path, teacher_dir, teachers=None, **cache):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["teachers"] = teachers or {"tiny": {"kind": "hf", "model": str(teacher_dir)}}
    cfg["students"] = {}
    cfg["downstream"]["upstreams"] = []
    cfg["cache"].update(cache)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_extract_matches_teacher_hidden_states(tmp_path, norm):
    extra = {"feat_extract_norm": norm, "do_stable_layer_norm": norm == "layer"}
    teacher = _teacher(tmp_path / "tiny", **extra)
    wavs = _audio(tmp_path / "audio.zarr")
    # 1.5 s per extraction batch: several batches, several clips per batch (batched path for 'layer')
    config = _config(tmp_path / "config.yaml", teacher, dtype="float16", batch_seconds=2.5)
    out = tmp_path / "feats.zarr"
    extract_shard(config, "tiny", str(tmp_path / "audio.zarr"), str(out))

    ref = load_upstream("tiny", {"kind": "hf", "model": str(teacher)})
    store = Store(out, expect={"name": "tiny"})
    assert sorted(store.ids) == sorted(wavs)
    assert store.dtype == np.float16
    for key, wav in wavs.items():
        states = ref.hidden_states(torch.from_numpy(wav))
        expect = torch.stack(states, dim=1).numpy()  # (T, layers, dim)
        got = store.get(key)
        assert got.shape == expect.shape == (ref.num_frames(len(wav)), 3, 32)
        # float16 storage: relative error ~ 2^-11 of each value, plus a small absolute slack from batching
        np.testing.assert_allclose(got.astype(np.float32), expect, rtol=2e-3,
                                   atol=1e-3 * float(np.abs(expect).max()))
        if norm == "group":  # per-clip path: exactly the float16 rounding of the teacher's output
            np.testing.assert_array_equal(got, expect.astype(np.float16))

    fp = store.fingerprint
    assert fp["name"] == "tiny" and fp["upstream"] == "tiny"
    assert fp["sha256"] == weights_sha256(ref)
    assert fp["num_params"] == sum(p.numel() for p in ref.parameters())
    assert fp["num_layers"] == 3 and fp["dim"] == 32
    assert fp["view_audio"] == {"kind": "view_audio", "corpus": "synthetic", "view": "clean", "shard": 0}
    assert fp["dtype"] == "float16"
    with pytest.raises(CacheMismatchError):
        Store(out, expect={"sha256": "0" * 64})


def test_extract_fbank_into_a_store(tmp_path):
    """The parameter-free fbank upstream caches like any teacher: its features in float16, 0 parameters, and a
    fingerprint holding its settings, so features made with other settings are refused."""
    from pipeline.cache.extract import expected_fingerprint
    from pipeline.config import load_config
    from pipeline.teachers.fbank import FbankSettings, FbankUpstream

    wavs = _audio(tmp_path / "audio.zarr", n=4, seed=3)
    config = _config(tmp_path / "config.yaml", None, teachers={"fbank": {"kind": "fbank"}}, batch_seconds=2.5)
    out = tmp_path / "feats.zarr"
    extract_shard(config, "fbank", str(tmp_path / "audio.zarr"), str(out))
    cfg, ref = load_config(config), FbankUpstream(name="fbank")
    store = Store(out, expect=expected_fingerprint(cfg, "fbank", ref))
    assert sorted(store.ids) == sorted(wavs)
    for key, wav in wavs.items():
        want = ref.hidden_states(torch.from_numpy(wav))[0][:, None].numpy().astype(np.float16)
        assert want.shape == (ref.num_frames(len(wav)), 1, 240)
        np.testing.assert_array_equal(store.get(key), want)
    fp = store.fingerprint
    assert fp["num_params"] == 0 and fp["kind"] == "fbank" and fp["spec"] == {"kind": "fbank", "layers": "all"}
    other = FbankUpstream(FbankSettings(cmvn=False), name="fbank")
    with pytest.raises(CacheMismatchError, match="fbank"):
        Store(out, expect=expected_fingerprint(cfg, "fbank", other))


def test_extract_float32_zstd(tmp_path):
    teacher = _teacher(tmp_path / "tiny")
    wavs = _audio(tmp_path / "audio.zarr", n=3, seed=1)
    config = _config(tmp_path / "config.yaml", teacher, dtype="float32", compression="zstd")
    out = tmp_path / "feats.zarr"
    extract_shard(config, "tiny", str(tmp_path / "audio.zarr"), str(out))
    ref = load_upstream("tiny", {"kind": "hf", "model": str(teacher)})
    store = Store(out)
    assert store.dtype == np.float32 and store._maps is None
    for key, wav in wavs.items():
        expect = torch.stack(ref.hidden_states(torch.from_numpy(wav)), dim=1).numpy()
        np.testing.assert_array_equal(store.get(key), expect)


def test_extract_refuses_non_audio_store(tmp_path):
    teacher = _teacher(tmp_path / "tiny")
    with StoreWriter(tmp_path / "notaudio.zarr", {"kind": "features"}, dtype="float32") as w:
        w.add("u0@0", np.zeros(16000, np.float32))
    config = _config(tmp_path / "config.yaml", teacher)
    with pytest.raises(CacheMismatchError, match="kind"):
        extract_shard(config, "tiny", str(tmp_path / "notaudio.zarr"), str(tmp_path / "out.zarr"))
    assert not (tmp_path / "out.zarr").exists()


def test_batches_group_by_samples(tmp_path):
    _audio(tmp_path / "audio.zarr", n=7, seed=2)
    store = Store(tmp_path / "audio.zarr")
    limit = 40000
    groups = _batches(store, limit)
    assert sorted(i for g in groups for i in g) == list(range(len(store)))  # every utterance once
    for g in groups:
        padded = len(g) * max(store.num_rows(i) for i in g)  # samples in the zero-padded batch
        assert padded <= limit or len(g) == 1
    assert len(groups) < len(store)  # some grouping happens at this limit


def test_subset_utterances_keeps_labelled_rows_of_the_splits(tmp_path):
    """Rows of the asked splits with a label in any asked column (blank = unlabelled); a column the manifest lacks
    filters nothing (evaluation names it)."""
    from pipeline.cache.extract import subset_utterances
    from pipeline.corpus.manifest import write_manifest

    rows = [{"utt_id": f"u{i}", "path": "x.wav", "num_samples": 16000, "sample_rate": 16000, "speaker": "a",
             "split": ["train", "dev", "test"][i % 3], "keyword": "yes" if i < 4 else "",
             "intent": "lights_on" if i in (4, 5) else " "} for i in range(9)]
    manifest = tmp_path / "m.tsv"
    write_manifest(pd.DataFrame(rows), manifest)
    assert subset_utterances(str(manifest)) == {f"u{i}" for i in range(9)}
    assert subset_utterances(str(manifest), ["test"]) == {"u2", "u5", "u8"}
    assert subset_utterances(str(manifest), labels=["keyword"]) == {"u0", "u1", "u2", "u3"}
    assert subset_utterances(str(manifest), labels=["intent"]) == {"u4", "u5"}
    assert subset_utterances(str(manifest), ["test", "dev"], ["keyword", "intent"]) == {"u1", "u2", "u4", "u5"}
    assert subset_utterances(str(manifest), ["test"], ["keyword", "emotion"]) == {"u2", "u5", "u8"}


def test_upstream_spec():
    cfg = {"teachers": {"t": {"kind": "hf"}}, "students": {"s": {}}}
    assert upstream_spec(cfg, "t") == {"kind": "hf"}
    assert upstream_spec(cfg, "s", "ck") == {"kind": "student", "checkpoint": "ck"}
    with pytest.raises(ValueError, match="checkpoint"):
        upstream_spec(cfg, "s")
    with pytest.raises(KeyError, match="neither"):
        upstream_spec(cfg, "zzz")


def test_extract_upstream_writes_every_evaluated_store_like_extract_shard(tmp_path):
    """One process, one model load: the stores and indexes an upstream's evaluation reads (Layout's paths),
    each equal to what the per-shard verb writes from the same view audio: the utterances labelled for its one
    task (KS), and of views that are only scored the test split alone."""
    from pipeline.cache.index import FeatureCache
    from pipeline.config import load_config
    from pipeline.corpus.manifest import write_manifest
    from pipeline.upstream_features import extract_upstream
    from pipeline.workflow import Layout

    teacher = _teacher(tmp_path / "tiny")
    cfg = yaml.safe_load(Path(_config(tmp_path / "c.yaml", teacher)).read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["views"]["shards"] = 2
    cfg["corpus"]["real"] = {"asterisk": False}
    cfg["downstream"] = {"upstreams": ["tiny"], "conditions": ["clean", "indomain"],
                         "tasks": {"ks": {"steps": 1, "lr": 1e-3}}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    layout = Layout(load_config(config))
    assert layout.feature_sources("tiny") == [("synthetic", "clean"), ("synthetic", "indomain")]
    assert layout.head_sources("tiny") == {("synthetic", "clean")}
    assert len(layout.feature_shards("tiny")) == 4
    for corpus, view, shard in layout.feature_shards("tiny"):
        Path(layout.view_store(corpus, view, shard)).parent.mkdir(parents=True, exist_ok=True)
        _audio(Path(layout.view_store(corpus, view, shard)), n=3, seed=shard, prefix=f"s{shard}-")
    rows = [{"utt_id": f"s{shard}-{i}", "path": "x.wav", "num_samples": 16000, "sample_rate": 16000,
             "split": "test" if i == 0 else "train", "speaker": "a", "keyword": "yes" if i < 2 else ""}
            for shard in (0, 1) for i in range(3)]
    Path(layout.manifest("synthetic")).parent.mkdir(parents=True, exist_ok=True)
    write_manifest(pd.DataFrame(rows), layout.manifest("synthetic"))

    extract_upstream(str(config), "tiny")
    for corpus, view, shard in layout.feature_shards("tiny"):
        alone = tmp_path / f"alone-{view}-{shard}.zarr"
        extract_shard(str(config), "tiny", layout.view_store(corpus, view, shard), str(alone))
        got, ref = Store(layout.feature_store("tiny", corpus, view, shard)), Store(alone)
        want = [f"s{shard}-0@0"]  # scored-only view: its test utterance; the clean view: every labelled one
        want += [f"s{shard}-1@0"] if view == "clean" else []
        assert len(ref.ids) == 3
        assert sorted(got.ids) == sorted(want)
        assert got.fingerprint == ref.fingerprint
        for key in want:
            np.testing.assert_array_equal(got.get(key), ref.get(key))
        if view != "clean":  # a teacher's scored-only shard (rule extract_teacher) holds the same keys
            subset = tmp_path / f"test-{view}-{shard}.zarr"
            extract_shard(str(config), "tiny", layout.view_store(corpus, view, shard), str(subset),
                          subset_of=layout.manifest(corpus), splits=["test"], labels=["keyword"])
            assert Store(subset).ids == got.ids
            np.testing.assert_array_equal(Store(subset).get(want[0]), ref.get(want[0]))
    assert len(FeatureCache.open(layout.feature_index("tiny", "synthetic", "clean")).keys) == 4
    assert len(FeatureCache.open(layout.feature_index("tiny", "synthetic", "indomain")).keys) == 2
