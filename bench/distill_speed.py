"""Benchmark 1 (cached vs online distillation) and 3b (time the trainer is blocked on the data loader).

The same student (the default config's `distilhubert`, as the default run trains it) takes training steps on the same
sequence of batches (its batch of frame-aligned crops, two DistillBatches with one seed) in three ways:
- cached: the batch comes from pipeline.distill.data.DistillBatches over a view-audio store and a teacher cache
  written by the real extract_shard, through the trainer's Prefetcher (time blocked on it is inside the step);
- online_crop: the batch's audio is already in memory (no I/O charged to this side) and the teacher runs inside
  the step on the same 1 s crops the student hears: what a user distilling online runs, so the like-for-like side
  and the headline (its targets see only the crop as context; their cosine to the cached targets is reported);
- online_whole: as online_crop, but the teacher runs on each item's whole utterance, whose hidden states are then
  cropped: the cache's targets exactly (checked on the first batch), at several times the audio per step.
The student step itself mirrors pipeline/distill/train.py (forward, frame alignment, method loss,
backward, gradient clipping, AdamW). Headline: steps/s cached / steps/s online_crop.
"""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import SAMPLE_RATE, Clock, Sample, Teacher, evict, interleave, rate_ratio, summarise
from pipeline.cache.index import FeatureCache
from pipeline.cache.store import Store
from pipeline.config import load_config
from pipeline.distill.data import Batch, DistillBatches, Prefetcher
from pipeline.distill.methods import MethodContext, build_method
from pipeline.distill.train import DEFAULT_TRAIN, target_layers
from pipeline.students.checkpoint import build_student, count_params

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


