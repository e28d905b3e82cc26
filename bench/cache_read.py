"""Random-utterance read throughput of the feature cache against the numpy-memmap limit.

Builds one synthetic teacher cache (ragged utterances x layers x dim, float16) three ways in a
temporary directory -- a Store with compression "none", a Store with "zstd", and a raw `.npy`
memmap of the same frames plus offsets -- then reads utterances in random order from each reader,
side by side in one run (readers take turns in short slices), and reports the median GB/s of
float16 bytes and its ratio to the raw memmap, by wall time and by CPU time. Also reports each
format's size on disk against the float32 bytes of the same data.

    .venv/bin/python -m bench.cache_read            # ~500 MB, under 2 minutes on 2 cores
    .venv/bin/python -m bench.cache_read --quick    # ~150 MB, ~20 s
    .venv/bin/python -m bench.cache_read --size 1G

Writes bench/out/cache_read.json and bench/out/cache_read.md (see bench/README.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import zarr

from pipeline.cache.index import FeatureCache
from pipeline.cache.store import Store, StoreWriter

OUT = Path(__file__).resolve().parent / "out"
MIN_READS = 10  # a time slice of a slow reader still reads at least this many utterances
SUB_SECONDS = 0.05  # methods take turns in slices this long

# name -> (label, what it measures)
METHODS = {
    "memmap": ("raw numpy memmap", "np.load(mmap_mode='r')[a:b] on a plain .npy: the physical limit"),
    "store_none": ("Store none (memmap fast path)", "Store[i] on the uncompressed store"),
    "cache_none": ("FeatureCache.get (none)", "FeatureCache.get(key) over the same uncompressed store"),
    "store_zstd": ("Store zstd (zarr API)", "Store[i] on the zstd store: zarr API fallback"),
    "zarr_none": ("zarr API on none store", "zarr.open_group(path)['frames'][a:b] on the uncompressed store"),
}


def parse_size(text: str) -> int:
    """'300M', '1G', '1.5G' or a plain number of MB -> bytes."""
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], None)
    value = float(text[:-1] if scale else text)
    return int(value * (scale or 1e6))


def synth_utterance(rng: np.random.Generator, frames: int, scale: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Teacher-like frames: per-(layer, dim) mean and scale, short temporal correlation, float16."""
    x = rng.standard_normal((frames + 2, *scale.shape), dtype=np.float32)
    x = (x[2:] + x[1:-1] + x[:-2]) * np.float32(1 / np.sqrt(3))  # neighbouring frames correlate
    x *= scale
    x += mean
    return x.astype(np.float16)


def build(tmp: Path, lengths: np.ndarray, layers: int, dim: int, seed: int) -> dict[str, Path]:
    """Write the same frames to a none Store, a zstd Store and a raw .npy memmap; return their paths."""
    rng = np.random.default_rng(seed)
    scale = rng.lognormal(0.0, 0.5, size=(layers, dim)).astype(np.float32)
    mean = (rng.standard_normal((layers, dim)) * 0.3).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    paths = {"none": tmp / "store_none", "zstd": tmp / "store_zstd", "raw": tmp / "raw.npy",
             "offsets": tmp / "raw_offsets.npy"}
    raw = np.lib.format.open_memmap(paths["raw"], mode="w+", dtype=np.float16,
                                    shape=(int(offsets[-1]), layers, dim))
    fingerprint = {"bench": "cache_read", "seed": seed, "layers": layers, "dim": dim}
    with (StoreWriter(paths["none"], fingerprint, "float16", "none") as w_none,
          StoreWriter(paths["zstd"], fingerprint, "float16", "zstd") as w_zstd):
        for i, n in enumerate(lengths):
            x = synth_utterance(rng, int(n), scale, mean)
            key = f"utt{i:06d}"
            w_none.add(key, x)
            w_zstd.add(key, x)
            raw[offsets[i]:offsets[i + 1]] = x
    raw.flush()
    del raw
    np.save(paths["offsets"], offsets)
    return paths


def files_under(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]


