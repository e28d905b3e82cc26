"""Config validation: messages name the key path; cross-references; defaults."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline.checks import check_config, load_checked
from pipeline.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def _cfg():
    return copy.deepcopy(BASE)


def test_shipped_config_is_valid():
    cfg = check_config(_cfg())
    assert cfg["seed"] == BASE["seed"]


def test_unknown_top_level_key():
    cfg = _cfg()
    cfg["sede"] = 1
    with pytest.raises(ConfigError, match="sede") as err:
        check_config(cfg)
    assert "top level" in str(err.value)


def test_unknown_nested_key_names_path():
    cfg = _cfg()
    cfg["students"]["distilhubert"]["train"]["stepz"] = 5
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    msg = str(err.value)
    assert "stepz" in msg
    assert "students.distilhubert.train" in msg
    assert "steps" in msg  # lists what is allowed there


def test_unknown_cache_key():
    cfg = _cfg()
    cfg["cache"]["compresion"] = "zstd"
    with pytest.raises(ConfigError, match=r"compresion.*'cache'|'cache'.*compresion"):
        check_config(cfg)


@pytest.mark.parametrize("path,value", [
    (("cache", "batch_seconds"), "sixty"),
    (("views", "shards"), 1.5),
    (("seed",), "1234"),
    (("students", "distilhubert", "train", "lr"), "fast"),
    (("corpus", "synthetic", "voices"), 0),  # below minimum
    (("cache", "dtype"), "bfloat16"),  # not in the enum
])
def test_wrong_type_names_key(path, value):
    cfg = _cfg()
    node = cfg
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert f"'{'.'.join(path)}'" in str(err.value)


def test_unknown_teacher_in_student():
    cfg = _cfg()
    cfg["students"]["distilhubert"]["teacher"] = "whisper_huge"
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    msg = str(err.value)
    assert "students.distilhubert.teacher" in msg and "whisper_huge" in msg
    assert "whisper_base" in msg and "whisper_tiny" in msg  # the known teachers


def test_unknown_method_lists_known():
    cfg = _cfg()
    cfg["students"]["distilhubert"]["method"] = "fithubert"
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    msg = str(err.value)
    assert "students.distilhubert.method" in msg and "fithubert" in msg
    from pipeline.distill.methods import METHODS

    for known in METHODS:
        assert known in msg


def test_unknown_view_in_student():
    cfg = _cfg()
    cfg["students"]["distilhubert"]["input_view"] = "noisy"
    with pytest.raises(ConfigError, match=r"students\.distilhubert\.input_view"):
        check_config(cfg)


def test_student_named_like_teacher():
    cfg = _cfg()
    cfg["students"]["whisper_base"] = cfg["students"].pop("distilhubert")
    cfg["downstream"]["upstreams"] = ["whisper_base"]
    with pytest.raises(ConfigError, match="same name as a teacher"):
        check_config(cfg)


def test_unknown_downstream_upstream():
    cfg = _cfg()
    cfg["downstream"]["upstreams"] = ["whisper_base", "hubert_large"]
    with pytest.raises(ConfigError, match=r"downstream\.upstreams.*hubert_large"):
        check_config(cfg)


def test_fbank_teacher_validates_and_names_no_weights():
    cfg = check_config(_cfg())
    assert cfg["teachers"]["fbank"] == {"kind": "fbank", "layers": "all"}
    assert all(cfg["students"][s]["teacher"] != "fbank" for s in cfg["students"])  # a reference, not a teacher
    for key, value in (("model", "facebook/hubert-base-ls960"), ("package", "x"), ("path", "w.pt")):
        cfg = _cfg()
        cfg["teachers"]["fb"] = {"kind": "fbank", key: value}
        with pytest.raises(ConfigError, match=rf"teachers\.fb: kind fbank .*\['{key}'\]"):
            check_config(cfg)


def test_precomputed_teacher_entries_are_checked_by_the_registry():
    cfg = _cfg()
    cfg["teachers"]["pre"] = {"kind": "precomputed", "path": "f.h5", "frame_rate": 50, "input_state": False}
    cfg["students"]["distilhubert"]["teacher"] = "pre"
    assert check_config(cfg)["teachers"]["pre"]["layers"] == "all"
    for entry, error in (({"kind": "precomputed"}, r"teachers\.pre: kind precomputed needs 'path'"),
                         ({"kind": "precomputed", "path": "f.h5", "model": "m"}, r"remove \['model'\]"),
                         ({"kind": "whisper_ct2", "frame_rate": 50}, r"kind whisper_ct2 .*remove \['frame_rate'\]"),
                         ({"kind": "precomputed", "path": "f.h5", "frame_rate": 0}, r"teachers\.pre\.frame_rate")):
        cfg = _cfg()
        cfg["teachers"]["pre"] = entry
        with pytest.raises(ConfigError, match=error):
            check_config(cfg)


def test_defaults_are_filled():
    cfg = _cfg()
    del cfg["results"]
    cfg["cache"] = {}
    cfg["views"] = {"indomain": {}, "ood": {}}
    del cfg["corpus"]["synthetic"]["split"]
    del cfg["corpus"]["synthetic"]["shards"]
    cfg["corpus"]["real"] = {}
    for key in ("input_view", "target_view"):
        del cfg["students"]["distilhubert"][key]
    out = check_config(cfg)
    assert out is cfg  # validated in place
    assert cfg["results"] == "results"
    assert cfg["cache"] == {"dtype": "float16", "compression": "none", "batch_seconds": 60}
    assert cfg["views"]["shards"] == 2
    assert cfg["views"]["indomain"] == {"copies": 2, "snr_db": [10, 19]}
    assert cfg["views"]["ood"] == {"copies": 1, "snr_db": [5, 20]}
    assert cfg["corpus"]["synthetic"]["split"] == [0.7, 0.15, 0.15]
    assert cfg["corpus"]["synthetic"]["shards"] == 4
    assert cfg["corpus"]["real"] == {"asterisk": True}
    assert cfg["students"]["distilhubert"]["input_view"] == "clean"
    assert cfg["students"]["distilhubert"]["target_view"] == "clean"
    assert cfg["teachers"]["whisper_base"]["layers"] == "all"


def test_given_values_are_kept():
    cfg = _cfg()
    cfg["cache"] = {"dtype": "float32", "compression": "zstd", "batch_seconds": 5}
    check_config(cfg)
    assert cfg["cache"] == {"dtype": "float32", "compression": "zstd", "batch_seconds": 5}


def test_missing_required_section():
    cfg = _cfg()
    del cfg["teachers"]
    with pytest.raises(ConfigError, match="teachers"):
        check_config(cfg)


def test_load_checked(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_checked(tmp_path / "nope.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_cfg()))
    assert load_checked(good)["cache"]["dtype"] == "float16"
    bad = _cfg()
    bad["cache"]["dtype"] = 16
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError) as err:
        load_checked(path)
    assert str(path) in str(err.value) and "'cache.dtype'" in str(err.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=re.escape("top level")):
        load_checked(empty)


def test_load_checked_names_the_file_on_a_registry_error(tmp_path):
    """A method the registry does not know passes the schema (pipeline.config) and is caught by the full check."""
    bad = _cfg()
    bad["students"]["distilhubert"]["method"] = "no_such_method"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    from pipeline.config import load_config

    assert load_config(path)["students"]["distilhubert"]["method"] == "no_such_method"
    with pytest.raises(ConfigError) as err:
        load_checked(path)
    assert str(path) in str(err.value) and "students.distilhubert.method 'no_such_method' is unknown" in str(err.value)
