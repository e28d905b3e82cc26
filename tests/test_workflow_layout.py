"""Layout: artefact paths and which conditions each downstream task is scored on."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, validate_config
from pipeline.downstream.tasks import get_task
from pipeline.workflow import CONDITIONS, REPORT_FILES, Layout, canonical

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**changes):
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["results"] = "R"
    for k, v in changes.items():
        cfg[k] = v
    return validate_config(cfg)


def test_paths():
    L = Layout(_cfg())
    assert L.root == "R"
    assert L.manifest("synthetic") == "R/corpus/synthetic/manifest.tsv"
    assert L.synth_shard(3) == "R/corpus/synthetic/shards/3.tsv"
    assert L.bank("noise") == "R/banks/noise.npz"
    assert L.view_plan("synthetic", "ood") == "R/views/synthetic/ood/plan.tsv"
    assert L.view_store("synthetic", "indomain", 1) == "R/views/synthetic/indomain/shard1.zarr"
    assert L.view_store("asterisk", "clean", "{shard}") == "R/views/asterisk/clean/shard{shard}.zarr"
    assert L.view_index("synthetic", "clean") == "R/views/synthetic/clean/index.tsv"
    assert L.feature_store("wb", "synthetic", "clean", 0) == "R/cache/wb/synthetic/clean/shard0.zarr"
    assert L.feature_index("wb", "asterisk", "clean") == "R/cache/wb/asterisk/clean/index.tsv"
    assert L.student("s") == "R/students/s/model.safetensors"
    assert L.student("s", "curve.png") == "R/students/s/curve.png"
    assert L.student("s", "") == "R/students/s/"
    assert L.head("up", "ks") == "R/downstream/up/ks/head.pt"
    assert L.score("up", "ic", "real") == "R/scores/up/ic/real.json"
    assert L.report("summary.md") == "R/report/summary.md"
    assert L.export("s") == "R/export/s/" and L.export_runtime("s") == "R/runtime/s.json"
    assert L.shards == 2
    assert L.views("synthetic") == ["clean", "indomain", "ood"]
    assert L.views("asterisk") == ["clean"]
    assert L.corpora == ["synthetic", "asterisk"]


def test_conditions_real_only_where_labels_exist():
    L = Layout(_cfg())
    assert L.conditions("ks") == ["clean", "indomain", "ood", "real"]
    assert "real" not in L.conditions("ic")  # Asterisk prompts have no intent labels
    assert L.conditions("ic") == ["clean", "indomain", "ood"]


def test_asterisk_disabled_removes_real():
    cfg = _cfg()
    cfg["corpus"]["real"]["asterisk"] = False
    L = Layout(cfg)
    assert L.corpora == ["synthetic"]
    assert "real" not in L.conditions("ks")
    assert "real" not in L.conditions("ic")
    assert not any("/real.json" in s for s in L.scores())


def test_conditions_follow_config_order_and_subset():
    cfg = _cfg()
    cfg["downstream"]["conditions"] = ["real", "clean"]
    assert Layout(cfg).conditions("ks") == ["real", "clean"]
    del cfg["downstream"]["conditions"]
    assert Layout(cfg).conditions("ks") == list(CONDITIONS)


def test_scores_and_outputs():
    cfg = _cfg()
    L = Layout(cfg)
    scores = L.scores()
    audio = [t for t, spec in cfg["teachers"].items() if spec["kind"] != "text"] + list(cfg["students"])
    expect = set()
    for t, settings in cfg["downstream"]["tasks"].items():
        ups = settings.get("upstreams", cfg["downstream"]["upstreams"])
        ups = audio if ups == "all" else ups
        expect |= {f"R/scores/{u}/{t}/{c}.json" for u in ups for c in L.conditions(t)}
    assert set(scores) == expect and len(scores) == len(expect)
    assert "R/scores/whisper_base/ks/real.json" in scores
    assert "R/scores/whisper_base/ic/real.json" not in scores
    outs = L.all_outputs()
    for s in cfg["students"]:
        assert f"R/students/{s}/model.safetensors" in outs and f"R/students/{s}/curve.png" in outs
    for f in REPORT_FILES:
        assert f"R/report/{f}" in outs
    assert set(scores) <= set(outs)
    predictions = L.prediction_files()
    assert predictions == [s.removesuffix(".json") + ".pred.tsv" for s in scores] and set(predictions) <= set(outs)
    assert L.predictions("up", "pr", "ood") == "R/scores/up/pr/ood.pred.tsv"
    assert L.report_inputs()["predictions"] == predictions


def test_fbank_is_evaluated_on_every_task_and_condition():
    """The parameter-free fbank reference is an upstream like any teacher: every task, every condition; no
    student distils from it, so the views that are only scored are extracted for their test split alone."""
    L = Layout(_cfg())
    assert L.evaluations()["fbank"] == list(_cfg()["downstream"]["tasks"])
    assert set(L.scores("fbank")) == {L.score("fbank", t, c) for t in L.evaluations()["fbank"] for c in L.conditions(t)}
    assert L.feature_sources("fbank") == L.feature_sources("whisper_base")
    assert [v for c, v in L.feature_sources("fbank") if not L.scored_only("fbank", c, v)] == ["clean"]


def test_regex_matches_exactly_the_names():
    rx = Layout.regex(["a.b", "whisper_base"])
    assert re.fullmatch(rx, "a.b") and re.fullmatch(rx, "whisper_base")
    assert not re.fullmatch(rx, "axb")  # the dot is escaped
    assert not re.fullmatch(rx, "whisper")
    empty = Layout.regex([])
    assert not any(re.fullmatch(empty, s) for s in ("a", "whisper_base", "x_y"))  # ("$^" still matches "")


def test_scored_only_sources_are_those_no_training_reads():
    """A teacher's (corpus, view) is extracted for its test split alone exactly when neither a head (its
    clean view) nor any student's training inputs (targets, codebook source) read it."""
    from pipeline.distill.inputs import student_input_files, teacher_list

    for cfg in (_cfg(), _cfg(students={**_cfg()["students"],
                                       "tiny_noisy": {**_cfg()["students"]["cdm_noisy"], "teacher": "whisper_tiny"}})):
        L = Layout(cfg)
        trained_on = set()
        for name, spec in cfg["students"].items():
            files = student_input_files(cfg, L, name)
            trained_on |= set(files["targets"])
            if "codebook" in files:
                trained_on.add(L.feature_index(teacher_list(spec["teacher"])[0], L.student_corpus(name),
                                               spec["target_view"]))
        for teacher in ("whisper_base", "whisper_tiny", "resemblyzer"):
            for corpus, view in L.feature_sources(teacher):
                read_in_full = view == "clean" and corpus == "synthetic" or L.feature_index(teacher, corpus, view) \
                    in trained_on
                assert L.scored_only(teacher, corpus, view) is not read_in_full, (teacher, corpus, view)
        assert L.scored_only("whisper_base", "synthetic", "ood") and not L.scored_only("whisper_base", "synthetic",
                                                                                        "indomain")
        assert L.scored_only("whisper_tiny", "synthetic", "indomain") is ("tiny_noisy" not in cfg["students"])


