"""Run the real Snakefile in a work directory (dry runs for the report tests) and read its job table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def snakemake(workdir: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of `snakemake -n`."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+(\d+)$", dry_run_output, re.M) if m[1] != "total"}
