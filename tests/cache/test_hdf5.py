"""HDF5 in and out: export-features writes a cache as one dataset per utterance; a `precomputed` teacher copies
such files back into the cache, checking every dataset, and students distil from it like from any teacher."""

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from faults.helpers import base_config, tiny_teacher, view_store, write_config

from pipeline.cache.extract import extract_shard
from pipeline.cache.hdf5 import export_features
from pipeline.cache.index import PER_SHARD_KEYS, build_index
from pipeline.cache.store import CacheError, Store, StoreWriter
from pipeline.cli import main as cli_main


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict:
    """A tiny wav2vec2 teacher's features of two view-audio shards (3 states x 32), indexed."""
    root = tmp_path_factory.mktemp("cache")
    views = [str(view_store(root / f"view{s}.zarr", n=3, seed=s, prefix=f"s{s}-")) for s in (0, 1)]
    config = write_config(root / "config.yaml", base_config(tiny_teacher(root / "teacher")))
    stores = [str(root / f"feats{s}.zarr") for s in (0, 1)]
    for view, out in zip(views, stores, strict=True):
        extract_shard(config, "t", view, out)
    build_index(stores, str(root / "index.tsv"))
    return {"root": root, "views": views, "stores": stores, "index": str(root / "index.tsv"), "config": config}


def _precomputed(tmp_path: Path, path: Path, **entry) -> str:
    cfg = base_config()
    cfg["teachers"]["pre"] = {"kind": "precomputed", "path": str(path), **entry}
    return write_config(tmp_path / "pre.yaml", cfg)


def test_export_then_import_as_precomputed_is_bit_exact(tmp_path, cache):
    out = tmp_path / "feats.h5"
    assert cli_main(["export-features", "--index", cache["index"], "--out", str(out)]) == 0
    original = [Store(p) for p in cache["stores"]]
    with h5py.File(out, "r") as f:
        common = {k: v for k, v in original[0].fingerprint.items() if k not in PER_SHARD_KEYS}
        assert json.loads(f.attrs["fingerprint"]) == common and f.attrs["view"] == "clean"
        assert (f.attrs["frame_rate"], f.attrs["num_layers"], f.attrs["dim"]) == (50, 3, 32)
        assert json.loads(f.attrs["view_audio"]) == [s.fingerprint["view_audio"] for s in original]
        assert sorted(f) == sorted(k for s in original for k in s.ids)
    config = _precomputed(tmp_path, out)
    for view, store in zip(cache["views"], original, strict=True):
        extract_shard(config, "pre", view, str(tmp_path / "copy.zarr"))
        copy = Store(tmp_path / "copy.zarr")
        assert copy.ids == store.ids and copy.dtype == store.dtype == np.float16
        np.testing.assert_array_equal(copy.rows(0, copy.shape[0]).view(np.uint16),
                                      store.rows(0, store.shape[0]).view(np.uint16))
        fp = copy.fingerprint
        assert (fp["kind"], fp["num_layers"], fp["dim"], fp["frame_rate"], fp["input_state"]) == (
            "precomputed", 3, 32, 50, True)
        assert fp["origin"] == [common] and fp["view_audio"] == store.fingerprint["view_audio"]