def test_a_source_nothing_reads_is_extracted_whole():
    """A teacher no head evaluates and no student distils from (its store asked for by hand) is not cut down."""
    cfg = _cfg()
    cfg["downstream"]["upstreams"] = ["distilhubert"]
    L = Layout(cfg)
    assert L.feature_sources("whisper_tiny") == []
    assert not any(L.scored_only("whisper_tiny", "synthetic", v) for v in ("clean", "indomain", "ood"))
    assert L.scored_only("distilhubert", "synthetic", "ood")


def test_extraction_subset_is_what_evaluation_reads():
    """An upstream scored on intents alone keeps the commands (labelled rows) of every view it is scored on, all
    splits of the clean view its heads train on and the test split of the others; a teacher's target view, which
    students distil from, is extracted in full; an upstream on every task keeps every task's labels."""
    cfg = _cfg()
    cfg["downstream"]["upstreams"] = ["whisper_base", "distilhubert"]
    cfg["downstream"]["tasks"]["ic"]["upstreams"] = ["distilhubert", "text_only"]
    cfg["students"]["text_only"] = cfg["students"]["distilhubert"]
    L = Layout(validate_config(cfg))
    assert L.evaluations()["text_only"] == ["ic"]
    assert L.extraction_subset("text_only", "synthetic", "clean") == {"splits": [], "labels": ["intent"]}
    for view in ("indomain", "ood"):
        assert L.extraction_subset("text_only", "synthetic", view) == {"splits": ["test"], "labels": ["intent"]}
    every = sorted(get_task(t).column for t in L.evaluations()["distilhubert"])
    assert set(every) == {"keyword", "intent", "speaker", "style", "phones", "text"}
    assert L.extraction_subset("distilhubert", "synthetic", "ood") == {"splits": ["test"], "labels": every}
    assert L.extraction_subset("whisper_base", "synthetic", "clean") is None  # students' targets
    assert L.extraction_subset("whisper_base", "synthetic", "ood")["splits"] == ["test"]
    assert L.extraction_subset("resemblyzer", "synthetic", "clean") is None  # nothing evaluates it: in full


