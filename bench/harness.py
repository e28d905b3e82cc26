"""Shared pieces of the benchmarks: interleaved timing, ratios, synthetic audio, teachers, real extraction.

Every benchmark compares two (or more) ways of doing the same work in one process, side by side:
each repeat runs every side once in a fresh random order, so load from other processes on the
shared cores hits all sides alike, and the headline is the median over repeats of the ratio
within a repeat. Wall time answers "how much faster"; CPU time of this process (one torch thread)
leaves out time spent descheduled and is the steadier number on a busy machine.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pipeline.cache import extract as extract_mod
from pipeline.cache.store import StoreWriter
from pipeline.config import load_config
from pipeline.teachers.base import Upstream

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16_000


# ---------------------------------------------------------------- timing


@dataclass
class Clock:
    """Wall and process-CPU seconds of a `with` block."""

    wall: float = 0.0
    cpu: float = 0.0
    _t: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def __enter__(self) -> Clock:
        self._t = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t[0]
        self.cpu = time.process_time() - self._t[1]


Sample = dict[str, float]  # one side's run in one repeat: at least wall, cpu, units


def interleave(sides: dict[str, Callable[[], Sample]], repeats: int, seed: int,
               warmup: bool = True) -> dict[str, list[Sample]]:
    """Run every side once per repeat, in a fresh random order each repeat (after one warm-up round).

    A side returns its own measurement (it times only the work, not its set-up or clean-up):
    {"wall": s, "cpu": s, "units": work done (steps, seconds of audio, ...), ...}.
    """
    rng = np.random.default_rng(seed)
    names = list(sides)
    if warmup:
        for name in names:
            sides[name]()
    runs: dict[str, list[Sample]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in rng.permutation(names).tolist():
            runs[name].append(sides[name]())
    return runs


def rate_ratio(num: list[Sample], den: list[Sample]) -> dict[str, Any]:
    """(units/s of `num`) / (units/s of `den`) within each repeat, by wall and by CPU time; medians."""
    wall = [(a["units"] / a["wall"]) / (b["units"] / b["wall"]) for a, b in zip(num, den, strict=True)]
    cpu = [(a["units"] / a["cpu"]) / (b["units"] / b["cpu"]) for a, b in zip(num, den, strict=True)]
    return {"median": statistics.median(wall), "per_repeat": wall, "min": min(wall), "max": max(wall),
            "quartiles": quartiles(wall), "cpu_median": statistics.median(cpu), "cpu_per_repeat": cpu,
            "cpu_quartiles": quartiles(cpu)}


def quartiles(values: list[float]) -> list[float]:
    """[first quartile, third quartile] (the spread of the per-repeat ratios around their median)."""
    if len(values) < 2:
        return [values[0], values[0]]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]


def time_ratio(num: list[Sample], den: list[Sample]) -> dict[str, Any]:
    """(seconds per unit of `num`) / (seconds per unit of `den`): the inverse of rate_ratio."""
    return rate_ratio(den, num)


def summarise(runs: list[Sample]) -> dict[str, Any]:
    """Median units per wall second and per CPU second over repeats, plus the raw samples."""
    return {"units_per_s_median": statistics.median(s["units"] / s["wall"] for s in runs),
            "units_per_cpu_s_median": statistics.median(s["units"] / s["cpu"] for s in runs),
            "runs": runs}


def linear_fit(x: list[float], y: list[float]) -> dict[str, float]:
    """Least-squares y = a + b x with R^2, the log-log slope (1 = linear) and the largest relative residual."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    b, a = np.polyfit(xa, ya, 1)
    pred = a + b * xa
    ss_res = float(((ya - pred) ** 2).sum())
    ss_tot = float(((ya - ya.mean()) ** 2).sum())
    k = float(np.polyfit(np.log(xa), np.log(ya), 1)[0])
    return {"intercept_s": float(a), "slope_s_per_unit": float(b), "r2": 1.0 - ss_res / ss_tot if ss_tot else 1.0,
            "loglog_exponent": k, "max_rel_residual": float(np.max(np.abs(ya - pred) / ya))}


def finite_positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# ---------------------------------------------------------------- machine


def machine(threads: int) -> dict[str, Any]:
    """CPU, memory, library versions, torch threads and the load average now."""
    import transformers
    import zarr

    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), platform.processor())
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
            "mem_total_gb": round(int(mem[1]) * 1024 / 1e9, 1), "platform": platform.platform(),
            "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "zarr": zarr.__version__, "torch_threads": threads,
            "loadavg_start": list(os.getloadavg())}


