"""Benchmark 1 (cached vs online distillation) and 3b (time the trainer is blocked on the data loader).

The same student (the default config's `distilhubert`, as the default run trains it) takes training steps on the same
sequence of batches (its batch of frame-aligned crops, two DistillBatches with one seed) in two ways:
- cached: the batch comes from pipeline.distill.data.DistillBatches over a view-audio store and a
  teacher cache written by the real extract_shard (the loader's time is inside the step);
- online: the batch's audio is already in memory (no I/O charged to this side) and the teacher
  runs on the crops inside the step to make the targets, as distilling without a cache does.
The student step itself mirrors pipeline/distill/train.py (forward, frame alignment, method loss,
backward, gradient clipping, AdamW). Headline: steps/s cached / steps/s online.
"""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import SAMPLE_RATE, Clock, Sample, Teacher, evict, interleave, rate_ratio, summarise
from pipeline.cache.index import FeatureCache
from pipeline.cache.store import Store
from pipeline.config import load_config
from pipeline.distill.data import Batch, DistillBatches
from pipeline.distill.methods import MethodContext, build_method
from pipeline.distill.train import DEFAULT_TRAIN
from pipeline.students.checkpoint import build_student, count_params
from pipeline.teachers.registry import relative_depth_layers

METHOD = "distilhubert"
LR = 5e-4


@dataclass(frozen=True)
class StudentSpec:
    """Student architecture and batch shape (`from_config`: a student of a config, as its run trains it)."""

    arch: tuple[tuple[str, int], ...] = (("conv_channels", 128), ("dim", 256), ("layers", 2), ("heads", 4),
                                         ("ffn", 1024))
    batch: int = 8
    crop_seconds: float = 2.0

    @classmethod
    def from_config(cls, config: str | Path, student: str) -> StudentSpec:
        """The architecture, batch size and crop length of `students.<student>` in `config`."""
        spec = load_config(config)["students"][student]
        train = {**DEFAULT_TRAIN, **spec.get("train", {})}
        return cls(tuple(sorted(spec["arch"].items())), int(train["batch_size"]), float(train["crop_seconds"]))


QUICK_STUDENT = StudentSpec(arch=(("conv_channels", 16), ("dim", 32), ("layers", 1), ("heads", 2), ("ffn", 64)),
                            batch=2, crop_seconds=1.0)


