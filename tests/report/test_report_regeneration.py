"""The report is rebuilt from score and prediction files alone: on the default config's real DAG (dry runs only),
with every output present and plausible results in place, deleting results/report makes `snakemake all` list only
the report jobs (whose inputs include the predictions); `python -m pipeline report`'s function then writes every
report file, claims included, leaving only the HTML packing; a newer predictions file reruns the report, not the
evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from fake_results import fake_run
from snakemake_cli import job_counts, snakemake

from pipeline.config import load_config
from pipeline.report.build import build_report
from pipeline.workflow import REPORT_FILES, Layout

ROOT = Path(__file__).resolve().parents[2]
STAMP = 1_700_000_000


def _finished_run(work: Path) -> Layout:
    """Every output of the default DAG present (placeholders), plausible scores, predictions, student configs and
    feature indexes in place, all with one mtime."""
    (work / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    summary = snakemake(work, "--summary", "all")
    for out in [line.split("\t")[0] for line in summary.splitlines()[1:] if "\t" in line]:
        path = work / out
        if out.endswith(".zarr"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    cfg = load_config(str(work / "results/config.resolved.yaml"))
    fake_run(work, cfg)
    for index in (work / "results/cache").glob("*/*/*/index.tsv"):
        index.write_text(f"key\tstore\trow\tstart\tframes\nu1@0\t{index.parent}/missing.zarr\t0\t0\t100\n")
    for path in (work / "results").rglob("*"):
        os.utime(path, (STAMP, STAMP))
    return Layout(cfg)


def test_report_is_rebuilt_from_scores_and_predictions_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    layout = _finished_run(tmp_path)
    assert not job_counts(snakemake(tmp_path, "-n", "all")), "a finished run must be up to date"

    for path in (tmp_path / "results/report").iterdir():
        path.unlink()
    dry = snakemake(tmp_path, "-n", "all")
    assert job_counts(dry) == {"report": 1, "html_report": 1, "all": 1}
    report_job = dry[dry.index("rule report:"):]
    report_job = report_job[: report_job.index("\n\n")]
    assert layout.predictions("distilhubert", "asr", "ood") in report_job  # the report reads the predictions

    monkeypatch.chdir(tmp_path)  # the report rule's command, in-process
    build_report(layout.scores(), "results/report", "results/config.resolved.yaml")
    for name in REPORT_FILES:
        assert (tmp_path / layout.report(name)).stat().st_size > 0, name
    claims = pd.read_csv(tmp_path / layout.report("claims.csv"))
    assert (claims["verdict"] != "not run").sum() > 40 and claims["ci_low"].notna().sum() > 40
    for path in (tmp_path / "results/report").iterdir():
        os.utime(path, (STAMP + 10, STAMP + 10))
    assert job_counts(snakemake(tmp_path, "-n", "all")) == {"html_report": 1, "all": 1}

    newer = tmp_path / layout.predictions("cdm_clean", "ks", "ood")
    os.utime(newer, (STAMP + 20, STAMP + 20))
    assert job_counts(snakemake(tmp_path, "-n", "all")) == {"report": 1, "html_report": 1, "all": 1}
