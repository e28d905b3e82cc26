"""The claims table from fake score and prediction files of the default config's layout: systems chosen by what
they are (not their names), planted effects found with the right verdict, missing systems and tasks listed as
'not run', replicate students grouped, and the table's point estimates equal to the score files' values."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fake_results import ROOT, UTTERANCES, default_config, fake_run

from pipeline.report.build import build_report
from pipeline.report.claim_results import NOT_RUN, measure_claims
from pipeline.report.claims import CLAIMS, systems
from pipeline.report.papers import describe
from pipeline.workflow import Layout


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("claims")
    cfg = default_config(tmp)
    scores = fake_run(tmp, cfg)
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    build_report(scores, str(tmp / "report"), str(tmp / "config.yaml"))
    return tmp / "report", cfg


def _rows(report_dir: Path) -> pd.DataFrame:
    rows = pd.read_csv(report_dir / "claims.csv")
    text = ["section", "a", "b", "task", "condition", "verdict", "note"]
    rows[text] = rows[text].fillna("")
    return rows


def test_every_claim_is_listed_with_its_paper(report):
    out, _ = report
    for ext in ("md", "csv", "tex", "html"):
        assert (out / f"claims.{ext}").stat().st_size > 0
    assert (out / "claims.png").stat().st_size > 10_000
    rows = _rows(out)
    assert {c.title for c in CLAIMS} == set(rows["section"])
    for paper in ("2110.01900", "2210.07978", "2312.12153", "2302.12757", "2309.09920", "2303.03600"):
        assert rows["section"].str.contains(paper).any(), paper
    assert set(rows["verdict"]) <= {"reproduced", "opposite", "inconclusive", NOT_RUN}
    assert "The papers' claims, tested" in (out / "claims.md").read_text()
    assert "margin of 2 points" in (out / "claims.md").read_text()


def _row(rows: pd.DataFrame, key: str, a: str, b: str, task: str, condition: str) -> pd.Series:
    title = next(c.title for c in CLAIMS if c.key == key)
    hit = rows[(rows["section"] == title) & (rows["a"] == a) & (rows["b"] == b) & rows["task"].str.startswith(task)
               & (rows["condition"] == condition)]
    assert len(hit) == 1, (key, a, b, task, condition, hit)
    return hit.iloc[0]


def test_planted_effects_get_their_verdicts(report):
    rows = _rows(report[0])
    assert _row(rows, "cdm", "cdm_clean", "distilhubert", "KS", "indomain")["verdict"] == "reproduced"
    assert _row(rows, "cdm", "cdm_noisy", "distilhubert", "ASR", "ood")["verdict"] == "reproduced"
    assert _row(rows, "dann", "dann", "cdm_clean", "IC", "ood")["verdict"] == "opposite"
    same = _row(rows, "ensemble_average", "ens_avg", "ens_concat", "SID", "clean")  # identical predictions
    assert (same["verdict"], same["difference"], same["ci_low"], same["ci_high"]) == ("inconclusive", 0, 0, 0)
    no_worse = _row(rows, "correlation_auto", "corr_auto", "corr_fixed", "ASR", "indomain")  # identical, margin 2
    assert no_worse["verdict"] == "reproduced" and no_worse["ci_low"] == 0
    heads = _row(rows, "ensemble_heads", "ens_heads", "distilhubert", "PR", "clean")
    assert heads["verdict"] == "reproduced" and heads["difference"] > 0  # PER: B's minus A's
    assert _row(rows, "distilhubert", "distilhubert", "whisper_base", "SID", "clean")["verdict"] == "opposite"
    params = _row(rows, "lstm_competitive", "lstm_kd", "distilhubert", "ASR", "clean")["note"]
    assert "params 1.0M / 7.0M = 0.14x" in params
    assert _row(rows, "distilhubert", "distilhubert", "whisper_base", "KS", "clean")["note"] == (
        "A has 2 layers; params 7.0M / 20.0M = 0.35x")


def test_differences_are_the_score_files_values(report):
    """The table's A and B values equal the score JSONs' mean over head seeds, and its difference is theirs."""
    out, cfg = report
    layout = Layout(cfg)
    rows = _rows(out)
    for key, a, b, task, cond, scale in (("cdm", "cdm_clean", "distilhubert", "KS", "ood", 1.0),
                                         ("distilhubert", "distilhubert", "whisper_base", "ER", "clean", 0.9),
                                         ("lstm_dkd", "lstm_dkd", "lstm_kd", "PR", "clean", 1.0)):
        row = _row(rows, key, a, b, task, cond)
        va = json.loads(Path(layout.score(a, task.lower(), cond)).read_text())["value"]
        vb = json.loads(Path(layout.score(b, task.lower(), cond)).read_text())["value"]
        assert row["value_a"] == pytest.approx(va) and row["value_b"] == pytest.approx(vb)
        sign = -1 if task == "PR" else 1
        assert row["difference"] == pytest.approx(sign * (va - scale * vb))
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        assert row["utterances"] == UTTERANCES


def test_claims_without_their_students_are_not_run(report):
    rows = _rows(report[0])
    tiny = rows[(rows["a"] == "ens_heads") & (rows["note"].str.contains("no single-teacher student of whisper_tiny"))]
    assert len(tiny) == 4 and set(tiny["verdict"]) == {NOT_RUN}  # PR, SID, ER, ASR
    assert rows[rows["verdict"] != NOT_RUN]["ci_low"].notna().all()


def test_missing_tasks_and_students_are_not_run(tmp_path):
    cfg = default_config(tmp_path)
    del cfg["downstream"]["tasks"]["pr"]
    for name in ("pad", "dann"):
        del cfg["students"][name]
    scores = fake_run(tmp_path, cfg)
    infos = describe(cfg, {})
    rows = measure_claims(cfg, infos, [json.loads(Path(p).read_text()) | {"file": p} for p in scores])
    pr = [r for r in rows if r.task == "pr" and r.pair.a and r.pair.b]  # ensembles 2, LSTM 3 (others lack a system)
    assert len(pr) == 5 and all(r.verdict == NOT_RUN and r.note == "task pr is not in downstream.tasks" for r in pr)
    pad = [r for r in rows if r.claim.key == "pad"]
    assert len(pad) == 1 and pad[0].verdict == NOT_RUN and "no text-aligned student (method pad)" in pad[0].note
    dann = [r for r in rows if r.claim.key == "dann"]
    assert len(dann) == 6 and all(r.verdict == NOT_RUN for r in dann)  # KS / IC / ASR x indomain / ood
    unconfigured = measure_claims(None, {}, [])
    assert unconfigured and all(r.verdict == NOT_RUN and "config" in r.note for r in unconfigured)


def test_conditions_an_upstream_is_not_scored_on_are_not_run(tmp_path):
    cfg = default_config(tmp_path)
    cfg["downstream"]["upstream_conditions"] = {"cdm_noisy": ["clean"]}
    scores = fake_run(tmp_path, cfg)
    rows = measure_claims(cfg, describe(cfg, {}), [json.loads(Path(p).read_text()) | {"file": p} for p in scores])
    noisy = [r for r in rows if r.claim.key == "cdm" and r.pair.a and r.pair.a.name == "cdm_noisy"]
    distorted, clean = [r for r in noisy if r.condition != "clean"], [r for r in rows if r.claim.key == "cdm_clean"]
    assert len(distorted) == 6 and all(r.verdict == NOT_RUN for r in distorted)
    assert distorted[0].note == "cdm_noisy is not scored on indomain (downstream.upstream_conditions)"
    assert clean and all(r.verdict != NOT_RUN for r in clean)


def test_systems_are_chosen_by_what_they_are_not_by_name(tmp_path):
    cfg = default_config(tmp_path)
    renamed = {"cdm_clean": "alpha", "distilhubert": "omega", "corr_auto": "zeta"}
    cfg["students"] = {renamed.get(n, n): s for n, s in cfg["students"].items()}
    found = systems(cfg, describe(cfg, {}))
    cdm = next(c for c in CLAIMS if c.key == "cdm")
    names = {(p.a.name, p.b.name) for p in cdm.pairs(found)}
    assert names == {("alpha", "omega"), ("cdm_noisy", "omega")}
    auto = next(c for c in CLAIMS if c.key == "correlation_auto")
    assert [(p.a.name, p.b.name) for p in auto.pairs(found)] == [("zeta", "corr_fixed")]


def test_distillation_seeds_of_one_recipe_are_one_system():
    """Students whose entries differ only in `seed` are replicates of one system; any other difference is not."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    base = cfg["students"]["distilhubert"]
    cfg["students"] = {"dh_s1": {**base, "seed": 1}, "dh_s2": {**base, "seed": 2}, "dh_s3": {**base, "seed": 3},
                       "dh_wide": {**base, "arch": {**base["arch"], "dim": 768}}}
    found = [s for s in systems(cfg, describe(cfg, {})) if s.info.kind == "student"]
    assert sorted(s.upstreams for s in found) == [("dh_s1", "dh_s2", "dh_s3"), ("dh_wide",)]