def disk_size(path: Path) -> dict[str, int]:
    """Sum of file sizes (apparent, `du -b`) and of allocated blocks (`du -B1`)."""
    files = files_under(path)
    stats = [f.stat() for f in files]
    return {"files": len(files), "apparent_bytes": sum(s.st_size for s in stats),
            "allocated_bytes": sum(s.st_blocks * 512 for s in stats)}


def settle(paths: list[Path]) -> None:
    """fsync what was written (no writeback during timing), then read every byte once (warm cache)."""
    for f in (f for p in paths for f in files_under(p)):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
            while fh.read(16 << 20):
                pass


def readers(paths: dict[str, Path], offsets: list[int]) -> dict[str, Callable[[int], np.ndarray]]:
    """One `read(i) -> rows of utterance i` per method; everything opened outside the timed loop."""
    raw = np.load(paths["raw"], mmap_mode="r")
    store_none, store_zstd = Store(paths["none"]), Store(paths["zstd"])
    if store_none._maps is None:
        raise SystemExit("Store(compression='none') did not take the memmap fast path; the benchmark "
                         "would measure the zarr API twice. Check pipeline/cache/store.py _memmaps().")
    if store_zstd._maps is not None:
        raise SystemExit("Store(compression='zstd') claims the memmap fast path; that would read garbage")
    cache = FeatureCache([Store(paths["none"])])
    ids = list(cache.stores[0].ids)
    frames = zarr.open_group(str(paths["none"]), mode="r")["frames"]
    return {
        "memmap": lambda i: raw[offsets[i]:offsets[i + 1]],
        "store_none": store_none.__getitem__,
        "cache_none": lambda i: cache.get(ids[i]),
        "store_zstd": store_zstd.__getitem__,
        "zarr_none": lambda i: frames[offsets[i]:offsets[i + 1]],
    }


def check(read: dict[str, Callable[[int], np.ndarray]], n: int, rng: np.random.Generator,
          crossing: list[int]) -> None:
    """Every reader returns the same bytes as the raw memmap: first, last, a few random utterances
    and the first that straddles two shard files (the Store's concatenate path)."""
    for i in sorted({0, n - 1, *rng.integers(0, n, 3).tolist(), *crossing[:1]}):
        ref = np.asarray(read["memmap"](i))
        for name, fn in read.items():
            got = np.asarray(fn(i))
            if got.shape != ref.shape or not np.array_equal(got, ref):
                raise SystemExit(f"{name} returned different rows for utterance {i}; the store is wrong")


def order_stream(seed: int, repeat: int, n: int) -> Iterator[int]:
    """Successive random permutations of range(n); the same stream for every method in a repeat."""
    rng = np.random.default_rng((seed, repeat))
    return itertools.chain.from_iterable(rng.permutation(n).tolist() for _ in itertools.count())


def one_pass(read: Callable[[int], np.ndarray], order: Iterator[int], nbytes: list[int],
             buf: np.ndarray | None, seconds: float, min_reads: int = MIN_READS) -> list[float]:
    """Read utterances in `order` for `seconds` of wall time (and at least `min_reads`).

    Each utterance is copied into `buf`, touching every byte once, as a loader filling a batch
    buffer would. With `buf` None only the read call is timed: the reader's per-call cost, which
    for a memmap reader is pure Python/numpy bookkeeping.
    Returns [wall seconds, process CPU seconds, bytes, reads]. CPU time (all threads of this
    process) leaves out time spent descheduled, which on shared cores is most of the noise.
    """
    clock, cpu = time.perf_counter, time.process_time
    done = total = 0
    t0, c0 = clock(), cpu()
    for i in order:
        x = read(i)
        if buf is not None:
            np.copyto(buf[:len(x)], x)
        total += nbytes[i]
        done += 1
        if done >= min_reads and clock() - t0 >= seconds:
            break
    return [clock() - t0, cpu() - c0, total, done]


