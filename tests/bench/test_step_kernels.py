"""The step-kernel benchmark at a tiny scale: it runs, checks its sides agree, and writes well-formed results."""

import json
import math

from bench import step_kernels


def test_quick_run_writes_well_formed_results(tmp_path):
    out = tmp_path / "step_kernels"
    res = step_kernels.main(quick=True, seed=0, out=str(out))
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert [r["states"] for r in on_disk["layer_mix"]] == list(step_kernels.QUICK.states)
    assert [r["student"] for r in on_disk["adamw"]] == ["transformer", "lstm"]
    ratios = [r[k] for r in res["layer_mix"] for k in ("pipeline_vs_s3prl", "pipeline_vs_einsum")]
    ratios += [r["fused_vs_default"] for r in res["adamw"]]
    for ratio in ratios:
        assert math.isfinite(ratio["median"]) and ratio["median"] > 0
        assert len(ratio["per_repeat"]) == step_kernels.QUICK.repeats
    md = out.with_suffix(".md").read_text()
    assert md.count("| layer mix vs") == 2 * len(step_kernels.QUICK.states) and md.count("| AdamW fused") == 2