def test_upstream_conditions_narrow_what_is_scored_and_extracted():
    """A student scored on clean speech alone has clean scores only, reads (and extracts) no distorted view, and
    leaves every other upstream's conditions as they were."""
    cfg = _cfg()
    cfg["downstream"]["upstream_conditions"] = {"lstm_kd": ["clean"]}
    L, full = Layout(validate_config(cfg)), Layout(_cfg())
    assert {Path(s).stem for s in L.scores("lstm_kd")} == {"clean"}
    assert {Path(s).stem for s in full.scores("lstm_kd")} == {"clean", "indomain", "ood", "real"}
    assert L.feature_sources("lstm_kd") == [("synthetic", "clean")]
    assert L.extraction_subset("lstm_kd", "synthetic", "ood") is None  # nothing reads it
    assert L.scores("distilhubert") == full.scores("distilhubert")
    assert set(full.scores()) - set(L.scores()) == set(full.scores("lstm_kd")) - set(L.scores("lstm_kd"))


def test_upstream_conditions_errors_name_the_key():
    cfg = _cfg()
    cfg["downstream"]["upstream_conditions"] = {"nobody": ["clean"]}
    with pytest.raises(ConfigError, match=r"downstream.upstream_conditions.nobody.*not a teacher or student"):
        validate_config(cfg)
    cfg["downstream"]["conditions"] = ["clean", "ood"]
    cfg["downstream"]["upstream_conditions"] = {"lstm_kd": ["clean", "indomain"]}
    with pytest.raises(ConfigError, match=r"upstream_conditions.lstm_kd names \['indomain'\], not in downstream"):
        validate_config(cfg)


def test_export_off_leaves_exports_out_of_all_and_the_report():
    L = Layout(_cfg(export=False))
    outs = L.all_outputs()
    assert not any("/export/" in f for f in outs) and L.report_inputs()["runtimes"] == []
    assert set(L.scores()) <= set(outs) and "R/report/claims.md" in outs
    assert Layout(_cfg()).exports and any("/export/" in f for f in Layout(_cfg()).all_outputs())


def test_canonical_entry_ignores_key_order_only():
    a = {"kind": "hf", "model": "m", "layers": "all", "opts": {"x": 1, "y": [1, 2]}}
    b = {"opts": {"y": [1, 2], "x": 1}, "layers": "all", "model": "m", "kind": "hf"}
    assert list(a) != list(b) and canonical(a) == canonical(b)
    assert canonical(a) != canonical({**a, "layers": [1, 2]})
    assert canonical({**a, "opts": {"x": 1, "y": [2, 1]}}) != canonical(a)  # list order is content


def test_exports_by_student_architecture():
    """Transformer students export a transformers folder with the card in it; LSTMs model.onnx and a card beside."""
    L = Layout(_cfg())
    assert L.export_files("distilhubert") == ["R/export/distilhubert/hf/config.json",
                                              "R/export/distilhubert/hf/model.safetensors",
                                              "R/export/distilhubert/hf/preprocessor_config.json",
                                              "R/export/distilhubert/model.onnx"]
    assert L.export_card("distilhubert") == "R/export/distilhubert/hf/README.md"
    assert L.export_files("lstm_kd") == ["R/export/lstm_kd/model.onnx"]
    assert L.export_card("lstm_kd") == "R/export/lstm_kd/README.md"
    outs = L.all_outputs()
    for s in L.cfg["students"]:
        assert set(L.export_files(s)) | {L.export_card(s)} <= set(outs)
    assert L.report_inputs()["runtimes"] == [f"R/runtime/{s}.json" for s in L.cfg["students"]]


def test_a_students_export_as_teacher_waits_for_that_export():
    cfg = _cfg()
    cfg["teachers"]["from_student"] = {"kind": "hf", "model": "R/export/distilhubert/./hf", "hub_id": "me/distil"}
    L = Layout(validate_config(cfg))
    assert L.teacher_files("from_student") == L.export_files("distilhubert")
    assert L.teacher_files("whisper_base") == [] and L.teacher_files(None) == []
    assert L.extraction_spec("from_student") == {"kind": "hf", "model": "R/export/distilhubert/./hf",
                                                 "layers": "all"}  # hub_id is for model cards only
