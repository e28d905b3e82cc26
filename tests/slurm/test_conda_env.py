"""The conda environments in envs/ are valid, named by every rule, and in step with requirements.txt.

Conda channels are out of reach here, so the env is not built; these checks cover what can go wrong without
building it: structure, relative paths (Snakemake builds envs from a copy under .snakemake/conda/), pins
that drift from requirements.txt, and pins that the working virtualenv does not satisfy.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
# in requirements.txt but deliberately not in the rules' env: Snakemake and its executor plugins run outside
# it (the rules' shell commands run inside), the rest are dev tools
OUTSIDE_ENV = {"snakemake", "snakemake-executor-plugin-slurm", "pytest", "ruff"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in (s.split("#")[0].strip() for s in lines) if line and line[0] != "-"]
    return {_norm(r.name): r for r in reqs}


def _pip_section(env: dict) -> list[str]:
    return next((d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d), [])


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_structure(path: Path) -> None:
    env = yaml.safe_load(path.read_text())
    assert set(env) <= {"name", "channels", "dependencies", "variables"}, f"{path}: unexpected keys {set(env)}"
    assert env["channels"] and all(isinstance(c, str) for c in env["channels"]), path
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    assert all(isinstance(d, str) or set(d) == {"pip"} for d in deps), f"{path}: only strings and one pip list"
    python = [d for d in conda if re.fullmatch(r"python(=.*)?", d)]
    assert python == ["python=3.11"], f"{path}: pin python=3.11 (pyproject requires >=3.11), got {python}"
    pip = _pip_section(env)
    if pip:
        assert "pip" in conda, f"{path}: a pip section needs pip among the conda dependencies"
    for line in pip:
        assert not re.match(r"(-r|-e|--requirement|--editable)\b|\.{0,2}/", line), \
            f"{path}: {line!r} is a path; Snakemake builds the env from a copy in .snakemake/conda/"
        if not line.startswith("-"):
            Requirement(line)  # raises on a malformed specifier


def test_pipeline_env_mirrors_requirements() -> None:
    env = yaml.safe_load((ROOT / "envs/pipeline.yaml").read_text())
    in_env = _requirements(_pip_section(env))
    wanted = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    missing = sorted(set(wanted) - set(in_env) - OUTSIDE_ENV)
    extra = sorted(set(in_env) - set(wanted))
    assert not missing, f"in requirements.txt, not in envs/pipeline.yaml: {missing}"
    assert not extra, f"in envs/pipeline.yaml, not in requirements.txt: {extra}"
    differ = {n: (str(in_env[n].specifier), str(wanted[n].specifier)) for n in in_env
              if in_env[n].specifier != wanted[n].specifier}
    assert not differ, f"version specifiers differ (env, requirements.txt): {differ}"


def test_pipeline_env_pins_hold_in_the_working_venv() -> None:
    """Every pin in the env is met by the virtualenv the test suite runs in, a set that is known to work."""
    env = yaml.safe_load((ROOT / "envs/pipeline.yaml").read_text())
    unmet = {}
    for name, req in _requirements(_pip_section(env)).items():
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            unmet[name] = "not installed"
            continue
        if not req.specifier.contains(version.split("+")[0], prereleases=True):
            unmet[name] = f"{version} does not meet {req.specifier}"
    assert not unmet, unmet


def test_every_rule_names_an_env_that_exists() -> None:
    named = 0
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        for match in re.finditer(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", smk.read_text(), re.M):
            target = (smk.parent / match[1]).resolve()
            assert target in [p.resolve() for p in ENVS], f"{smk.name}: conda env {match[1]} is not in envs/"
            named += 1
    assert named > 0
