"""k-means codebook over cached teacher features, and the cluster id of every cached frame (arXiv 2309.09920).

The teacher's last hidden state is normalised per frame (layer norm without affine, then divided by
sqrt(D): unit-norm vectors, so distances are scale-free across teachers) and clustered with scikit-learn's
MiniBatchKMeans on frames of the train split. The file stores the centroids and, per cache key, the id of
the nearest centroid of every frame (int16/int32), never posteriors: those are computed at training time
from the cached features and the centroids (kd.teacher_posteriors). With the distance form the posterior's
argmax is exactly the stored id.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.cache.index import FeatureCache
from pipeline.distill.data import utt_of

log = logging.getLogger(__name__)
FEATURE_NORM = "layernorm-unit"
CODEBOOK_VERSION = "1"


class CodebookError(ValueError):
    """A codebook file that is missing, malformed or made from other features than asked for."""


def codebook_features(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(..., D) teacher features -> float32 unit-norm vectors: layer norm (no affine) / sqrt(D)."""
    x = torch.from_numpy(np.array(x, np.float32)) if isinstance(x, np.ndarray) else x.float()
    return F.layer_norm(x, x.shape[-1:]) / x.shape[-1] ** 0.5


def nearest(features: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean distance) for each row of (N, D) features."""
    c2 = (centroids ** 2).sum(-1)
    out = [(c2 - 2 * part @ centroids.T).argmin(-1) for part in features.split(chunk)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def fit_codebook(config: str, teacher: str, features: str, manifest: str, k: int, out: str,
                 max_frames: int = 100_000, threads: int = 0) -> None:
    """Fit a k-cluster codebook on the train-split frames of a teacher's cache; store centroids and ids."""
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    from pipeline.cache.extract import expected_fingerprint
    from pipeline.config import load_config
    from pipeline.corpus.manifest import read_manifest

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    seed = int(cfg["seed"])
    cache = FeatureCache.open(features, expect={**expected_fingerprint(cfg, teacher), "name": teacher})
    layer = int(cache.fingerprint["num_layers"]) - 1
    train = set(read_manifest(manifest).query("split == 'train'")["utt_id"])
    keys = [key for key in cache.keys if utt_of(key) in train]
    if not keys:
        raise CodebookError(f"{features}: no cached utterance of the train split of {manifest}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keys))
    parts, total = [], 0
    for i in order:
        x = np.asarray(cache.get(keys[i])[:, layer], np.float32)
        parts.append(x)
        total += len(x)
        if total >= max_frames:
            break
    fit = codebook_features(np.concatenate(parts)[:max_frames]).numpy()
    if len(fit) < k:
        raise CodebookError(f"{features}: {len(fit)} train frames cannot make {k} clusters; lower options.k")
    kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=3, max_iter=100)
    with threadpool_limits(limits=threads or None):  # BLAS/OpenMP threads: oversubscription costs 10-20x here
        kmeans.fit(fit)
    centroids = torch.from_numpy(kmeans.cluster_centers_.astype(np.float32))
    all_ids, offsets = [], [0]
    for key in tqdm(cache.keys, desc=f"assign {teacher} k={k}", unit="utt", mininterval=5):
        ids = nearest(codebook_features(np.asarray(cache.get(key)[:, layer], np.float32)), centroids)
        all_ids.append(ids.numpy())
        offsets.append(offsets[-1] + len(ids))
    fingerprint = {"teacher": teacher, "teacher_sha256": cache.fingerprint.get("sha256"),
                   "view": (cache.fingerprint.get("view_audio") or {}).get("view"), "layer": layer, "k": k,
                   "seed": seed, "norm": FEATURE_NORM, "fit_frames": len(fit), "inertia": float(kmeans.inertia_),
                   "code_version": CODEBOOK_VERSION}
    arrays = {"centroids": centroids.numpy(), "keys": np.array(cache.keys),
              "offsets": np.asarray(offsets, np.int64),
              "ids": np.concatenate(all_ids).astype(np.int16 if k <= 32767 else np.int32),
              "fingerprint": np.array(json.dumps(fingerprint, sort_keys=True))}
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    usage = np.bincount(arrays["ids"].astype(np.int64), minlength=k)
    log.info("%s: k=%d on %d frames of layer %d, inertia %.1f, %d clusters used", out, k, len(fit), layer,
             kmeans.inertia_, int((usage > 0).sum()))


class Codebook:
    """A fitted codebook file: centroids (K, D), the feature layer, and the cluster ids of every cached key."""

    KEYS = ("centroids", "keys", "offsets", "ids", "fingerprint")

    def __init__(self, path: str | Path, expect: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CodebookError(f"{self.path}: no codebook; run `python -m pipeline codebook` (rule codebook)")
        with np.load(self.path, allow_pickle=False) as data:
            missing = [k for k in self.KEYS if k not in data.files]
            if missing:
                raise CodebookError(f"{self.path}: missing {missing}; not a codebook file, refit it")
            a = {k: data[k] for k in self.KEYS}
        self.fingerprint: dict[str, Any] = json.loads(str(a["fingerprint"]))
        for key, want in (expect or {}).items():
            if self.fingerprint.get(key) != want:
                raise CodebookError(f"{self.path}: {key}={self.fingerprint.get(key)!r} but {want!r} was expected; "
                                    "the codebook was fitted on other features, refit it")
        self.centroids = torch.from_numpy(a["centroids"])
        self.k, self.layer = int(self.centroids.shape[0]), int(self.fingerprint["layer"])
        self._ids, self._offsets = a["ids"], a["offsets"]
        self._row = {key: i for i, key in enumerate(a["keys"].tolist())}

    def __contains__(self, key: str) -> bool:
        return key in self._row

    def ids(self, key: str) -> np.ndarray:
        """Cluster id of every frame of one cached key."""
        if key not in self._row:
            raise KeyError(f"{key} has no cluster ids in {self.path}; refit the codebook on the current cache")
        i = self._row[key]
        return self._ids[self._offsets[i]:self._offsets[i + 1]]
