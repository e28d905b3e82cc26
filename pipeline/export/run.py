"""Verbs `export` and `model-card`: a trained student as a transformers folder, an ONNX file and a model card.

`results/export/<student>/` holds `hf/` (transformer students: config.json, model.safetensors,
preprocessor_config.json, README.md) and `model.onnx` (every student; an LSTM student's card is README.md beside
it). Weights are pure functions of the checkpoint: re-exporting an unchanged student writes identical bytes.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.atomic import write_text_atomic
from pipeline.export import HF_FILES, ONNX_FILE

log = logging.getLogger(__name__)
TOLERANCE = 1e-4  # max abs difference allowed between an export's hidden states and the student's own
CHECK_SAMPLES = 24000  # the seeded 1.5 s clip every export is checked on


def _config_and_checkpoint(config: str, student: str, checkpoint: str | None) -> tuple[dict[str, Any], Path]:
    """The validated config and the student's checkpoint directory, with errors that say what to do."""
    from pipeline.config import load_config
    from pipeline.workflow import Layout

    cfg = load_config(config)
    if student not in cfg["students"]:
        raise KeyError(f"student '{student}' is not in {config} (students: {sorted(cfg['students'])}); "
                       "export one of those or add it to the config")
    layout = Layout(cfg)
    ckpt = Path(checkpoint or layout.student(student, ""))
    missing = [f for f in ("model.safetensors", "config.json") if not (ckpt / f).is_file()]
    if missing:
        raise FileNotFoundError(f"student '{student}': no checkpoint at {ckpt} (missing {', '.join(missing)}); "
                                f"train it first (`snakemake {layout.student(student)}`) or give --checkpoint DIR")
    return cfg, ckpt


def transformers_class(student_config: dict[str, Any]) -> str | None:
    """The transformers class a student exports to (from its checkpoint config.json), None for no such layout."""
    if student_config["student"] != "transformer":
        return None
    return "WhisperModel" if student_config["arch"].get("frontend") == "logmel" else "HubertModel"


def card_path(out: str | Path, student_config: dict[str, Any]) -> Path:
    """hf/README.md for students with a transformers folder (the hub repository), README.md otherwise."""
    return Path(out) / ("hf/README.md" if transformers_class(student_config) else "README.md")


def _save_hf(model: torch.nn.Module, out: Path) -> None:
    """save_transformers into a temporary folder beside `out/hf`, then each file renamed into place."""
    from pipeline.export.hf import save_transformers

    (out / "hf").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".hf.") as tmp:
        save_transformers(model, tmp)
        for name in HF_FILES:
            os.replace(Path(tmp) / name, out / "hf" / name)


def check_export(upstream: Any, out: str | Path) -> dict[str, float]:
    """Max abs difference of each export's hidden states from the student's own on a seeded 1.5 s clip, loaded
    as a user would: hf/ through the pipeline's `kind: hf` teacher loader, model.onnx through onnxruntime."""
    from pipeline.export.onnx import onnx_hidden_states, session

    out = Path(out)
    wav = torch.randn(CHECK_SAMPLES, generator=torch.Generator().manual_seed(1)) * 0.1
    ref = [s.numpy() for s in upstream.hidden_states(wav)]
    diffs = {"onnx": _max_diff(ref, onnx_hidden_states(session(out / ONNX_FILE), wav))}
    if (out / "hf" / "config.json").exists():
        from pipeline.teachers.hf import load_hf

        theirs = load_hf(out / "hf", name="export").hidden_states(wav)
        diffs["hf"] = _max_diff(ref, [s.numpy() for s in theirs])
    bad = {k: v for k, v in diffs.items() if not v <= TOLERANCE}
    if bad:
        raise RuntimeError(f"{out}: exported hidden states differ from the student's by {bad} (max abs; allowed "
                           f"{TOLERANCE}); the export is wrong, do not use it")
    return diffs


def _max_diff(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs, strict=True)):
        return float("inf")
    return float(max(np.abs(a - b).max() for a, b in zip(ours, theirs, strict=True)))


def export_student(config: str, student: str, out: str, checkpoint: str | None = None,
                   scores: list[str] | None = None, card: bool = True, runtime: str | None = None,
                   threads: int = 1) -> None:
    """Export student STUDENT of CONFIG into OUT: hf/ (transformer students), model.onnx and the model card
    (scores: score JSONs for it, default those of the run that exist). Every export is checked against the
    student (max abs diff <= 1e-4). --runtime FILE also measures one-thread real-time factors of torch and
    onnxruntime into FILE (JSON)."""
    from pipeline.export.onnx import export_onnx, measure_runtime
    from pipeline.students.checkpoint import load_student

    _, ckpt = _config_and_checkpoint(config, student, checkpoint)
    if threads:
        torch.set_num_threads(threads)
    upstream = load_student(ckpt, name=student)
    student_config = json.loads((ckpt / "config.json").read_text())
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    if transformers_class(student_config):
        _save_hf(upstream.model, target)
    export_onnx(upstream.model, target / ONNX_FILE)
    diffs = check_export(upstream, target)
    log.info("%s: exported to %s; max abs diff from the student: %s", student, target, diffs)
    if card:
        write_card(config, student, str(card_path(target, student_config)), scores, str(ckpt))
    if runtime:
        stats = {"student": student, **measure_runtime(upstream, target / ONNX_FILE),
                 "max_abs_diff": diffs}
        write_text_atomic(runtime, json.dumps(stats, indent=2) + "\n")
        log.info("%s: runtime %s", student, stats)


def write_card(config: str, student: str, out: str, scores: list[str] | None = None,
               checkpoint: str | None = None) -> None:
    """Write the model card of STUDENT (hub README.md) to OUT from the config, its checkpoint's config.json and
    its score JSONs (default: those of the run that exist; none: the card says it is not yet scored)."""
    from pipeline.export.card import model_card
    from pipeline.workflow import Layout

    cfg, ckpt = _config_and_checkpoint(config, student, checkpoint)
    student_config = json.loads((ckpt / "config.json").read_text())
    if scores is None:
        scores = [p for p in Layout(cfg).scores(student) if Path(p).exists()]
    text = model_card(student, cfg, student_config, scores, transformers_class(student_config))
    write_text_atomic(out, text)
