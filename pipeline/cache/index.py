"""Random access over the shards of one (producer, corpus, view): an index TSV of shard stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.cache.store import CacheError, Store

PER_SHARD_KEYS = ("view_audio", "plan_sha256")  # fingerprint entries that legitimately differ per shard
# Bytes read through the stores' memory maps before they are unmapped: mapped file pages count in a process's RSS,
# so without this a reader's RSS grows with the cache it has touched. The kernel maps whole page-cache folios (up to
# 2 MB here) around each read, so mapped pages run to ~4x the bytes read (bench/eval_memory.py).
RELEASE_BYTES = 64 << 20


def build_index(stores: list[str], out: str) -> None:
    """Write an index TSV (key, store, row, start, frames) over complete stores; refuses mixed fingerprints."""
    rows, first = [], None
    for path in stores:
        store = Store(path)
        fp = {k: v for k, v in store.fingerprint.items() if k not in PER_SHARD_KEYS}
        if first is None:
            first = (path, fp)
        elif fp != first[1]:
            raise CacheError(f"{path} and {first[0]} were made by different producers; re-extract one of them")
        for i, key in enumerate(store.ids):
            rows.append((key, str(path), i, int(store.offsets[i]), store.num_rows(i)))
    df = pd.DataFrame(rows, columns=["key", "store", "row", "start", "frames"])
    dup = df["key"][df["key"].duplicated()]
    if len(dup):
        raise CacheError(f"utterance {dup.iloc[0]} appears in two shards; the shards overlap")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, sep="\t", index=False)


class FeatureCache:
    """All utterances of one (producer, corpus, view); `get(key)` returns rows without copying shards.

    Every RELEASE_BYTES read, the stores' maps are dropped (`Store.release`), so the pages a reader has
    touched do not pile up in its RSS however much of the cache it reads."""

    def __init__(self, stores: list[Store]) -> None:
        self.stores = stores
        self._where: dict[str, tuple[int, int]] = {}  # key -> (store, row)
        for s, store in enumerate(stores):
            for i, key in enumerate(store.ids):
                self._where[key] = (s, i)
        self.keys: list[str] = sorted(self._where)
        self.fingerprint: dict[str, Any] = stores[0].fingerprint if stores else {}
        self._mapped = 0

    @classmethod
    def open(cls, index: str | Path, expect: dict[str, Any] | None = None) -> FeatureCache:
        """Open every store an index lists, checking each against `expect`."""
        df = pd.read_csv(index, sep="\t", usecols=["store"])
        paths = list(dict.fromkeys(df["store"]))
        if not paths:
            raise CacheError(f"{index}: index lists no stores; rerun extraction")
        return cls([Store(p, expect) for p in paths])

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: str) -> np.ndarray:
        if key not in self._where:
            raise KeyError(f"{key} is not in the cache ({len(self.keys)} utterances)")
        s, i = self._where[key]
        rows = self.stores[s][i]
        self._mapped += rows.nbytes
        if self._mapped > RELEASE_BYTES:
            self.release()
        return rows

    def release(self) -> None:
        """Unmap every store's files (`Store.release`); arrays already returned stay valid."""
        self._mapped = 0
        for store in self.stores:
            store.release()

    def position(self, key: str) -> tuple[int, int]:
        """(store, row) of a key: sorting keys by it reads the cache in storage order."""
        return self._where[key]

    def num_rows(self, key: str) -> int:
        s, i = self._where[key]
        return self.stores[s].num_rows(i)