@dataclass
class Trainee:
    """A student, its method heads and optimiser: one per side, built from the same seed."""

    model: torch.nn.Module
    method: torch.nn.Module
    opt: torch.optim.Optimizer
    params: list[torch.nn.Parameter]

    @classmethod
    def build(cls, spec: StudentSpec, teacher: str, target_dim: int, layers: list[int], seed: int) -> Trainee:
        torch.manual_seed(seed)
        model = build_student("transformer", dict(spec.arch))
        ctx = MethodContext(student_dim=model.dim, target_dims=[[target_dim] * len(layers)], teachers=[teacher],
                            layers=[layers])
        method = build_method(METHOD, ctx)
        params = list(model.parameters()) + list(method.parameters())
        model.train()
        method.train()
        return cls(model, method, torch.optim.AdamW(params, lr=LR), params)

    def step(self, batch: Batch) -> float:
        """One optimisation step, as in pipeline/distill/train.py's loop body."""
        states, mask = self.model(batch.wav, batch.lengths)
        frames = states[-1].shape[1] if batch.frames is None else min(states[-1].shape[1], batch.frames)
        states = [s[:, :frames] for s in states]
        loss, _ = self.method(states, mask[:, :frames], batch.trim(frames))
        if not np.isfinite(loss.item()):
            raise FloatingPointError(f"bench student loss became {loss.item()}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 10.0)
        self.opt.step()
        return loss.item()


def teacher_targets(teacher: Teacher, wav: torch.Tensor, lengths: torch.Tensor,
                    layers: list[int]) -> list[torch.Tensor]:
    """Online targets: the teacher's hidden states of each crop, one zero-padded (B, F, D) tensor per layer."""
    clips = [wav[b, :int(n)] for b, n in enumerate(lengths)]
    states = teacher.upstream.hidden_states_batch(clips)
    frames = max(s[0].shape[0] for s in states)
    out = [torch.zeros(len(clips), frames, teacher.upstream.dim) for _ in layers]
    for b, per_clip in enumerate(states):
        for j, layer in enumerate(layers):
            out[j][b, :per_clip[layer].shape[0]] = per_clip[layer]
    return out


@dataclass
class Scenario:
    """One teacher: its cache, the cached-side loader, the online side's batches, and per-step records."""

    teacher: Teacher
    student: StudentSpec
    audio: Path
    targets: Path
    utts: list[str]
    layers: list[int]
    cached: DistillBatches | None
    online_batches: list[tuple[torch.Tensor, torch.Tensor]]
    cached_model: Trainee
    online_model: Trainee
    loader: list[dict[str, float]]  # per cached step: loader and student seconds
    teacher_steps: list[dict[str, float]]  # per online step: teacher seconds and audio seconds
    online_used: int = 0


def make_scenario(teacher: Teacher, student: StudentSpec, audio: Path, targets: Path, seed: int,
                  online_steps: int) -> Scenario:
    """Open the caches, build both students, pre-load the online side's batches (same crops, same seed)."""
    audio_cache = FeatureCache([Store(audio, expect={"kind": "view_audio"})])
    target_cache = FeatureCache([Store(targets, expect={"name": teacher.name})])
    layers = relative_depth_layers(target_cache.fingerprint["num_layers"])
    utts = [k.rsplit("@", 1)[0] for k in target_cache.keys]
    crop = int(student.crop_seconds * 50)
    cached = DistillBatches(audio_cache, target_cache, layers, utts, crop, seed)
    twin = DistillBatches(audio_cache, target_cache, layers, utts, crop, seed)
    online = []
    for i in range(online_steps):
        batch = twin.next(student.batch)
        wav, lengths, tgts = batch.wav, batch.lengths, batch.targets[0]
        online.append((wav, lengths))
        if i == 0:  # the online targets must have the cached targets' shapes, or the sides are not comparable
            got = teacher_targets(teacher, wav, lengths, layers)
            if [tuple(t.shape) for t in got] != [tuple(t.shape) for t in tgts]:
                raise RuntimeError(f"{teacher.name}: online targets {[tuple(t.shape) for t in got]} vs cached "
                                   f"{[tuple(t.shape) for t in tgts]}: crops and frames do not line up")
    dim = target_cache.fingerprint["dim"]
    trainees = [Trainee.build(student, teacher.name, dim, layers, seed) for _ in range(2)]
    return Scenario(teacher, student, audio, targets, utts, layers, cached, online, *trainees, [], [])


def cached_side(sc: Scenario, steps: int) -> Sample:
    """`steps` training steps reading every batch through DistillBatches (loader time inside the step)."""
    wall = cpu = 0.0
    for _ in range(steps):
        with Clock() as load:
            batch = sc.cached.next(sc.student.batch)
        with Clock() as train:
            sc.cached_model.step(batch)
        sc.loader.append({"loader_wall": load.wall, "loader_cpu": load.cpu, "step_wall": load.wall + train.wall,
                          "step_cpu": load.cpu + train.cpu})
        wall += load.wall + train.wall
        cpu += load.cpu + train.cpu
    return {"wall": wall, "cpu": cpu, "units": steps}


def online_side(sc: Scenario, steps: int) -> Sample:
    """`steps` training steps with the teacher forward on the batch's crops inside the step."""
    wall = cpu = 0.0
    for _ in range(steps):
        wav, lengths = sc.online_batches[sc.online_used]
        sc.online_used += 1
        with Clock() as fwd:
            tgts = teacher_targets(sc.teacher, wav, lengths, sc.layers)
        with Clock() as train:
            sc.online_model.step(Batch(wav, lengths, [tgts]))
        sc.teacher_steps.append({"teacher_wall": fwd.wall, "teacher_cpu": fwd.cpu,
                                 "audio_seconds": float(lengths.sum()) / SAMPLE_RATE,
                                 "step_wall": fwd.wall + train.wall, "step_cpu": fwd.cpu + train.cpu})
        wall += fwd.wall + train.wall
        cpu += fwd.cpu + train.cpu
    return {"wall": wall, "cpu": cpu, "units": steps}


def run(teachers: dict[str, Teacher], student: StudentSpec, stores: dict[str, tuple[Path, Path]],
        steps: dict[str, int], repeats: int, seed: int) -> dict[str, Any]:
    """Interleave cached and online sides of every teacher; `steps` = steps per side per repeat
    ('cached', and one entry per teacher for its online side)."""
    scenarios = {name: make_scenario(teachers[name], student, *stores[name], seed, (repeats + 1) * steps[name])
                 for name in stores}
    sides = {}
    for name, sc in scenarios.items():
        sides[f"{name}/cached"] = lambda sc=sc: cached_side(sc, steps["cached"])
        sides[f"{name}/online"] = lambda sc=sc, n=steps[name]: online_side(sc, n)
    runs = interleave(sides, repeats, seed)
    out: dict[str, Any] = {}
    for name, sc in scenarios.items():
        cached, online = runs[f"{name}/cached"], runs[f"{name}/online"]
        teacher_cpu_per_audio_s = [s["teacher_cpu"] / s["audio_seconds"] for s in sc.teacher_steps]
        out[name] = {
            "teacher": sc.teacher.label, "teacher_params": sc.teacher.params, "target_layers": sc.layers,
            "target_dim": sc.teacher.upstream.dim, "student_params": count_params(sc.cached_model.model),
            "student_arch": dict(student.arch), "batch": student.batch, "crop_seconds": student.crop_seconds,
            "steps_per_repeat": {"cached": steps["cached"], "online": steps[name]},
            "cached": summarise(cached), "online": summarise(online),
            "speedup": rate_ratio(cached, online),
            "online_teacher_share_of_step": statistics.median(s["teacher_wall"] / s["step_wall"]
                                                              for s in sc.teacher_steps),
            "online_teacher_cpu_s_per_audio_s": statistics.median(teacher_cpu_per_audio_s),
            "audio_seconds_per_step": statistics.median(s["audio_seconds"] for s in sc.teacher_steps),
        }
    out["_scenarios"] = scenarios  # for the loader benchmark; dropped before writing JSON
    return out


def loader_share(scenarios: dict[str, Scenario], cold_steps: int) -> dict[str, Any]:
    """How long the trainer waits on DistillBatches.next(): share of the step, warm and cold page cache.

    Warm: every cached step of benchmark 1 (the loader is synchronous, so all of its time is time the
    trainer is blocked). Cold: the stores' pages are dropped from the page cache (posix_fadvise) and
    the stores reopened before each batch, so every byte comes from disk; divided by the median
    warm step time.
    """
    out: dict[str, Any] = {}
    for name, sc in scenarios.items():
        recs = sc.loader
        shares = [r["loader_wall"] / r["step_wall"] for r in recs]
        step_median = statistics.median(r["step_wall"] for r in recs)
        rng_state = sc.cached.rng.bit_generator.state
        sc.cached = None  # pages still mapped by a live memmap cannot be dropped: release them
        gc.collect()
        cold = []
        crop = int(sc.student.crop_seconds * 50)
        for _ in range(cold_steps):
            fresh = DistillBatches(FeatureCache([Store(sc.audio)]), FeatureCache([Store(sc.targets)]), sc.layers,
                                   sc.utts, crop, 0)
            fresh.rng.bit_generator.state = rng_state
            evict([sc.audio, sc.targets])
            with Clock() as c:
                fresh.next(sc.student.batch)
            rng_state = fresh.rng.bit_generator.state
            cold.append(c.wall)
            del fresh
            gc.collect()
        out[name] = {
            "steps": len(recs), "loader_ms_median": 1e3 * statistics.median(r["loader_wall"] for r in recs),
            "loader_ms_max": 1e3 * max(r["loader_wall"] for r in recs), "step_ms_median": 1e3 * step_median,
            "share_median": statistics.median(shares), "share_max": max(shares),
            "loader_cpu_s_per_step_median": statistics.median(r["loader_cpu"] for r in recs),
            "cold_loader_ms": [1e3 * c for c in cold],
            "cold_share_of_median_step": (statistics.median(cold) / step_median) if cold else None,
            "cold_share_max": (max(cold) / step_median) if cold else None,
        }
    return out
