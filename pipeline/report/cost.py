"""Cost tables: what the feature cache cost to build and what an online run (teacher in the loop) would cost.

Read from results alone: teacher feature indexes and their stores (utterance-views, frames, bytes on disk),
the extraction jobs' Snakemake benchmark files, each student's config.json (steps, batch size, crop length,
training time), its export's runtime JSON (ONNX size, real-time factors) and the score JSONs (head training steps).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.report.papers import UpstreamInfo, label
from pipeline.report.tables import Cell, Column, Table

FRAME_RATE = 50.0  # DESIGN.md: every upstream is cached at 50 frames per second


@dataclass
class Extraction:
    """One teacher's cache over every (corpus, view) found: counts, audio, seconds, bytes."""

    utterances: int = 0
    audio_seconds: float = 0.0
    seconds: float | None = None
    bytes: int = 0
    num_params: float | None = None

    @property
    def speed(self) -> float | None:
        """Audio seconds per extraction second (x real time)."""
        return self.audio_seconds / self.seconds if self.seconds else None


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _benchmark_seconds(path: Path) -> float | None:
    try:
        return float(pd.read_csv(path, sep="\t")["s"].iloc[0])
    except (OSError, KeyError, IndexError, ValueError, pd.errors.EmptyDataError):
        return None


def teacher_extraction(root: str | Path, teacher: str) -> Extraction:
    """Sum over results/cache/<teacher>/<corpus>/<view>/index.tsv and the extraction benchmark of each shard
    store it lists (benchmarks/extract/<teacher>-<corpus>-<view>-<shard>.tsv, as workflow/rules/cache.smk)."""
    from pipeline.cache.store import Store

    root = Path(root)
    out = Extraction()
    seconds: list[float | None] = []
    for index in sorted((root / "cache" / teacher).glob("*/*/index.tsv")):
        view, corpus = index.parent.name, index.parent.parent.name
        df = pd.read_csv(index, sep="\t")
        if not {"store", "frames"} <= set(df.columns):
            raise ValueError(f"{index}: not a feature index (needs columns store, frames); re-run index_features")
        stores = list(dict.fromkeys(df["store"]))
        rate = FRAME_RATE
        if stores and Path(stores[0]).exists():
            fp = Store(stores[0]).fingerprint
            rate = float(fp.get("frame_rate", FRAME_RATE))
            out.num_params = fp.get("num_params", out.num_params)
        out.utterances += len(df)
        out.audio_seconds += float(df["frames"].sum()) / rate
        out.bytes += sum(_dir_bytes(Path(s)) for s in stores)
        shards = [m[1] for s in stores if (m := re.search(r"shard(\d+)\.zarr$", str(s)))]
        seconds += [_benchmark_seconds(root / "benchmarks" / "extract" / f"{teacher}-{corpus}-{view}-{i}.tsv")
                    for i in shards]
    known = [s for s in seconds if s is not None]
    out.seconds = sum(known) if known and len(known) == len(seconds) else None
    return out


