"""Disk full while writing a shard: the shard is not marked complete (nothing is left under its name or its
temporary name), and the error says so and what to do. ENOSPC is injected into zarr's file writes (runs
everywhere) and, where the test may mount one, produced for real by a tiny tmpfs."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from zarr.storage import _local

from faults.helpers import base_config, tiny_teacher, view_store, write_config
from pipeline.cache import store as store_mod
from pipeline.cache.extract import extract_shard
from pipeline.cache.store import CacheError, Store, StoreWriter


def _full_disk_after(monkeypatch, when) -> list[Path]:
    """Make zarr's file writes raise ENOSPC once `when(path)` holds; returns the paths written before."""
    real_put, written = _local._put, []

    def put(path: Path, value, exclusive: bool = False) -> int:
        if when(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        return real_put(path, value, exclusive)

    monkeypatch.setattr(_local, "_put", put)
    return written


def _frame_chunk(path: Path) -> bool:
    return "c" in path.parts and "frames" in path.parts


def _assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    with pytest.raises(CacheError, match="no store here"):
        Store(out)


def _assert_message(err: pytest.ExceptionInfo, out: Path) -> None:
    msg = str(err.value)
    assert str(out) in msg and "disk full" in msg and "No space left on device" in msg
    assert "not marked complete" in msg and "free space" in msg and "rerun" in msg


@pytest.mark.parametrize("point", ["frame data", "offsets", "completion mark"])
def test_enospc_leaves_no_complete_shard(tmp_path, monkeypatch, point):
    monkeypatch.setattr(store_mod, "SHARD_BYTES", 4096)  # frame data is flushed while utterances are added
    group_meta = []

    def when(path: Path) -> bool:
        if point == "frame data":
            return _frame_chunk(path)
        if point == "offsets":
            return path.parent.name == "offsets" and path.name == "zarr.json"
        if path.name == "zarr.json" and path.parent.name.startswith(".shard0.zarr.tmp-"):
            group_meta.append(path)
        return len(group_meta) >= 2  # the group's metadata rewritten with complete=True, the last write

    written = _full_disk_after(monkeypatch, when)
    out = tmp_path / "shard0.zarr"
    rng = np.random.default_rng(0)
    with pytest.raises(CacheError) as err:
        with StoreWriter(out, {"kind": "test"}) as w:
            for i in range(20):
                w.add(f"u{i}", rng.standard_normal((50, 2, 8)))
    _assert_message(err, out)
    _assert_nothing_left(out)
    assert written  # the failure came part-way through, after other writes succeeded


def test_enospc_during_extraction_then_rerun(tmp_path, monkeypatch):
    teacher = tiny_teacher(tmp_path / "teacher")
    audio = view_store(tmp_path / "audio.zarr", n=4)
    config = write_config(tmp_path / "config.yaml", base_config(teacher))
    out = tmp_path / "cache" / "shard0.zarr"
    _full_disk_after(monkeypatch, _frame_chunk)
    with pytest.raises(CacheError) as err:
        extract_shard(config, "t", str(audio), str(out))
    _assert_message(err, out)
    _assert_nothing_left(out)
    monkeypatch.undo()  # space freed: the same job now completes
    extract_shard(config, "t", str(audio), str(out))
    assert len(Store(out)) == 4


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_real_full_tmpfs(tmp_path):
    """A 64 KiB tmpfs: a real ENOSPC from the kernel while the extraction writes its frames."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN); the injected ENOSPC tests cover it")
    try:
        teacher = tiny_teacher(tmp_path / "teacher")
        audio = view_store(tmp_path / "audio.zarr", n=4)
        config = write_config(tmp_path / "config.yaml", base_config(teacher))
        out = disk / "shard0.zarr"
        with pytest.raises(CacheError) as err:
            extract_shard(config, "t", str(audio), str(out))
        _assert_message(err, out)
        _assert_nothing_left(out)
        assert not list(disk.iterdir())  # the temporary directory was removed: the space is free again
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_enospc_writing_a_manifest_leaves_the_old_one(tmp_path, monkeypatch):
    """Manifests are written to a temporary name and renamed: a full disk leaves the previous file intact."""
    import pandas as pd

    from pipeline.corpus.manifest import read_manifest, write_manifest

    rows = [{"utt_id": f"u{i}", "path": f"u{i}.wav", "num_samples": 16000, "sample_rate": 16000, "split": "train",
             "speaker": "s"} for i in range(3)]
    out = tmp_path / "manifest.tsv"
    write_manifest(pd.DataFrame(rows[:2]), out)
    before = out.read_bytes()
    real = pd.DataFrame.to_csv

    def full(self, path, *args, **kwargs):
        real(self.head(1), path, *args, **kwargs)  # part of the file reaches the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(OSError, match="No space left"):
        write_manifest(pd.DataFrame(rows), out)
    assert out.read_bytes() == before and len(read_manifest(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.tsv"]
