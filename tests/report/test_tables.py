"""The report from fake result files: every output written, seeds averaged, missing scores as dashes,
renderers (md / csv / tex / html) consistent, and the legacy single-seed JSON still read."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report.build import build_report
from pipeline.report.tables import (
    Cell,
    Column,
    Table,
    format_params,
    markdown_table,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
)
from pipeline.workflow import REPORT_FILES

SCORES = [  # upstream, task, condition, per-seed values, params
    ("whisper_base", "ks", "clean", [0.95], 20_600_000),
    ("whisper_base", "ks", "ood", [0.80], 20_600_000),
    ("student_tiny", "ks", "clean", [0.90, 0.92], 2_400_000),
    ("student_tiny", "ic", "real", [0.50], 2_400_000),
]


def score_json(up, task, cond, values, params, metric="acc", extra=None):
    per_seed = [{"seed": s, "value": v, "metrics": {metric: v, **(extra or {})}, "dev_value": v,
                 "best_step": 10, "layer_weights": [0.25, 0.75], "curve": [{"step": 10, "train_loss": 1.0,
                                                                            f"dev_{metric}": v}]}
                for s, v in enumerate(values)]
    return {"upstream": up, "task": task, "condition": cond, "metric": metric, "value": sum(values) / len(values),
            "seeds": list(range(len(values))), "n": 40, "lr": 1e-3, "steps": 600, "batch_size": 32,
            "num_params": params, "layer_weights": [0.25, 0.75], "per_seed": per_seed}


def write(tmp_path, rows=SCORES):
    paths = []
    for i, row in enumerate(rows):
        path = tmp_path / f"score{i}.json"
        path.write_text(json.dumps(score_json(*row)))
        paths.append(str(path))
    return paths


def test_every_report_file_without_a_config(tmp_path):
    out = tmp_path / "report"
    build_report(write(tmp_path), str(out))
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    long = pd.read_csv(out / "scores.csv")
    assert len(long) == 5 and set(long["seed"]) == {0, 1}  # one row per seed
    summary = pd.read_csv(out / "summary.csv")
    assert summary["upstream"].tolist() == ["whisper_base", "student_tiny"]
    assert summary.loc[1, "ks_acc_clean"] == pytest.approx(0.91)
    assert summary.loc[1, "ks_acc_clean_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert pd.isna(summary.loc[0, "ic_acc_real"])
    md = (out / "summary.md").read_text()
    assert "**95.0**" in md and "91.0 ± 1.4" in md and re.search(r"\|\s+-\s+\|", md)
    tex = (out / "summary.tex").read_text()
    assert r"whisper\_base" in tex and r"\multicolumn{2}{c}{KS ACC↑}" in tex and r"$\pm$" in tex
    superb = (out / "superb.md").read_text()
    assert "20.6M" in superb and "2.4M" in superb
    assert (out / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert "no upstream of this kind" in (out / "lstm.md").read_text()


def test_legacy_single_seed_json_and_bad_inputs(tmp_path):
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps({"upstream": "u", "task": "ks", "condition": "clean", "metric": "acc",
                                  "value": 0.5, "seeds": [3], "num_params": 10}))
    build_report([str(legacy)], str(tmp_path / "out"))
    assert pd.read_csv(tmp_path / "out/scores.csv")["seed"].tolist() == [3]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"upstream": "x", "task": "ks"}))
    with pytest.raises(ValueError, match="bad.json: missing key"):
        build_report([str(bad)], str(tmp_path / "out"))
    twice = write(tmp_path, SCORES[:1]) * 2
    with pytest.raises(ValueError, match="same upstream/task/condition/seed"):
        build_report(twice, str(tmp_path / "out"))


def test_scores_with_left_out_test_utterances_are_marked(tmp_path):
    paths = write(tmp_path)
    data = json.loads(Path(paths[1]).read_text())  # whisper_base ks ood
    data["missing_utterances"] = {"count": 3, "of": 43, "examples": ["u07", "u12", "u31"]}
    Path(paths[1]).write_text(json.dumps(data))
    out = tmp_path / "report"
    build_report(paths, str(out))
    md = (out / "summary.md").read_text()
    assert "80.0†" in md and md.count("†") == 2  # the cell and its footnote
    assert "† Scored without some labelled test utterances" in md and "whisper_base KS ood: 3" in md
    assert "missing_utterances" in md and "95.0†" not in md
    assert r"80.0$^\dagger$" in (out / "summary.tex").read_text()
    assert "80.0†" in (out / "summary.html").read_text()
    summary = pd.read_csv(out / "summary.csv")
    assert summary["ks_acc_ood_missing"].tolist() == [3, 0] and "ks_acc_clean_missing" not in summary.columns
    long = pd.read_csv(out / "scores.csv")
    assert long.groupby(["upstream", "condition"])["missing_utterances"].max().to_dict() == {
        ("student_tiny", "clean"): 0, ("student_tiny", "real"): 0, ("whisper_base", "clean"): 0,
        ("whisper_base", "ood"): 3}
    assert "†" not in (out / "superb.md").read_text()  # clean only: nothing left out there


def _table() -> Table:
    cols = [Column("upstream", "upstream"), Column("params", "params"), Column("ks_clean", "clean", "KS"),
            Column("ks_ood", "ood", "KS"), Column("asr", "WER", "")]
    table = Table("t", "A table", cols, notes=["a note"])
    table.add("teachers", [Cell("big_one"), Cell(94_700_000, kind="params"), Cell(0.9, kind="pct"),
                           Cell(0.7, kind="pct"), Cell(0.2, kind="pct")])
    table.add("students", [Cell("small"), Cell(None, kind="params"), Cell(0.85, 0.01, "pct"), Cell(None, kind="pct"),
                           Cell(0.1, kind="pct")])
    table.mark_best("ks_clean", lower=False)
    table.mark_best("asr", lower=True)
    table.mark_best("ks_ood", lower=False)  # a single number: nothing to compare, not bold
    return table


def test_renderers_agree(tmp_path):
    table = _table()
    md = to_markdown(table)
    lines = md.splitlines()
    assert lines[4:8] == ["|          | upstream | params |   KS clean | KS ood |      WER |",
                          "|:---------|:---------|-------:|-----------:|-------:|---------:|",
                          "| teachers | big_one  |  94.7M |   **90.0** |   70.0 |     20.0 |",
                          "| students | small    |      - | 85.0 ± 1.0 |      - | **10.0** |"]
    tex = to_latex(table)
    assert r"\multicolumn{2}{c}{KS}" in tex and r"\cmidrule(lr){4-5}" in tex
    assert r"\textbf{90.0}" in tex and r"\textbf{10.0}" in tex and r"85.0 $\pm$ 1.0" in tex
    assert tex.count(r"\midrule") == 2  # after the header and between the two sections
    page = to_html(table)
    assert page.count("<b>") == 2 and 'colspan="2" class=g>KS</th>' in page and "students</td>" in page
    to_csv(table, tmp_path / "t.csv")
    csv = pd.read_csv(tmp_path / "t.csv")
    assert list(csv.columns) == ["section", "upstream", "params", "ks_clean", "ks_clean_std", "ks_ood", "asr"]
    assert csv["ks_clean"].tolist() == [0.9, 0.85] and pd.isna(csv.loc[1, "ks_ood"])


def test_helpers():
    assert format_params(94_700_000) == "94.7M" and format_params(None) == "-" and format_params(830) == "830"
    table = markdown_table(["a", "bb"], [["x", "1"], ["yyy", "22"]])
    assert table.splitlines()[1] == "|:----|---:|"
    assert table.splitlines()[3] == "| yyy | 22 |"
    assert re.fullmatch(r"\d+\.\dx", Cell(12.345, kind="x").text())
