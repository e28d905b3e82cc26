"""Benchmarks 2 (extraction overhead) and 6 (extraction scaling with corpus size and parallel jobs).

Full extraction is the workflow's own pipeline.cache.extract.extract_shard (the teacher loaded
once beforehand: model loading and the weights checksum are per-job fixed costs, reported on
their own). Teacher forward alone runs the same teacher over the same batches (extract's own
`_batches` grouping) and keeps nothing.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import (
    ROOT,
    SAMPLE_RATE,
    Clock,
    Sample,
    Teacher,
    config_seconds,
    extract,
    interleave,
    linear_fit,
    summarise,
    time_ratio,
)
from pipeline.cache.extract import _batches
from pipeline.cache.store import Store, StoreWriter
from pipeline.config import load_config


def forward_only(teacher: Teacher, audio: Path, batch_seconds: float) -> tuple[Sample, list[tuple[str, Any]]]:
    """Teacher forward over the store's audio in extract_shard's batches; returns the timing and outputs."""
    source = Store(audio)
    outputs = []
    with Clock() as c:
        for group in _batches(source, int(batch_seconds * SAMPLE_RATE)):
            wavs = [torch.from_numpy(np.array(source[i], np.float32)) for i in group]
            states = teacher.upstream.hidden_states_batch(wavs)
            outputs.extend(zip((source.ids[i] for i in group), states, strict=True))
    seconds = sum(source.num_rows(i) for i in range(len(source))) / SAMPLE_RATE
    return {"wall": c.wall, "cpu": c.cpu, "units": seconds}, outputs


def write_only(outputs: list[tuple[str, Any]], out: Path, fingerprint: dict[str, Any], dtype: str,
               compression: str) -> Sample:
    """StoreWriter alone over given teacher outputs, converted as extract_shard converts them."""
    arrays = [(key, torch.stack(states, dim=1).to(getattr(torch, dtype)).cpu().numpy()) for key, states in outputs]
    with Clock() as c:
        with StoreWriter(out, fingerprint, dtype, compression) as writer:
            for key, array in arrays:
                writer.add(key, array)
    shutil.rmtree(out)
    return {"wall": c.wall, "cpu": c.cpu}


@contextlib.contextmanager
def forward_clock(teacher: Teacher) -> Iterator[Clock]:
    """Accumulate the wall and CPU time spent in the teacher's hidden_states_batch while the block runs."""
    upstream, total = teacher.upstream, Clock()
    inner = upstream.hidden_states_batch

    def timed(wavs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        with Clock() as c:
            out = inner(wavs)
        total.wall += c.wall
        total.cpu += c.cpu
        return out

    upstream.hidden_states_batch = timed
    try:
        yield total
    finally:
        del upstream.hidden_states_batch  # the class's method again


def overhead(teachers: dict[str, Teacher], names: list[str], config: str, audio: Path, work: Path,
             repeats: int, seed: int) -> dict[str, Any]:
    """Full extraction / the teacher forward, per teacher, interleaved; plus the store write alone.

    Two ways: within one extract_shard run (its time / the time its own teacher calls took: forward
    and the rest alternate batch by batch, so load from other processes hits both alike), and full
    extraction runs against separate forward-alone runs over the same audio (which also catches a
    forward slowed down by the writes around it, but scatters far more on a busy machine).
    """
    cfg = load_config(config)
    batch_seconds = float(cfg["cache"]["batch_seconds"])
    seconds = sum(Store(audio).num_rows(i) for i in range(len(Store(audio)))) / SAMPLE_RATE
    sides, kept = {}, {}
    for name in names:
        def full(name: str = name) -> Sample:
            out = work / f"overhead-{name}.zarr"
            with forward_clock(teachers[name]) as fwd:
                got = extract(config, teachers, name, audio, out)
            shutil.rmtree(out)
            return {**got, "units": seconds, "forward_wall": fwd.wall, "forward_cpu": fwd.cpu}

        def forward(name: str = name) -> Sample:
            sample, outputs = forward_only(teachers[name], audio, batch_seconds)
            kept[name] = outputs
            return sample

        def write(name: str = name) -> Sample:
            if name not in kept:
                kept[name] = forward_only(teachers[name], audio, batch_seconds)[1]
            got = write_only(kept[name], work / f"write-{name}.zarr", {"bench": "write"},
                             cfg["cache"]["dtype"], cfg["cache"]["compression"])
            return {**got, "units": seconds}

        sides.update({f"{name}/full": full, f"{name}/forward": forward, f"{name}/write": write})
    runs = interleave(sides, repeats, seed)
    out: dict[str, Any] = {"audio_seconds": seconds, "batch_seconds": batch_seconds,
                           "dtype": cfg["cache"]["dtype"], "compression": cfg["cache"]["compression"],
                           "store_fixed_cost": store_fixed_cost(work, cfg["cache"]["dtype"],
                                                                cfg["cache"]["compression"])}
    for name in names:
        full, fwd, wr = runs[f"{name}/full"], runs[f"{name}/forward"], runs[f"{name}/write"]
        t = teachers[name]
        within = [{"wall": s["forward_wall"], "cpu": s["forward_cpu"], "units": s["units"]} for s in full]
        out[name] = {
            "teacher": t.label, "teacher_params": t.params,
            "full": summarise(full), "forward": summarise(fwd), "write": summarise(wr),
            "overhead": time_ratio(full, within),  # extract_shard's time / its teacher calls' time
            "overhead_separate_runs": time_ratio(full, fwd),  # full extraction / separate forward-alone runs
            "write_share_of_forward": time_ratio(wr, fwd),
            "forward_cpu_s_per_audio_s": statistics.median(s["cpu"] / s["units"] for s in fwd),
            "full_cpu_s_per_audio_s": statistics.median(s["cpu"] / s["units"] for s in full),
            "fixed_costs_per_job_s": {"load": t.load_seconds, "weights_checksum": t.fingerprint_seconds,
                                      "config": config_seconds(config)},
        }
    return out


def store_fixed_cost(work: Path, dtype: str, compression: str, repeats: int = 5) -> dict[str, float]:
    """Median wall and CPU seconds of a StoreWriter holding one 10-frame utterance: the per-store cost
    (group, arrays, attributes, rename) that a shard pays whatever its size."""
    x = np.ones((10, 4, 64), np.float32)
    walls, cpus = [], []
    for i in range(repeats):
        with Clock() as c, StoreWriter(work / f"fixed-{i}.zarr", {"bench": "fixed"}, dtype, compression) as w:
            w.add("u@0", x)
        shutil.rmtree(work / f"fixed-{i}.zarr")
        walls.append(c.wall)
        cpus.append(c.cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def scaling_size(teachers: dict[str, Teacher], name: str, config: str, audios: list[Path], work: Path,
                 repeats: int, seed: int) -> dict[str, Any]:
    """Wall time of extract_shard over corpora of several sizes (interleaved); linear fit of time vs seconds."""
    sizes = [sum(Store(a).num_rows(i) for i in range(len(Store(a)))) / SAMPLE_RATE for a in audios]
    sides = {}
    for audio, seconds in zip(audios, sizes, strict=True):
        def run(audio: Path = audio, seconds: float = seconds) -> Sample:
            out = work / f"scale-{audio.name}"
            got = extract(config, teachers, name, audio, out)
            shutil.rmtree(out)
            return {**got, "units": seconds}
        sides[f"{seconds:.1f}"] = run
    runs = interleave(sides, repeats, seed)
    med = [statistics.median(s["wall"] for s in runs[f"{x:.1f}"]) for x in sizes]
    med_cpu = [statistics.median(s["cpu"] for s in runs[f"{x:.1f}"]) for x in sizes]
    # per-second cost of each size relative to the largest: 1.0 everywhere = linear with no fixed cost
    unit = [m / x for m, x in zip(med, sizes, strict=True)]
    unit_cpu = [m / x for m, x in zip(med_cpu, sizes, strict=True)]
    return {"teacher": teachers[name].label, "audio_seconds": sizes, "wall_s_median": med, "cpu_s_median": med_cpu,
            "fit_wall": linear_fit(sizes, med), "fit_cpu": linear_fit(sizes, med_cpu),
            "s_per_audio_s_vs_largest": [u / unit[-1] for u in unit],
            "cpu_s_per_audio_s_vs_largest": [u / unit_cpu[-1] for u in unit_cpu],
            "runs": {k: v for k, v in runs.items()}}


def _job(config: str, name: str, audio: Path, out: Path, log: Path) -> subprocess.Popen:
    """One extraction job exactly as the workflow's extract_teacher rule runs it, with one thread.

    Each job gets a session of its own: with the kernel's autogroup scheduling
    (/proc/sys/kernel/sched_autogroup_enabled) all processes of one session share one fair share of
    the CPUs, so on a machine busy with other sessions two jobs of one session run no faster than one.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pipeline", "extract", "--config", config, "--upstream", name,
           "--audio", str(audio), "--out", str(out), "--threads", "1"]
    with open(log, "w") as err:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def _wait(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    for p, log in zip(procs, logs, strict=True):
        if p.wait() != 0:
            raise RuntimeError(f"extraction job failed (exit {p.returncode}): {log.read_text()[-2000:]}")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def scaling_jobs(name: str, config: str, audios: list[Path], work: Path, repeats: int,
                 seed: int) -> dict[str, Any]:
    """Two extraction jobs one after the other vs both at once (python -m pipeline extract, 1 thread each).

    Speed-up = wall(sequential) / wall(concurrent) (2.0 = both cores fully used); the stores of the
    two ways must be byte-identical (running concurrently must not change the features).
    """
    outs = {mode: [work / f"jobs-{mode}-{i}.zarr" for i in range(len(audios))] for mode in ("seq", "par")}
    logs = [work / f"jobs-{i}.log" for i in range(len(audios))]

    def run(mode: str) -> Sample:
        for o in outs[mode]:
            shutil.rmtree(o, ignore_errors=True)
        cpu0, t0 = _children_cpu(), time.perf_counter()
        if mode == "seq":
            for audio, o, log in zip(audios, outs[mode], logs, strict=True):
                _wait([_job(config, name, audio, o, log)], [log])
        else:
            procs = [_job(config, name, a, o, log) for a, o, log in zip(audios, outs[mode], logs, strict=True)]
            _wait(procs, logs)
        return {"wall": time.perf_counter() - t0, "cpu": _children_cpu() - cpu0, "units": len(audios)}

    runs = interleave({"sequential": lambda: run("seq"), "concurrent": lambda: run("par")}, repeats, seed,
                      warmup=False)
    for a, b in zip(outs["seq"], outs["par"], strict=True):
        sa, sb = Store(a), Store(b)
        if sa.ids != sb.ids or any(not np.array_equal(sa[i], sb[i]) for i in range(len(sa))):
            raise RuntimeError(f"{a} and {b} differ: concurrent extraction changed the features")
    speed = time_ratio(runs["sequential"], runs["concurrent"])
    seconds = [sum(Store(a).num_rows(i) for i in range(len(Store(a)))) / SAMPLE_RATE for a in audios]
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return {"jobs": len(audios), "audio_seconds_per_job": seconds, "threads_per_job": 1,
            "session_per_job": True, "autogroup": autogroup.read_text().strip() if autogroup.exists() else None,
            "speedup": speed, "efficiency": speed["median"] / len(audios),
            "sequential": summarise(runs["sequential"]), "concurrent": summarise(runs["concurrent"]),
            "identical_outputs": True}
