"""Fingerprints for hand-made test caches: what extraction would write, so readers check them as real ones."""

from __future__ import annotations

from typing import Any

from pipeline.cache.extract import expected_fingerprint
from pipeline.config import validate_config

NEVER_LOADED = {"kind": "hf", "model": "never-loaded"}


def teacher_fingerprint(teacher: str, spec: dict[str, Any] | None = None, /, **model: Any) -> dict[str, Any]:
    """The config-determined fingerprint of `teacher` (entry `spec`, schema defaults filled) plus `model`
    facts (name, num_layers, dim, ...) that extraction takes from the loaded model."""
    cfg = validate_config({"seed": 0, "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0,
                                                               "sentence": 0}},
                           "views": {}, "teachers": {teacher: dict(spec or NEVER_LOADED)}, "cache": {},
                           "students": {}, "downstream": {}})
    return {**expected_fingerprint(cfg, teacher), **model}
