"""scripts/run.sh: arguments reach snakemake unchanged, with `--cores all` added unless they set the cores.

The script runs from a copy of the repository layout holding a no-op bootstrap.sh and a fake `snakemake` in
.venv/bin (where run.sh looks first) that prints its arguments, so nothing is installed or run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path):
    """Run the real run.sh with given arguments; returns the arguments the fake snakemake received."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run.sh", tmp_path / "scripts" / "run.sh")
    (tmp_path / "scripts" / "bootstrap.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    fake = tmp_path / ".venv" / "bin" / "snakemake"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)

    def call(*args: str) -> list[str]:
        out = subprocess.run(["bash", str(tmp_path / "scripts" / "run.sh"), *args], capture_output=True,
                             text=True, check=True)
        return out.stdout.splitlines()

    return call


@pytest.mark.parametrize("args, want", [
    ((), ["--cores", "all", "all"]),
    (("-n",), ["--cores", "all", "-n", "all"]),
    (("-n", "--configfile", "my config.yaml"), ["--cores", "all", "-n", "--configfile", "my config.yaml", "all"]),
    (("--cores", "2"), ["--cores", "2", "all"]),
    (("--cores=3", "-n"), ["--cores=3", "-n", "all"]),
    (("-c", "2"), ["-c", "2", "all"]),
    (("-c2",), ["-c2", "all"]),
    (("-n", "--jobs", "4"), ["-n", "--jobs", "4", "all"]),
    (("-j", "4"), ["-j", "4", "all"]),
    (("-j4",), ["-j4", "all"]),
    (("--profile", "slurm"), ["--profile", "slurm", "all"]),
])
def test_cores_default_and_pass_through(run, args, want):
    assert run(*args) == want
