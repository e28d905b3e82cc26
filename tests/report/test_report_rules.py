"""Workflow wiring of the report, on the default config's real DAG (dry runs only, nothing is computed):
with every output present, deleting the report outputs makes `snakemake all` re-run only the report rules,
and every evaluated upstream has one evaluate job whose scores the report reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_cli import job_counts, snakemake

from pipeline.config import validate_config
from pipeline.downstream.predictions import write_predictions
from pipeline.workflow import REPORT_FILES, Layout

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # runs the real Snakefile (dry runs only)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A results tree in which every output of the default DAG exists with one common mtime."""
    work = tmp_path_factory.mktemp("fake_run")
    (work / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    summary = snakemake(work, "--summary", "all")
    outputs = [line.split("\t")[0] for line in summary.splitlines()[1:] if "\t" in line]
    assert outputs, summary[-2000:]
    for out in outputs:
        path = work / out
        if out.endswith(".zarr"):  # directory() outputs
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    for path in [*work.joinpath("results").rglob("*")]:
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return work


def test_every_evaluated_upstream_has_one_job(finished_run: Path) -> None:
    cfg = validate_config(yaml.safe_load((finished_run / "config.yaml").read_text()))
    layout = Layout(cfg)
    evaluations = layout.evaluations()
    assert set(layout.upstreams()) <= set(evaluations)
    for name in REPORT_FILES:
        assert (finished_run / layout.report(name)).exists(), name
    scores = list((finished_run / "results/scores").rglob("*.json"))
    assert len(scores) == len(layout.scores()) > 0
    assert not job_counts(snakemake(finished_run, "-n", "all")), "a finished run must be up to date"


def test_deleting_report_outputs_reruns_only_report_rules(finished_run: Path) -> None:
    for path in (finished_run / "results/report").iterdir():
        path.unlink()
    counts = job_counts(snakemake(finished_run, "-n", "all"))
    assert counts == {"report": 1, "html_report": 1, "all": 1}, counts


def _fake_results(work: Path, layout: Layout, cfg: dict) -> None:
    """Plausible result files in place of the placeholders: scores, student configs, curves and export runtimes,
    indexes."""
    for i, path in enumerate(layout.scores()):
        up, task, cond = Path(path).parts[-3], Path(path).parts[-2], Path(path).stem
        metric = {"pr": "per", "asr": "wer"}.get(task, "acc")
        values = [0.5 + 0.01 * (i % 40), 0.52 + 0.01 * (i % 40)]
        per_seed = [{"seed": s, "value": v, "metrics": {metric: v}, "layer_weights": [0.2, 0.3, 0.5],
                     "curve": [{"step": 10 * k, "train_loss": 1 / k, f"dev_{metric}": v * k / 5} for k in range(1, 6)]}
                    for s, v in enumerate(values)]
        (work / path).write_text(json.dumps({
            "upstream": up, "task": task, "condition": cond, "metric": metric, "value": sum(values) / 2,
            "seeds": [0, 1], "steps": 100, "batch_size": 16, "num_params": 1e6 + i, "per_seed": per_seed,
            "layer_weights": [0.2, 0.3, 0.5]}))
        rows = [{"utt_id": f"u{k}", "copy": 0, "seed": s, "metric": metric, "num": (k + i + s) % 2, "den": 1}
                for k in range(20) for s in (0, 1)]
        write_predictions(pd.DataFrame(rows), work / path.replace(".json", ".pred.tsv"))
    for name, spec in cfg["students"].items():
        (work / layout.student(name, "config.json")).write_text(json.dumps({
            "student": "transformer", "num_params": 2_000_000, "method": spec["method"], "teacher": spec["teacher"],
            "input_view": spec["input_view"], "target_view": spec["target_view"], "options": spec.get("options", {}),
            "train": spec.get("train", {}), "train_seconds": 50.0}))
        (work / layout.student(name, "curve.tsv")).write_text("step\ttrain_loss\n0\t2.0\n100\t1.0\n200\t0.5\n")
        (work / layout.export_runtime(name)).write_text(json.dumps({
            "student": name, "onnx_bytes": 29_000_000, "torch_rtf": 0.02, "onnx_rtf": 0.01}))
    for index in (work / "results/cache").glob("*/*/*/index.tsv"):
        index.write_text(f"key\tstore\trow\tstart\tframes\nu1@0\t{index.parent}/missing.zarr\t0\t0\t100\n")


def test_html_report_renders_in_chromium(finished_run: Path, tmp_path: Path) -> None:
    """`python -m pipeline report` on plausible results, `snakemake --report`, then look at it in Chromium."""
    from pipeline.report.browser import Chromium, find_chromium, render_report

    cfg = validate_config(yaml.safe_load((finished_run / "config.yaml").read_text()))
    layout = Layout(cfg)
    _fake_results(finished_run, layout, cfg)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "report", "--config", "results/config.resolved.yaml",
                           "--out-dir", "results/report", "--scores", *layout.scores()], cwd=finished_run, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cross-distortion setup 1" in (finished_run / "results/report/robustness.md").read_text()
    snakemake(finished_run, "--report", "results/report/report.html")
    html = finished_run / "results/report/report.html"
    assert html.stat().st_size > 100_000
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium) to look at the HTML report")
    with Chromium(width=1500, height=950) as browser:
        browser.open(html.as_uri(), settle=2)
        assert "Tables" in browser.text() and "Figures" in browser.text()
        assert browser.click("Tables") and browser.click("robustness")
        shown = browser.text()
        assert "Robustness to distortions" in shown and "cdm_clean" in shown and "±" in shown
        browser.screenshot(tmp_path / "robustness.png")
        browser.open(html.as_uri(), settle=2)
        assert browser.click("Figures") and browser.click("layer_weights")
        assert browser.evaluate("[...document.querySelectorAll('img')].some(i => i.naturalWidth > 300)")
    assert (tmp_path / "robustness.png").stat().st_size > 20_000  # a rendered table, not a blank page
    render_report(str(html), str(tmp_path / "shots"), ["Tables>superb", "Figures>robustness"])
    assert "SUPERB-style overview" in (tmp_path / "shots/1-Tables-superb.txt").read_text()
    assert (tmp_path / "shots/2-Figures-robustness.png").stat().st_size > 20_000
