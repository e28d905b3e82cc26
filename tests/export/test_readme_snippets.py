"""README "Using a trained student": its three loading snippets (transformers, s3prl, onnxruntime) run as written
against exports of the tiny students, found under the paths the snippets name, and give the student's states."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.checks import check_config
from pipeline.students.checkpoint import load_student
from pipeline.workflow import Layout

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def snippets(language: str = "python") -> list[str]:
    """The code blocks of the README section in `language`, in order."""
    text = README.read_text()
    section = text.split("\n## Using a trained student\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def _run(code: str, workdir: Path, links: dict[str, str], monkeypatch) -> dict:
    """Execute a snippet in `workdir`, where results/export/<name> points at the export `links[name]`."""
    for name, target in links.items():
        link = workdir / "results/export" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(Path(target).resolve())
    monkeypatch.chdir(workdir)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    return namespace


def _check(namespace: dict, layout, student: str) -> None:
    ours = load_student(layout.student(student, "")).hidden_states(torch.as_tensor(np.asarray(namespace["wav"])))
    theirs = [np.asarray(h)[0] for h in namespace["hidden_states"]]
    assert len(theirs) == len(ours)
    assert max(float(np.abs(a.numpy() - b).max()) for a, b in zip(ours, theirs, strict=True)) <= 1e-4


def test_readme_has_three_snippets():
    codes = snippets()
    assert len(codes) == 3
    assert "transformers" in codes[0] and "s3prl" in codes[1] and "onnxruntime" in codes[2]


@pytest.mark.parametrize("student", ["mel", "wave"])
def test_transformers_snippet(exported, tmp_path, monkeypatch, student):
    _, layout = exported
    ns = _run(snippets()[0], tmp_path, {"distilhubert": layout.export(student)}, monkeypatch)
    _check(ns, layout, student)


def test_s3prl_snippet(exported, tmp_path, monkeypatch):
    _, layout = exported
    ns = _run(snippets()[1], tmp_path, {"my_waveform_student": layout.export("wave")}, monkeypatch)
    _check(ns, layout, "wave")


@pytest.mark.parametrize("student", ["mel", "lstm"])
def test_onnxruntime_snippet(exported, tmp_path, monkeypatch, student):
    _, layout = exported
    ns = _run(snippets()[2], tmp_path, {"distilhubert": layout.export(student)}, monkeypatch)
    _check(ns, layout, student)


def test_student_as_teacher_entry_is_a_valid_config_that_waits_for_the_export():
    (block,) = snippets("yaml")
    entry = yaml.safe_load(block)
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["teachers"].update(entry["teachers"])
    cfg["students"].update(entry["students"])
    layout = Layout(check_config(cfg))
    assert layout.teacher_files("distilhubert_t") == layout.export_files("distilhubert")
