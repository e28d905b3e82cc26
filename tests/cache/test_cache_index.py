"""build_index over shard stores and FeatureCache random access."""

import numpy as np
import pandas as pd
import pytest

from pipeline.cache.index import FeatureCache, build_index
from pipeline.cache.store import CacheError, CacheMismatchError, Store, StoreWriter

FP = {"name": "tiny", "num_layers": 2, "dim": 3, "code_version": "1"}


def _store(path, utts, fp):
    with StoreWriter(path, fp) as w:
        for k, a in utts.items():
            w.add(k, a)
    return str(path)


def _utts(rng, names):
    return {k: rng.standard_normal((int(rng.integers(1, 30)), 2, 3)).astype(np.float16) for k in names}


def test_index_over_two_stores(tmp_path):
    rng = np.random.default_rng(0)
    a = _utts(rng, ["a@0", "b@0", "c@1"])
    b = _utts(rng, ["d@0", "e@0"])
    s0 = _store(tmp_path / "shard0.zarr", a, {**FP, "view_audio": {"shard": 0}})
    s1 = _store(tmp_path / "shard1.zarr", b, {**FP, "view_audio": {"shard": 1}})
    index = tmp_path / "sub" / "index.tsv"
    build_index([s0, s1], str(index))

    df = pd.read_csv(index, sep="\t")
    assert list(df.columns) == ["key", "store", "row", "start", "frames"]
    assert df["key"].tolist() == ["a@0", "b@0", "c@1", "d@0", "e@0"]
    assert df["store"].tolist() == [s0] * 3 + [s1] * 2
    assert df["row"].tolist() == [0, 1, 2, 0, 1]
    assert df["frames"].tolist() == [len(x) for x in (*a.values(), *b.values())]
    la = [len(x) for x in a.values()]
    lb = [len(x) for x in b.values()]
    assert df["start"].tolist() == [0, la[0], la[0] + la[1], 0, lb[0]]

    cache = FeatureCache.open(index, expect={"name": "tiny"})
    assert len(cache) == 5
    assert cache.keys == sorted([*a, *b])
    for k, x in {**a, **b}.items():
        assert k in cache
        np.testing.assert_array_equal(cache.get(k), x)
        assert cache.num_rows(k) == len(x)
    assert "zzz@0" not in cache
    with pytest.raises(KeyError):
        cache.get("zzz@0")
    assert cache.fingerprint["name"] == "tiny"
    with pytest.raises(CacheMismatchError, match="name"):
        FeatureCache.open(index, expect={"name": "other"})


def test_mixed_fingerprints_refused(tmp_path):
    rng = np.random.default_rng(1)
    s0 = _store(tmp_path / "s0.zarr", _utts(rng, ["a@0"]), FP)
    s1 = _store(tmp_path / "s1.zarr", _utts(rng, ["b@0"]), {**FP, "sha256": "different"})
    with pytest.raises(CacheError, match="different producers"):
        build_index([s0, s1], str(tmp_path / "index.tsv"))
    assert not (tmp_path / "index.tsv").exists()


def test_duplicate_keys_refused(tmp_path):
    rng = np.random.default_rng(2)
    s0 = _store(tmp_path / "s0.zarr", _utts(rng, ["a@0", "b@0"]), FP)
    s1 = _store(tmp_path / "s1.zarr", _utts(rng, ["c@0", "b@0"]), FP)
    with pytest.raises(CacheError, match="b@0"):
        build_index([s0, s1], str(tmp_path / "index.tsv"))
    assert not (tmp_path / "index.tsv").exists()


def test_index_refuses_incomplete_store(tmp_path):
    with pytest.raises(CacheError, match="no store"):
        build_index([str(tmp_path / "missing.zarr")], str(tmp_path / "index.tsv"))


def test_empty_index_refused(tmp_path):
    index = tmp_path / "index.tsv"
    pd.DataFrame(columns=["key", "store", "row", "start", "frames"]).to_csv(index, sep="\t", index=False)
    with pytest.raises(CacheError, match="no stores"):
        FeatureCache.open(index)


def test_feature_cache_from_stores_directly(tmp_path):
    rng = np.random.default_rng(3)
    a = _utts(rng, ["x@0", "x@1"])
    cache = FeatureCache([Store(_store(tmp_path / "s.zarr", a, FP))])
    for k, v in a.items():
        np.testing.assert_array_equal(cache.get(k), v)


def test_reads_unmap_the_stores_every_release_bytes(tmp_path, monkeypatch):
    """Mapped pages count in RSS: past RELEASE_BYTES read, every store's maps are dropped; what was returned
    before stays readable, and later reads map the files again."""
    from pipeline.cache import index

    rng = np.random.default_rng(3)
    utts = _utts(rng, [f"u{i}@0" for i in range(12)])
    build_index([_store(tmp_path / "s.zarr", utts, FP)], str(tmp_path / "index.tsv"))
    cache = FeatureCache.open(tmp_path / "index.tsv")
    monkeypatch.setattr(index, "RELEASE_BYTES", 200)
    held, released = [], 0
    for key in sorted(utts):
        held.append((key, cache.get(key)))
        released += not cache.stores[0]._maps
    assert released >= 2 and cache._mapped <= 200
    for key, rows in held:
        np.testing.assert_array_equal(rows, utts[key])
    assert sorted(utts, key=cache.position) == cache.stores[0].ids  # storage order
