"""Runs the real Snakefile on a tiny config (tiny random teacher, a few utterances) in a temp dir."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cache.index import FeatureCache
from pipeline.cache.store import Store
from pipeline.config import validate_config
from pipeline.corpus.manifest import read_manifest
from pipeline.students.checkpoint import load_student
from pipeline.workflow import REPORT_FILES, Layout

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _tiny_teacher(path: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                         feat_extract_norm="layer", do_stable_layer_norm=True)
    Wav2Vec2Model(cfg).save_pretrained(path)


def tiny_config(teacher_dir: Path) -> dict:
    """A few utterances per task; 93 commands = 3 per intent class, so every intent reaches train, dev and test.
    The student `stu`, exported, is the teacher `stu_t` of a smaller student (progressive distillation)."""
    return {
        "seed": 7,
        "results": "results",
        "corpus": {"synthetic": {"voices": 4, "keyword": 36, "command": 93, "sentence": 4, "shards": 2},
                   "real": {"asterisk": shutil.which("ffmpeg") is not None
                            and Path("/usr/share/asterisk/sounds/en_US_f_Allison").exists()}},
        "views": {"shards": 2, "indomain": {"copies": 2}, "ood": {"copies": 1}},
        "teachers": {"tiny": {"kind": "hf", "model": str(teacher_dir)},
                     "stu_t": {"kind": "hf", "model": "results/export/stu/hf"}},
        "cache": {"batch_seconds": 20},
        "students": {"stu": {"method": "distilhubert", "teacher": "tiny", "input_view": "indomain",
                             "target_view": "clean",
                             "arch": {"conv_channels": 16, "dim": 32, "layers": 1, "heads": 2, "ffn": 64},
                             "train": {"steps": 30, "batch_size": 4, "crop_seconds": 1.0, "lr": 1e-3}},
                     "stu_small": {"method": "distilhubert", "teacher": "stu_t",
                                   "arch": {"conv_channels": 8, "dim": 16, "layers": 1, "heads": 2, "ffn": 32},
                                   "train": {"steps": 5, "batch_size": 4, "crop_seconds": 1.0, "lr": 1e-3}}},
        "downstream": {"upstreams": ["tiny", "stu"],
                       "tasks": {"ks": {"steps": 20, "lr": 1e-3, "batch_size": 8},
                                 "ic": {"steps": 20, "lr": 1e-3, "batch_size": 8}}},
    }


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in (workdir / "results/logs").rglob("*.log")
                         if "Error" in p.read_text())
        raise AssertionError(f"snakemake {args} failed:\n{proc.stderr[-4000:]}\n{logs}")
    return proc


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of `snakemake -n`."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry_run_output, re.M) if m[1] != "total"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    _tiny_teacher(work / "teacher")
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config(work / "teacher")))
    snakemake(work, "--cores", "2", "all")
    return work


def test_every_output_exists_and_parses(run: Path, monkeypatch) -> None:
    monkeypatch.chdir(run)  # indexes list their stores relative to the workflow directory
    res = Path("results")
    config = validate_config(yaml.safe_load((run / "config.yaml").read_text()))
    manifest = read_manifest(res / "corpus/synthetic/manifest.tsv")
    assert set(manifest["split"]) == {"train", "dev", "test"}
    teacher = FeatureCache.open(res / "cache/tiny/synthetic/clean/index.tsv", expect={"name": "tiny"})
    assert len(teacher) == len(manifest)
    assert teacher.get(teacher.keys[0]).shape[1:] == (4, 32)  # 3 layers + input, hidden 32
    indomain = pd.read_csv(res / "views/synthetic/indomain/plan.tsv", sep="\t")
    assert len(indomain) == 2 * len(manifest)
    student = load_student(res / "students/stu")
    assert len(student.hidden_states(__import__("torch").zeros(16000))) == 2
    curve = pd.read_csv(res / "students/stu/curve.tsv", sep="\t")
    assert len(curve) > 1 and (res / "students/stu/curve.png").stat().st_size > 0
    expected = Layout(config).scores()
    assert expected and sorted(str(p) for p in res.joinpath("scores").rglob("*.json")) == sorted(expected)
    for path in expected:
        data = json.loads(Path(path).read_text())
        assert 0.0 <= data["value"] <= 1.0 and data["n"] > 0 and data["num_params"] > 0
    for name in REPORT_FILES:
        assert (res / "report" / name).stat().st_size > 0, name
    summary = pd.read_csv(res / "report/summary.csv")
    assert {"tiny", "stu"} <= set(summary.astype(str).to_numpy().ravel())
    assert (res / "report/robustness.png").stat().st_size > 1000
    for bench in ("train_student/stu.tsv", "extract/tiny-synthetic-clean-0.tsv"):
        assert (res / "benchmarks" / bench).exists()


def test_students_are_exported_and_one_is_a_teacher(run: Path, monkeypatch) -> None:
    """Every student's export; `stu` as transformers' HubertModel equals the student on a corpus utterance, and as
    the teacher `stu_t` it was extracted and distilled into `stu_small`; the cost table has the ONNX columns."""
    import numpy as np
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    from pipeline.audio.io import load_audio

    monkeypatch.chdir(run)
    res = Path("results")
    for name in ("stu", "stu_small"):
        assert {p.name for p in (res / "export" / name / "hf").iterdir()} == {
            "config.json", "model.safetensors", "preprocessor_config.json", "README.md"}, name
        assert (res / "export" / name / "model.onnx").stat().st_size > 0
    card = (res / "export/stu/hf/README.md").read_text()
    assert "base_model: tiny" in card and "| KS ACC↑ |" in card
    model = AutoModel.from_pretrained(res / "export/stu/hf").eval()
    extractor = AutoFeatureExtractor.from_pretrained(res / "export/stu/hf")
    utt = read_manifest(res / "corpus/synthetic/manifest.tsv").iloc[0]
    wav = torch.as_tensor(load_audio(utt["path"]), dtype=torch.float32)
    with torch.no_grad():
        theirs = model(**extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt"),
                       output_hidden_states=True).hidden_states
    ours = load_student(res / "students/stu").hidden_states(wav)
    assert max(float((a - b[0]).abs().max()) for a, b in zip(ours, theirs, strict=True)) <= 1e-4
    stu_t = FeatureCache.open(res / "cache/stu_t/synthetic/clean/index.tsv", expect={"name": "stu_t"})
    assert stu_t.get(stu_t.keys[0]).shape[1:] == (2, 32)  # stu's input state and its one layer
    assert json.loads((res / "students/stu_small/config.json").read_text())["teacher"] == "stu_t"
    cost = pd.read_csv(res / "report/cost_students.csv").set_index("student")
    assert cost.loc["stu", "onnx_mb"] > 0 and np.isfinite(cost.loc["stu", ["rtf_torch", "rtf_onnx"]]).all()


def test_second_student_adds_no_extraction_job(run: Path) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["students"]["stu2"] = {**config["students"]["stu"], "arch": {**config["students"]["stu"]["arch"],
                                                                        "dim": 48}}
    # the teacher's entry spelled out with its default, keys in another order: the same entry, nothing reruns
    config["teachers"]["tiny"] = {"layers": "all", **config["teachers"]["tiny"]}
    (run / "config2.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(run, "-n", "all", "--configfile", str(run / "config2.yaml")).stdout  # takes nargs
    counts = job_counts(dry)
    assert counts.get("train_student") == 1, counts
    assert "extract_teacher" not in counts, counts


def test_student_on_a_scored_only_view_re_extracts_that_view_in_full(run: Path) -> None:
    """The run extracted the teacher's ood view for its test split alone (only scored); a student that distils
    from ood makes Snakemake re-extract exactly that view's shards, in full."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    layout = Layout(validate_config(copy.deepcopy(config)))
    store = run / layout.feature_store("tiny", "synthetic", "ood", 0)
    test = set(read_manifest(run / layout.manifest("synthetic")).query("split == 'test'")["utt_id"])
    assert {k.rsplit("@", 1)[0] for k in Store(store).ids} <= test
    config["students"]["stu3"] = {**config["students"]["stu"], "target_view": "ood"}
    (run / "config3.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(run, "-n", "-p", "all", "--configfile", str(run / "config3.yaml")).stdout
    assert job_counts(dry).get("extract_teacher") == layout.num_shards("synthetic"), dry[-3000:]
    assert "--subset-of" not in dry and "ood/shard0.zarr" in dry


def test_up_to_date_after_run(run: Path) -> None:
    dry = snakemake(run, "-n", "all").stdout
    assert "Nothing to be done" in dry or not job_counts(dry), dry[-2000:]
