"""StoreWriter / Store: exact round trips, zarr validity, fast path, fingerprints, atomic completion."""

import json

import numpy as np
import pytest
import zarr

from pipeline.cache import store as store_mod
from pipeline.cache.store import CacheError, CacheMismatchError, Store, StoreWriter

FP = {"name": "teacher-x", "sha256": "abc", "num_layers": 3, "dim": 4, "shard": 0}


def _utts(rng, n=9, trailing=(3, 4), dtype="float16", zero=()):
    out = {}
    for i in range(n):
        rows = int(rng.integers(1, 23))
        a = rng.standard_normal((rows, *trailing)).astype(dtype)
        if i in zero:
            a[:] = 0
        out[f"u{i:02d}@0"] = a
    return out


def _write(path, utts, dtype="float16", compression="none", fp=FP):
    with StoreWriter(path, fp, dtype=dtype, compression=compression) as w:
        for k, a in utts.items():
            w.add(k, a)
    return path


def _shard_files(path):
    return [p for p in (path / "frames" / "c").rglob("*") if p.is_file()]


@pytest.fixture
def small_shards(monkeypatch):
    # 3 x 4 values per row: 24 bytes (float16) or 48 bytes (float32) per row -> shards of a few rows
    monkeypatch.setattr(store_mod, "SHARD_BYTES", 16 * 48)
    monkeypatch.setattr(store_mod, "INNER_BYTES_COMPRESSED", 4 * 48)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_round_trip_exact_many_shards(tmp_path, small_shards, dtype, compression):
    rng = np.random.default_rng(0)
    utts = _utts(rng, n=12, dtype=dtype)
    path = _write(tmp_path / "s.zarr", utts, dtype, compression)
    assert len(_shard_files(path)) >= 3, "SHARD_BYTES monkeypatch should give several shard files"
    st = Store(path, expect={"name": "teacher-x"})
    if compression == "none":
        assert st._maps is not None, "uncompressed store should take the memmap fast path"
    else:
        assert st._maps is None
    assert st.ids == list(utts)
    assert len(st) == len(utts)
    assert st.dtype == np.dtype(dtype)
    for i, (k, a) in enumerate(utts.items()):
        got = st.get(k)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, a)
        np.testing.assert_array_equal(st[i], a)
        assert st.num_rows(i) == len(a)
    whole = np.concatenate(list(utts.values()))
    np.testing.assert_array_equal(st.rows(0, len(whole)), whole)
    # arbitrary row ranges crossing shard boundaries
    for s, e in [(0, 1), (3, 40), (15, 17), (len(whole) - 5, len(whole)), (7, 7)]:
        np.testing.assert_array_equal(st.rows(s, e), whole[s:e])


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_plain_zarr_client_reads_the_store(tmp_path, small_shards, compression):
    rng = np.random.default_rng(1)
    utts = _utts(rng, n=10)
    path = _write(tmp_path / "s.zarr", utts, compression=compression)
    g = zarr.open_group(str(path), mode="r")
    whole = np.concatenate(list(utts.values()))
    np.testing.assert_array_equal(g["frames"][:], whole)
    offsets = g["offsets"][:]
    np.testing.assert_array_equal(offsets, np.cumsum([0] + [len(a) for a in utts.values()]))
    assert g.attrs["utt_ids"] == list(utts)
    assert g.attrs["complete"] is True
    assert g.attrs["fingerprint"] == FP


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_all_zero_utterances_read_back_as_zeros(tmp_path, small_shards, compression):
    rng = np.random.default_rng(2)
    # a long all-zero run in the middle so that whole shards (and inner chunks) are empty
    utts = _utts(rng, n=10, zero=(3, 4, 5, 6))
    utts["u04@0"] = np.zeros((80, 3, 4), np.float16)
    path = _write(tmp_path / "s.zarr", utts, compression=compression)
    st = Store(path)
    if compression == "none":  # 32-row shards: at least one whole shard is zero and has no file
        assert st._maps is not None
        n_shards = -(-st.shape[0] // st._shard_rows)
        assert len(_shard_files(path)) < n_shards
    for k, a in utts.items():
        np.testing.assert_array_equal(st.get(k), a)
    np.testing.assert_array_equal(st.get("u04@0"), np.zeros((80, 3, 4), np.float16))
    whole = np.concatenate(list(utts.values()))
    np.testing.assert_array_equal(st.rows(0, len(whole)), whole)


def test_all_zero_store(tmp_path, small_shards):
    utts = {"a@0": np.zeros((30, 3, 4), np.float16), "b@0": np.zeros((5, 3, 4), np.float16)}
    path = _write(tmp_path / "z.zarr", utts)
    assert _shard_files(path) == []  # zarr wrote no chunk at all
    st = Store(path)
    np.testing.assert_array_equal(st.get("a@0"), utts["a@0"])
    np.testing.assert_array_equal(st.get("b@0"), utts["b@0"])


def test_one_dimensional_rows_memmap(tmp_path, monkeypatch):
    """View-audio stores hold 1-D waveforms (no trailing shape): the fast path must handle that layout."""
    monkeypatch.setattr(store_mod, "SHARD_BYTES", 1000 * 4)
    rng = np.random.default_rng(3)
    wavs = {f"w{i}@0": rng.standard_normal(int(rng.integers(500, 2500))).astype(np.float32) for i in range(6)}
    path = _write(tmp_path / "a.zarr", wavs, dtype="float32", fp={"kind": "view_audio"})
    assert len(_shard_files(path)) >= 3
    st = Store(path, expect={"kind": "view_audio"})
    assert st._maps is not None
    for k, w in wavs.items():
        np.testing.assert_array_equal(st.get(k), w)
    plain = zarr.open_group(str(path), mode="r")["frames"][:]
    np.testing.assert_array_equal(plain, np.concatenate(list(wavs.values())))


def test_default_shard_size_single_shard(tmp_path):
    rng = np.random.default_rng(4)
    utts = _utts(rng, n=4)
    st = Store(_write(tmp_path / "s.zarr", utts))
    assert st._maps is not None
    for k, a in utts.items():
        np.testing.assert_array_equal(st.get(k), a)


def test_fingerprint_mismatch_names_key_and_says_what_to_do(tmp_path):
    path = _write(tmp_path / "s.zarr", _utts(np.random.default_rng(5), n=2))
    Store(path, expect={"name": "teacher-x", "num_layers": 3})  # matching subset is fine
    with pytest.raises(CacheMismatchError) as err:
        Store(path, expect={"name": "teacher-y", "num_layers": 3})
    msg = str(err.value)
    assert "name" in msg and "teacher-y" in msg and "teacher-x" in msg
    assert "num_layers" not in msg  # only differing keys are reported
    assert "elete" in msg and "re-extract" in msg
    # a key the store does not have at all is a mismatch too
    with pytest.raises(CacheMismatchError, match="code_version"):
        Store(path, expect={"code_version": "1"})


def test_stores_without_input_state_read_as_having_an_input_state(tmp_path):
    """Stores written before fingerprints carried input_state: state 0 was always taken as the input."""
    path = _write(tmp_path / "old.zarr", _utts(np.random.default_rng(0), n=2))
    Store(path, expect={"name": "teacher-x", "input_state": True})
    older = r"input_state .*store has no input_state \(written before the key existed: True\), expected False"
    with pytest.raises(CacheMismatchError, match=older):
        Store(path, expect={"name": "teacher-x", "input_state": False})
    new = _write(tmp_path / "new.zarr", _utts(np.random.default_rng(0), n=2), fp={**FP, "input_state": False})
    Store(new, expect={"input_state": False})
    with pytest.raises(CacheMismatchError, match="input_state"):
        Store(new, expect={"input_state": True})


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(path, FP) as w:
            w.add("a@0", np.ones((5, 3, 4)))
            raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CacheError, match="no store"):
        Store(path)


