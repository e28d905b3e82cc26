"""Cached features in and out as HDF5, the way other toolkits keep them: one dataset per utterance.

Layout: dataset `<key>` (frames, layers, dim) per utterance, keyed as in the cache (`<utt_id>@<copy>`); file
attributes `fingerprint` (JSON: the stores' fingerprint without its per-shard keys), its scalar entries
(`frame_rate`, `num_layers`, `dim`, `input_state`, ...) one by one, `view` and `view_audio` (JSON list of the
view-audio fingerprints the features were computed from). A file without `view` holds features of the manifest's
own audio (the clean view), and may name datasets by bare utterance id. `FeatureFiles` reads such files back for
a teacher of kind `precomputed`, checking each dataset before it enters a store.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from pipeline.cache.index import PER_SHARD_KEYS
from pipeline.cache.store import CacheError, Store, all_finite

SUFFIXES = (".h5", ".hdf5")
LAYOUT = "one dataset per utterance key, (frames, layers, dim) floats, as `python -m pipeline export-features` writes"
FRAME_SLACK = 2  # frame counts of one clip differ by up to two between upstreams (DESIGN.md "Contracts")


def export_features(index: str, out: str) -> None:
    """Write every utterance of a cache index to HDF5 file `out` (layout above), store by store, atomically."""
    paths = list(dict.fromkeys(pd.read_csv(index, sep="\t", usecols=["store"])["store"]))
    if not paths:
        raise CacheError(f"{index}: index lists no stores; rerun extraction")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    common, sources = None, []
    try:
        with h5py.File(tmp, "w") as f:
            for path in paths:
                store = Store(path)
                shared = {k: v for k, v in store.fingerprint.items() if k not in PER_SHARD_KEYS}
                if common not in (None, shared):
                    raise CacheError(f"{path} and {paths[0]} were made by different producers; re-extract one")
                common = shared
                sources.append(store.fingerprint.get("view_audio"))
                for i, key in enumerate(store.ids):
                    f.create_dataset(key, data=store[i])
            f.attrs.update(_attributes(common, sources))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _attributes(fingerprint: dict[str, Any], sources: list[Any]) -> dict[str, Any]:
    """File attributes: the fingerprint (JSON and its scalars), the views' fingerprints and their one view."""
    attrs = {k: v for k, v in fingerprint.items() if isinstance(v, (str, int, float, bool))}
    attrs |= {"fingerprint": json.dumps(fingerprint, sort_keys=True), "view_audio": json.dumps(sources),
              "layout": "(frames, layers, dim)"}
    views = {s.get("view") for s in sources if isinstance(s, dict)}
    if len(views) == 1 and None not in views:
        attrs["view"] = views.pop()
    return attrs