def measure(read: dict[str, Callable[[int], np.ndarray]], offsets: np.ndarray, row_shape: tuple[int, ...],
            repeats: int, seconds: float, seed: int) -> dict[str, dict]:
    """Median GB/s per method over `repeats`; within a repeat the methods take turns in short slices.

    Each repeat gives every method `seconds` of reading (and at least MIN_READS reads), taken in
    turns of SUB_SECONDS, in a new random order every round, so that load from other processes on
    shared cores and the after-effects of one reader on the next hit all methods alike.
    """
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    nbytes = (lengths * int(np.prod(row_shape)) * 2).tolist()
    buf = np.empty((int(lengths.max()), *row_shape), np.float16)
    names = list(read)
    for name in names:  # warm-up slice: page tables, lazily opened shard maps, zarr metadata caches
        one_pass(read[name], order_stream(seed, 0, n), nbytes, buf, seconds / 2)
    runs: dict[str, list[list[float]]] = {name: [] for name in names}
    turn_rng = np.random.default_rng((seed, 0, 1))
    for r in range(repeats):
        orders = {name: order_stream(seed, r + 1, n) for name in names}  # same random order for all
        acc = {name: [0.0, 0.0, 0, 0] for name in names}
        todo = list(names)
        while todo:
            # a fresh order every round, so no reader always runs right after the same one (the
            # zarr API readers leave tens of MB of freshly allocated buffers and a cold CPU cache)
            for name in turn_rng.permutation(todo).tolist():
                got = one_pass(read[name], orders[name], nbytes, buf, SUB_SECONDS, 1)
                acc[name] = [x + y for x, y in zip(acc[name], got, strict=True)]
            todo = [m for m in todo if acc[m][0] < seconds or acc[m][3] < MIN_READS]
        for name in names:
            runs[name].append(acc[name])
    call_us = {name: float("inf") for name in names}  # per-call CPU cost without the copy: best of 5
    for k in range(5):
        for name in turn_rng.permutation(names).tolist():
            _, c, _, reads = one_pass(read[name], order_stream(seed, repeats + 1 + k, n), nbytes, None,
                                      seconds / 10, 1)
            call_us[name] = min(call_us[name], c / reads * 1e6)
    results = {}
    for name in names:
        wall = [b / t / 1e9 for t, _, b, _ in runs[name]]
        cpu = [b / c / 1e9 for _, c, b, _ in runs[name]]
        results[name] = {
            "label": METHODS[name][0], "what": METHODS[name][1],
            "gb_per_s_median": statistics.median(wall), "gb_per_s_best": max(wall), "gb_per_s": wall,
            "gb_per_cpu_s_median": statistics.median(cpu), "gb_per_cpu_s": cpu,
            "us_per_read_median": statistics.median(t / k * 1e6 for t, _, _, k in runs[name]),
            "cpu_us_per_read_median": statistics.median(c / k * 1e6 for _, c, _, k in runs[name]),
            "cpu_us_per_call_no_copy": call_us[name],
            "reads_per_repeat": [k for *_, k in runs[name]], "utterances": n,
        }
    base = results["memmap"]
    for res in results.values():
        # headline ratios: median over repeats of the ratio within a repeat (same conditions)
        per_repeat = [g / m for g, m in zip(res["gb_per_s"], base["gb_per_s"], strict=True)]
        per_repeat_cpu = [g / m for g, m in zip(res["gb_per_cpu_s"], base["gb_per_cpu_s"], strict=True)]
        res["ratio_vs_memmap"] = statistics.median(per_repeat)
        res["ratio_vs_memmap_per_repeat"] = per_repeat
        res["ratio_vs_memmap_cpu"] = statistics.median(per_repeat_cpu)
        res["ratio_vs_memmap_cpu_per_repeat"] = per_repeat_cpu
        res["ratio_vs_memmap_best"] = res["gb_per_s_best"] / base["gb_per_s_best"]
        extra = res["cpu_us_per_call_no_copy"] - base["cpu_us_per_call_no_copy"]
        res["overhead_cpu_us_per_call"] = extra
        # the ceiling the reader's own extra per-call cost leaves: copy time / (copy time + extra)
        copy_us = base["cpu_us_per_read_median"]
        res["ratio_from_call_overhead"] = copy_us / (copy_us + extra)
    return results


