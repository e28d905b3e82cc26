"""One zarr v3 store per (producer, corpus, view, shard): ragged rows concatenated along axis 0.

Layout: `frames` (total_rows, *trailing) with the sharding codec, `offsets` (n_utts + 1),
attributes `utt_ids`, `fingerprint` (everything that determines the bytes) and `complete`.
Uncompressed stores are read through numpy.memmap of the shard files (the fast path,
DESIGN.md "Reading the cache fast"); compressed ones through the zarr API.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

SHARD_BYTES = 64 << 20  # target size of one zarr shard file
INNER_BYTES_COMPRESSED = 1 << 20  # inner chunk size when compressing (zarr API reads whole chunks)
_EMPTY = 2**64 - 1


class CacheError(RuntimeError):
    """A store that is missing, incomplete or unwritable; the message says what to do."""


class CacheMismatchError(CacheError):
    """A store whose fingerprint differs from what the consumer asked for."""


class StoreWriter:
    """Stream utterances into a new store at a temporary path; rename into place on success."""

    def __init__(
        self,
        path: str | Path,
        fingerprint: dict[str, Any],
        dtype: str = "float16",
        compression: str = "none",
    ) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.dtype = np.dtype(dtype)
        self.compression = compression
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}"
        self.ids: list[str] = []
        self.offsets = [0]
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._written = 0
        self._frames: zarr.Array | None = None
        self._shard_rows = 0

    def __enter__(self) -> StoreWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.root = zarr.open_group(store=str(self.tmp), mode="w", zarr_format=3)
        return self

    def add(self, key: str, array: np.ndarray) -> None:
        """Append one utterance's rows (rows x trailing shape shared by all utterances)."""
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if self._frames is None:
            self._create(array.shape[1:])
        elif array.shape[1:] != self._frames.shape[1:]:
            raise CacheError(f"{self.path}: {key} has trailing shape {array.shape[1:]}, "
                             f"store has {self._frames.shape[1:]}")
        if not np.isfinite(array).all():
            raise CacheError(f"{self.path}: {key} has non-finite values (overflow in {self.dtype}?)")
        self.ids.append(key)
        self.offsets.append(self.offsets[-1] + array.shape[0])
        self._buf.append(array)
        self._buffered += array.shape[0]
        while self._buffered >= self._shard_rows:
            self._flush(self._shard_rows)

    def _create(self, trailing: tuple[int, ...]) -> None:
        row_bytes = int(np.prod(trailing, dtype=np.int64)) * self.dtype.itemsize
        self._shard_rows = max(1, SHARD_BYTES // row_bytes)
        if self.compression == "none":
            inner, compressors = self._shard_rows, None
        elif self.compression == "zstd":
            inner = min(self._shard_rows, max(1, INNER_BYTES_COMPRESSED // row_bytes))
            compressors = ZstdCodec(level=3)
            self._shard_rows = (self._shard_rows // inner) * inner
        else:
            raise CacheError(f"unknown compression '{self.compression}' (known: none, zstd)")
        self._frames = self.root.create_array(
            "frames", shape=(0, *trailing), dtype=self.dtype, chunks=(inner, *trailing),
            shards=(self._shard_rows, *trailing), compressors=compressors,
            serializer=BytesCodec(endian="little"), fill_value=0,
        )

    def _flush(self, rows: int) -> None:
        data = np.concatenate(self._buf, axis=0) if len(self._buf) > 1 else self._buf[0]
        head, rest = data[:rows], data[rows:]
        self._frames.resize((self._written + rows, *self._frames.shape[1:]))
        self._frames[self._written:self._written + rows] = head
        self._written += rows
        self._buf = [rest] if len(rest) else []
        self._buffered = len(rest)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            if self._frames is None:
                raise CacheError(f"{self.path}: no utterances were written; the shard is empty")
            if self._buffered:
                self._flush(self._buffered)
            self.root.create_array("offsets", data=np.asarray(self.offsets, dtype=np.int64))
            self.root.attrs.update({"utt_ids": self.ids, "fingerprint": self.fingerprint, "complete": True})
            if self.path.exists():
                shutil.rmtree(self.path)
            os.replace(self.tmp, self.path)
        except OSError as err:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise CacheError(f"{self.path}: write failed ({err}); the shard was not marked complete, "
                             "free space and rerun") from err
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise


def fingerprint_diff(found: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    """Keys of `expect` whose values differ in `found`, formatted for an error message."""
    expect = json.loads(json.dumps(expect))
    return [f"{k}: store has {found.get(k)!r}, expected {v!r}" for k, v in expect.items() if found.get(k) != v]


class Store:
    """Read-only view of one complete store; `store[i]` or `store.get(key)` returns one utterance."""

    def __init__(self, path: str | Path, expect: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            raise CacheError(f"{self.path}: no store here; run the workflow to create it")
        root = zarr.open_group(store=str(self.path), mode="r")
        attrs = dict(root.attrs)
        if not attrs.get("complete"):
            raise CacheError(f"{self.path}: store is incomplete (a killed job?); delete it and rerun")
        self.fingerprint: dict[str, Any] = attrs["fingerprint"]
        if expect:
            diff = fingerprint_diff(self.fingerprint, expect)
            if diff:
                raise CacheMismatchError(
                    f"{self.path} was made for a different producer: " + "; ".join(diff)
                    + ". Delete the store (or fix the config) and rerun to re-extract.")
        self.ids: list[str] = attrs["utt_ids"]
        self.offsets = root["offsets"][:]
        self._frames = root["frames"]
        self.shape = self._frames.shape
        self.dtype = self._frames.dtype
        self._pos = {k: i for i, k in enumerate(self.ids)}
        self._maps = self._memmaps()

    def __len__(self) -> int:
        return len(self.ids)

    def num_rows(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def __getitem__(self, i: int) -> np.ndarray:
        return self.rows(int(self.offsets[i]), int(self.offsets[i + 1]))

    def get(self, key: str) -> np.ndarray:
        if key not in self._pos:
            raise KeyError(f"{key} is not in {self.path}")
        return self[self._pos[key]]

    def rows(self, start: int, end: int) -> np.ndarray:
        """Rows [start, end): memmap slices when uncompressed, zarr API otherwise."""
        if self._maps is None:
            return self._frames[start:end]
        srows = self._shard_rows
        s = start // srows
        if end > start and (end - 1) // srows == s:  # the common case: one shard file, zero copy
            return self._shard(s)[start - s * srows:end - s * srows]
        parts = [self._shard(s)[max(start - s * srows, 0):min(end - s * srows, srows)]
                 for s in range(start // srows, (end - 1) // srows + 1)] if end > start else []
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, *self.shape[1:]), self.dtype)

    def _memmaps(self) -> dict[int, np.ndarray] | None:
        meta = json.loads((self.path / "frames" / "zarr.json").read_text())
        codecs = meta["codecs"]
        if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
            return None
        cfg = codecs[0]["configuration"]
        inner = cfg["codecs"]
        if (len(inner) != 1 or inner[0]["name"] != "bytes" or cfg.get("index_location", "end") != "end"
                or cfg["chunk_shape"] != meta["chunk_grid"]["configuration"]["chunk_shape"]
                or (self.dtype.itemsize > 1 and inner[0]["configuration"].get("endian") != "little")):
            return None
        self._shard_rows = cfg["chunk_shape"][0]
        return {}

    def _shard(self, s: int) -> np.ndarray:
        """Memmap of shard `s` (one inner chunk per shard: raw bytes at the index's offset)."""
        if s in self._maps:
            return self._maps[s]
        trailing = self.shape[1:]
        rows = self._shard_rows
        nbytes = rows * int(np.prod(trailing, dtype=np.int64)) * self.dtype.itemsize
        f = self.path / "frames" / "c" / str(s) / "/".join("0" * len(trailing))
        if len(trailing) == 0:
            f = self.path / "frames" / "c" / str(s)
        if not f.exists():
            arr = np.zeros((rows, *trailing), self.dtype)  # all fill value: zarr did not write it
        else:
            with open(f, "rb") as fh:
                fh.seek(-20, os.SEEK_END)
                offset, length = struct.unpack("<QQ", fh.read(16))
            if offset == _EMPTY:
                arr = np.zeros((rows, *trailing), self.dtype)
            elif length != nbytes:
                raise CacheError(f"{f}: shard holds {length} bytes, expected {nbytes}; the store is corrupt")
            else:
                arr = np.memmap(f, dtype=self.dtype.newbyteorder("<"), mode="r", offset=offset,
                                shape=(rows, *trailing)).view(np.ndarray)
        self._maps[s] = arr
        return arr