def teacher_targets(teacher: Teacher, clips: list[torch.Tensor], layers: list[int],
                    crops: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
    """Online targets: the teacher's hidden states of `clips`, each cut to its (start, frames) crop (None:
    whole), one zero-padded (B, F, D) tensor per layer."""
    states = teacher.upstream.hidden_states_batch(clips)
    spans = crops or [(0, per_clip[0].shape[0]) for per_clip in states]
    out = [torch.zeros(len(clips), max(n for _, n in spans), teacher.upstream.dim) for _ in layers]
    for b, (per_clip, (start, n)) in enumerate(zip(states, spans, strict=True)):
        for j, layer in enumerate(layers):
            out[j][b, :n] = per_clip[layer][start:start + n]
    return out


def frame_cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Mean cosine similarity of corresponding non-zero frames of two per-layer target lists."""
    sims = []
    for x, y in zip(a, b, strict=True):
        valid = (x.abs().sum(-1) > 0) & (y.abs().sum(-1) > 0)
        sims.append(torch.nn.functional.cosine_similarity(x[valid], y[valid], dim=-1))
    return float(torch.cat(sims).mean())


@dataclass
class OnlineBatch:
    """One batch for the online sides: the crops (B, S) with lengths, each item's whole target-copy utterance
    and its (start, frames) crop of the teacher's frames."""

    wav: torch.Tensor
    lengths: torch.Tensor
    utterances: list[torch.Tensor]
    crops: list[tuple[int, int]]

    @property
    def clips(self) -> list[torch.Tensor]:
        """Each item's crop audio without padding."""
        return [self.wav[b, :int(n)] for b, n in enumerate(self.lengths)]


@dataclass
class Scenario:
    """One teacher: its cache, the cached-side loader, the online sides' batches, and per-step records."""

    teacher: Teacher
    student: StudentSpec
    audio: Path
    targets: Path
    utts: list[str]
    layers: list[int]
    cached: DistillBatches | None
    prefetch: Prefetcher | None
    online_batches: list[OnlineBatch]
    models: dict[str, Trainee]  # per side
    target_check: dict[str, float]  # first batch: cosine of each online side's targets to the cached ones
    loader: list[dict[str, float]] = field(default_factory=list)  # per cached step: blocked and step seconds
    teacher_steps: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # per online side and step
    online_used: dict[str, int] = field(default_factory=dict)


def make_scenario(teacher: Teacher, student: StudentSpec, audio: Path, targets: Path, seed: int,
                  online_steps: int) -> Scenario:
    """Open the caches, build one student per side, pre-load the online sides' batches (same crops, same seed)
    and check that the whole-utterance side reproduces the cached targets."""
    audio_cache = FeatureCache([Store(audio, expect={"kind": "view_audio"})])
    target_cache = FeatureCache([Store(targets, expect={"name": teacher.name})])
    layers = target_layers(target_cache.fingerprint)
    utts = [k.rsplit("@", 1)[0] for k in target_cache.keys]
    crop = int(student.crop_seconds * 50)
    cached = DistillBatches(audio_cache, target_cache, layers, utts, crop, seed)
    twin = DistillBatches(audio_cache, target_cache, layers, utts, crop, seed)
    online, check = [], {}
    for i in range(online_steps):
        batch = twin.next(student.batch)
        whole = [torch.from_numpy(np.array(audio_cache.get(p.key_tgt), np.float32)) for p in twin.last_picks]
        online.append(OnlineBatch(batch.wav, batch.lengths, whole, [(p.start, p.frames) for p in twin.last_picks]))
        if i == 0:  # the online sides must produce the cached targets' shapes (and, whole, their values)
            got = {"online_whole": teacher_targets(teacher, whole, layers, online[0].crops),
                   "online_crop": teacher_targets(teacher, online[0].clips, layers)}
            for side, tgts in got.items():
                if [tuple(t.shape) for t in tgts] != [tuple(t.shape) for t in batch.targets[0]]:
                    raise RuntimeError(f"{teacher.name} {side}: targets {[tuple(t.shape) for t in tgts]} vs cached "
                                       f"{[tuple(t.shape) for t in batch.targets[0]]}: crops and frames do not line up")
                check[side] = frame_cosine(tgts, batch.targets[0])
            if check["online_whole"] < 0.999:
                raise RuntimeError(f"{teacher.name}: whole-utterance online targets differ from the cached ones "
                                   f"(cosine {check['online_whole']:.5f}); the sides are not comparable")
    dim = target_cache.fingerprint["dim"]
    models = {side: Trainee.build(student, teacher.name, dim, layers, seed) for side in SIDES}
    return Scenario(teacher, student, audio, targets, utts, layers, cached, Prefetcher(cached, student.batch),
                    online, models, check)


SIDES = ("cached", "online_whole", "online_crop")


def cached_side(sc: Scenario, steps: int) -> Sample:
    """`steps` training steps on batches from the cache through the trainer's Prefetcher (the time blocked on
    it is inside the step)."""
    wall = cpu = 0.0
    for _ in range(steps):
        with Clock() as load:
            batch = sc.prefetch.next()
        with Clock() as train:
            sc.models["cached"].step(batch)
        sc.loader.append({"loader_wall": load.wall, "loader_cpu": load.cpu, "step_wall": load.wall + train.wall,
                          "step_cpu": load.cpu + train.cpu})
        wall += load.wall + train.wall
        cpu += load.cpu + train.cpu
    return {"wall": wall, "cpu": cpu, "units": steps}


def online_side(sc: Scenario, side: str, steps: int) -> Sample:
    """`steps` training steps with the teacher forward inside the step: on the crops (`online_crop`) or on the
    whole utterances (`online_whole`)."""
    wall = cpu = 0.0
    records = sc.teacher_steps.setdefault(side, [])
    for _ in range(steps):
        ob = sc.online_batches[sc.online_used.get(side, 0)]
        sc.online_used[side] = sc.online_used.get(side, 0) + 1
        clips, crops = (ob.utterances, ob.crops) if side == "online_whole" else (ob.clips, None)
        with Clock() as fwd:
            tgts = teacher_targets(sc.teacher, clips, sc.layers, crops)
        with Clock() as train:
            sc.models[side].step(Batch(ob.wav, ob.lengths, [tgts]))
        records.append({"teacher_wall": fwd.wall, "teacher_cpu": fwd.cpu,
                        "audio_seconds": sum(len(c) for c in clips) / SAMPLE_RATE,
                        "step_wall": fwd.wall + train.wall, "step_cpu": fwd.cpu + train.cpu})
        wall += fwd.wall + train.wall
        cpu += fwd.cpu + train.cpu
    return {"wall": wall, "cpu": cpu, "units": steps}


def run(teachers: dict[str, Teacher], student: StudentSpec, stores: dict[str, tuple[Path, Path]],
        steps: dict[str, int], repeats: int, seed: int) -> dict[str, Any]:
    """Interleave the cached and both online sides of every teacher; `steps` = steps per side per repeat
    ('cached', and one entry per teacher for its online sides)."""
    scenarios = {name: make_scenario(teachers[name], student, *stores[name], seed, (repeats + 1) * steps[name])
                 for name in stores}
    sides = {}
    for name, sc in scenarios.items():
        sides[f"{name}/cached"] = lambda sc=sc: cached_side(sc, steps["cached"])
        for side in SIDES[1:]:
            sides[f"{name}/{side}"] = lambda sc=sc, side=side, n=steps[name]: online_side(sc, side, n)
    runs = interleave(sides, repeats, seed)
    out: dict[str, Any] = {}
    for name, sc in scenarios.items():
        cached = runs[f"{name}/cached"]
        out[name] = {
            "teacher": sc.teacher.label, "teacher_params": sc.teacher.params, "target_layers": sc.layers,
            "target_dim": sc.teacher.upstream.dim, "student_params": count_params(sc.models["cached"].model),
            "student_arch": dict(student.arch), "batch": student.batch, "crop_seconds": student.crop_seconds,
            "steps_per_repeat": {"cached": steps["cached"], "online": steps[name]},
            "cached": summarise(cached), "target_cosine_to_cached": sc.target_check,
        }
        for side in SIDES[1:]:
            recs = sc.teacher_steps[side]
            out[name][side] = {
                **summarise(runs[f"{name}/{side}"]), "speedup": rate_ratio(cached, runs[f"{name}/{side}"]),
                "teacher_share_of_step": statistics.median(r["teacher_wall"] / r["step_wall"] for r in recs),
                "teacher_cpu_s_per_audio_s": statistics.median(r["teacher_cpu"] / r["audio_seconds"] for r in recs),
                "teacher_audio_seconds_per_step": statistics.median(r["audio_seconds"] for r in recs),
            }
        out[name]["speedup"] = out[name]["online_crop"]["speedup"]  # the headline: teacher on the same crops
    out["_scenarios"] = scenarios  # for the loader benchmark; dropped before writing JSON
    return out


class ColdBatches:
    """A DistillBatches source whose every batch comes from disk: before each draw the stores are reopened and
    their pages dropped from the page cache (posix_fadvise); same batches as the warm loader from `rng_state`."""

    def __init__(self, sc: Scenario, rng_state: dict[str, Any]) -> None:
        self.sc = sc
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = rng_state
        self.read_seconds: list[float] = []

    def next(self, batch_size: int) -> Batch:
        sc = self.sc
        fresh = DistillBatches(FeatureCache([Store(sc.audio)]), FeatureCache([Store(sc.targets)]), sc.layers,
                               sc.utts, int(sc.student.crop_seconds * 50), 0)
        fresh.rng.bit_generator.state = self.rng.bit_generator.state
        evict([sc.audio, sc.targets])
        with Clock() as c:
            batch = fresh.next(batch_size)
        self.rng.bit_generator.state = fresh.rng.bit_generator.state
        self.read_seconds.append(c.wall)
        del fresh  # pages still mapped by a live memmap cannot be dropped: release them before the next draw
        gc.collect()
        return batch


def loader_share(scenarios: dict[str, Scenario], cold_steps: int, sync_draws: int = 20) -> dict[str, Any]:
    """How long the trainer waits on its loader (the Prefetcher over DistillBatches): share of the step, warm
    and cold page cache.

    Warm: every cached step of benchmark 1. Cold: `cold_steps` more training steps whose batches are all read
    from disk (ColdBatches), the first left out (nothing to overlap it with). Beside them, what a synchronous
    loader would block for: a cold draw / the median warm step, and the CPU of `sync_draws` warm draws (the
    cache-read cost of the amortisation table).
    """
    out: dict[str, Any] = {}
    for name, sc in scenarios.items():
        recs = sc.loader
        shares = [r["loader_wall"] / r["step_wall"] for r in recs]
        step_median = statistics.median(r["step_wall"] for r in recs)
        sc.prefetch.close()
        rng_state = sc.prefetch.rng_state
        sync = []
        for _ in range(sync_draws):
            with Clock() as c:
                sc.cached.next(sc.student.batch)
            sync.append(c.cpu)
        sc.prefetch = sc.cached = None
        gc.collect()
        cold = ColdBatches(sc, rng_state)
        blocked, steps = [], []
        with Prefetcher(cold, sc.student.batch) as loader:
            for i in range(cold_steps + 1):
                with Clock() as wait:
                    batch = loader.next()
                with Clock() as train:
                    sc.models["cached"].step(batch)
                if i:
                    blocked.append(wait.wall)
                    steps.append(wait.wall + train.wall)
        cold_shares = [b / t for b, t in zip(blocked, steps, strict=True)]
        out[name] = {
            "steps": len(recs), "loader_ms_median": 1e3 * statistics.median(r["loader_wall"] for r in recs),
            "loader_ms_max": 1e3 * max(r["loader_wall"] for r in recs), "step_ms_median": 1e3 * step_median,
            "share_median": statistics.median(shares), "share_max": max(shares),
            "loader_cpu_s_per_step_median": statistics.median(sync),
            "cold_read_ms": [1e3 * c for c in cold.read_seconds],
            "cold_blocked_ms": [1e3 * b for b in blocked],
            "cold_share_median": statistics.median(cold_shares) if cold_shares else None,
            "cold_share_max": max(cold_shares) if cold_shares else None,
            "cold_sync_share_of_median_step": statistics.median(cold.read_seconds) / step_median,
        }
    return out