def machine() -> dict:
    info = {
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": next((ln.split(":", 1)[1].strip()
                           for ln in Path("/proc/cpuinfo").read_text().splitlines()
                           if ln.startswith("model name")), platform.processor()),
        "platform": platform.platform(), "python": sys.version.split()[0],
        "numpy": np.__version__, "zarr": zarr.__version__, "loadavg_start": list(os.getloadavg()),
    }
    try:
        import numcodecs
        info["numcodecs"] = numcodecs.__version__
    except ImportError:
        pass
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
    info["mem_total_gb"] = round(int(mem[1]) * 1024 / 1e9, 1)
    return info


def markdown(report: dict) -> str:
    cfg, res, sizes = report["config"], report["throughput"], report["disk"]
    lines = [
        f"# cache_read: {cfg['utterances']} utterances, {cfg['frames_total']} frames x "
        f"{cfg['layers']} layers x "
        f"{cfg['dim']} float16 = {cfg['float16_bytes'] / 1e6:.0f} MB "
        f"({cfg['repeats']} repeats, warm cache, {report['machine']['cpus_usable']} CPUs, "
        f"load {report['machine']['loadavg_start'][0]:.1f})",
        "",
        f"Random-utterance reads for {cfg['seconds_per_slice']} s per reader per repeat (readers take "
        "turns in 50 ms slices, random order), each utterance copied into a buffer. Ratios vs memmap are "
        "medians over repeats of the ratio within a repeat, by wall time and by this process's CPU time "
        "(CPU time leaves out time descheduled by other load). Extra us/call: CPU cost of a read call "
        "without the copy, minus the memmap's; ceiling = memmap CPU us/read / (that + extra). "
        "Compare ratios, not GB/s across machines.",
        "",
        "| reader | GB/s (median) | ratio vs memmap | GB/CPU-s (median) | ratio vs memmap (CPU) | "
        "us/read | extra us/call | ceiling from extra | reads/repeat |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.values():
        reads = r["reads_per_repeat"]
        span = f"{min(reads)}" if min(reads) == max(reads) else f"{min(reads)}-{max(reads)}"
        lines.append(f"| {r['label']} | {r['gb_per_s_median']:.3f} | {r['ratio_vs_memmap']:.3f} | "
                     f"{r['gb_per_cpu_s_median']:.3f} | {r['ratio_vs_memmap_cpu']:.3f} | "
                     f"{r['us_per_read_median']:.0f} | {r['overhead_cpu_us_per_call']:.1f} | "
                     f"{r['ratio_from_call_overhead']:.3f} | {span} |")
    lines += ["", f"Store none: {cfg['store_none_shard_files']} shard files of "
              f"{cfg['store_none_shard_rows']} rows; {cfg['store_none_utterances_crossing_shards']} of "
              f"{cfg['utterances']} utterances straddle two of them and are read as two slices + "
              "np.concatenate (a fresh array, an extra copy).",
              "", "On disk (sum of file sizes) vs the same data as raw float32:", "",
              "| format | files | MB | ratio vs float32 | ratio vs raw float16 | allocated MB |",
              "|---|---:|---:|---:|---:|---:|"]
    for s in sizes.values():
        lines.append(f"| {s['label']} | {s['files']} | {s['apparent_bytes'] / 1e6:.1f} | "
                     f"{s['ratio_vs_float32']:.3f} | {s['ratio_vs_float16']:.3f} | "
                     f"{s['allocated_bytes'] / 1e6:.1f} |")
    return "\n".join(lines) + "\n"


def main(size: str | None, utterances: int, min_frames: int, max_frames: int, layers: int, dim: int,
         repeats: int, seconds: float, quick: bool, seed: int, tmp_dir: str | None, keep: bool,
         out: str | None) -> dict:
    """Build the stores, check every reader, time them side by side; write JSON + Markdown to `out` (if given)."""
    if quick:
        utterances, seconds = min(utterances, 120), min(seconds, 0.2)
    t_start = time.perf_counter()
    row_bytes = layers * dim * 2
    rng = np.random.default_rng(seed)
    if size:
        utterances = max(2, round(parse_size(size) / (row_bytes * (min_frames + max_frames) / 2)))
    lengths = rng.integers(min_frames, max_frames + 1, utterances)
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench_cache_read_", dir=tmp_dir))
    try:
        t0 = time.perf_counter()
        paths = build(tmp, lengths, layers, dim, seed)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        settle([paths["none"], paths["zstd"], paths["raw"]])
        t_settle = time.perf_counter() - t0
        offsets = np.load(paths["offsets"])
        read = readers(paths, offsets.tolist())
        shard_rows = Store(paths["none"])._shard_rows
        first_shard, last_shard = offsets[:-1] // shard_rows, (offsets[1:] - 1) // shard_rows
        crossing = np.flatnonzero(first_shard != last_shard).tolist()
        check(read, utterances, rng, crossing)
        t0 = time.perf_counter()
        throughput = measure(read, offsets, (layers, dim), repeats, seconds, seed)
        t_measure = time.perf_counter() - t0
        float16_bytes = int(offsets[-1]) * row_bytes
        disk = {}
        for key, label in (("raw", "raw float16 .npy (memmap)"), ("none", "Store none"),
                           ("zstd", "Store zstd")):
            d = disk_size(paths[key])
            d.update(label=label, ratio_vs_float32=d["apparent_bytes"] / (2 * float16_bytes),
                     ratio_vs_float16=d["apparent_bytes"] / float16_bytes)
            disk[key] = d
        shards = -(-int(offsets[-1]) // shard_rows)
        # zarr pads the last inner chunk to full size; plus each shard file's chunk index
        padding = disk_size(paths["none"] / "frames" / "c")["apparent_bytes"] - float16_bytes
        meta_zstd = json.loads((paths["zstd"] / "frames" / "zarr.json").read_text())
        inner_zstd = meta_zstd["codecs"][0]["configuration"]["chunk_shape"][0]
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    report = {
        "benchmark": "cache_read",
        "config": {
            "utterances": utterances, "min_frames": min_frames, "max_frames": max_frames,
            "frames_total": int(offsets[-1]), "layers": layers, "dim": dim, "dtype": "float16",
            "float16_bytes": float16_bytes, "float32_bytes": 2 * float16_bytes, "repeats": repeats,
            "seconds_per_slice": seconds, "min_reads_per_slice": MIN_READS, "quick": quick, "seed": seed,
            "store_none_shard_rows": shard_rows, "store_none_shard_files": shards,
            # read by Store.rows as two memmap slices + np.concatenate (a fresh array, an extra copy)
            "store_none_utterances_crossing_shards": len(crossing), "store_zstd_inner_chunk_rows": inner_zstd,
            "store_none_padding_bytes": padding,
            "materialise": "np.copyto into a preallocated buffer (every byte read once)",
        },
        "machine": info,
        "throughput": throughput,
        "disk": disk,
        "seconds": {"build": t_build, "fsync_and_warm": t_settle, "measure": t_measure,
                    "total": time.perf_counter() - t_start},
    }
    if out is None:  # called from bench.run_all, which writes its own summary
        return report
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cache_read.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out_dir / "cache_read.md").write_text(table)
    print(table)
    print(f"total {report['seconds']['total']:.1f} s; wrote {out_dir / 'cache_read.json'} and cache_read.md")
    return report


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cache_read", description=__doc__.split("\n")[0])
    p.add_argument("--size", default=None,
                   help="target float16 bytes, e.g. 300M or 1G (overrides --utterances)")
    p.add_argument("--utterances", type=int, default=400)
    p.add_argument("--min-frames", type=int, default=50)
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--layers", type=int, default=7)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.5, help="time slice per reader per repeat")
    p.add_argument("--quick", action="store_true", help="~20 s: 120 utterances (~150 MB), 0.2 s slices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp-dir", default=None, help="where to build the stores (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary stores")
    p.add_argument("--out", default=str(OUT))
    main(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    cli()
