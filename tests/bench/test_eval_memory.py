"""The evaluate-memory benchmark at a tiny scale: it runs, and writes well-formed results (no timing thresholds)."""

import json
import math

from bench import eval_memory


def test_quick_run_writes_well_formed_results(tmp_path):
    out = tmp_path / "out" / "eval_memory"
    res = eval_memory.main(quick=True, seed=0, tmp_dir=str(tmp_path), out=str(out))
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["checks"] == res["checks"] and on_disk["checks"]["identical"] is True
    runs = on_disk["rss"]["runs"]
    assert [r["hours"] for r in runs] == list(eval_memory.QUICK.hours)
    assert all(0 < r["peak_rss_gb"] < eval_memory.RSS_LIMIT_GB and r["utterances"] > 0 for r in runs)
    assert runs[0]["cached_gb"] < runs[-1]["cached_gb"]
    for task in ("pr", "asr"):
        speed = on_disk["speed"][task]
        for side in ("pipeline", "streaming"):
            ratio = speed[f"{side}_vs_in_memory"]
            assert math.isfinite(ratio["median"]) and ratio["median"] > 0
            assert len(ratio["per_repeat"]) == eval_memory.QUICK.repeats
    md = out.with_suffix(".md").read_text()
    assert "| PR |" in md and "| ASR |" in md and f"| {eval_memory.QUICK.hours[-1]} h |" in md
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the temporary cache is gone
