"""One zarr v3 store per (producer, corpus, view, shard): ragged rows concatenated along axis 0.

Layout: `frames` (total_rows, *trailing) with the sharding codec, `offsets` (n_utts + 1),
attributes `utt_ids`, `fingerprint` (everything that determines the bytes) and `complete`.
Uncompressed stores are read through numpy.memmap of the shard files (the fast path,
DESIGN.md "Reading the cache fast"); compressed ones through the zarr API.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

SHARD_BYTES = 64 << 20  # target size of one zarr shard file
INNER_BYTES_COMPRESSED = 1 << 20  # inner chunk size when compressing (zarr API reads whole chunks)
# Inner chunk size when uncompressed: zarr pads the store's last inner chunk to full size on disk, so this
# bounds the padding (one 64 MB chunk per shard made small stores up to 64 MB larger: bench/README.md).
INNER_BYTES = 1 << 20
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
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))  # bytes independent of key order
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
            try:
                self._create(array.shape[1:])
            except OSError as err:
                raise self._write_failed(err) from err
        elif array.shape[1:] != self._frames.shape[1:]:
            raise CacheError(f"{self.path}: {key} has trailing shape {array.shape[1:]}, "
                             f"store has {self._frames.shape[1:]}")
        if not all_finite(array):
            raise CacheError(f"{self.path}: {key} has non-finite values (overflow in {self.dtype}?)")
        self.ids.append(key)
        self.offsets.append(self.offsets[-1] + array.shape[0])
        self._buf.append(array)
        self._buffered += array.shape[0]
        try:
            while self._buffered >= self._shard_rows:
                self._flush(self._shard_rows)
        except OSError as err:
            raise self._write_failed(err) from err

    def _create(self, trailing: tuple[int, ...]) -> None:
        row_bytes = int(np.prod(trailing, dtype=np.int64)) * self.dtype.itemsize
        self._shard_rows = max(1, SHARD_BYTES // row_bytes)
        if self.compression == "none":
            inner, compressors = min(self._shard_rows, max(1, INNER_BYTES // row_bytes)), None
        elif self.compression == "zstd":
            inner = min(self._shard_rows, max(1, INNER_BYTES_COMPRESSED // row_bytes))
            compressors = ZstdCodec(level=3)
        else:
            raise CacheError(f"unknown compression '{self.compression}' (known: none, zstd)")
        self._shard_rows = (self._shard_rows // inner) * inner
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
            self._discard()
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
            self._discard()
            raise self._write_failed(err) from err
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        """Remove the temporary store. zarr may still finish writes it had in flight when one failed (its
        gathered tasks outlive the first error), re-creating files, so remove until it stays gone."""
        for _ in range(50):
            shutil.rmtree(self.tmp, ignore_errors=True)
            time.sleep(0.02)
            if not self.tmp.exists():
                return

    def _write_failed(self, err: OSError) -> CacheError:
        """The error for a failed write (disk full, quota, I/O): says the shard was not marked complete."""
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "disk full" if full else "write failed"
        todo = "free space (or point `results` at a larger disk)" if full else "fix the cause"
        return CacheError(f"{self.path}: {what} while writing the shard ({err}); the shard was not marked "
                          f"complete and its temporary directory {self.tmp.name} is removed: {todo} and rerun")


# what a differing fingerprint key means, for the refusal message
MEANING = {"sha256": "the upstream's weights", "layers": "the stored layers", "num_layers": "the stored layers",
           "spec": "the upstream's config entry", "source": "where the weights come from",
           "view_audio": "the audio the features were computed from", "plan_sha256": "the view recipe (plan)",
           "banks_sha256": "the noise / room banks of the view", "view": "the view", "dtype": "the stored dtype",
           "code_version": "the cache code version", "name": "the upstream", "upstream": "the upstream",
           "kind": "the kind of producer", "input_state": "whether hidden state 0 is the input or a layer's output"}


# fingerprint keys that stores written before them lack, and the value those stores meant
DEFAULTS: dict[str, Any] = {"input_state": True}


def stored(fingerprint: dict[str, Any], key: str) -> Any:
    """A store fingerprint's value for `key`, or what a store written before the key existed meant (DEFAULTS)."""
    return fingerprint.get(key, DEFAULTS.get(key))


def all_finite(array: np.ndarray) -> bool:
    """np.isfinite(array).all(), without numpy's slow float16 arithmetic: inf/nan have every exponent bit set."""
    if array.dtype == np.float16:
        return not ((array.view(np.uint16) & 0x7C00) == 0x7C00).any()
    return bool(np.isfinite(array).all())


