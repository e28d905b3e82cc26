"""Exports equal the student: transformers (HubertModel, WhisperModel's encoder), ONNX on three lengths, s3prl's
hf_hubert_custom upstream and the pipeline's own `kind: hf` teacher; re-exports are byte-identical; bad input is
named."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoFeatureExtractor, AutoModel

from pipeline.export.onnx import onnx_hidden_states, session
from pipeline.export.run import export_student, write_card
from pipeline.students.checkpoint import load_student
from pipeline.teachers.registry import load_upstream
from tests.export.conftest import LENGTHS, wav

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4


def _student(layout, name):
    return load_student(layout.student(name, ""), name=name)


def _max_diff(ours, theirs) -> float:
    assert len(ours) == len(theirs)
    return max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(ours, theirs, strict=True))


def test_export_folders_hold_what_each_layout_has(exported):
    _, layout = exported
    for name, files in (("wave", ["hf/README.md", "hf/config.json", "hf/model.safetensors",
                                  "hf/preprocessor_config.json", "model.onnx"]),
                        ("mel", ["hf/README.md", "hf/config.json", "hf/model.safetensors",
                                 "hf/preprocessor_config.json", "model.onnx"]),
                        ("lstm", ["README.md", "model.onnx"])):
        found = sorted(str(p.relative_to(layout.export(name))) for p in Path(layout.export(name)).rglob("*")
                       if p.is_file())
        assert found == files, name
        assert set(layout.export_files(name)) | {layout.export_card(name)} == {layout.export(name, f) for f in files}


def test_hubert_export_is_the_waveform_student(exported):
    _, layout = exported
    model = AutoModel.from_pretrained(layout.export("wave", "hf")).eval()
    extractor = AutoFeatureExtractor.from_pretrained(layout.export("wave", "hf"))
    assert type(model).__name__ == "HubertModel" and type(extractor).__name__ == "Wav2Vec2FeatureExtractor"
    student = _student(layout, "wave")
    for n in LENGTHS:
        x = wav(n)
        with torch.no_grad():
            theirs = model(**extractor(x.numpy(), sampling_rate=16000, return_tensors="pt"),
                           output_hidden_states=True).hidden_states
        assert _max_diff(student.hidden_states(x), [h[0] for h in theirs]) <= TOL


def test_whisper_export_is_the_logmel_student_on_its_own_logmel(exported):
    """The encoder on the clip's own log-mel (as the pipeline's Whisper teachers run) equals the student; the
    stock forward does only on exactly 30 s: padded to 30 s, the encoder attends over the padding."""
    _, layout = exported
    model = AutoModel.from_pretrained(layout.export("mel", "hf")).eval()
    extractor = AutoFeatureExtractor.from_pretrained(layout.export("mel", "hf"))
    assert type(model).__name__ == "WhisperModel" and type(extractor).__name__ == "WhisperFeatureExtractor"
    assert len(model.decoder.layers) == 0 and sum(p.numel() for p in model.decoder.parameters()) == 4 * 32
    student = _student(layout, "mel")
    enc = model.encoder
    gelu = torch.nn.functional.gelu
    for n in LENGTHS:
        x = wav(n)
        mel = extractor(x.numpy(), sampling_rate=16000, padding="longest", return_tensors="pt").input_features
        with torch.no_grad():
            h = gelu(enc.conv2(gelu(enc.conv1(mel)))).transpose(1, 2)
            states = [h + enc.embed_positions.weight[: h.shape[1]]]
            for layer in enc.layers:
                states.append(layer(states[-1], None))
            states[-1] = enc.layer_norm(states[-1])
        assert _max_diff(student.hidden_states(x), [s[0] for s in states]) <= TOL
    full = wav(480000)
    with torch.no_grad():
        stock = enc(extractor(full.numpy(), sampling_rate=16000, return_tensors="pt").input_features,
                    output_hidden_states=True).hidden_states
        assert _max_diff(student.hidden_states(full), [s[0] for s in stock]) <= TOL
        short = wav(LENGTHS[1])
        padded = enc(extractor(short.numpy(), sampling_rate=16000, return_tensors="pt").input_features,
                     output_hidden_states=True).hidden_states
    ours = student.hidden_states(short)
    assert _max_diff(ours, [s[0, : ours[0].shape[0]] for s in padded]) > 1e-2  # what does not fit


@pytest.mark.parametrize("name", ["wave", "mel", "lstm"])
def test_onnx_equals_torch_on_three_lengths(exported, name):
    _, layout = exported
    sess = session(layout.export(name, "model.onnx"))
    student = _student(layout, name)
    assert [o.name for o in sess.get_outputs()] == [f"hidden_state_{i}" for i in range(student.num_layers)]
    assert sess.get_inputs()[0].shape == [1, "samples"]
    for n in (*LENGTHS, 480000):  # and 30 s: positions near 1,500 are where runtimes' Exp differed
        x = wav(n, seed=n)
        ours = student.hidden_states(x)
        theirs = onnx_hidden_states(sess, x.numpy())
        assert [t.shape for t in theirs] == [tuple(o.shape) for o in ours]
        assert _max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("name", ["wave", "mel"])
def test_kind_hf_teacher_loads_the_export(exported, name):
    """A student as teacher: the pipeline's own `kind: hf` loader gives the student's hidden states."""
    _, layout = exported
    teacher = load_upstream("from_student", {"kind": "hf", "model": layout.export(name, "hf")})
    student = _student(layout, name)
    assert (teacher.num_layers, teacher.dim) == (student.num_layers, student.dim)
    for n in LENGTHS:
        x = wav(n, seed=1)
        assert teacher.num_frames(n) == student.num_frames(n)
        assert _max_diff(student.hidden_states(x), teacher.hidden_states(x)) <= TOL


def test_s3prl_hf_hubert_custom_loads_the_export(exported):
    """s3prl's own upstream code: `s3prl.hub` itself needs torchaudio, whose only installable build does not load
    beside the CPU torch 2.13 (README), so hf_hubert_custom comes from its hubconf module, which the hub re-exports."""
    from s3prl.upstream.hf_hubert import hubconf

    _, layout = exported
    upstream = hubconf.hf_hubert_custom(ckpt=layout.export("wave", "hf")).eval()
    assert upstream.get_downsample_rates("hidden_states") == 320
    student = _student(layout, "wave")
    for n in LENGTHS:
        x = wav(n, seed=2)
        with torch.no_grad():
            theirs = upstream([x])["hidden_states"]
        assert _max_diff(student.hidden_states(x), [h[0] for h in theirs]) <= TOL


def _digests(folder: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_reexport_is_byte_identical_across_processes(exported, tmp_path):
    """The command line in a fresh process (another hash seed) writes the same bytes as the in-process export."""
    config, layout = exported
    for name in ("wave", "mel", "lstm"):
        export_student(config, name, str(tmp_path / name))
        assert _digests(str(tmp_path / name)) == _digests(layout.export(name)), name
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "pipeline", "export", "--config", config, "--student", "mel", "--out",
                    str(tmp_path / "cli")], check=True, env=env, capture_output=True, timeout=300)
    assert _digests(str(tmp_path / "cli")) == _digests(layout.export("mel"))


def test_runtime_is_measured_beside_the_export(exported):
    _, layout = exported
    for name in ("wave", "mel", "lstm"):
        stats = json.loads(Path(layout.export_runtime(name)).read_text())
        assert stats["threads"] == 1 and stats["torch_rtf"] > 0 and stats["onnx_rtf"] > 0
        assert stats["onnx_bytes"] == Path(layout.export(name, "model.onnx")).stat().st_size
        assert max(stats["max_abs_diff"].values()) <= TOL


def test_bad_input_is_named(exported, tmp_path):
    config, layout = exported
    with pytest.raises(KeyError, match=r"student 'nope' is not in .*\['lstm', 'mel', 'wave'\]"):
        export_student(config, "nope", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"student 'wave': no checkpoint at .*empty.*train it first"):
        export_student(config, "wave", str(tmp_path), checkpoint=str(tmp_path / "empty"))


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_model_card_front_matter_and_scores(exported, tmp_path):
    config, layout = exported
    card = Path(layout.export_card("mel")).read_text()
    meta = _front_matter(card)
    assert meta["license"] == "other" and meta["base_model"] == "acme/tiny-speech"
    assert meta["datasets"] == ["synthetic"] and {"whisper", "distilhubert", "onnx"} <= set(meta["tags"])
    assert "Not yet scored" in card and "WhisperModel" in card
    assert _front_matter(Path(layout.export_card("lstm")).read_text())["library_name"] == "onnx"
    scores = []
    for cond, value in (("clean", 0.9), ("ood", 0.6)):
        path = tmp_path / f"{cond}.json"
        path.write_text(json.dumps({"upstream": "wave", "task": "ks", "condition": cond, "metric": "acc",
                                    "value": value, "seeds": [0], "n": 10}))
        scores.append(str(path))
    write_card(config, "wave", str(tmp_path / "README.md"), scores)
    card = (tmp_path / "README.md").read_text()
    assert "| KS ACC↑ |  90.0 | 60.0 |" in card and "- ood: out-of-domain" in card and "HubertModel" in card
