"""A cache made with different teacher weights, layers or view recipe is refused by the reader, with a
message that names what differs and says what to do."""

from __future__ import annotations

import pandas as pd
import pytest

from faults.helpers import base_config, tiny_teacher, view_store, write_config
from pipeline.cache.extract import expected_fingerprint, extract_shard
from pipeline.cache.index import FeatureCache, build_index
from pipeline.cache.store import CacheMismatchError, Store
from pipeline.config import load_config
from pipeline.teachers.registry import load_upstream


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One feature store of teacher A (all layers) over view audio V1; a second view V2 with another recipe."""
    root = tmp_path_factory.mktemp("refusal")
    teacher = tiny_teacher(root / "teacher_a", seed=0)
    tiny_teacher(root / "teacher_b", seed=1)  # same architecture, other weights
    view_store(root / "v1.zarr", n=4, seed=0)
    view_store(root / "v2.zarr", n=4, seed=1)  # another view recipe (plan checksum) over other audio
    config = write_config(root / "config.yaml", base_config(teacher))
    extract_shard(config, "t", str(root / "v1.zarr"), str(root / "feats.zarr"))
    build_index([str(root / "feats.zarr")], str(root / "index.tsv"))
    return root


def _cfg(root, **teacher) -> dict:
    cfg = load_config(root / "config.yaml")
    cfg["teachers"]["t"] |= teacher
    return cfg


def _refused(root, expect: dict) -> str:
    with pytest.raises(CacheMismatchError) as err:
        Store(root / "feats.zarr", expect=expect)
    with pytest.raises(CacheMismatchError):  # the consumers' entry point refuses the same way
        FeatureCache.open(root / "index.tsv", expect=expect)
    msg = str(err.value)
    assert str(root / "feats.zarr") in msg and "delete the store" in msg and "re-extract" in msg
    return msg


def test_the_producer_itself_is_accepted(made):
    cfg = _cfg(made)
    model = load_upstream("t", cfg["teachers"]["t"])
    expect = expected_fingerprint(cfg, "t", model, Store(made / "v1.zarr").fingerprint)
    assert Store(made / "feats.zarr", expect=expect).fingerprint["sha256"] == model.fingerprint()["sha256"]
    FeatureCache.open(made / "index.tsv", expect=expected_fingerprint(cfg, "t"))  # from the config alone


def test_other_teacher_weights_are_refused(made):
    cfg = _cfg(made)
    other = load_upstream("t", {"kind": "hf", "model": str(made / "teacher_b")})
    expect = expected_fingerprint(cfg, "t", other)
    expect.pop("source")  # same path, weights replaced in place: only the checksum can tell
    expect["spec"] = cfg["teachers"]["t"]
    msg = _refused(made, expect)
    assert "sha256 (the upstream's weights)" in msg
    assert "spec" not in msg  # only what differs is named


def test_other_weights_path_is_refused_from_the_config_alone(made):
    msg = _refused(made, expected_fingerprint(_cfg(made, model=str(made / "teacher_b")), "t"))
    assert "spec.model" in msg and "teacher_b" in msg and "teacher_a" in msg


def test_other_layers_are_refused(made):
    cfg = _cfg(made, layers=[1, 2])
    msg = _refused(made, expected_fingerprint(cfg, "t"))  # config alone: the layers entry differs
    assert "spec.layers" in msg and "[1, 2]" in msg and "'all'" in msg
    model = load_upstream("t", cfg["teachers"]["t"])
    msg = _refused(made, expected_fingerprint(cfg, "t", model))  # with the model: depth and selection too
    assert "num_layers (the stored layers): store has 3, expected 2" in msg
    assert "layers (the stored layers): store has None, expected [1, 2]" in msg


def test_other_view_recipe_is_refused(made):
    cfg = _cfg(made)
    msg = _refused(made, expected_fingerprint(cfg, "t", audio=Store(made / "v2.zarr").fingerprint))
    assert "view_audio.plan_sha256 (the view recipe (plan))" in msg
    assert "test-0" in msg and "test-1" in msg


def test_other_dtype_is_refused(made):
    cfg = _cfg(made)
    cfg["cache"]["dtype"] = "float32"
    assert "dtype (the stored dtype)" in _refused(made, expected_fingerprint(cfg, "t"))


def test_every_reader_checks_the_config_fingerprint(made, tmp_path):
    """Training, the codebook and downstream evaluation refuse features of another teacher entry (here: another
    weights path under the same teacher name), and accept the producer's own config."""
    from pipeline.corpus.manifest import write_manifest
    from pipeline.distill.codebook import fit_codebook
    from pipeline.distill.train import train_student
    from pipeline.downstream.run import _features

    index = str(made / "index.tsv")
    assert len(_features(_cfg(made), index, "t").keys) == 4
    audio = str(tmp_path / "audio.tsv")
    build_index([str(made / "v1.zarr")], audio)
    rows = [{"utt_id": f"u{i:03d}", "path": f"/x/{i}.wav", "num_samples": 8000, "sample_rate": 16000,
             "split": "train", "speaker": "s"} for i in range(4)]
    manifest = tmp_path / "manifest.tsv"
    write_manifest(pd.DataFrame(rows), manifest)
    cfg = _cfg(made, model=str(made / "teacher_b"))
    cfg["students"] = {"st": {"method": "distilhubert", "teacher": "t", "train": {"steps": 1, "batch_size": 2}}}
    config = write_config(tmp_path / "other.yaml", cfg)
    with pytest.raises(CacheMismatchError, match="spec.model"):
        _features(cfg, index, "t")
    with pytest.raises(CacheMismatchError, match="spec.model"):
        fit_codebook(config, "t", index, str(manifest), 2, str(tmp_path / "cb.npz"))
    with pytest.raises(CacheMismatchError, match="spec.model"):
        train_student(config, "st", str(manifest), audio, index,
                      str(tmp_path / "student"), resume_dir=str(tmp_path / "resume"))
    assert not (tmp_path / "student").exists() and not (tmp_path / "cb.npz").exists()
