"""Helpers for downstream tests: write arrays as a sharded feature cache with an index, and manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from cache_fixtures import teacher_fingerprint

from pipeline.cache.index import build_index
from pipeline.cache.store import StoreWriter
from pipeline.corpus.manifest import write_manifest

FAKE_TEACHER = {"kind": "hf", "model": "none"}  # the config entry of upstream 'fake'; never loaded
FINGERPRINT = teacher_fingerprint("fake", FAKE_TEACHER, num_params=1234567)


def write_features(path: Path, arrays: dict[str, np.ndarray], shards: int = 2,
                   fingerprint: dict | None = None) -> str:
    """Write arrays into `shards` stores and an index TSV listing them; return the index path."""
    path.mkdir(parents=True, exist_ok=True)
    keys = sorted(arrays)
    paths = []
    for s in range(shards):
        store = path / f"shard{s}.zarr"
        with StoreWriter(store, fingerprint or FINGERPRINT) as writer:
            for k in keys[s::shards]:
                writer.add(k, arrays[k])
        paths.append(str(store))
    build_index(paths, str(path / "index.tsv"))
    return str(path / "index.tsv")


def row(utt: str, split: str, **labels: str) -> dict:
    """A manifest row with the required columns and the given labels."""
    return {"utt_id": utt, "path": f"{utt}.wav", "num_samples": 16000, "sample_rate": 16000, "split": split,
            "speaker": labels.pop("speaker", "s1"), **labels}


def save_manifest(rows: list[dict], path: Path) -> str:
    write_manifest(pd.DataFrame(rows), path)
    return str(path)
