"""A teacher extraction job killed with SIGKILL mid-shard: nothing looks finished, and rerunning (the CLI
verb, or Snakemake on the real Snakefile) gives a store byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import yaml

from faults.helpers import ROOT, base_config, kill_writer, run, tiny_teacher, tree_digest, view_store, write_config
from pipeline.cache import store as store_mod
from pipeline.cache.extract import extract_shard
from pipeline.cache.index import build_index
from pipeline.cache.store import CacheError, Store

pytestmark = pytest.mark.slow
N_UTTS = 60
SMALL_SHARD = 16 << 10  # 85 frames of 3 x 32 float16: zarr shard files reach the disk while the job runs
# `python -m pipeline` runs pipeline.cli.main; this runs it with zarr's shard size set first.
CLI_SMALL_SHARDS = ("import sys; import pipeline.cache.store as s; s.SHARD_BYTES = int(sys.argv[1]); "
                    "from pipeline.cli import main; sys.exit(main(sys.argv[2:]))")


def _setup(tmp_path: Path) -> tuple[dict, Path]:
    teacher = tiny_teacher(tmp_path / "teacher")
    audio = view_store(tmp_path / "work" / "results" / "views" / "synthetic" / "clean" / "shard0.zarr", n=N_UTTS)
    # 0.5 s of padded audio per batch: one clip per teacher call, so the shard takes many steps to fill
    cfg = base_config(teacher, batch_seconds=0.5)
    cfg["corpus"]["real"] = {"asterisk": False}
    cfg["views"] = {"shards": 1}
    cfg["downstream"] = {"tasks": {}}
    return cfg, audio


def _check_killed(out: Path, temp_dirs, partial_chunks: bool) -> None:
    """After the kill: only a hidden temporary directory, never marked complete; readers refuse the path."""
    assert not out.exists()
    (tmp,) = temp_dirs()
    assert "complete" not in json.loads((tmp / "zarr.json").read_text()).get("attributes", {})
    if partial_chunks:
        assert list((tmp / "frames" / "c").glob("*/*/*"))  # part of the frame data really was on disk
    with pytest.raises(CacheError, match="no store here"):
        Store(out)
    with pytest.raises(CacheError):
        build_index([str(out)], str(out.parent / "index.tsv"))


def _check_identical(out: Path, reference: Path, temp_dirs) -> None:
    assert not temp_dirs()  # the stale temporary directory was cleared by the rerun
    got, want = tree_digest(out), tree_digest(reference)
    got.pop(".snakemake_timestamp", None)  # Snakemake's marker in directory outputs, not part of the store
    assert got.keys() == want.keys()
    assert got == want, [k for k in got if got[k] != want[k]]
    assert len(Store(out)) == N_UTTS


def test_killed_extraction_verb_reruns_to_identical_store(tmp_path, monkeypatch):
    """`python -m pipeline extract`, killed after part of the frame data is on disk, then rerun."""
    cfg, audio = _setup(tmp_path)
    config = write_config(tmp_path / "config.yaml", cfg)
    monkeypatch.setattr(store_mod, "SHARD_BYTES", SMALL_SHARD)
    reference = tmp_path / "reference" / "shard0.zarr"
    extract_shard(config, "t", str(audio), str(reference), threads=1)  # uninterrupted (conftest: 1 thread)

    out = tmp_path / "cache" / "shard0.zarr"
    cmd = [sys.executable, "-c", CLI_SMALL_SHARDS, str(SMALL_SHARD), "extract", "--config", config,
           "--upstream", "t", "--audio", str(audio), "--out", str(out), "--threads", "1"]

    def temp_dirs() -> list[Path]:
        return list(out.parent.glob(f".{out.name}.tmp-*"))

    code, _ = kill_writer(cmd, temp_dirs, lambda tmp: len(list((tmp / "frames" / "c").glob("*/*/*"))) >= 2,
                          cwd=tmp_path)
    assert code == -signal.SIGKILL
    _check_killed(out, temp_dirs, partial_chunks=True)
    run(cmd, cwd=tmp_path)  # the rerun: the same command
    _check_identical(out, reference, temp_dirs)


def test_killed_extraction_job_snakemake_rerun_completes(tmp_path):
    """The real Snakefile: the extract_teacher job's process is killed mid-shard; Snakemake reports the failed
    job; running Snakemake again completes it, byte-identical to an uninterrupted extraction."""
    cfg, audio = _setup(tmp_path)
    work = tmp_path / "work"
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    reference = tmp_path / "reference" / "shard0.zarr"
    extract_shard(write_config(tmp_path / "config.yaml", cfg), "t", str(audio), str(reference), threads=1)

    target = "results/cache/t/synthetic/clean/shard0.zarr"
    out = work / target
    # --cores 1 scales the rule's threads to 1, as in the reference; --allowed-rules keeps the test's own
    # view store as the input instead of synthesising and rendering a corpus first
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--cores", "1", target, "--allowed-rules", "extract_teacher"]

    def temp_dirs() -> list[Path]:
        return list(out.parent.glob(f".{out.name}.tmp-*")) if out.parent.exists() else []

    code, stderr = kill_writer(cmd, temp_dirs, lambda tmp: (tmp / "frames" / "zarr.json").exists(), cwd=work)
    assert code != 0 and "Error in rule extract_teacher" in stderr, stderr[-3000:]
    _check_killed(out, temp_dirs, partial_chunks=False)
    proc = run(cmd, cwd=work)
    assert "1 of 1 steps (100%) done" in proc.stderr
    _check_identical(out, reference, temp_dirs)