def read_runtime(path: str | Path) -> dict[str, Any]:
    """An export's runtime JSON (pipeline.export.onnx.measure_runtime); empty when the student is not exported."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the export's runtime JSON ({err}); re-run export_student") from err


def _crop_seconds(info: UpstreamInfo, mean_utterance: float) -> float:
    crop = info.train.get("crop_seconds")
    return float(crop) if crop else mean_utterance


def _online_passes(info: UpstreamInfo) -> int | None:
    steps, batch = info.train.get("steps"), info.train.get("batch_size")
    return int(steps) * int(batch) if steps and batch else None


def head_passes(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Upstream forward passes an uncached head training would run: steps x batch x seeds, per upstream."""
    out: dict[str, int] = {}
    seen = set()
    for r in records:
        key = (r["upstream"], r["task"])
        if key in seen or not r.get("steps") or not r.get("batch_size"):
            continue
        seen.add(key)
        out[r["upstream"]] = out.get(r["upstream"], 0) + int(r["steps"]) * int(r["batch_size"]) * len(r.get("seeds")
                                                                                                        or [0])
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def cost_tables(ext: dict[str, Extraction], infos: dict[str, UpstreamInfo], records: Sequence[dict[str, Any]],
                runtimes: Mapping[str, dict[str, Any]] | None = None) -> tuple[Table, Table]:
    """(teachers, students): cache build cost per teacher (`teacher_extraction` of each) against the teacher
    time an online run would spend; students with their export's ONNX size and real-time factors (`runtimes`,
    `read_runtime` of each)."""
    runtimes = runtimes or {}
    teachers = [i for i in infos.values() if i.kind == "teacher"]
    students = [i for i in infos.values() if i.kind == "student"]
    audio = [e.audio_seconds / e.utterances for e in ext.values() if e.utterances]
    mean_utt = sum(audio) / len(audio) if audio else 0.0
    heads = head_passes(records)

    online_audio: dict[str, float] = {}
    online_passes: dict[str, int] = {}
    for s in students:
        passes = _online_passes(s)
        for t in s.teachers:
            if passes is not None:
                online_passes[t] = online_passes.get(t, 0) + passes
                online_audio[t] = online_audio.get(t, 0.0) + passes * _crop_seconds(s, mean_utt)

    tcols = [Column("teacher", "teacher"), Column("params", "params"), Column("utts", "utterance-views cached"),
             Column("audio_min", "audio (min)"), Column("extract_s", "extraction (s)"),
             Column("speed", "speed (x real time)"), Column("cache_mb", "cache (MB)"),
             Column("distill_passes", "teacher passes, online distillation"),
             Column("head_passes", "teacher passes, online heads"),
             Column("online_s", "online teacher time (s, est.)"), Column("saving", "online / cached")]
    ttable = Table("cost_teachers", "Cost of the teacher feature cache vs running the teachers online", tcols,
                   notes=["Extraction time: sum of the extraction jobs' Snakemake benchmarks (wall seconds); cache: "
                          "bytes on disk of the zarr stores. Online = the teacher in the training loop: one "
                          "forward pass per training example (distillation steps x batch per student of this "
                          "teacher, and head steps x batch x seeds per task where the teacher is a downstream "
                          "upstream), timed at the measured extraction speed. Every pass is avoided by the cache, "
                          "which runs each teacher once per utterance-view."])
    total_online, total_cached = 0.0, 0.0
    for t in teachers:
        e = ext[t.name]
        d_passes, h_passes = online_passes.get(t.name), heads.get(t.name)
        online_s = None
        if e.speed:
            online_s = (online_audio.get(t.name, 0.0) + (h_passes or 0) * mean_utt) / e.speed
            total_online += online_s
            total_cached += e.seconds or 0.0
        ttable.add("", [Cell(t.name), Cell(e.num_params, kind="params"), Cell(e.utterances or None, kind="int"),
                        Cell(e.audio_seconds / 60 if e.utterances else None, kind="sec"), Cell(e.seconds, kind="sec"),
                        Cell(e.speed, kind="x"), Cell(e.bytes / 1e6 if e.bytes else None, kind="mb"),
                        Cell(d_passes, kind="int"), Cell(h_passes, kind="int"), Cell(online_s, kind="sec"),
                        Cell(_ratio(online_s, e.seconds), kind="x")])
    if teachers:
        total = Extraction(sum(e.utterances for e in ext.values()), sum(e.audio_seconds for e in ext.values()),
                           total_cached or None, sum(e.bytes for e in ext.values()))
        ttable.add("", [Cell("total"), Cell(None, kind="params"), Cell(total.utterances, kind="int"),
                        Cell(total.audio_seconds / 60, kind="sec"), Cell(total.seconds, kind="sec"), Cell(None),
                        Cell(total.bytes / 1e6, kind="mb"), Cell(sum(online_passes.values()), kind="int"),
                        Cell(sum(heads.get(t.name, 0) for t in teachers), kind="int"),
                        Cell(total_online or None, kind="sec"), Cell(_ratio(total_online, total_cached), kind="x")])

    scols = [Column("student", "student"), Column("method", "method"), Column("teachers", "teacher(s)"),
             Column("params", "params"), Column("steps", "steps"), Column("batch", "batch"),
             Column("train_s", "training (s)"), Column("dev_cos", "dev target cosine"),
             Column("flat", "flat from step"), Column("passes", "teacher passes avoided"),
             Column("online_s", "online teacher time (s, est.)"), Column("online_total", "online run (s, est.)"),
             Column("onnx_mb", "ONNX (MB)"), Column("rtf_torch", "RTF torch"),
             Column("rtf_onnx", "RTF onnxruntime")]
    stable = Table("cost_students", "Per-student training time from the cache vs an online run", scols,
                   notes=["Dev target cosine: the mean cosine between the student's predictions and its targets "
                          "(teacher layers, cluster posteriors or sentence embeddings) on held-out dev crops after "
                          "training; flat from step: the first dev evaluation within 1 % of that value. "
                          "Training time: the student's config.json train_seconds (the training loop only). "
                          "Online: each training example would need one forward pass of each of the student's "
                          "teachers on its crop (crop_seconds, or the mean utterance for whole-utterance methods), "
                          "timed at the teacher's measured extraction speed; '-' where the teacher has no audio "
                          "cache (text teacher).",
                          "ONNX: size of the export's model.onnx; RTF: real-time factor (compute seconds per second "
                          "of audio, lower is faster) of the student's own torch forward and of onnxruntime on "
                          "model.onnx, one CPU thread each, median of 5 runs on the same 8 s clip, measured when "
                          "the student was exported (beside the run's other jobs)."])
    sums = [0.0, 0, 0.0]
    for s in students:
        passes = _online_passes(s)
        speeds = [ext[t].speed if t in ext else None for t in s.teachers]
        teacher_s = None
        if passes and speeds and all(speeds):
            teacher_s = sum(passes * _crop_seconds(s, mean_utt) / v for v in speeds)
        total = s.train_seconds + teacher_s if s.train_seconds is not None and teacher_s is not None else None
        all_passes = passes * len(s.teachers) if passes is not None else None
        rt = runtimes.get(s.name, {})
        onnx_mb = rt["onnx_bytes"] / 1e6 if "onnx_bytes" in rt else None
        stable.add("", [Cell(s.name), Cell(label(s)), Cell(", ".join(s.teachers)), Cell(s.num_params, kind="params"),
                        Cell(s.train.get("steps"), kind="int"), Cell(s.train.get("batch_size"), kind="int"),
                        Cell(s.train_seconds, kind="sec"), Cell(s.dev_cos, kind="float"),
                        Cell(s.dev_flat_step, kind="int"), Cell(all_passes, kind="int"), Cell(teacher_s, kind="sec"),
                        Cell(total, kind="sec"), Cell(onnx_mb, kind="mb"), Cell(rt.get("torch_rtf"), kind="float"),
                        Cell(rt.get("onnx_rtf"), kind="float")])
        sums = [sums[0] + (s.train_seconds or 0.0), sums[1] + (all_passes or 0), sums[2] + (teacher_s or 0.0)]
    if students:
        stable.add("", [Cell("total"), Cell(""), Cell(""), Cell(None, kind="params"), Cell(None), Cell(None),
                        Cell(sums[0], kind="sec"), Cell(None), Cell(None), Cell(sums[1], kind="int"),
                        Cell(sums[2] or None, kind="sec"),
                        Cell(sums[0] + sums[2] if sums[2] else None, kind="sec"), Cell(None), Cell(None), Cell(None)])
    return ttable, stable
