"""Shared set-up of the fault-injection tests: tiny teachers, tiny stores and caches, subprocess runs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from cache_fixtures import teacher_fingerprint

from pipeline.cache.index import build_index
from pipeline.cache.store import StoreWriter
from pipeline.corpus.manifest import write_manifest
from pipeline.students.frontend import conv_frames

ROOT = Path(__file__).resolve().parents[2]


def tiny_teacher(path: Path, seed: int = 0, layers: int = 2) -> Path:
    """A randomly initialised wav2vec2 (layer-norm CNN, so batching is exact), saved like a hub model."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                         feat_extract_norm="layer", do_stable_layer_norm=True)
    Wav2Vec2Model(cfg).save_pretrained(path)
    return path


def base_config(teacher: Path | str = "never-loaded", **cache) -> dict:
    """A valid config with one `hf` teacher `t`, no students, no downstream tasks."""
    return {"seed": 1, "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0, "sentence": 0}},
            "views": {}, "teachers": {"t": {"kind": "hf", "model": str(teacher)}}, "cache": dict(cache),
            "students": {}, "downstream": {}}


def write_config(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def view_store(path: Path, n: int, seed: int = 0, lo: int = 8000, hi: int = 24000, prefix: str = "u") -> Path:
    """A view-audio store of `n` random clips ("<prefix>000@0", ...) of lo..hi samples."""
    rng = np.random.default_rng(seed)
    with StoreWriter(path, {"kind": "view_audio", "view": "clean", "plan_sha256": f"test-{seed}"},
                     dtype="float32") as w:
        for i in range(n):
            w.add(f"{prefix}{i:03d}@0", (0.1 * rng.standard_normal(int(rng.integers(lo, hi)))).astype(np.float32))
    return path


def distill_data(root: Path, n_utts: int = 6, num_layers: int = 3, dim: int = 16) -> dict[str, str]:
    """View-audio and teacher-feature indexes (targets a fixed function of the audio) and a manifest."""
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((num_layers, dim, 3))
    audio, feats, rows = {}, {}, []
    for u in range(n_utts):
        n = int(rng.integers(9600, 24000))
        t = np.arange(n) / 16000
        amp = 0.1 + 0.3 * np.abs(np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        f0 = rng.uniform(120, 300)
        wav = (amp * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)
        env = amp[::320][:conv_frames(n)]
        basis = np.stack([env, env ** 2, np.full(len(env), f0 / 300)], axis=1)
        audio[f"utt{u}@0"] = wav
        feats[f"utt{u}@0"] = np.einsum("lde,te->tld", proj, basis).astype(np.float16)
        rows.append({"utt_id": f"utt{u}", "path": f"/nonexistent/utt{u}.wav", "num_samples": n,
                     "sample_rate": 16000, "split": "train", "speaker": "s0"})
    fp = teacher_fingerprint("tiny", name="tiny", num_layers=num_layers, dim=dim, frame_rate=50)
    for name, data, fingerprint, dtype in (("views", audio, {"kind": "view_audio"}, "float32"),
                                           ("cache", feats, fp, "float16")):
        with StoreWriter(root / name / "shard0.zarr", fingerprint, dtype=dtype) as w:
            for k, v in data.items():
                w.add(k, v)
        build_index([str(root / name / "shard0.zarr")], str(root / name / "index.tsv"))
    write_manifest(pd.DataFrame(rows), root / "manifest.tsv")
    return {"manifest": str(root / "manifest.tsv"), "audio": str(root / "views" / "index.tsv"),
            "targets": str(root / "cache" / "index.tsv")}


def env(**extra: str) -> dict[str, str]:
    """Environment of a pipeline subprocess: offline, one BLAS thread, the venv first on PATH."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra}


def pipeline_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    """Run to completion; fail the test with the command's stderr tail if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd[:4]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def kill_writer(cmd: list[str], temp_dirs: Callable[[], list[Path]], ready: Callable[[Path], bool],
                cwd: Path | None = None, timeout: float = 600) -> tuple[int, str]:
    """Start `cmd`; once a store writer's temporary directory `.<name>.tmp-<pid>` satisfies `ready`, SIGKILL
    that writer process (`cmd` itself, or a job it started). Returns cmd's exit code and stderr."""
    log = Path(cwd or ".") / f".killed-{time.monotonic_ns()}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            tmp = temp_dirs()
            if tmp and ready(tmp[0]):
                os.kill(int(tmp[0].name.rsplit("-", 1)[1]), signal.SIGKILL)
                break
            if proc.poll() is not None:
                raise AssertionError(f"{cmd[:4]} ended (exit {proc.returncode}) before the writer could be "
                                     f"killed:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{cmd[:4]}: the writer did not reach the kill point in {timeout} s")
            time.sleep(0.002)
        code = proc.wait(timeout=timeout)
    text = log.read_text()
    log.unlink()
    return code, text


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path (hidden files included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
