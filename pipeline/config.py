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
    """Validate against the schema in place (defaults filled) and check the names the config itself defines; raise
    ConfigError naming the key. Checks against the registries (methods, adapters) are pipeline.checks.check_config."""
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
    _check_names(config)
    return config


def _check_names(config: dict[str, Any]) -> None:
    """Students, views and downstream upstream lists against the config's own teachers and students."""
    teachers = set(config["teachers"])
    views = {"clean", "indomain", "ood"}
    for name, student in config["students"].items():
        if name in teachers:
            raise ConfigError(f"config: students.{name} has the same name as a teacher")
        for key in ("input_view", "target_view"):
            if student[key] not in views:
                raise ConfigError(f"config: students.{name}.{key} '{student[key]}' is not one of {sorted(views)}")
    upstreams = teachers | set(config["students"])
    downstream = config["downstream"]
    lists = {"downstream.upstreams": downstream.get("upstreams", [])} | {
        f"downstream.tasks.{t}.upstreams": s["upstreams"] for t, s in downstream.get("tasks", {}).items()
        if "upstreams" in s}
    for key, names in lists.items():
        for up in [] if names == "all" else names:
            if up not in upstreams:
                raise ConfigError(f"config: {key} names '{up}', not a teacher or student "
                                  f"(known: {sorted(upstreams)})")
    conditions = downstream.get("conditions", ["clean", "indomain", "ood", "real"])
    for up, wanted in downstream.get("upstream_conditions", {}).items():
        key = f"downstream.upstream_conditions.{up}"
        if up not in upstreams:
            raise ConfigError(f"config: {key}: '{up}' is not a teacher or student (known: {sorted(upstreams)})")
        if extra := sorted(set(wanted) - set(conditions)):
            raise ConfigError(f"config: {key} names {extra}, not in downstream.conditions {conditions}: add them "
                              "there or drop them here")


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
