"""Run the default pipeline's stages on a config through the real CLI verbs, in one process, in the current
directory: corpus -> banks -> view plans and audio -> teacher cache -> student -> downstream scores.

The commands are the ones the Snakefile's rules issue, with paths from pipeline.workflow.Layout and the
student's inputs from pipeline.distill.inputs; one process instead of one per job keeps it fast enough to run
twice in a test (tests/faults/test_fault_determinism.py). Usage: python run_stages.py CONFIG
"""

from __future__ import annotations

import shlex
import sys

from pipeline.audio import rir
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.distill.inputs import student_input_files, train_flags
from pipeline.workflow import Layout

rir.RIRS_PER_FAMILY = 2  # a tiny room bank (the real one simulates 32 rooms per family, ~50 s here)


def verb(*args: str) -> None:
    """One `python -m pipeline VERB ...` call."""
    if main(list(args)) != 0:
        raise SystemExit(f"pipeline {args[0]} failed")


def run(config_file: str) -> None:
    """Every stage up to the downstream scores of the config's upstreams (synthetic corpus only)."""
    cfg = load_config(config_file)
    lay = Layout(cfg)
    config = lay.write_resolved()
    shards = cfg["corpus"]["synthetic"]["shards"]
    for i in range(shards):
        verb("synthesize", "--config", config, "--shard", str(i), "--shards", str(shards),
             "--out-dir", f"{lay.root}/corpus/synthetic/wav", "--manifest-out", lay.synth_shard(i))
    verb("merge-manifests", "--inputs", *[lay.synth_shard(i) for i in range(shards)],
         "--output", lay.manifest("synthetic"))
    verb("rir-bank", "--config", config, "--out", lay.bank("rir"))
    verb("noise-bank", "--config", config, "--manifest", lay.noise_inputs()["babble"], "--out", lay.bank("noise"))
    n = lay.num_shards("synthetic")
    for view in lay.views("synthetic"):
        verb("view-plan", "--config", config, "--manifest", lay.manifest("synthetic"), "--view", view,
             "--out", lay.view_plan("synthetic", view))
        banks = [] if view == "clean" else ["--rir-bank", lay.bank("rir"), "--noise-bank", lay.bank("noise")]
        for s in range(n):
            verb("render-view", "--config", config, "--manifest", lay.manifest("synthetic"),
                 "--plan", lay.view_plan("synthetic", view), "--shard", str(s), "--shards", str(n), *banks,
                 "--out", lay.view_store("synthetic", view, s))
        verb("index", "--stores", *[lay.view_store("synthetic", view, s) for s in range(n)],
             "--out", lay.view_index("synthetic", view))
        for teacher in cfg["teachers"]:
            for s in range(n):
                verb("extract", "--config", config, "--upstream", teacher, "--audio",
                     lay.view_store("synthetic", view, s), "--out", lay.feature_store(teacher, "synthetic", view, s),
                     "--threads", "1")
            verb("index", "--stores", *[lay.feature_store(teacher, "synthetic", view, s) for s in range(n)],
                 "--out", lay.feature_index(teacher, "synthetic", view))
    for student in cfg["students"]:
        verb("train-student", "--config", config, "--student", student,
             *shlex.split(train_flags(student_input_files(cfg, lay, student))),
             "--out-dir", lay.student(student, ""), "--resume-dir", f"{lay.root}/.resume", "--threads", "1")
    for upstream, tasks in lay.evaluations().items():
        verb("evaluate", "--config", config, "--upstream", upstream, "--tasks", *tasks, "--threads", "1")


if __name__ == "__main__":
    run(sys.argv[1])