def test_temp_dir_used_while_writing(tmp_path):
    path = tmp_path / "s.zarr"
    with StoreWriter(path, FP) as w:
        w.add("a@0", np.ones((5, 3, 4)))
        assert not path.exists(), "the final path must not exist before the writer completes"
        assert [p.name for p in tmp_path.iterdir()][0].startswith(".s.zarr.tmp")
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


def test_stale_temp_dirs_are_removed(tmp_path):
    stale = tmp_path / ".s.zarr.tmp-99999"
    stale.mkdir()
    (stale / "junk").write_text("x")
    _write(tmp_path / "s.zarr", _utts(np.random.default_rng(6), n=2))
    assert not stale.exists()


def test_incomplete_store_refused(tmp_path):
    path = _write(tmp_path / "s.zarr", _utts(np.random.default_rng(7), n=2))
    g = zarr.open_group(str(path), mode="r+")
    g.attrs["complete"] = False
    with pytest.raises(CacheError, match="incomplete"):
        Store(path)
    # a group with no 'complete' attribute at all (e.g. a half-written store) too
    raw = zarr.open_group(str(tmp_path / "raw.zarr"), mode="w", zarr_format=3)
    raw.attrs["fingerprint"] = FP
    with pytest.raises(CacheError, match="incomplete"):
        Store(tmp_path / "raw.zarr")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e6])  # 1e6 overflows float16
