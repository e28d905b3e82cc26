"""`snakemake --profile slurm`, typed from the repository root, on a real single-node Slurm started by the test.

The cluster (munged, slurmctld, slurmd from Debian's slurm-wlm and munge; no accounting database) comes up
in a temporary directory and is stopped afterwards, also when a test fails. The workflow is the tiny
end-to-end config of tests/workflow, cut down to keep the test short: fewer spoken commands, a student that
hears the clean view (no noise and room banks, no distorted views), run up to the trained student (synthesis,
clean view, teacher extraction, training), without student extraction, evaluation and report.

Evidence that the jobs went through sbatch: slurmctld's job records (`scontrol show job`: state, the rule in
the comment the plugin sets, CPUs/memory/time limit from the rules), the job completion log (jobcomp/filetxt)
and the per-job output files the plugin asks sbatch to write, in which each job's own Snakemake ran the rule.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline.cache.index import FeatureCache
from pipeline.corpus.manifest import read_manifest
from pipeline.students.checkpoint import load_student

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from cluster import SlurmCluster, unavailable  # noqa: E402
from test_snakemake_e2e import _tiny_teacher, tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("results/students/stu/model.safetensors",)
# rules of the reduced target that run as Slurm jobs (the others are `localrule: True`, run by the main process)
SLURM_RULES = {"synthesize", "render_view", "extract_teacher", "train_student"}


def _snakemake(workdir: Path, env: dict, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`python -m snakemake --profile slurm ...` from the repository root, as a user types it."""
    env = {**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _workdir(path: Path) -> Path:
    _tiny_teacher(path / "teacher")
    config = tiny_config(path / "teacher")
    config["corpus"]["synthetic"]["command"] = 16  # 93 give every intent dev utterances; no IC head is trained here
    config["students"]["stu"]["input_view"] = "clean"  # the distorted views add 4 jobs and no Slurm feature
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def test_profile_dry_run_groups_shards(tmp_path: Path) -> None:
    """The profile parses from the repository root and bundles the shard jobs into group jobs (no cluster)."""
    work = _workdir(tmp_path)
    proc = _snakemake(work, os.environ, "-n", *TARGETS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    groups = set(re.findall(r"Group job (\w+) ", proc.stdout))
    assert groups == {"extract_teacher"}, proc.stdout[-3000:]


@pytest.fixture(scope="module")
def cluster():
    reason = unavailable()
    if reason:
        pytest.skip(f"no test Slurm cluster: {reason}")
    with SlurmCluster(partition="pytest", cpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def run(cluster: SlurmCluster, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    work = _workdir(tmp_path_factory.mktemp("slurm-e2e"))
    start = time.monotonic()
    # first status check after 2 s instead of 40 s, and keep the Slurm output of successful jobs as evidence
    try:
        proc = _snakemake(work, cluster.env, "--slurm-init-seconds-before-status-checks", "2",
                          "--slurm-keep-successful-logs", *TARGETS)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"snakemake --profile slurm still running after {err.timeout:.0f} s; jobs that finish "
                             "but are never seen as finished mean the status command is sacct on a cluster "
                             f"without accounting (the profile sets slurm-status-command: squeue)\n"
                             f"{cluster.run('squeue', '--states=all')}\n{cluster.logs()}") from err
    print(f"snakemake --profile slurm: {time.monotonic() - start:.0f} s wall")
    if proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in (work / ".snakemake/slurm_logs").rglob("*.log"))
        raise AssertionError(f"snakemake --profile slurm failed:\n{proc.stderr[-5000:]}\n{logs}\n{cluster.logs()}")
    return work, proc


@pytest.mark.slow
def test_outputs_exist_and_load(run, monkeypatch) -> None:
    work, _ = run
    monkeypatch.chdir(work)  # indexes list their stores relative to the working directory
    res = work / "results"
    manifest = read_manifest(res / "corpus/synthetic/manifest.tsv")
    teacher = FeatureCache.open(res / "cache/tiny/synthetic/clean/index.tsv", expect={"name": "tiny"})
    assert len(teacher) == len(manifest)
    assert teacher.get(teacher.keys[0]).shape[1:] == (4, 32)  # 3 layers + input, hidden 32
    student = load_student(res / "students/stu")
    assert len(student.hidden_states(torch.zeros(16000))) == 2
    curve = pd.read_csv(res / "students/stu/curve.tsv", sep="\t").dropna(subset=["train_loss"])  # no dev rows
    steps = yaml.safe_load((work / "config.yaml").read_text())["students"]["stu"]["train"]["steps"]
    assert len(curve) == steps and curve["train_loss"].iloc[-5:].mean() < curve["train_loss"].iloc[:5].mean()


def _slurm_jobs_of_run(run, cluster: SlurmCluster) -> dict[str, tuple[dict[str, str], str]]:
    """Slurm job id -> (slurmctld's record, the job's sbatch --output file) for every job this run submitted."""
    work, proc = run
    log = proc.stdout + proc.stderr
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", log)
    assert submitted, log[-3000:]
    records = {j["JobId"]: j for j in cluster.jobs()}
    missing = {sid for sid, _ in submitted} - set(records)
    assert not missing, f"slurmctld has no record of jobs {missing}"
    return {sid: (records[sid], Path(out).read_text()) for sid, out in submitted}


def _members(slurm_output: str) -> list[tuple[str, int, int, int]]:
    """(rule, threads, mem_mb, runtime) of each workflow job a Slurm job ran, as its own Snakemake printed them."""
    blocks = re.findall(r"^rule (\w+):\n(.*?)^Shell command", slurm_output, re.M | re.S)
    out = []
    for rule, body in blocks:
        threads = re.search(r"threads: (\d+)", body)
        res = dict(re.findall(r"(mem_mb|runtime)=(\d+)", body))
        out.append((rule, int(threads[1]) if threads else 1, int(res["mem_mb"]), int(res["runtime"])))
    return out


def _megabytes(mem: str) -> int:
    """Slurm's memory display (6000M, 4G, 1T) in MB."""
    return int(float(mem[:-1]) * {"M": 1, "G": 1024, "T": 1024**2}[mem[-1]])


def _minutes(limit: str) -> int:
    """Slurm's time limit display ([D-]HH:MM:SS) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


@pytest.mark.slow
def test_every_slurm_job_went_through_sbatch(run, cluster: SlurmCluster) -> None:
    work, proc = run
    run_id = re.search(r"SLURM run ID: (\S+)", proc.stdout + proc.stderr)[1]
    jobs = _slurm_jobs_of_run(run, cluster)
    completed = {r["JobId"]: r for r in cluster.completion_records()}
    rules = set()
    for sid, (record, output) in jobs.items():
        assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", record
        assert record["JobName"] == run_id and record["Partition"] == "pytest", record
        assert Path(record["WorkDir"]) == work, record
        # the job completion log, written by slurmctld when the job ended
        assert completed[sid]["JobState"] == "COMPLETED" and completed[sid]["Name"] == run_id, completed.get(sid)
        # the sbatch --output file: the job's own Snakemake ran the rule(s) and finished them
        members = _members(output)
        assert members and "Finished jobid" in output, output[-3000:]
        assert all(rule in record["Comment"] for rule, *_ in members), (record["Comment"], members)
        rules |= {rule for rule, *_ in members}
    # every rule of the target that is not a local rule ran on the cluster, and no local rule was submitted
    assert rules == SLURM_RULES, rules


@pytest.mark.slow
def test_rule_resources_reach_slurm(run, cluster: SlurmCluster) -> None:
    """Slurm got CPUs from `threads:`, memory and time limit from `resources:`. A group job runs its members
    one after another, so with the profile's `cores` cap it asks for the CPUs and memory of the members that
    fit in `cores` side by side and the runtime of all its layers."""
    cap = yaml.safe_load((ROOT / "slurm/config.yaml").read_text())["cores"]
    grouped = 0
    for record, output in _slurm_jobs_of_run(run, cluster).values():
        members = _members(output)
        (rule, threads, mem, runtime), n = members[0], len(members)
        assert all(m[1:] == members[0][1:] for m in members), f"expected one kind of job per group: {members}"
        per_layer = min(n, max(1, cap // threads))
        want = (threads * per_layer, mem * per_layer, runtime * -(-n // per_layer))
        got = (int(record["NumCPUs"]), _megabytes(record["MinMemoryNode"]), _minutes(record["TimeLimit"]))
        assert got == want, f"{rule} x{n}: Slurm has (cpus, mem_mb, minutes) {got}, the rules ask for {want}"
        grouped += n > 1
    assert grouped == 1, "the two teacher shards of the clean view should run as one group job"
