"""The whole config check the workflow runs at start-up: the schema, then the registries (adapters, teachers,
methods, task heads).

It sits above the stages so that pipeline.config, which every stage imports, imports none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, load_config, validate_config
from pipeline.corpus.adapters import check_corpus_config
from pipeline.distill.checks import check_students
from pipeline.downstream.tasks import get_task
from pipeline.teachers.registry import check_teachers


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate in place (defaults filled) and check every cross-reference; raise ConfigError naming the key."""
    validate_config(config)
    try:
        check_corpus_config(config)
        check_teachers(config["teachers"])
    except ValueError as err:
        raise ConfigError(f"config: {err}") from None
    check_students(config)
    _check_heads(config["downstream"].get("tasks", {}))
    return config


def _check_heads(tasks: dict[str, Any]) -> None:
    """`downstream.tasks.<task>.head` holds keyword options of that task's head class."""
    for name, settings in tasks.items():
        try:
            get_task(name).check_head(settings.get("head", {}))
        except ValueError as err:
            raise ConfigError(f"config: downstream.tasks.{name}.head: {err}") from None


def load_checked(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and run every check on it, naming the file in the error."""
    config = load_config(path)
    try:
        return check_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
