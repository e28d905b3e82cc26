"""Which files a student's training reads, from its config entry and its method's needs (for the Snakefile)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from pipeline.distill.methods import get_method


def teacher_list(teacher: str | list[str]) -> list[str]:
    """A student's `teacher:` entry as a list (ensembles name several)."""
    return [teacher] if isinstance(teacher, str) else list(teacher)


def input_views(spec: Mapping[str, Any]) -> list[str]:
    """Views whose audio the student hears: its input view, plus clean when the method mixes clean inputs."""
    needs = get_method(spec["method"]).needs(spec.get("options"))
    views = [spec["input_view"]]
    if needs.clean_prob > 0 and spec["input_view"] != "clean":
        views.append("clean")
    return views


def student_input_files(config: Mapping[str, Any], layout: Any, name: str) -> dict[str, Any]:
    """Input files of `train-student` for config.students[name]: manifest, audio index(es), one target index
    per audio teacher, and (by need) view plans, the k-means codebook and the transcript embeddings."""
    spec = config["students"][name]
    needs = get_method(spec["method"]).needs(spec.get("options"))
    teachers = teacher_list(spec["teacher"])
    views = input_views(spec)
    corpus = layout.student_corpus(name)
    files: dict[str, Any] = {
        "manifest": layout.manifest(corpus),
        "audio": [layout.view_index(corpus, v) for v in views],
        "targets": [layout.feature_index(t, corpus, spec["target_view"]) for t in teachers]
        if needs.targets else [],
    }
    if needs.domains:
        files["plans"] = [layout.view_plan(corpus, v) for v in views]
    if needs.clusters:
        files["codebook"] = layout.codebook(teachers[0], spec["target_view"], needs.clusters)
    if needs.text:
        files["text"] = layout.text_embeddings(teachers[0], corpus)
    return files


def train_flags(files: Mapping[str, Any]) -> str:
    """The `train-student` command-line flags for the files of student_input_files (shell-quoted)."""
    parts = []
    for key in ("manifest", "audio", "targets", "plans", "codebook", "text"):
        if key not in files:
            continue
        values = files[key] if isinstance(files[key], list) else [files[key]]
        parts.append(" ".join([f"--{key}", *(shlex.quote(str(v)) for v in values)]))
    return " ".join(parts)