def test_non_finite_rejected(tmp_path, bad):
    path = tmp_path / "s.zarr"
    a = np.ones((4, 3, 4), np.float32)
    a[2, 1, 0] = bad
    with pytest.raises(CacheError, match="non-finite"):
        with StoreWriter(path, FP) as w:
            w.add("ok@0", np.ones((4, 3, 4)))
            w.add("bad@0", a)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_trailing_shape_mismatch_rejected(tmp_path):
    with pytest.raises(CacheError, match="trailing shape"):
        with StoreWriter(tmp_path / "s.zarr", FP) as w:
            w.add("a@0", np.ones((4, 3, 4)))
            w.add("b@0", np.ones((4, 3, 5)))
    assert not (tmp_path / "s.zarr").exists()


def test_empty_writer_raises(tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(CacheError, match="empty"):
        with StoreWriter(path, FP):
            pass
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_compression_rejected(tmp_path):
    with pytest.raises(CacheError, match="compression"):
        with StoreWriter(tmp_path / "s.zarr", FP, compression="lz4") as w:
            w.add("a@0", np.ones((4, 3, 4)))
    assert not (tmp_path / "s.zarr").exists()


def test_rewrite_replaces_existing_store(tmp_path):
    path = tmp_path / "s.zarr"
    _write(path, {"a@0": np.ones((4, 3, 4), np.float16)})
    _write(path, {"b@0": np.full((6, 3, 4), 2, np.float16)}, fp={**FP, "name": "new"})
    st = Store(path, expect={"name": "new"})
    assert st.ids == ["b@0"]
    np.testing.assert_array_equal(st.get("b@0"), np.full((6, 3, 4), 2, np.float16))
    with pytest.raises(KeyError):
        st.get("a@0")


def test_uncompressed_chunks_are_raw_bytes(tmp_path, small_shards):
    """DESIGN.md: uncompressed stores keep raw little-endian bytes (what the memmap path relies on)."""
    utts = _utts(np.random.default_rng(8), n=6)
    path = _write(tmp_path / "s.zarr", utts)
    meta = json.loads((path / "frames" / "zarr.json").read_text())
    codecs = meta["codecs"]
    assert codecs[0]["name"] == "sharding_indexed"
    assert [c["name"] for c in codecs[0]["configuration"]["codecs"]] == ["bytes"]
    rows = codecs[0]["configuration"]["chunk_shape"][0]
    whole = np.concatenate(list(utts.values()))
    first = path / "frames" / "c" / "0" / "0" / "0"
    raw = np.frombuffer(first.read_bytes()[: rows * 12 * 2], dtype="<f2").reshape(rows, 3, 4)
    np.testing.assert_array_equal(raw, whole[:rows])
