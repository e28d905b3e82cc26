"""Run every benchmark of issue 6 in one process and write bench/results.json + bench/results.md.

    .venv/bin/python -m bench            # full run: bundled Whisper base / tiny.en, HuBERT-base-sized teacher
    .venv/bin/python -m bench --quick    # seconds-scale smoke run: tiny random teachers, noise audio

Each figure is a ratio of two ways of doing the same work, measured side by side in this run
(interleaved repeats, median of the per-repeat ratios); see bench/README.md for what each measures.
Synthetic audio (espeak-ng speech, or noise with --quick) and every store live in a temporary
directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench import amortise, cache_read, distill_speed, extraction, storage
from bench.harness import (
    SAMPLE_RATE,
    Teacher,
    audio_seconds,
    extract,
    finite_positive,
    load_project_teacher,
    machine,
    quartiles,
    random_hubert,
    random_whisper,
    synth_corpus,
    write_audio_store,
    write_config,
)

OUT = Path(__file__).resolve().parent
DEFAULT_CONFIG = OUT.parent / "config.yaml"  # the benchmarked student is its `distilhubert`
HUBERT_BASE = {}  # transformers' HubertConfig() defaults: 12 layers x 768, 12 heads, FFN 3072 (HuBERT Base)
HUBERT_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one run mode."""

    utterances: int  # synthetic corpus; every benchmark uses it or a prefix of it
    audio: str  # espeak | noise
    hubert_utterances: int  # prefix the HuBERT teacher's cache covers (its forward is slow)
    overhead_utterances: int  # prefix the extraction-overhead benchmark runs on (more repeats of less audio)
    distill_repeats: int
    distill_steps: dict[str, int]  # steps per side per repeat: cached, and the online side per teacher
    overhead_repeats: int
    scaling_prefixes: tuple[int, ...]  # corpus sizes for the size scan (utterances)
    scaling_repeats: int
    jobs_repeats: int
    cold_steps: int
    cache_read: dict[str, Any]


FULL = Plan(utterances=16, audio="espeak", hubert_utterances=8, overhead_utterances=16, distill_repeats=5,
            distill_steps={"cached": 3, "whisper_base": 1, "hubert_base": 1}, overhead_repeats=6,
            scaling_prefixes=(2, 4, 8, 16), scaling_repeats=3, jobs_repeats=2, cold_steps=5,
            cache_read=dict(size="300M", utterances=400, layers=7, dim=512, repeats=5, seconds=0.3))
QUICK = Plan(utterances=6, audio="noise", hubert_utterances=3, overhead_utterances=6, distill_repeats=2,
             distill_steps={"cached": 1, "whisper_base": 1, "hubert_base": 1}, overhead_repeats=2,
             scaling_prefixes=(2, 4, 6), scaling_repeats=1, jobs_repeats=1, cold_steps=2,
             cache_read=dict(size=None, utterances=40, layers=3, dim=64, repeats=2, seconds=0.05))

TARGETS = {"distill_speedup": 2.0, "extraction_overhead": 1.10, "read_vs_memmap": 0.5, "loader_share": 0.05}


def load_teachers(quick: bool, work: Path, seed: int) -> dict[str, Teacher]:
    """The bench teachers; with --quick, tiny random stand-ins under the same names."""
    if quick:
        return {"whisper_base": random_whisper("whisper_base", seed),
                "hubert_base": random_hubert("hubert_base", HUBERT_TINY, work / "hubert_tiny", seed)}
    return {"whisper_base": load_project_teacher("whisper_base", "Whisper base (bundled, encoder 6 x 512)"),
            "whisper_tiny": load_project_teacher("whisper_tiny", "Whisper tiny.en (bundled, encoder 4 x 384)"),
            "hubert_base": random_hubert("hubert_base", HUBERT_BASE, None, seed)}


