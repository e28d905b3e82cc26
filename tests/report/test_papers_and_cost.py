"""Upstreams land in the paper tables by method, views and options (not by name), and the cost tables add up
the caches, benchmarks and training settings they are built from (numbers recomputed here by hand)."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cache.index import build_index
from pipeline.cache.store import StoreWriter
from pipeline.report.cost import cost_tables, read_runtime, teacher_extraction
from pipeline.report.papers import (
    Scores,
    describe,
    ensemble_table,
    lstm_table,
    robustness_table,
    summary_table,
    superb_table,
    text_table,
)
from pipeline.report.scores import long_form, summarise

# names chosen to mislead: only method / views / options may decide where a student goes
CONFIG = {
    "teachers": {"big": {"kind": "whisper_ct2"}, "small": {"kind": "hf"}, "words": {"kind": "text"}},
    "students": {
        "ens_like_name": {"method": "distilhubert", "teacher": "big", "input_view": "clean", "target_view": "clean",
                          "train": {"steps": 100, "batch_size": 8, "crop_seconds": 1.0}},
        "plain": {"method": "distilhubert", "teacher": "big", "input_view": "indomain", "target_view": "indomain",
                  "train": {"steps": 100, "batch_size": 8, "crop_seconds": 1.0}},
        "x1": {"method": "correlation", "teacher": "big", "input_view": "indomain", "target_view": "clean",
               "options": {"weighting": "auto"}, "train": {"steps": 50, "batch_size": 4, "crop_seconds": 2.0}},
        "x2": {"method": "ensemble", "teacher": ["big", "small"], "options": {"aggregate": "concat"},
               "train": {"steps": 100, "batch_size": 8, "crop_seconds": 1.0}},
        "x3": {"method": "dkd", "teacher": "big", "train": {"steps": 10, "batch_size": 2, "crop_seconds": 1.0}},
        "x4": {"method": "pad", "teacher": "words", "train": {"steps": 10, "batch_size": 2}},
        "x5": {"method": "text_metric", "teacher": "words", "options": {"loss": "cosine"},
               "train": {"steps": 10, "batch_size": 2}},
    },
}


def test_tables_classify_by_method_views_and_options():
    infos = describe(CONFIG, {"x3": {"student": "lstm", "num_params": 900, "train_seconds": 3.0}})
    empty = Scores(summarise(long_form([{"upstream": "big", "task": "ks", "condition": "clean", "metric": "acc",
                                         "value": 0.9, "seeds": [0], "file": "f"}])))
    robust = robustness_table(infos, empty, ["clean", "indomain", "ood", "real"])
    rows = {r[0].value: s for r, s in zip(robust.rows, robust.sections, strict=True)}
    assert rows == {"big": "teacher", "ens_like_name": "baseline", "plain": "cross-distortion mapping",
                    "x1": "correlation metrics"}
    assert [c.key for c in robust.columns][3:] == [  # IC has no real-speech labels: no 'real' column for it
        "ks_acc_clean", "ks_acc_indomain", "ks_acc_ood", "ks_acc_real", "ic_acc_clean", "ic_acc_indomain",
        "ic_acc_ood", "asr_wer_clean", "asr_wer_indomain", "asr_wer_ood", "asr_wer_real"]
    assert robust.rows[0][3].value == 0.9 and robust.rows[1][3].value is None  # a missing score is a dash
    ens = ensemble_table(infos, empty)
    assert [(s, r[0].value) for r, s in zip(ens.rows, ens.sections, strict=True)] == [
        ("single teachers", "big"), ("single teachers", "small"), ("single-teacher students", "ens_like_name"),
        ("ensemble students", "x2")]
    assert "layerwise concatenation" in ens.rows[-1][1].value
    lstm = lstm_table(infos, empty)
    assert [r[0].value for r in lstm.rows] == ["ens_like_name", "x3"] and lstm.rows[1][2].value == 900
    text = text_table(infos, empty, ["clean", "indomain", "ood", "real"])
    assert [(s, r[0].value) for r, s in zip(text.rows, text.sections, strict=True)] == [
        ("metric baselines", "x5"), ("PAD-style", "x4")]


def _cache(root, teacher, view, lengths, bench_seconds, params):
    rng = np.random.default_rng(0)
    stores = []
    for shard, (ls, seconds) in enumerate(zip(lengths, bench_seconds, strict=True)):
        path = root / "cache" / teacher / "synthetic" / view / f"shard{shard}.zarr"
        with StoreWriter(path, {"upstream": teacher, "num_params": params}) as w:
            for i, n in enumerate(ls):
                w.add(f"u{shard}-{i}@0", rng.normal(size=(n, 2, 4)).astype(np.float16))
        stores.append(str(path))
        bench = root / "benchmarks" / "extract" / f"{teacher}-synthetic-{view}-{shard}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")
    build_index(stores, str(root / "cache" / teacher / "synthetic" / view / "index.tsv"))
    return sum(f.stat().st_size for s in stores for f in __import__("pathlib").Path(s).rglob("*") if f.is_file())


def test_cost_tables_add_up(tmp_path):
    big_bytes = _cache(tmp_path, "big", "clean", [[100, 50], [150]], [2.0, 3.0], 1000) + \
        _cache(tmp_path, "big", "ood", [[200], [100]], [1.0, 1.5], 1000)
    _cache(tmp_path, "small", "clean", [[50], [50]], [0.5, 0.5], 10)
    ext = {t: teacher_extraction(tmp_path, t) for t in ("big", "small", "words")}
    big = ext["big"]
    assert big.utterances == 5 and big.audio_seconds == pytest.approx(600 / 50) and big.seconds == 7.5
    assert big.bytes == big_bytes and big.num_params == 1000 and big.speed == pytest.approx(12 / 7.5)
    assert ext["words"].utterances == 0 and ext["words"].seconds is None  # no audio cache: dashes

    infos = describe(CONFIG, {"ens_like_name": {"train_seconds": 30.0, "num_params": 5, "dev_target_cosine": 0.8123,
                                                "dev_flat_step": 84}})
    heads = [{"upstream": "big", "task": "ks", "condition": c, "steps": 10, "batch_size": 4, "seeds": [0, 1]}
             for c in ("clean", "ood")]  # one head set, scored twice: counted once
    teachers, students = cost_tables(ext, infos, heads)
    rows = {r[0].value: r for r in students.rows}
    base = rows["ens_like_name"]
    assert [base[7].text(), base[8].text()] == ["0.812", "84"]  # held-out dev target cosine, flat from step
    assert rows["x2"][7].value is None  # not trained: no dev cosine
    assert base[9].value == 800  # 100 steps x batch 8, one teacher
    assert base[10].value == pytest.approx(800 * 1.0 / big.speed)
    assert base[11].value == pytest.approx(30.0 + 800 / big.speed)
    assert rows["x2"][9].value == 1600  # two teachers
    assert rows["x2"][10].value == pytest.approx(800 / big.speed + 800 / ext["small"].speed)
    assert rows["x4"][10].value is None  # text teacher: no measured speed
    trow = {r[0].value: r for r in teachers.rows}
    # big: students ens_like_name, plain, x1, x2, x3 -> 800 + 800 + 200 + 800 + 20 passes; heads 10 x 4 x 2
    assert trow["big"][7].value == 2620 and trow["big"][8].value == 80
    mean_utt = np.mean([big.audio_seconds / 5, ext["small"].audio_seconds / 2])
    online = (800 + 800 + 200 * 2.0 + 800 + 20) / big.speed + 80 * mean_utt / big.speed
    assert trow["big"][9].value == pytest.approx(online)
    assert trow["big"][10].value == pytest.approx(online / 7.5)
    assert json.dumps([c.text() for c in trow["total"]])  # the total row renders


def test_cost_students_show_each_exports_onnx_size_and_real_time_factors(tmp_path):
    runtime = tmp_path / "plain.json"
    runtime.write_text(json.dumps({"onnx_bytes": 2_500_000, "torch_rtf": 0.0213, "onnx_rtf": 0.0104}))
    runtimes = {"plain": read_runtime(runtime), "x1": read_runtime(tmp_path / "not_exported.json")}
    assert runtimes["x1"] == {}
    ext = {t: teacher_extraction(tmp_path, t) for t in ("big", "small", "words")}
    _, students = cost_tables(ext, describe(CONFIG, {}), [], runtimes)
    keys = [c.key for c in students.columns]
    rows = {r[0].value: {k: c for k, c in zip(keys, r, strict=True)} for r in students.rows}
    assert [rows["plain"][k].text() for k in ("onnx_mb", "rtf_torch", "rtf_onnx")] == ["2.5", "0.021", "0.010"]
    assert [rows["x1"][k].text() for k in ("onnx_mb", "rtf_torch", "rtf_onnx")] == ["-", "-", "-"]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: cannot read the export's runtime JSON"):
        read_runtime(bad)


def test_fbank_is_a_reference_row_of_every_comparison():
    """A teacher of kind fbank (by kind: the name says nothing) heads each paper table that has rows."""
    config = {**CONFIG, "teachers": {**CONFIG["teachers"], "x9": {"kind": "fbank"}}}
    infos = describe(config, {"x3": {"student": "lstm", "num_params": 900}})
    assert [n for n, i in infos.items() if i.is_reference] == ["x9"]
    scores = Scores(summarise(long_form([{"upstream": u, "task": "ks", "condition": "clean", "metric": "acc",
                                          "value": v, "seeds": [0], "num_params": p, "file": u}
                                         for u, v, p in (("x9", 0.6, 0), ("big", 0.9, 1000))])))
    superb = superb_table(infos, scores, ["big", "x9", "ens_like_name"])
    assert [(s, r[0].value) for r, s in zip(superb.rows, superb.sections, strict=True)] == [
        ("reference", "x9"), ("teachers", "big"), ("students", "ens_like_name")]
    assert superb.rows[0][1].value.startswith("log-mel filterbank") and superb.rows[0][2].text() == "0"
    assert any(n.startswith("reference: log-mel") for n in superb.notes)
    tables = [robustness_table(infos, scores, ["clean", "ood"]), ensemble_table(infos, scores),
              lstm_table(infos, scores), text_table(infos, scores, ["clean"])]
    for table in tables:
        assert (table.sections[0], table.rows[0][0].value) == ("reference", "x9"), table.name
        assert table.sections.count("reference") == 1 and table.rows[1][0].value != "x9"
    assert tables[0].rows[0][3].value == 0.6
    summary = summary_table(infos, scores, ["big", "x9"], ["clean"])
    assert [r[0].value for r in summary.rows] == ["big", "x9"]
    alone = describe({"teachers": {"x9": {"kind": "fbank"}, "big": {"kind": "hf"}}, "students": {}}, {})
    assert not lstm_table(alone, scores).rows and not robustness_table(alone, scores, ["clean"]).rows


def test_report_build_shows_fbank_in_tables_cost_and_figures(tmp_path, monkeypatch):
    """`python -m pipeline report` on a run with an fbank upstream: reference rows, 0 parameters in the cost
    table (from its cache's fingerprint), and a bar in the robustness figure."""
    import yaml

    from pipeline.report import build as report_build
    from pipeline.report.build import build_report

    results = tmp_path / "results"
    cfg = {"seed": 1, "results": str(results),
           "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0, "sentence": 0}}, "views": {},
           "teachers": {"big": {"kind": "hf", "model": "none"}, "mel": {"kind": "fbank"}}, "cache": {},
           "students": {"stu": {"method": "distilhubert", "teacher": "big"}},
           "downstream": {"upstreams": "all", "tasks": {"ks": {"steps": 1, "lr": 1e-3}},
                          "conditions": ["clean", "ood"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    _cache(results, "mel", "clean", [[100]], [0.5], 0)
    _cache(results, "big", "clean", [[100]], [2.0], 1000)
    scores = []
    for i, (up, params) in enumerate((("big", 1000), ("mel", 0), ("stu", 500))):
        for cond in ("clean", "ood"):
            path = tmp_path / f"{up}-{cond}.json"
            path.write_text(json.dumps({"upstream": up, "task": "ks", "condition": cond, "metric": "acc",
                                        "value": 0.5 + 0.1 * i, "seeds": [0], "num_params": params,
                                        "layer_weights": [1.0]}))
            scores.append(str(path))
    shown = {}
    original = report_build.figures.robustness_figure

    def robustness_figure(*args):
        shown["ups"] = args[-1]
        original(*args)

    monkeypatch.setattr(report_build.figures, "robustness_figure", robustness_figure)
    build_report(scores, str(tmp_path / "report"), str(tmp_path / "config.yaml"))
    out = tmp_path / "report"
    for name in ("superb", "robustness"):
        csv = pd.read_csv(out / f"{name}.csv")
        assert (csv.loc[0, "section"], csv.loc[0, "upstream"], csv.loc[0, "params"]) == ("reference", "mel", 0)
    cost = pd.read_csv(out / "cost_teachers.csv").set_index("teacher")
    assert cost.loc["mel", "params"] == 0 and cost.loc["big", "params"] == 1000
    assert "| mel " in (out / "cost_teachers.md").read_text()
    assert shown["ups"] == ["mel", "big", "stu"]
    assert "mel" in set(pd.read_csv(out / "summary.csv")["upstream"])
