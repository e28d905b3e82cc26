"""build_report from a handful of fake score JSONs: scores.csv, summary.{csv,md,tex}, robustness.png."""

import json

import pandas as pd
import pytest

from pipeline.report.tables import build_report, format_params, markdown_table

SCORES = [
    ("whisper_base", "ks", "clean", 0.95, 0, 20_600_000),
    ("whisper_base", "ks", "ood", 0.80, 0, 20_600_000),
    ("student_tiny", "ks", "clean", 0.90, 0, 2_400_000),
    ("student_tiny", "ks", "clean", 0.92, 1, 2_400_000),
    ("student_tiny", "ic", "real", 0.50, 0, 2_400_000),
]


def _write(tmp_path, rows=SCORES):
    paths = []
    for i, (up, task, cond, value, seed, params) in enumerate(rows):
        path = tmp_path / f"score{i}.json"
        path.write_text(json.dumps({"upstream": up, "task": task, "condition": cond, "metric": "acc",
                                    "value": value, "n": 40, "seeds": [seed], "lr": 1e-3, "steps": 600,
                                    "num_params": params, "layer_weights": [0.5, 0.5]}))
        paths.append(str(path))
    return paths


def test_report_files_and_rows(tmp_path):
    out = tmp_path / "report"
    build_report(_write(tmp_path), str(out))
    long = pd.read_csv(out / "scores.csv")
    assert len(long) == len(SCORES)
    assert {"upstream", "task", "condition", "metric", "value"} <= set(long.columns)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["upstream"].tolist() == ["whisper_base", "student_tiny"]  # largest first
    assert list(summary.columns) == ["upstream", "num_params", "ks/clean", "ks/ood", "ic/real"]
    assert summary.loc[1, "ks/clean"] == pytest.approx(0.91)
    assert pd.isna(summary.loc[0, "ic/real"])
    md = (out / "summary.md").read_text()
    assert "| whisper_base" in md and "20.6M" in md and "**95.0**" in md and "91.0 ± 1.4" in md
    tex = (out / "summary.tex").read_text()
    assert r"whisper\_base" in tex and r"\multicolumn{2}{c}{KS (acc \%)}" in tex and r"$\pm$" in tex
    assert tex.count(r"\\") == 4  # two header rows + two upstream rows
    assert (out / "robustness.png").read_bytes()[:4] == b"\x89PNG"


def test_report_refuses_bad_inputs(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"upstream": "x", "task": "ks"}))
    with pytest.raises(ValueError, match="bad.json: missing key"):
        build_report([str(bad)], str(tmp_path / "out"))
    twice = _write(tmp_path, SCORES[:1]) * 2
    with pytest.raises(ValueError, match="same upstream/task/condition/seeds"):
        build_report(twice, str(tmp_path / "out"))


def test_helpers():
    assert format_params(94_700_000) == "94.7M" and format_params(None) == "-" and format_params(830) == "830"
    table = markdown_table(["a", "bb"], [["x", "1"], ["yyy", "22"]])
    assert table.splitlines()[1] == "|:----|---:|"
    assert table.splitlines()[3] == "| yyy | 22 |"
