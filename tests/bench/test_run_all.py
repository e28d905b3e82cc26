"""The benchmark harness: `python -m bench --quick` writes well-formed results; its helpers compute right.

No timing thresholds here (timings are what bench/ measures); only structure, finiteness and the
arithmetic of the ratios, fits and the amortisation formula.
"""

import json
import math

import numpy as np
import pytest

from bench import amortise, run_all
from bench.harness import interleave, linear_fit, rate_ratio, time_ratio
from pipeline.cache.store import INNER_BYTES


def test_quick_run_writes_well_formed_results(tmp_path):
    out = tmp_path / "out"
    report = run_all.main(quick=True, threads=1, seed=0, epochs=10.0, tmp_dir=str(tmp_path), keep=False,
                          out=str(out), jobs=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["headline"] == json.loads(json.dumps(report["headline"]))
    assert run_all.check(on_disk) == []
    ids = {row["id"] for row in on_disk["headline"]}
    for prefix in ("1.whisper_base", "1.whisper_base.whole", "1.hubert_base", "2.whisper_base", "3.store_none",
                   "3.loader.whisper_base", "3.loader_cold.whisper_base", "3.loader_cold_sync.whisper_base",
                   "4.float16+none", "4.float16+zstd", "4.float32+none", "5.whisper_base.N1",
                   "5.hubert_base.N10", "6.size"):
        assert prefix in ids, f"{prefix} missing from the headline"
    for row in on_disk["headline"]:
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row
        if row["target"] is not None:
            assert isinstance(row["met"], bool)
    md = (out / "results.md").read_text()
    assert all(f"| {i} |" in md for i in ids)
    # sides really ran: every interleaved side has one sample per repeat
    d = on_disk["distill_speed"]["whisper_base"]
    assert len(d["cached"]["runs"]) == len(d["online_whole"]["runs"]) == len(d["online_crop"]["runs"]) \
        == run_all.QUICK.distill_repeats
    assert len(d["speedup"]["per_repeat"]) == run_all.QUICK.distill_repeats
    # the headline, judged against the target, is like for like (the teacher on the student's crops); the
    # whole-utterance side is beside it, unjudged
    rows = {row["id"]: row for row in on_disk["headline"]}
    for name, side in on_disk["distill_speed"].items():
        assert side["speedup"] == side["online_crop"]["speedup"]
        assert rows[f"1.{name}"]["ratio"] == side["online_crop"]["speedup"]["median"]
        assert rows[f"1.{name}"]["target"] == f">= {run_all.TARGETS['distill_speedup']}"
        assert "same crops" in rows[f"1.{name}"]["what"] and "whole utterances" in rows[f"1.{name}.whole"]["what"]
        assert rows[f"1.{name}.whole"]["ratio"] == side["online_whole"]["speedup"]["median"]
        assert rows[f"1.{name}.whole"]["target"] is None and rows[f"1.{name}.whole"]["met"] is None
    # the whole-utterance online side computes the cached targets (float16 apart); the teacher hears more audio
    assert d["target_cosine_to_cached"]["online_whole"] > 0.999
    assert d["online_whole"]["teacher_audio_seconds_per_step"] >= d["online_crop"]["teacher_audio_seconds_per_step"]
    loader = on_disk["loader"]["whisper_base"]
    assert len(loader["cold_blocked_ms"]) == run_all.QUICK.cold_steps < len(loader["cold_read_ms"])
    # storage: uncompressed stores hold every byte, padded by at most one inner chunk (plus the shard index)
    st = on_disk["storage"]
    for dtype, size in (("float16", 2), ("float32", 4)):
        data = st["frames"] * st["layers"] * st["dim"] * size
        assert data <= st["formats"][f"{dtype}+none"]["frames_bytes"] <= data + INNER_BYTES + 4096
    # the temporary directory is gone; only the results remain
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_rate_and_time_ratios():
    fast = [{"wall": 1.0, "cpu": 0.5, "units": 4}, {"wall": 2.0, "cpu": 1.0, "units": 4}]
    slow = [{"wall": 2.0, "cpu": 2.0, "units": 2}, {"wall": 2.0, "cpu": 2.0, "units": 1}]
    r = rate_ratio(fast, slow)
    assert r["per_repeat"] == pytest.approx([4.0, 4.0])  # (4/1)/(2/2), (4/2)/(1/2)
    assert r["cpu_per_repeat"] == pytest.approx([8.0, 8.0])
    t = time_ratio([{"wall": 1.1, "cpu": 1.0, "units": 10}], [{"wall": 1.0, "cpu": 1.0, "units": 10}])
    assert t["median"] == pytest.approx(1.1) and t["cpu_median"] == pytest.approx(1.0)


def test_linear_fit_recovers_a_line_and_flags_a_power_law():
    x = [2.0, 4.0, 8.0, 16.0]
    fit = linear_fit(x, [0.5 + 0.25 * v for v in x])
    assert fit["intercept_s"] == pytest.approx(0.5) and fit["slope_s_per_unit"] == pytest.approx(0.25)
    assert fit["r2"] == pytest.approx(1.0) and fit["max_rel_residual"] == pytest.approx(0.0, abs=1e-12)
    quad = linear_fit(x, [v ** 2 for v in x])
    assert quad["loglog_exponent"] == pytest.approx(2.0)
    assert linear_fit(x, x)["loglog_exponent"] == pytest.approx(1.0)


def test_interleave_runs_every_side_once_per_repeat_in_varying_order():
    calls = []
    sides = {name: (lambda name=name: calls.append(name) or {"wall": 1.0, "cpu": 1.0, "units": 1})
             for name in "abc"}
    runs = interleave(sides, repeats=6, seed=0)
    assert {k: len(v) for k, v in runs.items()} == {"a": 6, "b": 6, "c": 6}
    rounds = [tuple(calls[i:i + 3]) for i in range(3, len(calls), 3)]  # after the warm-up round
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len(set(rounds)) > 1  # the order changes between repeats


def test_amortisation_formula():
    t = amortise.table(c_online=0.02, c_extract=0.025, r_read=0.001, epochs=8, audio_seconds=100.0, students=5)
    rows = t["rows"]
    for row in rows:
        n = row["students"]
        assert row["teacher_cpu_s_without_cache"] == pytest.approx(n * 8 * 100 * 0.02)
        assert row["teacher_cpu_s_with_cache"] == pytest.approx(100 * 0.025)
        assert row["cache_read_cpu_s"] == pytest.approx(n * 8 * 100 * 0.001)
        assert row["ratio"] == pytest.approx(n * 8 * 0.02 / 0.025)
    assert np.allclose(np.diff([r["ratio"] for r in rows]), rows[0]["ratio"])  # linear in N