# ---------------------------------------------------------------- audio


def synth_corpus(n: int, source: str, seed: int, min_seconds: float = 3.0) -> dict[str, np.ndarray]:
    """`n` utterances of 16 kHz float32 audio keyed '{utt}@0' (the view-audio key convention).

    source "espeak": sentences of the project's sentence pool spoken by its espeak-ng voices (joined
    until at least `min_seconds`); "noise": pink noise of 2-5 s (no TTS needed, for --quick).
    """
    rng = np.random.default_rng(seed)
    wavs: dict[str, np.ndarray] = {}
    if source == "noise":
        from pipeline.audio.distortions import coloured_noise

        for i in range(n):
            wavs[f"bench{i:03d}@0"] = 0.1 * coloured_noise(int(rng.uniform(2.0, 5.0) * SAMPLE_RATE), 1.0, rng)
        return wavs
    if source != "espeak":
        raise ValueError(f"unknown audio source {source!r} (known: espeak, noise)")
    from pipeline.corpus.text import sentence_pool
    from pipeline.corpus.voices import synthesize, voice_bank

    voices = [v for v in voice_bank() if v.engine == "espeak"]
    pool = sentence_pool()
    for i in range(n):
        parts: list[np.ndarray] = []
        while sum(len(p) for p in parts) < min_seconds * SAMPLE_RATE:
            text = pool[int(rng.integers(len(pool)))]
            parts.append(synthesize(voices[i % len(voices)], text))
            parts.append(np.zeros(SAMPLE_RATE // 5, np.float32))  # 200 ms pause between sentences
        wavs[f"bench{i:03d}@0"] = np.concatenate(parts[:-1])
    return wavs


def audio_seconds(wavs: dict[str, np.ndarray] | list[np.ndarray]) -> float:
    values = wavs.values() if isinstance(wavs, dict) else wavs
    return sum(len(w) for w in values) / SAMPLE_RATE


def write_audio_store(path: Path, wavs: dict[str, np.ndarray]) -> Path:
    """A view-audio store (what render_view_shard writes) holding `wavs`."""
    digest = hashlib.sha256()
    for key, wav in wavs.items():
        digest.update(key.encode() + wav.tobytes())
    fingerprint = {"kind": "view_audio", "view": "clean", "plan_sha256": digest.hexdigest(),
                   "banks_sha256": None, "sample_rate": SAMPLE_RATE}
    with StoreWriter(path, fingerprint, dtype="float32") as writer:
        for key, wav in wavs.items():
            writer.add(key, wav)
    return path


def files_under(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def evict(paths: list[Path]) -> None:
    """Ask the kernel to drop the files' clean pages from the page cache (no root needed)."""
    for f in (f for p in paths for f in files_under(p)):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- teachers


@dataclass
class Teacher:
    """A loaded teacher, its config entry, and what loading it cost (per-job fixed costs)."""

    name: str
    label: str
    upstream: Upstream
    spec: dict[str, Any]
    loadable: bool  # spec loads the same model in a fresh process (python -m pipeline extract)
    load_seconds: float
    fingerprint_seconds: float

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.upstream.parameters())


def _finish(name: str, label: str, upstream: Upstream, spec: dict[str, Any], loadable: bool,
            load_seconds: float) -> Teacher:
    """Time the weights checksum once (extract_shard computes it once per job), then memoise it."""
    with Clock() as c:
        fp = upstream.fingerprint()
    upstream.fingerprint = lambda: copy.deepcopy(fp)  # per-job fixed cost, reported on its own
    return Teacher(name, label, upstream.eval(), spec, loadable, load_seconds, c.wall)


def project_teacher_spec(name: str) -> dict[str, Any]:
    """A teacher entry of the project's default config.yaml (so the bench uses what the workflow uses)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    if name not in cfg["teachers"]:
        raise KeyError(f"config.yaml has no teacher '{name}' (has {sorted(cfg['teachers'])}); "
                       "bench/harness.py names the bundled Whisper teachers")
    return dict(cfg["teachers"][name])


def load_project_teacher(name: str, label: str) -> Teacher:
    """A bundled Whisper teacher through the workflow's loader (load_upstream)."""
    from pipeline.teachers.registry import load_upstream

    spec = project_teacher_spec(name)
    with Clock() as c:
        upstream = load_upstream(name, spec, device="cpu")
    return _finish(name, label, upstream, spec, True, c.wall)


def random_hubert(name: str, config: dict[str, Any], save_dir: Path | None, seed: int) -> Teacher:
    """A randomly initialised HF HubertModel of the given size (no download), as the workflow's HF upstream.

    With `save_dir` it is saved there and loaded back through load_upstream (kind hf), so a fresh
    process can load it too; otherwise it is wrapped in memory (a HuBERT-base-sized model is 380 MB).
    """
    from transformers import HubertConfig, HubertModel

    from pipeline.teachers.hf import HFWaveformUpstream
    from pipeline.teachers.registry import load_upstream

    with Clock() as c:
        torch.manual_seed(seed)
        model = HubertModel(HubertConfig(**config))
        if save_dir is not None:
            model.save_pretrained(save_dir)
            spec = {"kind": "hf", "model": str(save_dir)}
            upstream = load_upstream(name, spec, device="cpu")
        else:
            spec = {"kind": "hf", "model": f"random-init-hubert-{name}"}  # never loaded from the config
            upstream = HFWaveformUpstream(model, do_normalize=False, name=name, source=spec["model"])
    cfg = model.config
    label = (f"HuBERT ({cfg.num_hidden_layers} x {cfg.hidden_size}, random init, "
             f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params)")
    return _finish(name, label, upstream, spec, save_dir is not None, c.wall)


def random_whisper(name: str, seed: int) -> Teacher:
    """A tiny randomly initialised Whisper encoder through the workflow's unpadded Whisper upstream (--quick)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from pipeline.teachers.whisper import WhisperUpstream

    with Clock() as c:
        torch.manual_seed(seed)
        cfg = WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
                            num_mel_bins=80, max_source_positions=1500)
        upstream = WhisperUpstream(WhisperEncoder(cfg).eval(), WhisperFeatureExtractor(feature_size=80),
                                   name=name, kind="hf", source="random-init-whisper")
    spec = {"kind": "hf", "model": "random-init-whisper"}  # in memory only
    return _finish(name, "Whisper encoder (2 x 64, random init; --quick stand-in)", upstream, spec, False, c.wall)


# ---------------------------------------------------------------- real extraction with a loaded model


def write_config(path: Path, teachers: dict[str, Teacher], batch_seconds: float,
                 dtype: str = "float16", compression: str = "none") -> str:
    """The project's config.yaml with the bench teachers and cache settings; validated like the workflow's."""
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["teachers"] = {name: t.spec for name, t in teachers.items()}
    cfg["students"] = {}
    cfg["downstream"]["upstreams"] = []
    cfg["cache"].update(dtype=dtype, compression=compression, batch_seconds=batch_seconds)
    path.write_text(yaml.safe_dump(cfg))
    load_config(str(path))
    return str(path)


@functools.cache
def _config(path: str) -> dict[str, Any]:
    return load_config(path)


def config_seconds(path: str) -> float:
    """Wall seconds of loading and validating a config (a per-job fixed cost of extract_shard)."""
    with Clock() as c:
        load_config(path)
    return c.wall


@contextlib.contextmanager
def preloaded(teachers: dict[str, Teacher]) -> Iterator[None]:
    """Make pipeline.cache.extract.extract_shard use the already loaded teachers and the already validated config.

    Everything else extract_shard does (source store, batching, teacher forward, conversion,
    StoreWriter, finalise and rename) runs unchanged; loading the model, its weights checksum and
    validating the config are per-job fixed costs, measured on their own.
    """
    original = extract_mod.load_upstream, extract_mod.load_config

    def load(name: str, spec: dict[str, Any], device: str = "cpu") -> Upstream:
        return teachers[name].upstream

    extract_mod.load_upstream = load
    extract_mod.load_config = lambda path: copy.deepcopy(_config(path))
    try:
        yield
    finally:
        extract_mod.load_upstream, extract_mod.load_config = original


def extract(config: str, teachers: dict[str, Teacher], name: str, audio: Path, out: Path) -> Sample:
    """Run the real extract_shard over `audio` into `out` with a preloaded teacher; wall and CPU seconds."""
    with preloaded(teachers), Clock() as c:
        extract_mod.extract_shard(config, name, str(audio), str(out))
    return {"wall": c.wall, "cpu": c.cpu}
