"""Assemble the report: scores (and the predictions beside them) -> claims, paper tables, overview, cost tables and
figures."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.report import figures
from pipeline.report.claim_results import NOT_RUN, claims_table, figure_rows, measure_claims
from pipeline.report.convergence import convergence_table
from pipeline.report.cost import cost_tables, read_runtime, teacher_extraction
from pipeline.report.papers import (
    CONDITION_ORDER,
    Scores,
    UpstreamInfo,
    describe,
    ensemble_table,
    lstm_table,
    read_student_configs,
    robustness_table,
    summary_table,
    superb_table,
    text_table,
)
from pipeline.report.scores import load_scores, long_form, summarise
from pipeline.report.tables import Table, to_markdown, write_table

log = logging.getLogger(__name__)


def _curves(records: Sequence[dict[str, Any]], tasks: Sequence[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """Head dev curves (first seed) per task and upstream, from the score JSONs' per-seed records."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for r in records:
        runs = r.get("per_seed") or []
        if runs and runs[0].get("curve") and r["upstream"] not in out.get(r["task"], {}):
            out.setdefault(r["task"], {})[r["upstream"]] = pd.DataFrame(runs[0]["curve"])
    return {t: out[t] for t in tasks if t in out}


def _layer_weights(records: Sequence[dict[str, Any]], tasks: Sequence[str],
                   upstreams: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if r.get("layer_weights") and r["upstream"] not in out.get(r["task"], {}):
            out.setdefault(r["task"], {})[r["upstream"]] = r["layer_weights"]
    return {t: {u: out[t][u] for u in upstreams if u in out[t]} for t in tasks if t in out}


def _student_curves(layout: Any, students: Sequence[str]) -> dict[str, pd.DataFrame]:
    out = {}
    for name in students:
        path = Path(layout.student(name, "curve.tsv"))
        if path.exists():
            curve = pd.read_csv(path, sep="\t")
            if {"step", "train_loss"} <= set(curve.columns):
                out[name] = curve
    return out


def build(scores: Sequence[str], out: Path, config: str | None) -> None:
    """Write every report file into `out` (see pipeline.workflow.REPORT_FILES)."""
    from pipeline.config import load_config
    from pipeline.workflow import Layout

    out.mkdir(parents=True, exist_ok=True)
    records = load_scores(scores)
    long = long_form(records)
    long.to_csv(out / "scores.csv", index=False)
    summary = summarise(long)
    lookup = Scores(summary)
    upstreams = list(dict.fromkeys(summary["upstream"]))

    if config:
        cfg = load_config(config)
        layout = Layout(cfg)
        students = list(cfg["students"])
        infos = describe(cfg, read_student_configs([p for s in students
                                                    if Path(p := layout.student(s, "config.json")).exists()]))
        extraction = {n: teacher_extraction(layout.root, n)
                      for n, i in infos.items() if i.kind == "teacher"}
        for name, e in extraction.items():
            infos[name].num_params = infos[name].num_params or e.num_params
        conditions = list(cfg["downstream"].get("conditions", CONDITION_ORDER))
        upstreams = list(dict.fromkeys([*layout.evaluations(), *upstreams]))
    else:
        cfg, layout, students = None, None, []
        infos = {u: UpstreamInfo(u, "") for u in upstreams}
        conditions = [c for c in CONDITION_ORDER if c in set(summary["condition"])]
    conditions += sorted(set(summary["condition"]) - set(conditions))

    claims = measure_claims(cfg, infos, records)
    robustness = robustness_table(infos, lookup, conditions)
    tables: list[Table] = [
        claims_table(claims),
        superb_table(infos, lookup, upstreams),
        robustness,
        ensemble_table(infos, lookup),
        lstm_table(infos, lookup),
        text_table(infos, lookup, conditions),
    ]
    if cfg is not None:
        runtimes = {s: read_runtime(layout.export_runtime(s)) if layout.exports else {} for s in students}
        tables += cost_tables(extraction, infos, records, runtimes)
    else:
        tables += [Table(n, t, [], notes=["needs the run's config (python -m pipeline report --config ...)"])
                   for n, t in (("cost_teachers", "Cost of the teacher feature cache"),
                                ("cost_students", "Per-student training cost"))]
    tables.append(convergence_table(records))
    tables.append(summary_table(infos, lookup, upstreams, conditions))
    for table in tables:
        write_table(table, out)
    (out / "tables.md").write_text("# Report tables\n\n" + "\n".join(to_markdown(t) for t in tables))

    figures.claims_figure(figure_rows(claims), out / "claims.png", sum(r.verdict == NOT_RUN for r in claims))
    robust = [row[0].value for row in robustness.rows]  # the table's upstreams: reference, teachers, students
    figures.robustness_figure(summary, out / "robustness.png", ["ks", "ic", "asr"], conditions,
                              [u for u in robust if u in upstreams] or upstreams)
    figures.head_curves_figure(_curves(records, lookup.tasks), out / "head_curves.png")
    figures.student_curves_figure(_student_curves(layout, students) if layout else {}, out / "student_curves.png")
    figures.layer_weights_figure(_layer_weights([r for r in records if r["condition"] == "clean"] or records,
                                                lookup.tasks, upstreams), out / "layer_weights.png")
    log.info("report: %d score files, %d tables -> %s", len(records), len(tables), out)


def build_report(scores: list[str], out_dir: str, config: str | None = None) -> None:
    """Read score JSONs and the predictions beside them (and, given the run's config, student configs, curves, cache
    indexes and extraction benchmarks); write every table in four formats, tables.md, scores.csv and the figures
    into out_dir."""
    build(scores, Path(out_dir), config)
