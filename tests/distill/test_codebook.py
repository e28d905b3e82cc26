"""k-means codebook (arXiv 2309.09920 targets): recovers separable clusters, ids for every key, file checks."""

import numpy as np
import pandas as pd
import pytest
import torch
from cache_fixtures import teacher_fingerprint

from pipeline.cache.index import build_index
from pipeline.cache.store import StoreWriter
from pipeline.corpus.manifest import write_manifest
from pipeline.distill.codebook import Codebook, CodebookError, codebook_features, fit_codebook, nearest
from pipeline.distill.kd import posterior_logits


def _cache(tmp_path, n_utts=6, frames=40, dim=12, seed=0):
    """3 hidden states; the last one is one of 3 well-separated directions plus small noise per frame."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, dim)) * 4
    truth, arrays, rows = {}, {}, []
    for u in range(n_utts):
        lab = rng.integers(0, 3, frames)
        x = np.zeros((frames, 3, dim), np.float32)
        x[:, 2] = centres[lab] + 0.1 * rng.standard_normal((frames, dim))
        x[:, :2] = rng.standard_normal((frames, 2, dim))
        arrays[f"u{u}@0"] = x
        truth[f"u{u}@0"] = lab
        rows.append({"utt_id": f"u{u}", "path": "/x.wav", "num_samples": 16000, "sample_rate": 16000,
                     "split": "train" if u < 4 else "test", "speaker": "s"})
    fp = teacher_fingerprint("t", {"kind": "hf", "model": "none"}, name="t", num_layers=3, dim=dim, sha256="abc",
                             view_audio={"view": "clean"})
    with StoreWriter(tmp_path / "s0.zarr", fp, dtype="float32") as w:
        for k, a in arrays.items():
            w.add(k, a)
    build_index([str(tmp_path / "s0.zarr")], str(tmp_path / "index.tsv"))
    write_manifest(pd.DataFrame(rows), tmp_path / "m.tsv")
    return truth


def test_codebook_recovers_clusters_and_labels_every_key(tmp_path, config_path):
    truth = _cache(tmp_path)
    out = tmp_path / "cb" / "k3.npz"
    fit_codebook(config_path, "t", str(tmp_path / "index.tsv"), str(tmp_path / "m.tsv"), 3, str(out))
    cb = Codebook(out, expect={"teacher": "t", "k": 3})
    assert cb.layer == 2 and cb.fingerprint["view"] == "clean" and cb.fingerprint["fit_frames"] == 160
    mapping = {}
    for key, lab in truth.items():  # every key, test split included, is labelled
        ids = cb.ids(key)
        assert ids.shape == lab.shape
        for a, b in zip(lab, ids, strict=True):
            mapping.setdefault(int(a), set()).add(int(b))
    assert all(len(v) == 1 for v in mapping.values()) and len({min(v) for v in mapping.values()}) == 3
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_nearest_is_the_distance_posterior_argmax():
    torch.manual_seed(0)
    feats, mu = codebook_features(torch.randn(50, 7)), codebook_features(torch.randn(9, 7))
    ids = nearest(feats, mu)
    want = torch.cdist(feats.double(), mu.double()).argmin(-1)
    assert torch.equal(ids, want)
    assert torch.equal(posterior_logits(feats, mu, 0.2).argmax(-1), ids)
    norms = feats.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)  # unit vectors


def test_codebook_errors(tmp_path, config_path):
    _cache(tmp_path)
    with pytest.raises(CodebookError, match="lower options.k"):
        fit_codebook(config_path, "t", str(tmp_path / "index.tsv"), str(tmp_path / "m.tsv"), 500,
                     str(tmp_path / "big.npz"))
    out = tmp_path / "k2.npz"
    fit_codebook(config_path, "t", str(tmp_path / "index.tsv"), str(tmp_path / "m.tsv"), 2, str(out))
    with pytest.raises(CodebookError, match="k=2"):
        Codebook(out, expect={"k": 3})
    with pytest.raises(CodebookError, match="codebook"):
        Codebook(tmp_path / "missing.npz")
    with pytest.raises(KeyError, match="refit"):
        Codebook(out).ids("nope@0")