class FeatureFiles:
    """HDF5 feature files (one, or every .h5 / .hdf5 of a folder) in the layout above; `read` checks a dataset."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise CacheError(f"{self.path}: no HDF5 feature file or folder here; give the file (or folder of "
                             f"files) holding the features: {LAYOUT}")
        paths = sorted(p for p in self.path.iterdir() if p.suffix in SUFFIXES) if self.path.is_dir() else [self.path]
        if not paths:
            raise CacheError(f"{self.path}: the folder holds no {' or '.join(SUFFIXES)} files")
        self.files = [_open(p) for p in paths]
        self._views = [(f.attrs.get("view"), json.loads(f.attrs.get("view_audio", "[]"))) for f in self.files]
        self.shape = self._shape()

    def _shape(self) -> tuple[int, int]:
        """(layers, dim) every file declares (attributes) or holds (its first dataset); they must agree."""
        shapes = {}
        for f in self.files:
            if "num_layers" in f.attrs and "dim" in f.attrs:
                shapes[f.filename] = (int(f.attrs["num_layers"]), int(f.attrs["dim"]))
                continue
            first = next((d for d in f.values() if isinstance(d, h5py.Dataset)), None)
            if first is not None and first.ndim == 3:
                shapes[f.filename] = tuple(int(n) for n in first.shape[1:])
        if not shapes:
            raise CacheError(f"{self.path}: no (frames, layers, dim) dataset found; expected {LAYOUT}")
        if len(set(shapes.values())) > 1:
            raise CacheError(f"{self.path}: files hold features of different (layers, dim): {shapes}; keep one "
                             "upstream's features per teacher")
        return next(iter(shapes.values()))

    def declared(self, attr: str) -> dict[str, Any]:
        """File -> its attribute `attr`, for the files that declare it."""
        return {f.filename: f.attrs[attr].item() if hasattr(f.attrs[attr], "item") else f.attrs[attr]
                for f in self.files if attr in f.attrs}

    def identity(self) -> str:
        """SHA-256 of each file's name, size and mtime (hashing the bytes would reread them in every job)."""
        digest = hashlib.sha256()
        for f in self.files:
            stat = Path(f.filename).stat()
            digest.update(f"{Path(f.filename).name}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        return digest.hexdigest()

    def origins(self) -> list[dict[str, Any]]:
        """The distinct fingerprints the files carry (of the upstream that computed them), in file order."""
        found = [json.loads(f.attrs["fingerprint"]) for f in self.files if "fingerprint" in f.attrs]
        return [fp for i, fp in enumerate(found) if fp not in found[:i]]

    def read(self, key: str, num_samples: int, view: dict[str, Any], frame_rate: float) -> np.ndarray:
        """Checked features (shape, dtype, frame count, finite) of clip `key` of `num_samples` in view `view`."""
        f, name = self._find(key, view)
        where = f"{f.filename}: dataset '{name}' (utterance {key})"
        data = f[name]
        if not isinstance(data, h5py.Dataset):
            raise _malformed(where, "is a group, not a dataset")
        if data.ndim != 3 or tuple(data.shape[1:]) != self.shape:
            raise _malformed(where, f"has shape {data.shape}, expected (frames, {self.shape[0]}, {self.shape[1]})")
        if data.dtype.kind != "f":
            raise _malformed(where, f"holds {data.dtype}, not floating-point features")
        expect = num_samples * frame_rate / 16000
        if abs(data.shape[0] - expect) > FRAME_SLACK:
            raise _malformed(where, f"has {data.shape[0]} frames, but its audio ({num_samples} samples at 16 kHz) "
                             f"gives {expect:.1f} at {frame_rate} Hz: features of other audio, or another frame rate "
                             "than the teacher's frame_rate")
        array = data[()]
        if not all_finite(array):
            raise _malformed(where, "holds NaN or infinite values")
        return array

    def _find(self, key: str, view: dict[str, Any]) -> tuple[h5py.File, str]:
        """The one (file, dataset) of `key` in this view: `<key>`, or a bare utt_id in a file without `view`."""
        utt, _, copy = key.rpartition("@")
        name = view.get("view", "clean")
        serving, other = [], []
        for f, (declared, rendered) in zip(self.files, self._views, strict=True):
            if (declared or "clean") != name:
                continue
            if name != "clean" and view not in rendered:  # the same view name, other distortions
                other.append(f.filename)
                continue
            names = [key, utt] if declared is None and copy == "0" and utt else [key]
            found = next((n for n in names if n in f), None)
            if found is not None:
                serving.append((f, found))
        if len(serving) > 1:
            raise CacheError(f"utterance {key} is in more than one feature file: {[f.filename for f, _ in serving]}; "
                             "keep each utterance in one file")
        if not serving:
            stale = f" ({other} hold view {name} rendered otherwise: other utterances, plan or noise)" if other else ""
            raise CacheError(
                f"{self.path}: no features for utterance {key} of view {name}{stale}. Add dataset '{key}' ({LAYOUT}; "
                "features of a distorted view in a file whose attribute `view` names it), or leave this teacher out "
                "of the evaluations of that view (downstream.upstreams)")
        return serving[0]


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise CacheError(f"{path}: not readable as HDF5 ({err}); give HDF5 feature files: {LAYOUT}") from None


def _malformed(where: str, problem: str) -> CacheError:
    return CacheError(f"{where} {problem}; correct or re-export it ({LAYOUT}) and rerun")
