"""Benchmark 4: bytes on disk per second of audio per layer, for every dtype and codec the store offers.

Real teacher features (extract_shard's float32 outputs of a bundled Whisper teacher on the
synthetic speech) are written through StoreWriter with each (dtype, compression) and the store's
files summed; the reference is the same frames as raw float32 (frames x layers x dim x 4 bytes).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import Clock, files_under
from pipeline.cache.store import Store, StoreWriter

FORMATS = (("float16", "none"), ("float16", "zstd"), ("float32", "none"), ("float32", "zstd"))


def run(outputs: list[tuple[str, list[torch.Tensor]]], audio_seconds: float, label: str,
        work: Path) -> dict[str, Any]:
    """Write `outputs` (key, per-layer (T, D) tensors) in every format; sizes relative to raw float32."""
    arrays = [(key, torch.stack(states, dim=1).float().cpu().numpy()) for key, states in outputs]
    frames = sum(a.shape[0] for _, a in arrays)
    layers, dim = arrays[0][1].shape[1:]
    raw32 = frames * layers * dim * 4
    out: dict[str, Any] = {"teacher": label, "audio_seconds": audio_seconds, "frames": frames, "layers": layers,
                           "dim": dim, "raw_float32_bytes": raw32,
                           "raw_float32_bytes_per_audio_s_per_layer": raw32 / audio_seconds / layers, "formats": {}}
    for dtype, compression in FORMATS:
        path = work / f"storage-{dtype}-{compression}.zarr"
        with Clock() as c, StoreWriter(path, {"bench": "storage"}, dtype, compression) as writer:
            for key, array in arrays:
                writer.add(key, array)
        files = files_under(path)
        apparent = sum(f.stat().st_size for f in files)
        allocated = sum(f.stat().st_blocks * 512 for f in files)
        store = Store(path)
        for i in (0, len(arrays) - 1):  # what was measured must read back as what was written
            if not np.array_equal(np.asarray(store[i]), arrays[i][1].astype(dtype)):
                raise RuntimeError(f"{path}: utterance {arrays[i][0]} does not read back as written")
        frames_bytes = sum(f.stat().st_size for f in files_under(path / "frames"))
        out["formats"][f"{dtype}+{compression}"] = {
            "dtype": dtype, "compression": compression, "bytes": apparent, "allocated_bytes": allocated,
            "frames_bytes": frames_bytes, "shard_files": len(files_under(path / "frames" / "c")),
            "bytes_per_audio_s_per_layer": apparent / audio_seconds / layers,
            "ratio_vs_float32": apparent / raw32, "write_s": c.wall,
        }
        del store
        shutil.rmtree(path)
    return out
