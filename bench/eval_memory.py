"""Evaluate-job memory against cached hours, and head-training speed streaming from the cache vs in memory.

1. Peak RSS: a cache of 20 one-hour stores in the real store format (`StoreWriter`; random float16 frames, 50 Hz,
   utterances of 2-20 s, 1 in 40 dev and 1 in 40 test) in a temporary directory; `python -m pipeline evaluate`
   (task PR: linear CTC head, the frame-level head whose steps are cheapest, so reading weighs most) on indexes
   over the first 1, 5 and 20 stores, each in a fresh process; its peak RSS from `os.wait4`.
2. Speed: PR and ASR heads on a cache shaped like the default run's PR / ASR data (Whisper base's 7 x 512;
   600 training utterances of keywords, commands and sentences, 55 dev), trained three ways interleaved in one
   process on one torch thread: `in_memory` (the path before streaming: every training and dev utterance read
   and normalised up front, batches padded in the training thread), `pipeline` (what `evaluate` does: these
   splits fit in HOLD_BYTES, so they are held) and `streaming` (every batch read, normalised and padded from the
   cache by the prefetching loader, as splits larger than HOLD_BYTES are). Each side's clock covers reading the
   features and training, dev evaluations included (every 50 / 30 steps, as the default run's 1000 / 600 steps
   make them); the sides' dev curves and weights are checked identical.

    .venv/bin/python -m bench.eval_memory            # writes bench/eval_memory.{json,md}
    .venv/bin/python -m bench.eval_memory --quick    # smoke run (small cache, few steps), to bench/out/
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from bench.harness import ROOT, Clock, interleave, machine, rate_ratio, summarise
from pipeline.cache.extract import expected_fingerprint
from pipeline.cache.index import build_index
from pipeline.cache.store import StoreWriter
from pipeline.config import validate_config
from pipeline.corpus.manifest import write_manifest
from pipeline.downstream import data, run
from pipeline.downstream.featurizer import WeightedSum
from pipeline.downstream.heads import DownstreamModel
from pipeline.downstream.tasks import get_task
from pipeline.workflow import Layout

FRAME_RATE = 50
PHONES = [f"p{i}" for i in range(40)]
RSS_LIMIT_GB = 3.0
MAX_COST = 0.10  # streaming may cost at most 10 % of in memory's steps/s (judged on CPU time: see bench/README)
SPLIT_EVERY = 40  # of every 40 utterances of a store, one is dev and one test


@dataclass(frozen=True)
class Scale:
    """Sizes of one run of the benchmark."""

    hours: tuple[float, ...]  # cached audio the evaluate jobs see
    store_hours: float  # audio per store (the 20 h cache is hours[-1] / store_hours stores)
    layers: int
    dim: int
    rss_steps: int  # PR head steps of each evaluate job (batch 32)
    speed_steps: dict[str, int]  # head steps per repeat, per task
    speed_train: int  # training utterances of the speed corpus
    repeats: int


FULL = Scale((1, 5, 20), 1.0, 4, 128, 60, {"pr": 200, "asr": 40}, 600, 5)
QUICK = Scale((0.02, 0.05), 0.01, 2, 16, 6, {"pr": 10, "asr": 4}, 40, 1)


# ---------------------------------------------------------------- caches


def utterances(rng: np.random.Generator, seconds: float, prefix: str) -> list[dict[str, Any]]:
    """Rows of LibriSpeech-like utterances (2-20 s) filling `seconds`: id, frames, split, phones, text."""
    rows, total = [], 0.0
    while total < seconds:
        dur = float(rng.uniform(2.0, 20.0))
        split = {0: "dev", 1: "test"}.get(len(rows) % SPLIT_EVERY, "train")
        rows.append(labelled(rng, f"{prefix}-{len(rows):05d}", int(dur * FRAME_RATE), split))
        total += dur
    return rows


def labelled(rng: np.random.Generator, utt: str, frames: int, split: str) -> dict[str, Any]:
    """A manifest row with random phones (one per 5 frames) and text (one character per 4 frames)."""
    phones = " ".join(rng.choice(PHONES, size=max(1, frames // 5)))
    text = "".join(rng.choice(list("abcdefghij "), size=max(1, frames // 4))).strip() or "a"
    return {"utt_id": utt, "frames": frames, "split": split, "phones": phones, "text": text}


def write_store(path: Path, rows: list[dict[str, Any]], pool: np.ndarray, fingerprint: dict[str, Any],
                rng: np.random.Generator) -> str:
    """A feature store of `rows`, each utterance a random run of frames from `pool`."""
    with StoreWriter(path, fingerprint) as writer:
        for r in rows:
            start = int(rng.integers(0, len(pool) - r["frames"]))
            writer.add(f"{r['utt_id']}@0", pool[start:start + r["frames"]])
    return str(path)


def frame_pool(rng: np.random.Generator, layers: int, dim: int, frames: int = 4000) -> np.ndarray:
    return rng.standard_normal((frames, layers, dim), dtype=np.float32).astype(np.float16)


def job_config(results: Path, tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A validated config: upstream `fake` (never loaded), `tasks` scored on the clean condition only."""
    return validate_config({
        "seed": 1, "results": str(results), "views": {}, "cache": {}, "students": {},
        "corpus": {"synthetic": {"voices": 1, "keyword": 1, "command": 0, "sentence": 1}, "real": {"asterisk": False}},
        "teachers": {"fake": {"kind": "hf", "model": "none"}},
        "downstream": {"upstreams": ["fake"], "tasks": tasks, "conditions": ["clean"]}})