def test_export_streams_store_by_store(tmp_path):
    """Memory flat in the cache size: exporting 4 MB of features allocates less than one 1 MB store's worth."""
    import tracemalloc

    rng, stores = np.random.default_rng(0), []
    for s in range(4):
        with StoreWriter(tmp_path / f"s{s}.zarr", {"kind": "test", "num_layers": 4, "dim": 64}) as w:
            for i in range(20):
                w.add(f"s{s}-{i}@0", rng.standard_normal((100, 4, 64)).astype(np.float16))
        stores.append(str(tmp_path / f"s{s}.zarr"))
    build_index(stores, str(tmp_path / "index.tsv"))
    tracemalloc.start()
    try:
        export_features(str(tmp_path / "index.tsv"), str(tmp_path / "f.h5"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20) // 2, peak
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert len(f) == 80 and f["s3-19@0"].shape == (100, 4, 64) and "view" not in f.attrs


def test_precomputed_layers_and_a_folder_of_files(tmp_path, cache):
    """`layers` selects stored states as for any teacher; a folder's files together hold the utterances."""
    folder = tmp_path / "h5"
    folder.mkdir()
    store = Store(cache["stores"][0])
    for i, key in enumerate(store.ids):
        with h5py.File(folder / f"part{i}.hdf5", "w") as f:  # a foreign file: no attributes, bare utterance ids
            f.create_dataset(key.rsplit("@", 1)[0], data=np.asarray(store[i], np.float32))
    (folder / "notes.txt").write_text("not a feature file")
    config = _precomputed(tmp_path, folder, layers=[0, -1])
    extract_shard(config, "pre", cache["views"][0], str(tmp_path / "copy.zarr"))
    copy = Store(tmp_path / "copy.zarr")
    for key in store.ids:
        np.testing.assert_array_equal(copy.get(key), store.get(key)[:, [0, 2]])
    assert copy.fingerprint["layers"] == [0, 2] and copy.fingerprint["origin"] == []


def _hand_made(tmp_path: Path, audio: str, change: dict | None = None, **attrs) -> Path:
    """An HDF5 file of plausible features for every clip of view-audio store `audio` (frames = samples // 320),
    with `change` replacing datasets by name (None removes one) and file attributes `attrs`."""
    store = Store(audio)
    rng = np.random.default_rng(0)
    path = tmp_path / "hand.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        for i, key in enumerate(store.ids):
            f.create_dataset(key, data=rng.standard_normal((store.num_rows(i) // 320, 3, 8)).astype(np.float32))
        for key, data in (change or {}).items():
            del f[key]
            if data is not None:
                f.create_dataset(key, data=data)
    return path


@pytest.mark.parametrize("data, problem", [
    (None, "no features for utterance s0-001@0 of view clean"),
    (np.zeros((30, 8), np.float32), r"has shape \(\d+, 8\), expected \(frames, 3, 8\)"),
    (np.zeros((30, 2, 8), np.float32), r"has shape \(\d+, 2, 8\), expected \(frames, 3, 8\)"),
    (np.zeros((30, 3, 8), np.int16), "holds int16, not floating-point features"),
    (np.zeros((5, 3, 8), np.float32), "has 5 frames, but its audio"),
    (np.full((30, 3, 8), np.nan, np.float32), "holds NaN or infinite values"),
])
def test_a_missing_or_malformed_dataset_is_named(tmp_path, cache, data, problem):
    view = cache["views"][0]
    if data is not None and data.shape[0] == 30:  # as many frames as the clip has
        data = np.resize(data, (Store(view).num_rows(1) // 320, *data.shape[1:]))
    path = _hand_made(tmp_path, view, {"s0-001@0": data})
    out = tmp_path / "copy.zarr"
    with pytest.raises(CacheError, match=problem) as err:
        extract_shard(_precomputed(tmp_path, path), "pre", view, str(out))
    assert str(path) in str(err.value) and "s0-001@0" in str(err.value)
    assert re.search("re-export|Add dataset", str(err.value))
    assert not out.exists()


def test_features_of_other_views_files_and_rates_are_refused(tmp_path, cache):
    view = cache["views"][0]
    folder = tmp_path / "two"
    folder.mkdir()
    _hand_made(tmp_path, view).rename(folder / "a.h5")
    _hand_made(tmp_path, view).rename(folder / "b.h5")
    with pytest.raises(CacheError, match=r"s0-00\d@0 is in more than one feature file: .*a\.h5.*b\.h5"):
        extract_shard(_precomputed(tmp_path, folder), "pre", view, str(tmp_path / "x.zarr"))
    noisy, source = tmp_path / "noisy.zarr", Store(view)  # a distorted view of the same clips
    with StoreWriter(noisy, {**source.fingerprint, "view": "indomain"}, dtype="float32") as w:
        for i, key in enumerate(source.ids):
            w.add(key, source[i])
    with pytest.raises(CacheError, match=r"no features for utterance s0-00\d@0 of view indomain"):
        extract_shard(_precomputed(tmp_path, folder / "a.h5"), "pre", str(noisy), str(tmp_path / "x.zarr"))
    rendered = Store(noisy).fingerprint
    other = _hand_made(tmp_path, view, view="indomain", view_audio=json.dumps([{**rendered, "plan_sha256": "x"}]))
    with pytest.raises(CacheError, match=r"of view indomain \(.*hand\.h5'\] hold view indomain rendered otherwise"):
        extract_shard(_precomputed(tmp_path, other), "pre", str(noisy), str(tmp_path / "x.zarr"))
    same = _hand_made(tmp_path, view, view="indomain", view_audio=json.dumps([rendered]))
    extract_shard(_precomputed(tmp_path, same), "pre", str(noisy), str(tmp_path / "x.zarr"))
    assert sorted(Store(tmp_path / "x.zarr").ids) == sorted(source.ids)
    rated = _hand_made(tmp_path, view, frame_rate=100)
    with pytest.raises(ValueError, match=r"frame_rate 100, the config entry 50; set teachers\.pre\.frame_rate"):
        extract_shard(_precomputed(tmp_path, rated), "pre", view, str(tmp_path / "x.zarr"))
    with pytest.raises(CacheError, match="no HDF5 feature file or folder here"):
        extract_shard(_precomputed(tmp_path, tmp_path / "absent.h5"), "pre", view, str(tmp_path / "x.zarr"))


def test_a_student_distils_from_a_precomputed_teacher(tmp_path, cache):
    """Targets copied from HDF5 serve a student like a teacher's own cache (fingerprints checked by config)."""
    from pipeline.corpus.manifest import write_manifest
    from pipeline.distill.train import train_student

    out = tmp_path / "feats.h5"
    export_features(cache["index"], str(out))
    cfg = base_config()
    cfg["teachers"]["pre"] = {"kind": "precomputed", "path": str(out)}
    cfg["students"]["st"] = {"method": "distilhubert", "teacher": "pre",
                             "arch": {"conv_channels": 16, "dim": 32, "layers": 1, "heads": 2, "ffn": 64},
                             "train": {"steps": 3, "batch_size": 2, "crop_seconds": 0.4, "lr": 1e-3}}
    config = write_config(tmp_path / "config.yaml", cfg)
    stores = [str(tmp_path / f"pre{s}.zarr") for s in (0, 1)]
    for view, store in zip(cache["views"], stores, strict=True):
        extract_shard(config, "pre", view, store)
    build_index(stores, str(tmp_path / "targets.tsv"))
    build_index(cache["views"], str(tmp_path / "audio.tsv"))
    ids = [k.rsplit("@", 1)[0] for v in cache["views"] for k in Store(v).ids]
    rows = [{"utt_id": u, "path": f"{u}.wav", "num_samples": 16000, "sample_rate": 16000,
             "split": "dev" if i == 0 else "train", "speaker": "s"} for i, u in enumerate(ids)]
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.tsv")
    train_student(config, "st", str(tmp_path / "manifest.tsv"), [str(tmp_path / "audio.tsv")],
                  [str(tmp_path / "targets.tsv")], str(tmp_path / "student"), resume_dir=str(tmp_path / "resume"))
    meta = json.loads((tmp_path / "student" / "config.json").read_text())
    assert (tmp_path / "student" / "model.safetensors").exists() and meta["teacher"] == "pre"
