"""The model card of an exported student: the hub's README.md (YAML front matter, then what the student is, how it
was distilled and its downstream scores by task and condition, read from the score JSONs as the report reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline.report.papers import CONDITION_ORDER, TASK_NAMES, Scores, UpstreamInfo, _metric_header, label
from pipeline.report.scores import load_scores, long_form, summarise
from pipeline.report.tables import format_params, markdown_table

# hub dataset ids of the corpora adapters read (base_model / datasets in the front matter link to the hub)
HUB_DATASETS = {"librispeech": "openslr/librispeech_asr", "speech_commands": "google/speech_commands",
                "voxceleb1": "ProgramComputer/voxceleb"}
CONDITIONS = {"clean": "clean test speech", "indomain": "the in-domain distortions (noise, babble, reverberation, "
              "pitch shift, band-reject)", "ood": "out-of-domain distortions (sound effects, music, halls, telephone "
              "codec, clipping)", "real": "real human speech (Asterisk prompts)"}


def teacher_hub_id(name: str, spec: dict[str, Any]) -> str:
    """A teacher's hub id: its `hub_id`, else its `model` when that is a hub id (not a local path), else its name."""
    model = spec.get("model")
    if spec.get("hub_id"):
        return spec["hub_id"]
    return model if model and not Path(model).exists() and "/" in model else name


def _datasets(config: dict[str, Any], corpus: str) -> list[str]:
    adapter = config["corpus"].get("datasets", {}).get(corpus, {}).get("adapter", corpus)
    return [HUB_DATASETS.get(adapter, corpus)]


def scores_table(name: str, paths: Sequence[str]) -> tuple[str, list[str]]:
    """The student's scores (primary metric of each task, mean ± std over head seeds) as tasks x conditions, and
    the conditions."""
    summary = summarise(long_form(load_scores(paths)))
    scores = Scores(summary[summary["upstream"] == name])
    conditions = [c for c in CONDITION_ORDER if c in set(summary["condition"])]
    rows = [[f"{TASK_NAMES.get(t, t)} {_metric_header(scores.metric[t])}",
             *(scores.cell(name, t, c).text() for c in conditions)] for t in scores.tasks]
    return markdown_table(["task", *conditions], rows), conditions