def results_tree(cfg: dict[str, Any], stores: list[str], rows: list[dict[str, Any]]) -> None:
    """Manifest and feature index where `evaluate` looks for them (`Layout`)."""
    layout = Layout(cfg)
    manifest = pd.DataFrame([{"utt_id": r["utt_id"], "path": f"{r['utt_id']}.flac",
                              "num_samples": r["frames"] * 320, "sample_rate": 16000, "split": r["split"],
                              "speaker": "s", "phones": r["phones"], "text": r["text"]} for r in rows])
    write_manifest(manifest, Path(layout.manifest("synthetic")))
    build_index(stores, layout.feature_index("fake", "synthetic", "clean"))


# ---------------------------------------------------------------- 1. peak RSS


def peak_rss(config: Path, log: Path) -> dict[str, Any]:
    """Run one evaluate job (task PR) in a fresh process; its peak RSS and wall time."""
    cmd = [sys.executable, "-m", "pipeline", "evaluate", "--config", str(config), "--upstream", "fake",
           "--tasks", "pr", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with Clock() as clock, open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"evaluate failed ({proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return {"peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3), "wall_s": round(clock.wall, 1)}


def rss_part(tmp: Path, scale: Scale, seed: int) -> dict[str, Any]:
    """Write the cache (one store per `store_hours`), then one evaluate job per size."""
    rng = np.random.default_rng(seed)
    pool = frame_pool(rng, scale.layers, scale.dim)
    tasks = {"pr": {"steps": scale.rss_steps, "lr": 1e-2, "batch_size": 32}}
    fingerprint = expected_fingerprint(job_config(tmp, tasks), "fake")
    n_stores = round(scale.hours[-1] / scale.store_hours)
    stores, rows = [], []
    with Clock() as clock:
        for s in range(n_stores):
            rows.append(utterances(rng, scale.store_hours * 3600, f"ls{s:03d}"))
            stores.append(write_store(tmp / "cache" / f"shard{s}.zarr", rows[-1], pool, fingerprint, rng))
    frames = sum(r["frames"] for part in rows for r in part)
    out = {"stores": n_stores, "frames": frames, "bytes": frames * scale.layers * scale.dim * 2,
           "write_s": round(clock.wall, 1), "runs": []}
    for hours in scale.hours:
        n = round(hours / scale.store_hours)
        subset = [r for part in rows[:n] for r in part]
        cfg = job_config(tmp / f"h{hours}", tasks)
        results_tree(cfg, stores[:n], subset)
        path = tmp / f"h{hours}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cached = sum(r["frames"] for r in subset) * scale.layers * scale.dim * 2
        res = peak_rss(path, tmp / f"h{hours}.log")
        out["runs"].append({"hours": hours, "cached_gb": round(cached / 1e9, 3), "utterances": len(subset), **res})
        print(f"  {hours} h: peak RSS {res['peak_rss_gb']} GB ({res['wall_s']} s)", flush=True)
    return out


# ---------------------------------------------------------------- 2. speed