def main(quick: bool, threads: int, seed: int, epochs: float, tmp_dir: str | None, keep: bool,
         out: str, jobs: bool = True) -> dict[str, Any]:
    """Run all benchmarks; returns the report that is written to `out`/results.json and results.md."""
    t_start = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(threads)
    plan = QUICK if quick else FULL
    info = machine(threads)
    work = Path(tempfile.mkdtemp(prefix="bench_run_all_", dir=tmp_dir))
    report: dict[str, Any] = {"benchmark": "run_all", "quick": quick, "seed": seed, "machine": info,
                              "command": command(quick, threads, seed, epochs, jobs), "seconds": {}}
    stamp = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal stamp
        now = time.perf_counter()
        report["seconds"][name] = round(now - stamp, 1)
        print(f"[bench] {name}: {now - stamp:.0f} s (total {now - t_start:.0f} s)", file=sys.stderr, flush=True)
        stamp = now

    try:
        wavs = synth_corpus(plan.utterances, plan.audio, seed)
        keys = list(wavs)
        stores = {n: write_audio_store(work / f"audio-{n}.zarr", {k: wavs[k] for k in keys[:n]})
                  for n in sorted({plan.utterances, plan.hubert_utterances, plan.overhead_utterances,
                                   *plan.scaling_prefixes})}
        half = plan.utterances // 2
        halves = [write_audio_store(work / f"audio-half{i}.zarr", {k: wavs[k] for k in part})
                  for i, part in enumerate((keys[:half], keys[half:2 * half]))]
        audio_all = stores[plan.utterances]
        report["corpus"] = {"source": plan.audio, "utterances": len(wavs), "audio_seconds": audio_seconds(wavs),
                            "utterance_seconds": sorted(round(len(w) / SAMPLE_RATE, 2) for w in wavs.values())}
        teachers = load_teachers(quick, work, seed)
        config = write_config(work / "config.yaml", teachers, batch_seconds=30)
        report["teachers"] = {n: {"label": t.label, "params": t.params, "num_layers": t.upstream.num_layers,
                                  "dim": t.upstream.dim, "load_s": t.load_seconds,
                                  "weights_checksum_s": t.fingerprint_seconds} for n, t in teachers.items()}
        caches = {"whisper_base": (audio_all, work / "cache-whisper_base.zarr"),
                  "hubert_base": (stores[plan.hubert_utterances], work / "cache-hubert_base.zarr")}
        build = {n: extract(config, teachers, n, a, c) for n, (a, c) in caches.items()}
        report["cache_build"] = {n: {**s, "audio_seconds": audio_seconds({k: wavs[k] for k in keys[:m]}),
                                     "cpu_s_per_audio_s": s["cpu"] / audio_seconds({k: wavs[k] for k in keys[:m]})}
                                 for (n, s), m in zip(build.items(), (plan.utterances, plan.hubert_utterances),
                                                      strict=True)}
        lap("setup")

        student = (distill_speed.QUICK_STUDENT if quick
                   else distill_speed.StudentSpec.from_config(DEFAULT_CONFIG, "distilhubert"))
        distill = distill_speed.run(teachers, student, caches, plan.distill_steps, plan.distill_repeats, seed)
        scenarios = distill.pop("_scenarios")
        report["distill_speed"] = distill
        lap("distill_speed")

        overhead_names = [n for n in ("whisper_base", "whisper_tiny") if n in teachers]
        if quick:
            overhead_names.append("hubert_base")
        report["extraction_overhead"] = extraction.overhead(teachers, overhead_names, config,
                                                            stores[plan.overhead_utterances], work,
                                                            plan.overhead_repeats, seed)
        lap("extraction_overhead")

        cr = cache_read.main(**plan.cache_read, min_frames=50, max_frames=300, quick=False, seed=seed,
                             tmp_dir=str(work), keep=False, out=None)
        report["cache_read"] = {"config": cr["config"], "disk": cr["disk"],
                                "throughput": {k: {f: v[f] for f in ("label", "ratio_vs_memmap", "ratio_vs_memmap_cpu",
                                                                     "ratio_vs_memmap_per_repeat", "gb_per_s_median",
                                                                     "ratio_from_call_overhead")}
                                               for k, v in cr["throughput"].items()}}
        report["loader"] = distill_speed.loader_share(scenarios, plan.cold_steps)
        del scenarios
        lap("cache_read_and_loader")

        outputs = extraction.forward_only(teachers["whisper_base"], audio_all, 30)[1]
        report["storage"] = storage.run(outputs, audio_seconds(wavs), teachers["whisper_base"].label, work)
        del outputs
        lap("storage")

        am = {}
        for name in ("whisper_base", "hubert_base"):
            ov = report["extraction_overhead"].get(name)
            c_extract = ov["full_cpu_s_per_audio_s"] if ov else report["cache_build"][name]["cpu_s_per_audio_s"]
            crop = distill[name]["online_crop"]  # the teacher on the training crops, as an online run pays it
            read = report["loader"][name]["loader_cpu_s_per_step_median"] / crop["teacher_audio_seconds_per_step"]
            am[name] = {"teacher": teachers[name].label,
                        "c_extract_source": "extraction_overhead.full" if ov else "cache_build",
                        **amortise.table(crop["teacher_cpu_s_per_audio_s"], c_extract, read, epochs, 3600.0)}
        report["amortisation"] = am
        lap("amortisation")

        prefixes = [stores[n] for n in plan.scaling_prefixes]
        scale_teacher = "hubert_base" if quick else "whisper_base"  # loadable by a fresh process
        report["scaling"] = {"size": extraction.scaling_size(teachers, scale_teacher, config, prefixes, work,
                                                             plan.scaling_repeats, seed)}
        if jobs:  # fresh interpreters: what a Snakemake job pays (imports, model load) and slow on a busy machine
            report["scaling"]["jobs"] = extraction.scaling_jobs(scale_teacher, config, halves, work,
                                                                plan.jobs_repeats, seed)
            report["scaling"]["jobs"]["teacher"] = teachers[scale_teacher].label
        lap("scaling")
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    report["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    report["headline"] = headline(report)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "results.json", json.dumps(report, indent=2, default=float) + "\n")
    write_atomic(out_dir / "results.md", markdown(report))
    print(markdown(report))
    return report


def command(quick: bool, threads: int, seed: int, epochs: float, jobs: bool) -> str:
    """The command line that reproduces a run with these settings."""
    parts = [".venv/bin/python -m bench"] + ["--quick"] * quick + ["--no-jobs"] * (not jobs)
    parts += [f"--{k} {v:g}" for k, v, default in (("threads", threads, 1), ("seed", seed, 0),
                                                   ("epochs", epochs, 10.0)) if v != default]
    return " ".join(parts)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def headline(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: the ratio, its target (if the issue sets one) and whether it is met."""
    rows = []

    def add(key: str, what: str, value: float, target: str | None = None, met: bool | None = None,
            cpu: float | None = None, spread: list[float] | None = None) -> None:
        rows.append({"id": key, "what": what, "ratio": value, "cpu_ratio": cpu, "target": target, "met": met,
                     "quartiles": spread})

    for name, d in r["distill_speed"].items():
        s = d["online_crop"]["speedup"]
        add(f"1.{name}", f"training steps/s, cached / online with the teacher on the same crops the student hears "
            f"(like for like): {d['teacher']}", s["median"], f">= {TARGETS['distill_speedup']}",
            s["median"] >= TARGETS["distill_speedup"], s["cpu_median"], s["quartiles"])
        s, audio = d["online_whole"]["speedup"], _audio_ratio(d)
        add(f"1.{name}.whole", f"same, online teacher on the whole utterances, cropped after (the cache's targets "
            f"exactly; {audio:.1f}x the audio the student hears): {d['teacher']}",
            s["median"], cpu=s["cpu_median"], spread=s["quartiles"])
    for name, d in r["extraction_overhead"].items():
        if isinstance(d, dict) and "overhead" in d:
            o = d["overhead"]
            add(f"2.{name}", f"extraction time, full (forward + store write) / the teacher forward in it: "
                f"{d['teacher']}",
                o["median"], f"<= {TARGETS['extraction_overhead']}", o["median"] <= TARGETS["extraction_overhead"],
                o["cpu_median"], o["quartiles"])
    t = r["cache_read"]["throughput"]
    for key in ("store_none", "cache_none", "store_zstd"):
        v = t[key]
        target = f">= {TARGETS['read_vs_memmap']}" if key == "store_none" else None
        add(f"3.{key}", f"random-utterance reads / raw numpy memmap: {v['label']}", v["ratio_vs_memmap"], target,
            v["ratio_vs_memmap"] >= TARGETS["read_vs_memmap"] if target else None, v["ratio_vs_memmap_cpu"],
            quartiles(v["ratio_vs_memmap_per_repeat"]))
    for name, d in r["loader"].items():
        add(f"3.loader.{name}", f"time blocked on the loader / step time, worst step (warm cache, "
            f"{d['steps']} steps): {name} targets", d["share_max"], f"<= {TARGETS['loader_share']}",
            d["share_max"] <= TARGETS["loader_share"])
        if d["cold_share_max"] is not None:
            add(f"3.loader_cold.{name}", f"same, cold page cache (every batch read from disk), worst of "
                f"{len(d['cold_blocked_ms'])} steps: {name} targets", d["cold_share_max"],
                f"<= {TARGETS['loader_share']}", d["cold_share_max"] <= TARGETS["loader_share"])
        add(f"3.loader_cold_sync.{name}", f"a synchronous loader's cold read / median step (what the prefetching "
            f"hides): {name} targets", d["cold_sync_share_of_median_step"])
    for fmt, d in r["storage"]["formats"].items():
        add(f"4.{fmt}", f"bytes on disk / raw float32: {fmt} ({d['bytes_per_audio_s_per_layer'] / 1e3:.1f} kB per "
            "audio second per layer)", d["ratio_vs_float32"])
    for name, d in r["amortisation"].items():
        for row in (d["rows"][0], d["rows"][-1]):
            add(f"5.{name}.N{row['students']}", f"teacher CPU-s without / with cache, N = {row['students']} "
                f"students, E = {d['inputs']['epochs_per_student']:g} epochs: {d['teacher']}", row["ratio"])
    size = r["scaling"]["size"]
    add("6.size", "extraction wall time vs corpus size: log-log exponent (1 = linear)",
        size["fit_wall"]["loglog_exponent"], cpu=size["fit_cpu"]["loglog_exponent"])
    jobs = r["scaling"].get("jobs")
    if jobs:
        add("6.jobs", f"{jobs['jobs']} extraction jobs: wall time one after the other / both at once (2 = ideal)",
            jobs["speedup"]["median"], spread=jobs["speedup"]["quartiles"])
    return rows


def _audio_ratio(d: dict[str, Any]) -> float:
    """Teacher audio per step on whole utterances / on the crops (what the whole-utterance side pays extra)."""
    return d["online_whole"]["teacher_audio_seconds_per_step"] / d["online_crop"]["teacher_audio_seconds_per_step"]


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) >= 10 ** -digits or x == 0 else f"{x:.2g}"
    return str(x)


def markdown(r: dict[str, Any]) -> str:
    """The Markdown summary: headline ratios, then the measured inputs of each benchmark."""
    m = r["machine"]
    lines = [f"# Benchmarks ({'--quick' if r['quick'] else 'full run'}): `{r['command']}`", "",
             f"{m['cpus_usable']} CPUs ({m['cpu_model']}), torch {m['torch']} with {m['torch_threads']} thread(s); "
             f"load average {m['loadavg_start'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} at the end "
             f"(the machine was shared with other jobs). Total {r['seconds']['total']:.0f} s. "
             f"Corpus: {r['corpus']['utterances']} utterances, {r['corpus']['audio_seconds']:.1f} s of "
             f"{r['corpus']['source']} audio.", "",
             "Every ratio compares two ways of doing the same work measured side by side in this run (interleaved "
             "repeats, median of per-repeat ratios; quartiles: the middle half of the per-repeat ratios); the CPU "
             "column uses this process's CPU time, which leaves out time descheduled by other load.", "",
             "| # | measure | ratio | quartiles | CPU-time ratio | target | met |",
             "|---|---|---:|---:|---:|---|---|"]
    for row in r["headline"]:
        q = row["quartiles"]
        lines.append(f"| {row['id']} | {row['what']} | {_fmt(row['ratio'])} | "
                     f"{f'{q[0]:.2f}-{q[1]:.2f}' if q else ''} | {_fmt(row['cpu_ratio'])} | "
                     f"{row['target'] or ''} | {_fmt(row['met'])} |")
    lines += ["", "## 1. Cached vs online distillation", "",
              "| teacher | params | steps/s cached | online: same crops (headline) | online: whole utterances | "
              "teacher share of the online step (crops / whole) | ceiling 1 / (1 - share on crops) | "
              "teacher audio-s per step (crops / whole) | target cosine to cached (crops / whole) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in r["distill_speed"].values():
        c, w, cos = d["online_crop"], d["online_whole"], d["target_cosine_to_cached"]
        lines.append(f"| {d['teacher']} | {d['teacher_params'] / 1e6:.1f}M | "
                     f"{d['cached']['units_per_s_median']:.3f} | {c['units_per_s_median']:.3f} | "
                     f"{w['units_per_s_median']:.3f} | {c['teacher_share_of_step']:.2f} / "
                     f"{w['teacher_share_of_step']:.2f} | {1 / (1 - c['teacher_share_of_step']):.2f} | "
                     f"{c['teacher_audio_seconds_per_step']:.1f} / {w['teacher_audio_seconds_per_step']:.1f} | "
                     f"{cos['online_crop']:.3f} / {cos['online_whole']:.5f} |")
    d0 = next(iter(r["distill_speed"].values()))
    lines += ["", f"Student: transformer {d0['student_arch']} ({d0['student_params'] / 1e6:.2f}M params), "
              f"batch {d0['batch']} x {d0['crop_seconds']:g} s crops, {METHOD_NOTE}. The headline is like for like: "
              "distilling online, the teacher runs on the crops the student hears, so caching saves at most the "
              "teacher's share of that step (the ceiling column). The cache holds each utterance's hidden states "
              "computed on the whole utterance; the whole-utterance side reproduces those targets exactly, at "
              f"{_audio_ratio(d0):.1f}x the audio per step, so its ratio is larger but not what an online run pays."]
    ov = r["extraction_overhead"]
    lines += ["", "## 2. Extraction overhead", "",
              f"{ov['audio_seconds']:.1f} s of audio, {ov['dtype']} {ov['compression']}, batches of "
              f"{ov['batch_seconds']:g} s. A store costs {ov['store_fixed_cost']['cpu_s'] * 1e3:.0f} ms of CPU "
              f"({ov['store_fixed_cost']['wall_s'] * 1e3:.0f} ms wall) whatever its size (zarr group, arrays, "
              "attributes, rename): part of the overhead here, amortised by a shard of real size.", "",
              "| teacher | full / its forward (quartiles) | full / separate forward runs (quartiles) | "
              "write alone / forward | forward CPU-s per audio-s | per-job fixed: load s | weights checksum s | "
              "config s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for d in ov.values():
        if isinstance(d, dict) and "overhead" in d:
            o, sep = d["overhead"], d["overhead_separate_runs"]
            lines.append(f"| {d['teacher']} | {o['median']:.3f} ({o['quartiles'][0]:.3f}-{o['quartiles'][1]:.3f}) | "
                         f"{sep['median']:.3f} ({sep['quartiles'][0]:.2f}-{sep['quartiles'][1]:.2f}) | "
                         f"{d['write_share_of_forward']['median']:.3f} | {d['forward_cpu_s_per_audio_s']:.3f} | "
                         f"{d['fixed_costs_per_job_s']['load']:.1f} | "
                         f"{d['fixed_costs_per_job_s']['weights_checksum']:.2f} | "
                         f"{d['fixed_costs_per_job_s']['config']:.2f} |")
    lines += ["", "## 3. Cache reads and the data loader", "",
              "| reader | ratio vs memmap | CPU ratio | ceiling from per-call overhead |", "|---|---:|---:|---:|"]
    for v in r["cache_read"]["throughput"].values():
        lines.append(f"| {v['label']} | {v['ratio_vs_memmap']:.3f} | {v['ratio_vs_memmap_cpu']:.3f} | "
                     f"{v['ratio_from_call_overhead']:.3f} |")
    c = r["cache_read"]["config"]
    lines += ["", f"({c['utterances']} utterances, {c['frames_total']} frames x {c['layers']} x {c['dim']} float16, "
              f"{c['float16_bytes'] / 1e6:.0f} MB.)", "",
              "The trainer's loader (pipeline.distill.data.Prefetcher) draws the next batch in a background thread "
              "while the current one trains; blocked = time the training loop waits for it.", "",
              "| targets | steps | blocked ms (median / max) | step ms (median) | share (median / max) | "
              "cold read ms (median) | cold blocked ms (max) | cold share (max) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, d in r["loader"].items():
        cold = d["cold_read_ms"]
        lines.append(f"| {name} | {d['steps']} | {d['loader_ms_median']:.1f} / {d['loader_ms_max']:.1f} | "
                     f"{d['step_ms_median']:.0f} | {d['share_median']:.4f} / {d['share_max']:.4f} | "
                     f"{sorted(cold)[len(cold) // 2]:.1f} | {max(d['cold_blocked_ms'], default=0):.1f} | "
                     f"{_fmt(d['cold_share_max'], 4)} |")
    s = r["storage"]
    lines += ["", "## 4. Storage", "",
              f"{s['teacher']}: {s['frames']} frames x {s['layers']} layers x {s['dim']}; raw float32 = "
              f"{s['raw_float32_bytes_per_audio_s_per_layer'] / 1e3:.1f} kB per audio second per layer.", "",
              "| format | bytes per audio-s per layer | ratio vs float32 | shard files |", "|---|---:|---:|---:|"]
    for fmt, d in s["formats"].items():
        lines.append(f"| {fmt} | {d['bytes_per_audio_s_per_layer']:.0f} | {d['ratio_vs_float32']:.3f} | "
                     f"{d['shard_files']} |")
    disk, cfg = r["cache_read"]["disk"], r["cache_read"]["config"]
    lines += ["", f"Larger store (the cache_read benchmark's synthetic features, {cfg['float16_bytes'] / 1e6:.0f} MB "
              f"float16, {cfg['store_none_shard_files']} shard files): Store none "
              f"{disk['none']['ratio_vs_float32']:.3f}, Store zstd {disk['zstd']['ratio_vs_float32']:.3f} of raw "
              "float32."]
    lines += ["", "## 5. Amortisation", "", amortise.__doc__.split("\n\n")[1].rstrip(), ""]
    for d in r["amortisation"].values():
        i = d["inputs"]
        lines += [f"{d['teacher']}: c_online = {i['c_online_cpu_s_per_audio_s']:.4f}, c_extract = "
                  f"{i['c_extract_cpu_s_per_audio_s']:.4f} ({d['c_extract_source']}), r_read = "
                  f"{i['r_read_cpu_s_per_audio_s']:.2g} CPU-s per audio-s; E = {i['epochs_per_student']:g}, "
                  f"A = {i['audio_seconds']:g} s.", "",
                  "| N | teacher CPU-s without | with | ratio | cache-read CPU-s |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {row['students']} | {row['teacher_cpu_s_without_cache']:.0f} | "
                  f"{row['teacher_cpu_s_with_cache']:.0f} | {row['ratio']:.1f} | {row['cache_read_cpu_s']:.1f} |"
                  for row in d["rows"]]
        lines.append("")
    size, jobs = r["scaling"]["size"], r["scaling"].get("jobs")
    fit = size["fit_wall"]
    lines += ["## 6. Scaling", "", f"{size['teacher']}, extract_shard over growing prefixes of the corpus:", "",
              "| audio s | wall s (median) | CPU s (median) | s per audio-s vs largest |", "|---:|---:|---:|---:|"]
    lines += [f"| {x:.1f} | {w:.2f} | {c_:.2f} | {u:.3f} |" for x, w, c_, u in
              zip(size["audio_seconds"], size["wall_s_median"], size["cpu_s_median"],
                  size["s_per_audio_s_vs_largest"], strict=True)]
    lines += ["", f"Fit wall = {fit['intercept_s']:.3f} s + {fit['slope_s_per_unit']:.4f} s x audio seconds, "
              f"R^2 = {fit['r2']:.4f}, log-log exponent {fit['loglog_exponent']:.3f}, largest relative residual "
              f"{fit['max_rel_residual']:.3f} (CPU time: exponent {size['fit_cpu']['loglog_exponent']:.3f}, "
              f"R^2 {size['fit_cpu']['r2']:.4f}).", ""]
    if jobs:
        seq = ", ".join(f"{x['wall']:.1f}" for x in jobs["sequential"]["runs"])
        par = ", ".join(f"{x['wall']:.1f}" for x in jobs["concurrent"]["runs"])
        lines += [f"{jobs['jobs']} jobs (`python -m pipeline extract --threads 1`, {jobs['teacher']}, "
                  f"{', '.join(f'{x:.1f}' for x in jobs['audio_seconds_per_job'])} s of audio each): one after "
                  f"the other {seq} s, both at once {par} s; speed-up {jobs['speedup']['median']:.2f} "
                  f"(per repeat {', '.join(f'{x:.2f}' for x in jobs['speedup']['per_repeat'])}), efficiency "
                  f"{jobs['efficiency']:.2f} of 2 cores; job CPU-seconds one after the other / at once "
                  f"{jobs['speedup']['cpu_median']:.2f}; outputs byte-identical: {jobs['identical_outputs']}.", ""]
    return "\n".join(lines) + "\n"


METHOD_NOTE = "method distilhubert (L1 + cosine, one head per target layer), AdamW, gradient clipping"


def check(report: dict[str, Any]) -> list[str]:
    """Problems with a report: headline ratios that are missing, not finite or not positive."""
    bad = [f"{row['id']}: {row['ratio']!r}" for row in report["headline"] if not finite_positive(row["ratio"])]
    bad += [f"{row['id']} cpu: {row['cpu_ratio']!r}" for row in report["headline"]
            if row["cpu_ratio"] is not None and not finite_positive(row["cpu_ratio"])]
    return bad


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random teachers and noise audio: a smoke run")
    p.add_argument("--threads", type=int, default=1, help="torch threads in this process (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=10.0, help="epochs per student for the amortisation table")
    p.add_argument("--tmp-dir", default=None, help="where to put the temporary stores (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--no-jobs", dest="jobs", action="store_false",
                   help="leave out the parallel-jobs measurement (fresh interpreters: the slow part of --quick)")
    p.add_argument("--out", default=None,
                   help="directory for results.json and results.md (default: bench/, or bench/out/ with --quick)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(OUT / "out" if args.quick else OUT)
    report = main(**vars(args))
    bad = check(report)
    if bad:
        raise SystemExit("benchmark produced invalid ratios: " + "; ".join(bad))
    if not all(math.isfinite(v) for v in report["seconds"].values()):
        raise SystemExit("benchmark timings are not finite")


if __name__ == "__main__":
    cli()
