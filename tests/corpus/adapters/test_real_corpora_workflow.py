"""Real corpora in the workflow: config checks, Layout paths, the prepare-corpus verb, MUSAN noise, a student
distilled on a real corpus, and the paper config's dry-run job graph on fixture trees."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from adapter_fixtures import (
    make_fsc,
    make_iemocap,
    make_librispeech,
    make_musan,
    make_sc_test_set,
    make_speech_commands,
    make_voxceleb1,
    write_audio,
    write_lexicon,
)

from pipeline import cli
from pipeline.audio.io import load_audio
from pipeline.audio.noise import NOISE_SOURCES, SFX_SECONDS, build_noise_bank, read_meta, trim_silence, unit_rms
from pipeline.cache.extract import expected_fingerprint
from pipeline.cache.index import build_index
from pipeline.cache.store import Store, StoreWriter
from pipeline.checks import check_config
from pipeline.config import ConfigError
from pipeline.corpus.adapters import run_adapter
from pipeline.corpus.manifest import read_manifest, write_manifest
from pipeline.corpus.screen import rejects_path
from pipeline.corpus.views import make_view_plan, render_view_shard
from pipeline.distill.inputs import student_input_files, train_flags
from pipeline.distill.methods import get_method
from pipeline.students.frontend import conv_frames
from pipeline.workflow import Layout

ROOT = Path(__file__).resolve().parents[3]
PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())


def _paper(**changes) -> dict:
    cfg = copy.deepcopy(PAPER)
    cfg["results"] = "R"
    for key, value in changes.items():
        cfg["corpus"][key] = value
    return cfg


# ------------------------------------------------------------------ config and layout
def test_paper_config_is_valid_and_paper_sized():
    cfg = check_config(_paper())
    teachers = cfg["teachers"]
    assert {t["model"] for t in teachers.values()} == {"facebook/hubert-base-ls960", "microsoft/wavlm-base-plus"}
    assert all(t["layers"] == [4, 8, 12] for t in teachers.values())
    for student in cfg["students"].values():
        arch = {"conv_channels": 512, "dim": 768, "layers": 2, "heads": 12, "ffn": 3072}
        assert student["arch"].items() >= arch.items()
        assert student["train"].items() >= {"steps": 200000, "batch_size": 24, "lr": 2e-4, "warmup": 0.07}.items()
    subsets = cfg["corpus"]["datasets"]["librispeech"]["options"]["subsets"]["train"]
    assert subsets == ["train-clean-100", "train-clean-360", "train-other-500"]
    assert "synthetic" not in cfg["corpus"] and cfg["corpus"]["distill"] == "librispeech"
    # SUPERB PR and ASR: train-clean-100 / dev-clean / test-clean, phones from a lexicon, s3prl's recipes
    superb = cfg["corpus"]["datasets"]["librispeech_100"]["options"]
    assert superb["subsets"] == {"train": ["train-clean-100"], "dev": ["dev-clean"], "test": ["test-clean"]}
    assert superb["phones"] == "lexicon" and superb["lexicon"] and superb["keep_stress"] is True
    assert cfg["corpus"]["tasks"]["pr"] == cfg["corpus"]["tasks"]["asr"] == "librispeech_100"
    tasks = cfg["downstream"]["tasks"]
    assert tasks["pr"].items() >= {"steps": 100000, "lr": 1e-2, "batch_size": 32}.items()
    assert tasks["asr"].items() >= {"steps": 200000, "lr": 1e-4, "batch_size": 32}.items()
    assert tasks["asr"]["head"] == {"hidden": 1024, "proj": 1024, "dropout": 0.2, "skip": False}


@pytest.mark.parametrize("change,message", [
    ({"distill": "timit"}, "corpus.distill is 'timit', not a configured speech corpus"),
    ({"distill": "musan"}, "corpus.distill is 'musan'"),
    ({"noise": "librispeech"}, "corpus.noise is 'librispeech', not a dataset with adapter musan"),
    ({"tasks": {"ks": "voxceleb2"}}, "corpus.tasks.ks is 'voxceleb2'"),
])
def test_corpus_roles_are_checked(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(_paper(**change))


def test_adapter_options_and_names_are_checked():
    cfg = _paper()
    cfg["corpus"]["datasets"]["iemocap"]["options"]["fold"] = 2
    with pytest.raises(ConfigError, match=r"corpus.datasets.iemocap.options: unknown option\(s\) \['fold'\].*"
                                          r"test_session"):
        check_config(cfg)
    cfg = _paper()
    cfg["corpus"]["datasets"]["synthetic"] = {"adapter": "tsv", "root": "x"}
    with pytest.raises(ConfigError, match="corpus.datasets"):
        check_config(cfg)
    cfg = _paper()
    del cfg["corpus"]["distill"]  # defaults to synthetic, which this config does not have
    with pytest.raises(ConfigError, match="add a corpus.synthetic section"):
        check_config(cfg)


def test_layout_routes_students_tasks_and_noise_to_real_corpora():
    L = Layout(check_config(_paper()))
    assert L.corpora == ["librispeech", "librispeech_100", "speech_commands", "fluent_speech_commands", "voxceleb1",
                         "iemocap", "musan"]
    assert L.manifest("voxceleb1") == "R/corpus/voxceleb1/manifest.tsv"
    assert (L.num_shards("librispeech"), L.num_shards("iemocap")) == (240, 4)
    assert L.student_corpus("distilhubert_wavlm") == "librispeech"
    assert L.task_source("sid", "ood") == ("voxceleb1", "ood") and L.task_source("ks", "clean")[0] == "speech_commands"
    assert L.task_source("pr", "clean") == L.task_source("asr", "clean") == ("librispeech_100", "clean")
    assert L.views("iemocap") == ["clean", "indomain", "ood"] and L.views("musan") == ["clean"]
    assert L.noise_inputs() == {"babble": "R/corpus/librispeech/manifest.tsv", "musan": "R/corpus/musan/manifest.tsv"}
    default = Layout(check_config(yaml.safe_load((ROOT / "config.yaml").read_text())))
    assert default.task_source("ks", "indomain") == ("synthetic", "indomain")
    assert default.task_source("ks", "real") == ("asterisk", "clean")
    assert {default.student_corpus(s) for s in default.cfg["students"]} == {"synthetic"}
    assert default.noise_inputs() == {"babble": f"{default.root}/corpus/synthetic/manifest.tsv"}


def test_real_condition_only_where_label_sets_match():
    cfg = check_config(_paper())
    cfg["corpus"]["real"]["asterisk"] = True
    cfg["downstream"]["conditions"] = ["clean", "real"]
    cfg["corpus"]["tasks"]["asr"] = "librispeech"
    L = Layout(cfg)
    assert L.conditions("ks") == ["clean"]  # Speech Commands' words are not the Asterisk digits
    assert L.conditions("asr") == ["clean", "real"]  # text is text


# ------------------------------------------------------------------ the verb the workflow calls
def test_prepare_corpus_verb_reads_config_and_bad_audio_policy(tmp_path):
    make_voxceleb1(tmp_path / "vox")
    (tmp_path / "vox" / "wav" / "id10002" / "xTV-jFAUKcw" / "00001.wav").write_bytes(b"RIFF\x00\x00")
    cfg = _paper()
    cfg["corpus"]["datasets"]["voxceleb1"]["root"] = str(tmp_path / "vox")
    cfg["corpus"]["on_bad_audio"] = "skip"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "corpus" / "voxceleb1" / "manifest.tsv"
    assert cli.main(["prepare-corpus", "--config", str(config), "--corpus", "voxceleb1",
                     "--manifest-out", str(out)]) == 0
    df = read_manifest(out)
    assert len(df) == 6 and "vox1-id10002-xTV-jFAUKcw-00001" not in set(df["utt_id"])
    assert pd.read_csv(rejects_path(out), sep="\t")["utt_id"].tolist() == ["vox1-id10002-xTV-jFAUKcw-00001"]
    with pytest.raises(KeyError, match="no 'vox'.*voxceleb1"):
        cli.main(["prepare-corpus", "--config", str(config), "--corpus", "vox", "--manifest-out", str(out)])


# ------------------------------------------------------------------ adapter manifests feed the view renderer
def test_clean_view_renders_from_adapter_manifests(tmp_path, config_path):
    """FLAC at 16 kHz, WAV at 44.1 kHz stereo and FLAC at 8 kHz, referenced in place: the renderer accepts the rows
    (their source_rate) and stores exactly what load_audio gives (16 kHz mono)."""
    make_librispeech(tmp_path, {"dev-clean": [("84", "121123", 2)]})
    write_audio(tmp_path / "other" / "a.wav", 0.5, sr=44100, channels=2)
    write_audio(tmp_path / "other" / "b.flac", 0.6, sr=8000, fmt="FLAC")
    (tmp_path / "other" / "list.tsv").write_text("path\tsplit\na.wav\ttrain\nb.flac\ttest\n")
    ls = run_adapter("librispeech", str(tmp_path), str(tmp_path / "ls.tsv"),
                     {"subsets": {"dev": ["dev-clean"]}, "phones": "none"})
    other = run_adapter("tsv", str(tmp_path / "other"), str(tmp_path / "other.tsv"), {"tsv": "list.tsv"})
    merged = tmp_path / "merged.tsv"
    write_manifest(pd.concat([ls, other]), merged)
    plan, store = tmp_path / "plan.tsv", tmp_path / "clean.zarr"
    make_view_plan(config_path, str(merged), "clean", str(plan))
    render_view_shard(config_path, str(merged), str(plan), 0, 1, str(store))
    rendered = Store(store)
    df = read_manifest(merged)
    assert sorted(df["source_rate"].unique()) == [8000, 16000, 44100]
    for row in df.itertuples():
        wav = rendered.get(f"{row.utt_id}@0")
        assert wav.shape == (row.num_samples,)
        np.testing.assert_array_equal(wav, load_audio(row.path))


# ------------------------------------------------------------------ MUSAN as the out-of-domain noise
def test_noise_bank_draws_ood_from_musan_and_babble_from_librispeech(tmp_path, config_path):
    make_librispeech(tmp_path)
    babble = tmp_path / "ls.tsv"
    run_adapter("librispeech", str(tmp_path), str(babble), {"phones": "none"})
    make_musan(tmp_path, {"noise": {"free-sound": 12}, "music": {"fma": 7}})
    musan = tmp_path / "musan.tsv"
    manifest = run_adapter("musan", str(tmp_path), str(musan), {"parts": ["noise", "music"]})
    out = tmp_path / "noise.npz"
    build_noise_bank(config_path, str(babble), str(out), musan=str(musan))
    meta = read_meta(out)
    assert meta["ood_origin"] == "musan"
    paths = dict(zip(manifest["utt_id"], manifest["path"], strict=True))
    types = dict(zip(manifest["utt_id"], manifest["type"], strict=True))
    with np.load(out) as bank:
        for kind, want, seconds in (("sfx", "noise", SFX_SECONDS[1]), ("music", "music", 4.0)):
            names = [n for n in meta["sources"] if n.startswith(kind)]
            assert len(names) == NOISE_SOURCES["ood"][kind]
            used = set()
            for name in names:
                utt, start = re.fullmatch(r"musan (\S+) from sample (\d+)", meta["sources"][name]["origin"]).groups()
                assert types[utt] == want and utt not in used
                used.add(utt)
                trimmed = trim_silence(load_audio(paths[utt]))
                expect = unit_rms(trimmed[int(start):int(start) + int(seconds * 16000)])
                np.testing.assert_allclose(bank[name], expect, rtol=1e-5, atol=1e-6)
        talkers = {u for n, s in meta["sources"].items() if n.startswith("babble")
                   for u in s["origin"].removeprefix("babble: ").split(", ")}
    train = set(read_manifest(babble).query("split == 'train'")["utt_id"])
    assert talkers and talkers <= train


# ------------------------------------------------------------------ a student distilled on a real corpus
def test_student_trains_on_the_distill_corpus_with_selected_teacher_layers(tmp_path):
    """Targets cached as teacher layers [4, 8, 12] are distilled layer for layer (not re-picked by depth)."""
    cfg = _paper()
    cfg["results"] = str(tmp_path / "results")
    cfg["students"] = {"stu": {"method": "distilhubert", "teacher": "hubert_base",
                               "arch": {"conv_channels": 16, "dim": 32, "layers": 1, "heads": 2, "ffn": 64},
                               "train": {"steps": 4, "batch_size": 2, "crop_seconds": 0.5, "lr": 1e-3}}}
    cfg["downstream"] = {"upstreams": [], "tasks": {}}
    cfg = check_config(cfg)
    lay = Layout(cfg)
    rng = np.random.default_rng(0)
    rows, audio, feats = [], {}, {}
    for u in range(4):
        n = 12000 + 1000 * u
        rows.append({"utt_id": f"19-198-{u:04d}", "path": f"/nonexistent/{u}.flac", "num_samples": n,
                     "sample_rate": 16000, "split": "train", "speaker": "19"})
        audio[f"19-198-{u:04d}@0"] = (rng.standard_normal(n) * 0.1).astype(np.float32)
        feats[f"19-198-{u:04d}@0"] = rng.standard_normal((conv_frames(n), 3, 24)).astype(np.float16)
    write_manifest(pd.DataFrame(rows), lay.manifest("librispeech"))
    view = {"kind": "view_audio", "view": "clean"}
    fp = {**expected_fingerprint(cfg, "hubert_base"), "name": "hubert_base", "kind": "hf", "num_layers": 3,
          "layers": [4, 8, 12], "dim": 24, "frame_rate": 50, "sha256": "x", "view_audio": view}
    for arrays, store, index, meta, dtype in (
            (audio, lay.view_store, lay.view_index, view, "float32"),
            (feats, lambda *a: lay.feature_store("hubert_base", *a), lambda *a: lay.feature_index("hubert_base", *a),
             fp, "float16")):
        with StoreWriter(store("librispeech", "clean", 0), meta, dtype=dtype) as w:
            for k, a in arrays.items():
                w.add(k, a)
        build_index([store("librispeech", "clean", 0)], index("librispeech", "clean"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    files = student_input_files(cfg, lay, "stu")
    assert files["manifest"] == lay.manifest("librispeech")
    assert files["targets"] == [lay.feature_index("hubert_base", "librispeech", "clean")]
    out = Path(lay.student("stu", ""))
    assert cli.main(["train-student", "--config", str(config), "--student", "stu",
                     *shlex.split(train_flags(files)), "--out-dir", str(out),
                     "--resume-dir", str(tmp_path / "resume")]) == 0
    assert json.loads((out / "config.json").read_text())["target_layers"] == [0, 1, 2]


# ------------------------------------------------------------------ the paper config's job graph
def _fixture_config(tmp_path: Path) -> dict:
    """config/paper.yaml with every corpus root pointed at a fixture tree and small shard counts."""
    data = tmp_path / "data"
    make_librispeech(data)
    make_speech_commands(data / "speech_commands_v0.01")
    make_sc_test_set(data / "speech_commands_test_set_v0.01")
    make_fsc(data)
    make_voxceleb1(data / "VoxCeleb1")
    make_iemocap(data)
    make_musan(data)
    cfg = copy.deepcopy(PAPER)
    cfg["results"] = str(tmp_path / "results")
    for name, spec in cfg["corpus"]["datasets"].items():
        spec["root"] = str(tmp_path / spec["root"])
        if "shards" in spec:
            spec["shards"] = 3 if name == "librispeech" else 2  # fewer jobs to list; the counts follow the config
    sc = cfg["corpus"]["datasets"]["speech_commands"]["options"]
    sc["test_dir"] = str(tmp_path / sc["test_dir"])
    superb = cfg["corpus"]["datasets"]["librispeech_100"]["options"]
    superb["lexicon"] = str(write_lexicon(tmp_path / superb["lexicon"]))
    return cfg


def expected_jobs(cfg: dict) -> dict[str, int]:
    """Job counts of `snakemake -n all` derived from the config, rule by rule."""
    corpus = cfg["corpus"]
    shards = {n: s.get("shards", cfg["views"]["shards"]) for n, s in corpus["datasets"].items()}
    teachers, students = list(cfg["teachers"]), list(cfg["students"])
    transformers = sum(get_method(s["method"]).student == "transformer" for s in cfg["students"].values())
    distill = corpus["distill"]
    inputs = {(distill, s["input_view"]) for s in cfg["students"].values()}  # audio the students hear
    targets = {(distill, s["target_view"]) for s in cfg["students"].values()}  # teacher targets
    evals = {(corpus["tasks"][t], v) for t in cfg["downstream"]["tasks"]  # head training + scored conditions
             for v in ["clean", *cfg["downstream"]["conditions"]]}
    rendered = inputs | targets | evals
    return {
        "prepare_corpus": len({c for c, _ in rendered} | {corpus["noise"]}),
        "rir_bank": 1, "noise_bank": 1,
        "view_plan": len(rendered),
        "render_view": sum(shards[c] for c, _ in rendered),
        "index_view": len(inputs),
        "extract_teacher": len(teachers) * sum(shards[c] for c, _ in targets | evals),
        "index_features": len(teachers) * len(targets | evals),
        "train_student": len(students),
        **{f"{rule}{kind}": n for rule in ("export_student", "model_card")
           for kind, n in (("", transformers), ("_onnx", len(students) - transformers)) if n},
        **{f"extract_student_{s}": 1 for s in students if s in cfg["downstream"]["upstreams"]},
        **{f"evaluate_{u}": 1 for u in cfg["downstream"]["upstreams"]},
        "report": 1, "html_report": 1, "all": 1,
    }


@pytest.mark.slow  # one Snakemake start-up: ~40 s on a loaded 2-core machine
def test_paper_config_dry_run_job_graph(tmp_path):
    cfg = _fixture_config(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text((ROOT / "config.yaml").read_text())  # the embedded default, to be replaced
    paper = tmp_path / "paper.yaml"
    paper.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work), "-n", "-p",
           "--configfile", str(paper), "--replace-workflow-config", "all"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout, re.M) if m[1] != "total"}
    assert counts == expected_jobs(cfg)
    assert counts["extract_teacher"] == 2 * (3 + 5 * 3 * 2)  # LibriSpeech clean + 5 task corpora x 3 views
    assert "synthesize" not in counts and "prepare_asterisk" not in counts
    assert not (tmp_path / "results" / "corpus").exists()  # a dry run prepares nothing
    for name in ("librispeech", "voxceleb1", "musan"):
        assert f"--corpus {name} --manifest-out {tmp_path}/results/corpus/{name}/manifest.tsv" in proc.stdout


def test_fixture_trees_prepare_with_the_paper_options(tmp_path):
    """Each corpus of the paper config prepares from its fixture with the options the config gives it."""
    cfg = _fixture_config(tmp_path)
    for name, spec in cfg["corpus"]["datasets"].items():
        df = run_adapter(spec["adapter"], spec["root"], str(tmp_path / "m" / f"{name}.tsv"), spec.get("options"))
        assert len(df) > 0 and (df["sample_rate"] == 16000).all(), name