def small_corpus(rng: np.random.Generator, n_train: int) -> list[dict[str, Any]]:
    """The default run's PR / ASR data in shape: keywords (11-46 frames), commands (33-146), sentences (50-183);
    training on all three families, dev on commands and sentences (as `eval_families` scores them)."""
    families = [(0.5, 11, 46), (0.3, 33, 146), (0.2, 50, 183)]
    rows = []
    for split, n in (("train", n_train), ("dev", max(4, n_train * 55 // 600))):
        p = [f[0] for f in families] if split == "train" else [0.0, 0.6, 0.4]
        for i in range(n):
            _, lo, hi = families[int(rng.choice(3, p=p))]
            rows.append(labelled(rng, f"{split}{i:04d}", int(rng.integers(lo, hi + 1)), split))
    return rows


@contextlib.contextmanager
def evals_every(steps: int, every: int) -> Iterator[None]:
    """Dev evaluations every `every` steps in a run of `steps` (the default run's cadence in a shorter run)."""
    saved = run.EVALS_PER_RUN
    run.EVALS_PER_RUN = max(1, steps // every)
    try:
        yield
    finally:
        run.EVALS_PER_RUN = saved


SIDES = ("in_memory", "pipeline", "streaming")


def speed_side(index: str, manifest: pd.DataFrame, task: str, settings: dict[str, Any], name: str,
               result: dict[str, Any]) -> Callable[[], dict[str, float]]:
    """One side: read the features its way, train one head (seed 0); `result` gets the run's curve and weights."""
    spec = get_task(task)

    def side() -> dict[str, float]:
        features = data.Features(index, "fake", run.NORMALISE)
        with Clock() as clock, contextlib.redirect_stderr(io.StringIO()):  # no progress bars
            if name == "pipeline":  # what `evaluate` does: held when they fit in HOLD_BYTES
                splits = [run._split(features, manifest, spec, s, False) for s in ("train", "dev")]
            else:
                rows = [data.labelled_rows(manifest, spec, s) for s in ("train", "dev")]
                splits = [data.make_split(features, [f"{u}@0" for u in r["utt_id"]], r[spec.column].tolist(),
                                          False, "") for r in rows]
            if name == "in_memory":  # the path before streaming: every item read and normalised up front
                splits = [data.in_memory(s.keys, s.labels, [features.read(k) for k in s.keys]) for s in splits]
            codec = spec.fit_codec(splits[0].labels)
            torch.manual_seed(0)
            model = DownstreamModel(WeightedSum(features.shape[0], run.LAYER_NORM),
                                    spec.make_head(features.shape[1], codec.n_outputs))
            best, curve = run._fit(model, spec, codec, *splits, settings, 0, task)
        result.update(curve=curve, model=best["model"])
        return {"wall": clock.wall, "cpu": clock.cpu, "units": settings["steps"]}

    return side


def speed_part(tmp: Path, scale: Scale, seed: int) -> dict[str, Any]:
    """PR and ASR heads trained in memory, streaming, and streaming with nothing kept, interleaved."""
    rng = np.random.default_rng(seed)
    rows = small_corpus(rng, scale.speed_train)
    cfg = job_config(tmp / "small", {})
    pool = frame_pool(rng, 7, 512 if scale is FULL else scale.dim, 400)
    fingerprint = expected_fingerprint(cfg, "fake")
    stores = [write_store(tmp / "small-cache" / f"shard{s}.zarr", rows[s::2], pool, fingerprint, rng)
              for s in range(2)]
    results_tree(cfg, stores, rows)
    layout = Layout(cfg)
    manifest = pd.read_csv(layout.manifest("synthetic"), sep="\t", keep_default_na=False)
    index = layout.feature_index("fake", "synthetic", "clean")
    out = {}
    for task, every, extra in (("pr", 50, {"lr": 3e-2}), ("asr", 30, {"lr": 1.5e-2, "schedule": "linear"})):
        steps = scale.speed_steps[task]
        settings = {"steps": steps, "batch_size": 16, **extra}
        runs: dict[str, dict[str, Any]] = {name: {} for name in SIDES}
        sides = {name: speed_side(index, manifest, task, settings, name, runs[name]) for name in SIDES}
        with evals_every(steps, every):
            samples = interleave(sides, scale.repeats, seed)
        ref = runs["in_memory"]
        same = all(r["curve"] == ref["curve"] and all(torch.equal(r["model"][k], ref["model"][k]) for k in r["model"])
                   for r in runs.values())
        if not same:
            raise RuntimeError(f"{task}: the streaming and in-memory heads differ; the streaming path changed results")
        out[task] = {"settings": settings, "eval_every": every, "identical_heads": same,
                     **{name: summarise(s) for name, s in samples.items()},
                     "pipeline_vs_in_memory": rate_ratio(samples["pipeline"], samples["in_memory"]),
                     "streaming_vs_in_memory": rate_ratio(samples["streaming"], samples["in_memory"])}
        print(f"  {task}: steps/s pipeline / in memory = {out[task]['pipeline_vs_in_memory']['median']:.3f}, "
              f"streaming / in memory = {out[task]['streaming_vs_in_memory']['median']:.3f}", flush=True)
    return out


# ---------------------------------------------------------------- report


def markdown(res: dict[str, Any]) -> str:
    """The summary tables and the verdicts."""
    s, rss, checks, load = res["scale"], res["rss"], res["checks"], res["machine"]
    lines = [f"Cache: {rss['stores']} stores, {rss['frames']:,} frames of {s['layers']} layers x {s['dim']} float16 "
             f"({rss['bytes'] / 1e9:.2f} GB, written in {rss['write_s']} s). Evaluate job: PR, {s['rss_steps']} "
             f"steps of batch 32, scored on the clean test split. Load average "
             f"{load['loadavg_start'][0]:.1f} at the start, {load['loadavg_end'][0]:.1f} at the end.",
             "",
             "| cached audio | cached features | utterances | evaluate job: peak RSS | wall |",
             "|---:|---:|---:|---:|---:|"]
    for r in rss["runs"]:
        lines.append(f"| {r['hours']} h | {r['cached_gb']:.2f} GB | {r['utterances']:,} | {r['peak_rss_gb']:.2f} GB | "
                     f"{r['wall_s']} s |")
    lines += ["", "The path before streaming held every frame of the training, dev and test splits (the cached "
              "features column) on top of the process's baseline.", "",
              "Steps/s ratios, median over repeats of the ratio within a repeat: wall, CPU [CPU quartiles].", "",
              "| task | steps per repeat | in memory: steps/s | pipeline / in memory | streaming / in memory |",
              "|---|---:|---:|---:|---:|"]
    for task, r in res["speed"].items():
        cells = [f"{x['median']:.3f}, {x['cpu_median']:.3f} [{x['cpu_quartiles'][0]:.3f}, {x['cpu_quartiles'][1]:.3f}]"
                 for x in (r["pipeline_vs_in_memory"], r["streaming_vs_in_memory"])]
        lines.append(f"| {task.upper()} | {r['settings']['steps']} | {r['in_memory']['units_per_s_median']:.1f} | "
                     f"{cells[0]} | {cells[1]} |")
    lines += ["", f"Peak RSS under {RSS_LIMIT_GB:.0f} GB at every size: **{checks['rss_ok']}**. The pipeline within "
              f"{MAX_COST:.0%} of in memory (median CPU ratio >= {1 - MAX_COST:.2f}): **{checks['pipeline_ok']}**; "
              f"every batch streamed, within {MAX_COST:.0%}: **{checks['streaming_ok']}**. Heads identical on every "
              f"side: **{checks['identical']}**."]
    return "\n".join(lines) + "\n"


def main(quick: bool, seed: int, tmp_dir: str | None, out: str) -> dict[str, Any]:
    """Run both parts in a temporary directory (removed after); write `out`.json and `out`.md."""
    torch.set_num_threads(1)
    scale = QUICK if quick else FULL
    tmp = Path(tempfile.mkdtemp(prefix="eval_memory-", dir=tmp_dir))
    try:
        res: dict[str, Any] = {"machine": machine(1), "scale": scale.__dict__, "seed": seed}
        print("peak RSS of evaluate jobs", flush=True)
        res["rss"] = rss_part(tmp, scale, seed)
        print("head training speed", flush=True)
        res["speed"] = speed_part(tmp, scale, seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    res["checks"] = {"rss_ok": all(r["peak_rss_gb"] < RSS_LIMIT_GB for r in res["rss"]["runs"]),
                     **{f"{side}_ok": all(r[f"{side}_vs_in_memory"]["cpu_median"] >= 1 - MAX_COST
                                          for r in res["speed"].values()) for side in ("pipeline", "streaming")},
                     "identical": all(r["identical_heads"] for r in res["speed"].values())}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(res, indent=1) + "\n")
    Path(f"{out}.md").write_text(markdown(res))
    return res


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cache and few steps (a smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp-dir", default=None)
    ap.add_argument("--out", default=None, help="output prefix (default bench/eval_memory, bench/out/... if --quick)")
    args = ap.parse_args()
    out = args.out or str(ROOT / ("bench/out/eval_memory" if args.quick else "bench/eval_memory"))
    res = main(args.quick, args.seed, args.tmp_dir, out)
    print(markdown(res))


if __name__ == "__main__":
    cli()