def fingerprint_diff(found: dict[str, Any], expect: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys of `expect` whose values differ in `found` (nested dicts by dotted key), formatted for a message."""
    expect = json.loads(json.dumps(expect))
    out = []
    for k, v in expect.items():
        older = not prefix and isinstance(found, dict) and k not in found and k in DEFAULTS
        have = stored(found, k) if older else found.get(k) if isinstance(found, dict) else None
        if have == v:
            continue
        if isinstance(v, dict) and isinstance(have, dict):
            out += fingerprint_diff(have, v, f"{prefix}{k}.")
            continue
        meaning = f" ({MEANING[k]})" if k in MEANING else ""
        has = f"no {k} (written before the key existed: {_short(have)})" if older else _short(have)
        out.append(f"{prefix}{k}{meaning}: store has {has}, expected {_short(v)}")
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
                    f"{self.path} was made by a different producer than the one asked for: " + "; ".join(diff)
                    + ". Its contents would be silently wrong here: delete the store (or its whole "
                    "cache/<upstream> folder) and rerun the workflow to re-extract, or fix the config "
                    "if it changed by mistake.")
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
            shard = self._shard(s)
            return self._frames[start:end] if shard is None else shard[start - s * srows:end - s * srows]
        shards = [self._shard(s) for s in range(start // srows, (end - 1) // srows + 1)] if end > start else []
        if any(shard is None for shard in shards):
            return self._frames[start:end]
        parts = [shard[max(start - s * srows, 0):min(end - s * srows, srows)]
                 for s, shard in enumerate(shards, start // srows)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, *self.shape[1:]), self.dtype)

    def release(self) -> None:
        """Unmap the shard files read so far: their pages leave this process's RSS (the page cache keeps them).

        Arrays already handed out stay valid (each holds its own map); later reads map the files again."""
        if self._maps is not None:
            self._maps = {}

    def _memmaps(self) -> dict[int, np.ndarray] | None:
        meta = json.loads((self.path / "frames" / "zarr.json").read_text())
        codecs = meta["codecs"]
        if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
            return None
        cfg = codecs[0]["configuration"]
        inner = cfg["codecs"]
        shard_shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
        index = [c["name"] for c in cfg.get("index_codecs", [])]
        if (len(inner) != 1 or inner[0]["name"] != "bytes" or cfg.get("index_location", "end") != "end"
                or index != ["bytes", "crc32c"] or cfg["chunk_shape"][1:] != shard_shape[1:]
                or shard_shape[0] % cfg["chunk_shape"][0]
                or (self.dtype.itemsize > 1 and inner[0]["configuration"].get("endian") != "little")):
            return None
        self._shard_rows, self._inner_rows = shard_shape[0], cfg["chunk_shape"][0]
        return {}

    def _shard(self, s: int) -> np.ndarray | None:
        """Memmap of the rows of shard `s` inside the array, or None when its inner chunks are not stored
        back to back in order (then the caller uses the zarr API).

        The file holds the inner chunks' raw bytes, then an index of (offset, length) per inner chunk
        and a CRC32C. zarr does not write inner chunks past the end of the array, nor all-zero ones
        (offset 2^64 - 1; no file when the whole shard is zero): a 1 MB run of exact zeros inside real
        data is the only way to get a gap, and such a shard is read through the zarr API.
        """
        maps = self._maps  # `release` may swap the dict from another thread
        if s in maps:
            return maps[s]
        trailing = self.shape[1:]
        n_inner = self._shard_rows // self._inner_rows
        chunk_bytes = self._inner_rows * int(np.prod(trailing, dtype=np.int64)) * self.dtype.itemsize
        needed = -(-min(self._shard_rows, self.shape[0] - s * self._shard_rows) // self._inner_rows)
        f = self.path / "frames" / "c" / str(s) / "/".join("0" * len(trailing))
        if len(trailing) == 0:
            f = self.path / "frames" / "c" / str(s)
        index = np.full((n_inner, 2), _EMPTY, np.uint64)
        if f.exists():
            with open(f, "rb") as fh:
                fh.seek(-(16 * n_inner + 4), os.SEEK_END)
                index = np.frombuffer(fh.read(16 * n_inner), "<u8").reshape(n_inner, 2)
        written = index[:, 0] != _EMPTY
        bad = written & (index[:, 1] != chunk_bytes)
        if bad.any():
            raise CacheError(f"{f}: an inner chunk holds {int(index[bad][0, 1])} bytes, expected "
                             f"{chunk_bytes}; the store is corrupt")
        start = int(index[0, 0])
        arr = None
        if not written.any():
            arr = np.zeros((needed * self._inner_rows, *trailing), self.dtype)  # all fill value
        elif written[:needed].all() and not written[needed:].any() and np.array_equal(
                index[:needed, 0], start + chunk_bytes * np.arange(needed, dtype=np.uint64)):
            arr = np.memmap(f, dtype=self.dtype.newbyteorder("<"), mode="r", offset=start,
                            shape=(needed * self._inner_rows, *trailing)).view(np.ndarray)
        maps[s] = arr
        return arr
