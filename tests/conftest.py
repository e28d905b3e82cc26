"""Shared test set-up: offline model loading, one torch thread, a minimal valid config."""

from __future__ import annotations

import pytest
import torch
import yaml


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models: one intra-op thread is ~20x faster than two on a shared, loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def config_path(tmp_path) -> str:
    """A minimal valid config file (defaults filled by the schema)."""
    cfg = {"seed": 11, "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0, "sentence": 0}},
           "views": {}, "teachers": {"t": {"kind": "hf", "model": "none"}}, "cache": {}, "students": {},
           "downstream": {}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)
