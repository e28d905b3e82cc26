"""Determinism: two runs of the default pipeline's stages (tests/faults/run_stages.py: the CLI verbs the rules
call) on a tiny config, in two directories, side by side, with different PYTHONHASHSEEDs, give

- byte-identical manifests, WAVs, banks, view plans, view audio, teacher caches, indexes, student weights,
  curves and figures;
- the same downstream heads and scores, within SCORE_TOL (measured: identical), once the measured durations
  (`train_seconds`, `steps_per_second`: wall-clock, not results) are set aside.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from faults.helpers import env, tiny_teacher, tree_digest

pytestmark = pytest.mark.slow
SCORE_TOL = 1e-9  # absolute, on accuracy in [0, 1]
MEASURED = re.compile(r"seconds|per_second")  # keys holding wall-clock measurements
DRIVER = Path(__file__).with_name("run_stages.py")


def _config(teacher: Path) -> dict:
    return {
        "seed": 7,
        "corpus": {"synthetic": {"voices": 2, "keyword": 36, "command": 0, "sentence": 2, "shards": 2},
                   "real": {"asterisk": False}},  # 36 keywords: 3 per class, so train, dev and test all have them
        "views": {"shards": 2, "indomain": {"copies": 2}, "ood": {"copies": 1}},
        "teachers": {"t": {"kind": "hf", "model": str(teacher)}},
        "cache": {"batch_seconds": 10},
        "students": {"stu": {"method": "distilhubert", "teacher": "t", "input_view": "indomain",
                             "target_view": "clean",
                             "arch": {"conv_channels": 16, "dim": 32, "layers": 1, "heads": 2, "ffn": 64},
                             "train": {"steps": 20, "batch_size": 4, "crop_seconds": 0.5, "lr": 1e-3}}},
        "downstream": {"upstreams": ["t"], "tasks": {"ks": {"steps": 20, "lr": 1e-3, "batch_size": 8}},
                       "conditions": ["clean", "indomain", "ood"]},
    }


def _without_measured(obj):
    if isinstance(obj, dict):
        return {k: _without_measured(v) for k, v in obj.items() if not MEASURED.search(str(k))}
    if isinstance(obj, (list, tuple)):
        return [_without_measured(v) for v in obj]
    return obj


def _same(a, b, where: str) -> None:
    """Equal structures; tensors bit-equal; `value` floats within SCORE_TOL."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    elif isinstance(a, float) and where.endswith(".value"):
        assert abs(a - b) <= SCORE_TOL, (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_two_runs_give_identical_outputs(tmp_path):
    teacher = tiny_teacher(tmp_path / "teacher")  # one path for both runs: the fingerprint records it
    runs = {"a": "0", "b": "4242"}
    procs = {}
    for name, hash_seed in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(_config(teacher)))
        procs[name] = subprocess.Popen([sys.executable, str(DRIVER), "config.yaml"], cwd=tmp_path / name,
                                       env=env(PYTHONHASHSEED=hash_seed), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"run {name} failed:\n{err[-3000:]}"

    a, b = tree_digest(tmp_path / "a" / "results"), tree_digest(tmp_path / "b" / "results")
    assert a.keys() == b.keys()
    expected = ["corpus/synthetic/manifest.tsv", "banks/rir.npz", "banks/noise.npz",
                "views/synthetic/indomain/plan.tsv", "views/synthetic/ood/shard1.zarr/frames/c/0",
                "cache/t/synthetic/clean/index.tsv", "cache/t/synthetic/ood/shard0.zarr/frames/c/0/0/0",
                "students/stu/model.safetensors", "scores/t/ks/clean.json", "downstream/t/ks/head.pt"]
    assert all(f in a for f in expected), sorted(a)
    assert sum(f.startswith("corpus/synthetic/wav/") for f in a) == 38
    differ = sorted(f for f in a if a[f] != b[f])
    # only files that record a measured duration may differ in bytes, and only in those fields
    assert all(f.endswith((".json", ".pt")) for f in differ), differ
    for f in differ:
        pa, pb = tmp_path / "a" / "results" / f, tmp_path / "b" / "results" / f
        load = (lambda p: json.loads(p.read_text())) if f.endswith(".json") else (
            lambda p: torch.load(p, weights_only=True))
        _same(_without_measured(load(pa)), _without_measured(load(pb)), f)
    for cond in ("clean", "indomain", "ood"):
        sa, sb = (json.loads((tmp_path / r / "results/scores/t/ks" / f"{cond}.json").read_text()) for r in "ab")
        assert 0.0 <= sa["value"] <= 1.0 and abs(sa["value"] - sb["value"]) <= SCORE_TOL
