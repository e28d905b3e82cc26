"""Students against the registries: a known method whose teachers, options and architecture keys suit it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pipeline.config import ConfigError
from pipeline.corpus.synthetic import label_columns
from pipeline.distill.inputs import teacher_list
from pipeline.distill.methods import METHODS
from pipeline.students.checkpoint import ARCHITECTURES


def check_students(config: dict[str, Any]) -> None:
    """Raise ConfigError naming students.<name>.<key> where a student does not fit its method."""
    for name, student in config["students"].items():
        if student["method"] not in METHODS:
            raise ConfigError(
                f"config: students.{name}.method '{student['method']}' is unknown (known: {sorted(METHODS)})"
            )
        _check_student(config, name, student, METHODS[student["method"]])
        _check_columns(config, name, student, METHODS[student["method"]])


def _check_student(config: dict[str, Any], name: str, student: dict[str, Any], method: type) -> None:
    """Teachers exist and suit the method (one audio teacher; a list of audio teachers for ensembles; a text
    teacher for text-aligned students); options and architecture keys are the method's own."""
    teachers = config["teachers"]
    where = f"config: students.{name}"
    names = teacher_list(student["teacher"])
    for t in names:
        if t not in teachers:
            raise ConfigError(f"{where}.teacher '{t}' is not a configured teacher (known: {sorted(teachers)})")
    kinds = {t: teachers[t]["kind"] for t in names}
    if method.many_teachers and (isinstance(student["teacher"], str) or len(set(names)) < 2):
        raise ConfigError(f"{where}.teacher: method '{student['method']}' needs a list of at least two distinct "
                          f"teachers, got {student['teacher']!r}")
    if not method.many_teachers and len(names) != 1:
        raise ConfigError(f"{where}.teacher: method '{student['method']}' takes one teacher, got {names}")
    if method.text_teacher and kinds[names[0]] != "text":
        raise ConfigError(f"{where}.teacher: method '{student['method']}' needs a text teacher (kind: text), "
                          f"'{names[0]}' is kind {kinds[names[0]]!r}")
    text_ones = [t for t, k in kinds.items() if k == "text"]
    if not method.text_teacher and text_ones:
        raise ConfigError(f"{where}.teacher: {text_ones} embed text, not audio; method '{student['method']}' "
                          "distils audio teachers")
    try:
        method.resolve_options(student.get("options"))
    except ValueError as err:
        raise ConfigError(f"{where}.options: {err} (method '{student['method']}')") from None
    arch_cls = ARCHITECTURES[method.student][0]
    allowed = {f.name for f in fields(arch_cls)}
    extra = sorted(set(student.get("arch", {})) - allowed)
    if extra:
        raise ConfigError(f"{where}.arch: {extra} do not apply to the {method.student} student of method "
                          f"'{student['method']}'; allowed: {sorted(allowed)}")
    init = student.get("init")
    if init is not None and (init not in teachers or teachers[init]["kind"] not in ("whisper_ct2", "hf")):
        raise ConfigError(f"{where}.init '{init}' must be a configured Whisper teacher (kind whisper_ct2 or hf)")
    if init is not None and student.get("arch", {}).get("frontend") != "logmel":
        raise ConfigError(f"{where}.init needs arch.frontend: logmel (the layout of the Whisper teacher it starts "
                          "from)")


def _check_columns(config: dict[str, Any], name: str, student: dict[str, Any], method: type) -> None:
    """A method's `needs_columns` (manifest label columns it trains on) must be filled by its training corpus."""
    needs = set(getattr(method, "needs_columns", ()))
    if not needs or student.get("corpus", config["corpus"].get("distill", "synthetic")) != "synthetic":
        return  # a real corpus: its columns are known only once its manifest is prepared
    missing = sorted(needs - label_columns(config["corpus"]["synthetic"]))
    if missing:
        raise ConfigError(
            f"config: students.{name}.method '{student['method']}' trains on manifest column(s) {missing}, "
            "which the synthetic corpus of corpus.synthetic does not fill (keyword, command and sentence counts "
            "decide which labels exist); give corpus.synthetic.sentence or .command a positive count, "
            "or choose a method that needs no transcripts")
