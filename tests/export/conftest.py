"""Tiny trained-looking students of every layout (waveform and log-mel transformers, a log-mel LSTM), saved as
checkpoints of a tiny config, and their exports (session-scoped: exporting is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import validate_config
from pipeline.students.checkpoint import build_student, save_student
from pipeline.workflow import Layout

ARCHS = {
    "wave": ("transformer", "distilhubert",
             {"conv_channels": 16, "dim": 32, "layers": 2, "heads": 2, "ffn": 64, "pos_kernel": 16, "pos_groups": 4,
              "dropout": 0.0}),
    "mel": ("transformer", "distilhubert",
            {"frontend": "logmel", "dim": 32, "layers": 2, "heads": 2, "ffn": 64, "dropout": 0.0}),
    "lstm": ("lstm", "kd", {"frontend": "logmel", "conv_channels": 16, "dim": 16, "layers": 2}),
}
LENGTHS = (4000, 23457, 61111)  # 0.25 s, 1.47 s, 3.82 s


def tiny_config(root: Path) -> dict:
    """A valid config whose students are the three tiny ones (their teacher is never loaded)."""
    return {"seed": 3, "results": str(root / "results"),
            "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0, "sentence": 0}}, "views": {},
            "teachers": {"t": {"kind": "hf", "model": "acme/tiny-speech"}}, "cache": {},
            "students": {n: {"method": m, "teacher": "t", "arch": a, "train": {"steps": 3, "batch_size": 2}}
                         for n, (_, m, a) in ARCHS.items()},
            "downstream": {"upstreams": ["wave", "mel", "lstm"], "tasks": {"ks": {"steps": 1, "lr": 0.1}}}}


def wav(n: int, seed: int = 0) -> torch.Tensor:
    """A seeded 16 kHz test clip of `n` samples."""
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> tuple[str, Layout]:
    """(config path, layout): every tiny student saved as a checkpoint (weights perturbed off their initial values,
    so a swapped weight and bias would show) and exported with its runtime measured."""
    from pipeline.export.run import export_student

    root = tmp_path_factory.mktemp("export")
    cfg = tiny_config(root)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    layout = Layout(validate_config(cfg))
    torch.manual_seed(0)
    for name, (kind, method, arch) in ARCHS.items():
        model = build_student(kind, arch).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        meta = {"method": method, "teacher": "t", "target_layers": [1, 2], "input_view": "clean",
                "target_view": "clean", "options": {}, "train": {"steps": 3, "batch_size": 2, "lr": 1e-3},
                "seed": 3, "train_seconds": 1.5, "init": None, "dev_target_cosine": 0.5}
        save_student(model, kind, meta, Path(layout.student(name, "")))
        export_student(str(path), name, layout.export(name), runtime=layout.export_runtime(name))
    return str(path), layout
