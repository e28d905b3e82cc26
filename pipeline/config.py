"""Load config.yaml, validate it against the JSON schema once, and fill defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config problem; the message names the key path and what is allowed."""


def _fill_defaults(validator_cls):
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(name, sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate in place (defaults filled) and check cross-references; raise ConfigError naming the key."""
    schema = yaml.safe_load(SCHEMA.read_text())
    validator = _fill_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            allowed = ", ".join(sorted(e.schema.get("properties", {})))
            where = _key_path(e)
            raise ConfigError(f"config: unknown key(s) {extra} under '{where}'; allowed: {allowed}")
        raise ConfigError(f"config: '{_key_path(e)}': {e.message}")
    _check_references(config)
    return config


def _check_references(config: dict[str, Any]) -> None:
    from pipeline.corpus.adapters import check_corpus_config
    from pipeline.distill.methods import METHODS

    try:
        check_corpus_config(config)
    except ValueError as err:
        raise ConfigError(f"config: {err}") from None
    _check_teachers(config["teachers"])
    teachers = set(config["teachers"])
    views = {"clean", "indomain", "ood"}
    for name, student in config["students"].items():
        if name in teachers:
            raise ConfigError(f"config: students.{name} has the same name as a teacher")
        if student["method"] not in METHODS:
            raise ConfigError(
                f"config: students.{name}.method '{student['method']}' is unknown (known: {sorted(METHODS)})"
            )
        _check_student(config, name, student, METHODS[student["method"]])
        for key in ("input_view", "target_view"):
            if student[key] not in views:
                raise ConfigError(f"config: students.{name}.{key} '{student[key]}' is not one of {sorted(views)}")
        _check_columns(config, name, student, METHODS[student["method"]])
    upstreams = teachers | set(config["students"])
    downstream = config["downstream"]
    _check_heads(downstream.get("tasks", {}))
    lists = {"downstream.upstreams": downstream.get("upstreams", [])} | {
        f"downstream.tasks.{t}.upstreams": s["upstreams"] for t, s in downstream.get("tasks", {}).items()
        if "upstreams" in s}
    for key, names in lists.items():
        for up in [] if names == "all" else names:
            if up not in upstreams:
                raise ConfigError(f"config: {key} names '{up}', not a teacher or student "
                                  f"(known: {sorted(upstreams)})")


def _check_heads(tasks: dict[str, Any]) -> None:
    """`downstream.tasks.<task>.head` holds keyword options of that task's head class."""
    from pipeline.downstream.tasks import get_task

    for name, settings in tasks.items():
        try:
            get_task(name).check_head(settings.get("head", {}))
        except ValueError as err:
            raise ConfigError(f"config: downstream.tasks.{name}.head: {err}") from None


def _check_teachers(teachers: dict[str, Any]) -> None:
    """A parameter-free fbank teacher names no weights: a package, model or path there is a mistake."""
    for name, spec in teachers.items():
        weights = sorted({"package", "model", "path"} & set(spec))
        if spec["kind"] == "fbank" and weights:
            raise ConfigError(f"config: teachers.{name}: kind fbank computes log-mel features and has no weights; "
                              f"remove {weights}")


def _check_student(config: dict[str, Any], name: str, student: dict[str, Any], method: type) -> None:
    """Teachers exist and suit the method (one audio teacher; a list of audio teachers for ensembles; a text
    teacher for text-aligned students); options and architecture keys are the method's own."""
    from dataclasses import fields

    from pipeline.distill.inputs import teacher_list
    from pipeline.students.checkpoint import ARCHITECTURES

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
    from pipeline.corpus.synthetic import label_columns

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


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    try:
        return validate_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
