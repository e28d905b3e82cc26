"""A student training job killed with SIGKILL mid-run resumes from its last checkpoint (not step 0) and ends
with exactly the weights of an uninterrupted run with the same seed (CPU, one thread: bit-exact)."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from faults.helpers import distill_data, env, pipeline_cmd, run, write_config
from pipeline.distill import train as train_mod
from pipeline.distill.data import DistillBatches
from pipeline.distill.train import train_student
from pipeline.saved import UnsafeFileError

STEPS = 400  # checkpoints every max(50, STEPS // 10) = 50 steps


def _config(path, steps: int) -> str:
    return write_config(path, {
        "seed": 3, "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0, "sentence": 0}}, "views": {},
        "teachers": {"tiny": {"kind": "hf", "model": "never-loaded"}}, "cache": {}, "downstream": {},
        "students": {"st": {"method": "distilhubert", "teacher": "tiny",
                            "arch": {"conv_channels": 16, "dim": 32, "layers": 1, "heads": 2, "ffn": 64,
                                     "dropout": 0.1},  # dropout: the torch RNG state must resume too
                            "train": {"steps": steps, "batch_size": 4, "crop_seconds": 0.5, "lr": 1e-3,
                                      "warmup": 0.1}}}})


@pytest.mark.slow
def test_killed_training_resumes_to_identical_weights(tmp_path):
    data = distill_data(tmp_path / "data")
    config = _config(tmp_path / "config.yaml", STEPS)
    train_student(config, "st", data["manifest"], [data["audio"]], [data["targets"]], str(tmp_path / "full"),
                  resume_dir=str(tmp_path / "resume-full"), threads=1)  # uninterrupted (conftest: 1 thread)

    out, resume = tmp_path / "killed", tmp_path / "resume"
    cmd = pipeline_cmd("train-student", "--config", config, "--student", "st", "--manifest", data["manifest"],
                       "--audio", data["audio"], "--targets", data["targets"], "--out-dir", str(out),
                       "--resume-dir", str(resume), "--threads", "1")
    state_file = resume / "st.pt"
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not state_file.exists():  # the first checkpoint (step 50) is on disk ...
        assert proc.poll() is None, "training ended before it wrote a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(0.3)  # ... and the job is some way past it: killed between checkpoints
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    assert not (out / "model.safetensors").exists()  # no final checkpoint from a killed job
    step = torch.load(state_file, weights_only=True)["step"]
    assert step % 50 == 0 and 50 <= step < STEPS

    rerun = run(cmd)
    assert re.search(rf"resuming from step {step} ", rerun.stderr), rerun.stderr[-2000:]
    assert not state_file.exists()  # the resume state is removed once the final checkpoint is written

    full, resumed = load_file(tmp_path / "full" / "model.safetensors"), load_file(out / "model.safetensors")
    assert full.keys() == resumed.keys()
    different = [k for k in full if not torch.equal(full[k], resumed[k])]
    assert not different, different
    cf, cr = (pd.read_csv(d / "curve.tsv", sep="\t") for d in (tmp_path / "full", out))
    assert cr["step"].tolist() == cf["step"].tolist()  # the curve spans both runs, no step twice or missing
    np.testing.assert_array_equal(cr["train_loss"].to_numpy(), cf["train_loss"].to_numpy())


class _Killed(RuntimeError):
    pass


def _die_after(monkeypatch, calls: int) -> None:
    real, seen = DistillBatches.next, {"n": 0}

    def next_batch(self, batch_size):
        seen["n"] += 1
        if seen["n"] > calls:
            raise _Killed("simulated kill")
        return real(self, batch_size)

    monkeypatch.setattr(DistillBatches, "next", next_batch)


@pytest.mark.parametrize("damage", ["config changed", "unreadable state"])
def test_a_foreign_or_damaged_resume_state_is_not_used(tmp_path, monkeypatch, caplog, damage):
    """A resume state left by another job (the student's config changed since) or a damaged one (cut short) is
    set aside with a warning: training starts from step 0 and ends like an uninterrupted run of this config."""
    data = distill_data(tmp_path / "data", n_utts=4)
    inputs = dict(manifest=data["manifest"], audio=[data["audio"]], targets=[data["targets"]], threads=1)
    config = _config(tmp_path / "config.yaml", 60)
    resume = tmp_path / "resume"
    _die_after(monkeypatch, 55)
    with pytest.raises(_Killed):
        train_student(config, "st", out_dir=str(tmp_path / "killed"), resume_dir=str(resume), **inputs)
    monkeypatch.undo()
    assert torch.load(resume / "st.pt", weights_only=True)["step"] == 50
    if damage == "config changed":
        config = _config(tmp_path / "config.yaml", 70)
        expect = "saved by another training job"
    else:
        whole = (resume / "st.pt").read_bytes()
        (resume / "st.pt").write_bytes(whole[:len(whole) // 2])
        expect = "cannot read the resume state"
    train_student(config, "st", out_dir=str(tmp_path / "fresh"), resume_dir=str(tmp_path / "r2"), **inputs)
    with caplog.at_level("WARNING", logger=train_mod.__name__):
        train_student(config, "st", out_dir=str(tmp_path / "after"), resume_dir=str(resume), **inputs)
    assert expect in caplog.text and "starting from step 0" in caplog.text
    fresh, after = (load_file(tmp_path / d / "model.safetensors") for d in ("fresh", "after"))
    assert all(torch.equal(fresh[k], after[k]) for k in fresh)
    assert not (resume / "st.pt").exists()


class _Planted:
    """What an attacker could leave in a shared results tree: unpickling it creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_planted_resume_state_is_refused_not_run(tmp_path, how):
    """A resume state whose pickle would run code is refused with an error naming it and what to do; the code never
    runs (no marker file), and the file is left for the user to inspect."""
    import pickle

    data = distill_data(tmp_path / "data", n_utts=4)
    config = _config(tmp_path / "config.yaml", 60)
    state, marker = tmp_path / "resume" / "st.pt", tmp_path / "marker"
    state.parent.mkdir()
    planted = {"step": 50, "job": {}, "model": _Planted(marker)}
    if how == "pickle":
        state.write_bytes(pickle.dumps(planted, protocol=2))
    else:
        torch.save(planted, state)
    with pytest.raises(UnsafeFileError, match=rf"{re.escape(str(state))}: refused .*resume state.*Delete it and rerun"):
        train_student(config, "st", data["manifest"], [data["audio"]], [data["targets"]], str(tmp_path / "out"),
                      resume_dir=str(state.parent), threads=1)
    assert not marker.exists() and state.exists()
    assert not (tmp_path / "out" / "model.safetensors").exists()