def front_matter(name: str, config: dict[str, Any], student: dict[str, Any], transformers_class: str | None) -> str:
    """YAML front matter: license, library, tags, datasets, base_model (the teacher or teachers)."""
    teachers = student["teacher"] if isinstance(student["teacher"], list) else [student["teacher"]]
    bases = [teacher_hub_id(t, config["teachers"][t]) for t in teachers]
    layout = {"HubertModel": "hubert", "WhisperModel": "whisper"}.get(transformers_class or "", "lstm")
    meta = {"license": "other", "library_name": "transformers" if transformers_class else "onnx",
            "pipeline_tag": "feature-extraction",
            "tags": ["audio", "speech", "feature-extraction", "knowledge-distillation", student["method"], layout,
                     "onnx"],
            "datasets": _datasets(config, config["students"][name].get("corpus",
                                                                        config["corpus"].get("distill", "synthetic"))),
            "base_model": bases[0] if len(bases) == 1 else bases}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def model_card(name: str, config: dict[str, Any], student: dict[str, Any], scores: Sequence[str],
               transformers_class: str | None) -> str:
    """The whole README.md of student `name` from the run's config, its checkpoint config.json and score files."""
    spec = config["students"][name]
    info = UpstreamInfo(name, "student", method=student["method"], input_view=student.get("input_view", "clean"),
                        target_view=student.get("target_view", "clean"), options=student.get("options") or {})
    teachers = student["teacher"] if isinstance(student["teacher"], list) else [student["teacher"]]
    train = student.get("train") or {}
    arch = student["arch"]
    layers = len(student.get("target_layers") or []) if isinstance(student.get("target_layers"), list) else None
    corpus = spec.get("corpus", config["corpus"].get("distill", "synthetic"))
    lines = [front_matter(name, config, student, transformers_class), f"# {name}", "",
             f"A {format_params(student['num_params'])}-parameter {student['student']} speech encoder distilled from "
             f"{', '.join(f'`{t}`' for t in teachers)} ({label(info)}). It maps 16 kHz mono audio to "
             f"{arch['layers'] + 1} hidden states at 50 frames per second.", "",
             "## Method", "",
             f"- method: `{student['method']}` ({label(info)}), options {student.get('options') or {}}",
             *(f"- teacher `{t}`: {_teacher_line(t, config['teachers'][t])}" for t in teachers),
             f"- views: the student heard `{info.input_view}` audio, its targets came from the teacher on "
             f"`{info.target_view}` audio" + (f" ({layers} target layers)" if layers else ""),
             f"- data: the train split of the `{corpus}` corpus"
             + (" (the pipeline's offline multi-speaker TTS corpus)" if corpus == "synthetic" else ""),
             f"- steps: {train.get('steps', '?')} of batch {train.get('batch_size', '?')}"
             + (f", {train['crop_seconds']} s crops" if train.get("crop_seconds") else ", whole utterances")
             + f", lr {train.get('lr', '?')}"
             + (f"; {student['train_seconds']} s of training" if student.get("train_seconds") is not None else ""),
             f"- started from: {_init_line(spec, student)}",
             f"- parameters: {student['num_params']:,}; architecture {arch}",
             f"- held-out target cosine after training: {_fmt(student.get('dev_target_cosine'))}", "",
             "## Scores", ""]
    if scores:
        table, conditions = scores_table(name, scores)
        lines += ["Downstream heads on the frozen student (SUPERB-style weighted sum of its hidden states), in %: "
                  "accuracy ↑, error rates ↓; mean ± std over head seeds; '-' = not scored.", "", table.rstrip(), "",
                  *(f"- {c}: {CONDITIONS.get(c, c)}" for c in conditions), ""]
    else:
        lines += ["Not yet scored: no downstream scores were given for this export"
                  + ("" if name in _evaluated(config) else " (the run's config does not evaluate it)") + ".", ""]
    lines += ["## Files", "", *_files(transformers_class), "",
              "Loading snippets: the project README, section \"Using a trained student\"."]
    return "\n".join(lines) + "\n"


def _evaluated(config: dict[str, Any]) -> set[str]:
    from pipeline.workflow import Layout

    return set(Layout(config).evaluations())


def _fmt(value: Any) -> str:
    return "not recorded" if value is None else f"{value:.3f}"


def _teacher_line(name: str, spec: dict[str, Any]) -> str:
    source = spec.get("model") or spec.get("path") or spec.get("package") or "(built in)"
    source = ", ".join(source) if isinstance(source, list) else source
    return f"kind {spec['kind']}, {source}, hub id {teacher_hub_id(name, spec)}"


def _init_line(spec: dict[str, Any], student: dict[str, Any]) -> str:
    init = student.get("init") or {}
    if not init:
        return "random weights"
    parts = [name for key, name in (("front_end", "front end"), ("final_norm", "final norm")) if init.get(key)]
    if init.get("teacher_layers"):
        parts.insert(1, f"layers {', '.join(map(str, init['teacher_layers']))}")
    return f"teacher `{init.get('teacher', spec.get('init'))}`: its {', '.join(parts)}"


def _files(transformers_class: str | None) -> list[str]:
    onnx = (f"- `{'../' if transformers_class else ''}model.onnx`: input `waveform` (1, samples) float32, outputs "
            "`hidden_state_0` ... `hidden_state_N` (1, frames, dim), one clip at a time")
    if transformers_class == "HubertModel":
        return ["- `config.json`, `model.safetensors`, `preprocessor_config.json`: a transformers `HubertModel` and "
                "its `Wav2Vec2FeatureExtractor` (raw waveform, no normalisation); `output_hidden_states=True` gives "
                "the student's hidden states", onnx]
    if transformers_class == "WhisperModel":
        return ["- `config.json`, `model.safetensors`, `preprocessor_config.json`: a transformers `WhisperModel` whose "
                "encoder is the student and whose decoder is an empty placeholder (no layers, zero weights: do not "
                "generate with it), and its `WhisperFeatureExtractor`. The student runs on the clip's own log-mel "
                "(no 30 s padding): `WhisperEncoder.forward` insists on 30 s inputs and then attends over the "
                "padding, which the student never saw", onnx]
    return [onnx]
