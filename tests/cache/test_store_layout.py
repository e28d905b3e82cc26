"""Uncompressed stores: small inner chunks bound zarr's padding, the memmap fast path reads them; fast checks.

zarr pads the array's last inner chunk to full size on disk; with one 64 MB chunk per shard a
7 MB store took 67 MB (bench/README.md, storage benchmark). Inner chunks of INNER_BYTES keep the
padding under one inner chunk, and Store memmaps each shard's run of inner chunks in place.
"""

import numpy as np
import pytest
import zarr

from pipeline.cache import store as store_mod
from pipeline.cache.store import Store, StoreWriter


def _write(path, utts, compression="none", dtype="float16"):
    with StoreWriter(path, {"t": 1}, dtype, compression) as w:
        for k, a in utts.items():
            w.add(k, a)
    return path


def _utts(rng, n, trailing=(3, 4), lo=5, hi=40):
    return {f"u{i:02d}@0": rng.standard_normal((int(rng.integers(lo, hi)), *trailing)).astype(np.float16)
            for i in range(n)}


def _frames_bytes(path):
    return sum(f.stat().st_size for f in (path / "frames" / "c").rglob("*") if f.is_file())


def test_small_store_is_not_padded_to_a_whole_shard(tmp_path):
    rng = np.random.default_rng(0)
    utts = _utts(rng, 20, trailing=(7, 512), lo=50, hi=150)  # ~10 MB of float16, far below one 64 MB shard
    data = sum(a.nbytes for a in utts.values())
    path = _write(tmp_path / "s.zarr", utts)
    on_disk = _frames_bytes(path)
    assert data <= on_disk <= data + store_mod.INNER_BYTES + 16 * 1024  # data + at most one padded chunk + index
    st = Store(path)
    assert st._maps is not None
    for k, a in utts.items():
        np.testing.assert_array_equal(st.get(k), a)


@pytest.fixture
def small_chunks(monkeypatch):
    """Shards of 64 rows made of 8-row inner chunks (rows of 3 x 4 float16 = 24 bytes)."""
    monkeypatch.setattr(store_mod, "SHARD_BYTES", 64 * 24)
    monkeypatch.setattr(store_mod, "INNER_BYTES", 8 * 24)


def test_inner_chunks_are_memmapped_across_shards(tmp_path, small_chunks):
    rng = np.random.default_rng(1)
    utts = _utts(rng, 12)  # ~270 rows: several shards, the last one partial
    path = _write(tmp_path / "s.zarr", utts)
    meta = zarr.open_group(str(path), mode="r")["frames"].metadata
    inner = meta.codecs[0].chunk_shape[0]
    assert (inner, meta.chunk_grid.chunk_shape[0]) == (8, 64)
    st = Store(path)
    assert st._maps is not None and (st._shard_rows, st._inner_rows) == (64, 8)
    whole = np.concatenate(list(utts.values()))
    # independent reader: the zarr API over the same store
    np.testing.assert_array_equal(zarr.open_group(str(path), mode="r")["frames"][:], whole)
    np.testing.assert_array_equal(st.rows(0, len(whole)), whole)
    for k, a in utts.items():
        np.testing.assert_array_equal(st.get(k), a)
    n_shards = -(-len(whole) // 64)
    for s in range(n_shards):
        m = st._shard(s)
        assert m is not None and isinstance(m.base, np.memmap)  # a view of the file, not a copy
        assert len(m) == -(-min(64, len(whole) - 64 * s) // 8) * 8  # written rows, padded to whole inner chunks
    # padding: only the last inner chunk is padded
    data = whole.nbytes
    index = n_shards * (16 * 8 + 4)
    assert data + index <= _frames_bytes(path) < data + index + 8 * 24


def test_all_zero_inner_chunk_inside_a_shard_reads_through_zarr(tmp_path, small_chunks):
    rng = np.random.default_rng(2)
    utts = {"a@0": rng.standard_normal((20, 3, 4)).astype(np.float16),
            "z@0": np.zeros((20, 3, 4), np.float16),  # rows 20-39: inner chunk 24-31 is all zero, zarr skips it
            "b@0": rng.standard_normal((100, 3, 4)).astype(np.float16)}
    path = _write(tmp_path / "s.zarr", utts)
    st = Store(path)
    assert st._shard(0) is None  # a gap in shard 0: not one run of bytes, so the zarr API reads it
    assert st._shard(1) is not None
    for k, a in utts.items():
        np.testing.assert_array_equal(st.get(k), a)
    whole = np.concatenate(list(utts.values()))
    np.testing.assert_array_equal(st.rows(10, 90), whole[10:90])  # spans the gap and two shards


def test_one_dimensional_audio_store(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "SHARD_BYTES", 1000 * 4)
    monkeypatch.setattr(store_mod, "INNER_BYTES", 100 * 4)
    rng = np.random.default_rng(3)
    wavs = {f"w{i}@0": rng.standard_normal(int(rng.integers(50, 900))).astype(np.float32) for i in range(9)}
    path = _write(tmp_path / "a.zarr", wavs, dtype="float32")
    st = Store(path)
    assert st._maps is not None and st._inner_rows == 100
    for k, w in wavs.items():
        np.testing.assert_array_equal(st.get(k), w)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_finite_check_matches_numpy(dtype):
    rng = np.random.default_rng(4)
    with np.errstate(over="ignore"):
        base = (rng.standard_normal(4000) * 3e4).astype(dtype)  # float16 overflows to inf past 65504
    specials = np.array([np.inf, -np.inf, np.nan, 65504, -65504, 6e-8, 0.0, -0.0], dtype)
    for a in (base, specials, np.abs(base), np.zeros(7, dtype)):
        for x in (a, a[np.isfinite(a)]):
            assert store_mod.all_finite(np.ascontiguousarray(x)) == bool(np.isfinite(x).all())


def test_non_finite_utterance_is_refused(tmp_path):
    with pytest.raises(store_mod.CacheError, match="non-finite"), np.errstate(over="ignore"):
        with StoreWriter(tmp_path / "s.zarr", {"t": 1}, "float16") as w:
            w.add("ok@0", np.ones((3, 2), np.float32))
            w.add("big@0", np.full((3, 2), 1e5, np.float32))  # overflows float16
    assert not (tmp_path / "s.zarr").exists()
