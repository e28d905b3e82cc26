"""The shipped students: config cross-checks per method, and the files each student's training job reads."""

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.checks import check_config
from pipeline.config import ConfigError
from pipeline.distill.inputs import student_input_files, train_flags
from pipeline.workflow import Layout

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())
CONTRACT = {"distilhubert", "cdm_clean", "cdm_noisy", "dann", "corr_fixed", "corr_auto", "ens_avg", "ens_concat",
            "ens_heads", "lstm_kd", "lstm_dkd", "pad", "text_mse", "text_cos"}


def _cfg():
    return copy.deepcopy(BASE)


def test_shipped_students_and_teachers():
    cfg = check_config(_cfg())
    assert set(cfg["students"]) == CONTRACT
    assert cfg["teachers"]["resemblyzer"]["kind"] == "resemblyzer" and cfg["teachers"]["minilm"]["kind"] == "text"
    s = cfg["students"]
    assert (s["distilhubert"]["input_view"], s["distilhubert"]["target_view"]) == ("clean", "clean")
    assert (s["cdm_clean"]["input_view"], s["cdm_clean"]["target_view"]) == ("indomain", "clean")
    assert (s["cdm_noisy"]["input_view"], s["cdm_noisy"]["target_view"]) == ("indomain", "indomain")
    for name in ("ens_avg", "ens_concat", "ens_heads"):
        assert s[name]["teacher"] == ["whisper_base", "whisper_tiny", "resemblyzer"]
    assert {s[n]["options"]["aggregate"] for n in ("ens_avg", "ens_concat", "ens_heads")} == {"average", "concat",
                                                                                            "heads"}
    assert s["corr_fixed"]["options"]["weighting"] == "fixed" and s["corr_auto"]["options"]["weighting"] == "auto"


@pytest.mark.parametrize(("name", "edit", "match"), [
    ("ens_avg", {"teacher": "whisper_base"}, "list of at least two"),
    ("ens_avg", {"teacher": ["whisper_base", "whisper_base"]}, "two distinct"),
    ("distilhubert", {"teacher": ["whisper_base", "whisper_tiny"]}, "takes one teacher"),
    ("pad", {"teacher": "whisper_base"}, "needs a text teacher"),
    ("distilhubert", {"teacher": "minilm"}, "embed text, not audio"),
    ("ens_heads", {"teacher": ["whisper_base", "minilm"]}, "embed text"),
    ("corr_auto", {"options": {"weighting": "adaptive"}}, r"students\.corr_auto\.options"),
    ("dann", {"options": {"lamda": 1.0}}, "lamda"),
    ("lstm_kd", {"arch": {"conv_channels": 64, "dim": 128, "heads": 4}}, r"\['heads'\].*lstm"),
    ("ens_avg", {"teacher": ["whisper_base", "whisper_huge"]}, "whisper_huge"),
    ("distilhubert", {"init": "resemblyzer"}, r"init 'resemblyzer' must be a configured Whisper teacher"),
    ("distilhubert", {"arch": {"dim": 512}}, r"init needs arch.frontend: logmel"),
    ("lstm_kd", {"arch": {"frontend": "spectrogram"}}, r"frontend"),
])
def test_student_cross_checks(name, edit, match):
    cfg = _cfg()
    cfg["students"][name].update(edit)
    with pytest.raises(ConfigError, match=match):
        check_config(cfg)


def test_input_files_follow_each_method():
    cfg = check_config(_cfg())
    lay = Layout(cfg)
    files = {n: student_input_files(cfg, lay, n) for n in cfg["students"]}
    root = cfg["results"]
    assert files["distilhubert"] == {"manifest": f"{root}/corpus/synthetic/manifest.tsv",
                                     "audio": [f"{root}/views/synthetic/clean/index.tsv"],
                                     "targets": [f"{root}/cache/whisper_base/synthetic/clean/index.tsv"]}
    assert files["cdm_noisy"]["targets"] == [f"{root}/cache/whisper_base/synthetic/indomain/index.tsv"]
    assert files["dann"]["audio"] == [lay.view_index("synthetic", "indomain"), lay.view_index("synthetic", "clean")]
    assert files["dann"]["plans"] == [lay.view_plan("synthetic", "indomain"), lay.view_plan("synthetic", "clean")]
    assert files["ens_concat"]["targets"] == [lay.feature_index(t, "synthetic", "clean")
                                              for t in ("whisper_base", "whisper_tiny", "resemblyzer")]
    assert files["lstm_kd"]["codebook"] == files["lstm_dkd"]["codebook"] == lay.codebook("whisper_base", "clean", 100)
    assert files["pad"]["targets"] == [] and files["pad"]["text"] == lay.text_embeddings("minilm", "synthetic")
    flags = train_flags(files["dann"])
    assert flags.startswith("--manifest ") and " --plans " in flags and "--codebook" not in flags
    assert train_flags(files["pad"]).split(" --text ")[0].endswith("--targets")  # an empty list: no teacher cache


def test_shipped_lstm_student_is_smaller_than_the_transformer_students():
    from pipeline.distill.methods import get_method
    from pipeline.students.checkpoint import build_student, count_params

    cfg = check_config(_cfg())
    sizes = {n: count_params(build_student(get_method(s["method"]).student, s["arch"]))
             for n, s in cfg["students"].items()}
    transformer = {sizes[n] for n, s in cfg["students"].items() if get_method(s["method"]).student == "transformer"}
    assert len(transformer) == 1  # one architecture for every transformer student: comparable rows
    assert sizes["lstm_kd"] == sizes["lstm_dkd"] < min(transformer)
