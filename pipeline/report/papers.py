"""Paper-shaped tables: which upstream belongs in which comparison, read from its method, options and views.

Upstreams are classified by what they are (config `teachers` / `students` entries and each student's
config.json: method, teacher(s), input and target view, options, architecture), never by their names, so
renaming a student or adding a second one of a kind puts it in the right table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.report.scores import lower_is_better
from pipeline.report.tables import MISSING_MARK, Cell, Column, Table

TASK_ORDER = ("pr", "ks", "ic", "sid", "er", "asr")  # SUPERB's column order
TASK_NAMES = {"pr": "PR", "ks": "KS", "ic": "IC", "sid": "SID", "er": "ER", "asr": "ASR"}
CONDITION_ORDER = ("clean", "indomain", "ood", "real")
ROBUST_METHODS = {"distilhubert", "dann", "correlation"}
LSTM_METHODS = {"kd", "dkd"}
TEXT_METHODS = {"pad", "text_metric"}
# parameter-free feature baselines (teacher kinds): a reference row in every table that compares upstreams
REFERENCE_KINDS = {"fbank": "log-mel filterbank + deltas (no parameters)"}


@dataclass
class UpstreamInfo:
    """What the report needs to know about one upstream (teacher or student)."""

    name: str
    kind: str  # teacher | student
    method: str = ""
    teachers: tuple[str, ...] = ()
    input_view: str = "clean"
    target_view: str = "clean"
    options: dict[str, Any] = field(default_factory=dict)
    arch: str = ""
    teacher_kind: str = ""
    num_params: float | None = None
    train_seconds: float | None = None
    train: dict[str, Any] = field(default_factory=dict)
    dev_cos: float | None = None  # a student's mean target cosine on held-out dev crops after training
    dev_flat_step: int | None = None  # first dev evaluation within 1 % of the final dev cosine

    @property
    def is_reference(self) -> bool:
        """A parameter-free feature baseline (SUPERB's FBANK row), configured as a teacher of kind fbank."""
        return self.kind == "teacher" and self.teacher_kind in REFERENCE_KINDS

    @property
    def is_baseline(self) -> bool:
        """A DistilHuBERT student on clean input and clean targets from one teacher."""
        return (self.method == "distilhubert" and len(self.teachers) == 1
                and self.input_view == "clean" and self.target_view == "clean")


def _teachers(spec: dict[str, Any]) -> tuple[str, ...]:
    raw = spec.get("teachers", spec.get("teacher", ()))
    return (raw,) if isinstance(raw, str) else tuple(raw)


def describe(config: dict[str, Any], student_configs: dict[str, dict[str, Any]]) -> dict[str, UpstreamInfo]:
    """UpstreamInfo for every teacher and student of the config; a student's config.json (if trained) adds
    its parameter count, training time and the options it actually resolved."""
    infos = {name: UpstreamInfo(name, "teacher", teacher_kind=spec.get("kind", ""))
             for name, spec in config.get("teachers", {}).items()}
    for name, spec in config.get("students", {}).items():
        trained = student_configs.get(name, {})
        merged = {**spec, **{k: v for k, v in trained.items() if k in ("method", "teacher", "teachers", "input_view",
                                                                          "target_view", "options")}}
        infos[name] = UpstreamInfo(
            name, "student", method=merged["method"], teachers=_teachers(merged),
            input_view=merged.get("input_view", "clean"), target_view=merged.get("target_view", "clean"),
            options={**spec.get("options", {}), **(trained.get("options") or {})},
            arch=trained.get("student", spec.get("arch_kind", "")), num_params=trained.get("num_params"),
            train_seconds=trained.get("train_seconds"), train=trained.get("train") or spec.get("train", {}),
            dev_cos=trained.get("dev_target_cosine"), dev_flat_step=trained.get("dev_flat_step"))
    return infos


def read_student_configs(paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    """students/<name>/config.json files by student name (the directory name)."""
    out = {}
    for path in paths:
        try:
            out[Path(path).parent.name] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read the student's config.json ({err}); retrain the student") from err
    return out


def label(info: UpstreamInfo) -> str:
    """A short description of how the upstream was made, for the tables' method column."""
    if info.is_reference:
        return REFERENCE_KINDS[info.teacher_kind]
    if info.kind == "teacher":
        return f"teacher ({info.teacher_kind})" if info.teacher_kind else "teacher"
    m, o = info.method, info.options
    views = f"{info.input_view}→{info.target_view}"
    if m == "distilhubert":
        if info.input_view == "clean":
            return f"DistilHuBERT ({views})"
        setup = 1 if info.target_view == "clean" else 2
        return f"cross-distortion setup {setup} ({views})"
    if m == "dann":
        return f"domain-adversarial ({views}, λ={o.get('lambda', 'default')})"
    if m == "correlation":
        return f"correlation metrics, {o.get('weighting', 'fixed')} weights ({views})"
    if m == "ensemble":
        names = {"average": "layerwise average", "concat": "layerwise concatenation", "heads": "multiple heads"}
        return f"ensemble, {names.get(o.get('aggregate', 'average'), o.get('aggregate'))}"
    if m in LSTM_METHODS:
        return f"LSTM, {m.upper()}"
    if m == "pad":
        return "PAD-style (global + local alignment)"
    if m == "text_metric":
        return f"metric baseline ({o.get('loss', 'mse')})"
    return m


def robustness_section(info: UpstreamInfo) -> str | None:
    """Row group of a student in the robustness comparison (arXiv 2210.07978 / 2312.12153), or None."""
    if info.kind != "student" or info.method not in ROBUST_METHODS or len(info.teachers) != 1:
        return None
    if info.method == "distilhubert":
        return "baseline" if info.input_view == "clean" else "cross-distortion mapping"
    return {"dann": "domain-adversarial", "correlation": "correlation metrics"}[info.method]


class Scores:
    """Lookup of summarised scores: (upstream, task, condition, metric) -> Cell."""

    def __init__(self, summary: pd.DataFrame) -> None:
        self.rows = {(r.upstream, r.task, r.condition, r.metric): r for r in summary.itertuples()}
        self.metric = summary[summary["primary"]].groupby("task")["metric"].first().to_dict()
        self.tasks = [t for t in TASK_ORDER if t in self.metric] + sorted(set(self.metric) - set(TASK_ORDER))
        self.params = summary.dropna(subset=["num_params"]).groupby("upstream")["num_params"].first().to_dict()

    def cell(self, upstream: str, task: str, condition: str, metric: str | None = None) -> Cell:
        r = self.rows.get((upstream, task, condition, metric or self.metric.get(task, "")))
        if r is None:
            return Cell(None, kind="pct")
        return Cell(r.value, r.std if r.n_seeds > 1 else None, "pct", missing=int(r.missing_utterances))


def _metric_header(metric: str) -> str:
    return f"{metric.upper()}{'↓' if lower_is_better(metric) else '↑'}"


def _columns(scores: Scores, tasks: Sequence[str], conditions: Sequence[str],
             extra_metrics: dict[str, Sequence[str]] | None = None,
             real_if_labelled: bool = True) -> list[tuple[str, str, str, Column]]:
    """(task, condition, metric, Column) for every task and condition (its primary metric, then extras);
    'real' only for tasks the real corpus has labels for, unless `real_if_labelled` is False."""
    out = []
    for task in tasks:
        metric = scores.metric.get(task, {"asr": "wer", "pr": "per"}.get(task, "acc"))
        for m in [metric, *(extra_metrics or {}).get(task, ())]:
            for cond in [c for c in conditions if c != "real" or not real_if_labelled or _real_labels(task)]:
                group = f"{TASK_NAMES.get(task, task)} {_metric_header(m)}"
                header = cond if len(conditions) > 1 else group
                out.append((task, cond, m, Column(f"{task}_{m}_{cond}", header, group if len(conditions) > 1 else "")))
    return out


def _real_labels(task: str) -> bool:
    """Whether the real-speech corpus has this task's labels (else no 'real' column for it)."""
    from pipeline.downstream.tasks import TASKS
    from pipeline.workflow import REAL_LABELS

    return task not in TASKS or TASKS[task].column in REAL_LABELS


def _metric_table(name: str, title: str, scores: Scores, rows: Sequence[tuple[str, UpstreamInfo]],
                  cols: Sequence[tuple[str, str, str, Column]], notes: Sequence[str]) -> Table:
    """Rows (section, upstream) x [upstream, method, params, metric columns]; best per metric column in bold."""
    base = [Column("upstream", "upstream"), Column("method", "method"), Column("params", "params")]
    notes = [*notes, REFERENCE_NOTE] if any(section == "reference" for section, _ in rows) else list(notes)
    table = Table(name, title, base + [c for *_, c in cols], notes=notes)
    left_out = []
    for section, info in rows:
        params = info.num_params if info.num_params is not None else scores.params.get(info.name)
        cells = [scores.cell(info.name, t, c, m) for t, c, m, _ in cols]
        left_out += [f"{info.name} {TASK_NAMES.get(t, t)} {c}: {cell.missing}"
                     for (t, c, _, _), cell in zip(cols, cells, strict=True) if cell.missing]
        table.add(section, [Cell(info.name), Cell(label(info)), Cell(params, kind="params"), *cells])
    for _, _, metric, col in cols:
        table.mark_best(col.key, lower_is_better(metric))
    if left_out:
        table.notes.append(f"{MISSING_MARK} Scored without some labelled test utterances, which have no cached "
                           f"features ({'; '.join(dict.fromkeys(left_out))}); their ids are under "
                           "`missing_utterances` in the score file. Re-run extraction of that view to score them all.")
    return table


NOTE = ("Values in %, mean ± std over seeds where there are several; best per column in bold; ↑ higher is "
        "better (accuracy), ↓ lower is better (PER, WER, CER). '-' = not run or not configured.")


REFERENCE_NOTE = ("reference: log-mel filterbank features with deltas (SUPERB's FBANK row, at 50 Hz; "
                  "pipeline/teachers/fbank.py), no parameters: what the heads reach without a learned upstream.")


def _with_references(infos: dict[str, UpstreamInfo],
                     rows: list[tuple[str, UpstreamInfo]]) -> list[tuple[str, UpstreamInfo]]:
    """The reference upstreams (parameter-free baselines) as the first rows of a table that has any rows."""
    listed = {i.name for _, i in rows}
    refs = [("reference", i) for i in infos.values() if i.is_reference and i.name not in listed]
    return refs + rows if rows else rows


def _present(infos: dict[str, UpstreamInfo], scores: Scores, names: Sequence[str]) -> list[UpstreamInfo]:
    return [infos[n] for n in names if n in infos]


def superb_table(infos: dict[str, UpstreamInfo], scores: Scores, upstreams: Sequence[str]) -> Table:
    """SUPERB-style overview: every evaluated upstream, clean test sets, all tasks, parameter counts."""
    order = ["reference", "teachers", "students"]
    rows = [("reference" if i.is_reference else "teachers" if i.kind == "teacher" else "students", i)
            for i in _present(infos, scores, upstreams)]
    rows.sort(key=lambda r: order.index(r[0]))
    cols = _columns(scores, scores.tasks, ["clean"], {"asr": ["cer"]})
    return _metric_table("superb", "SUPERB-style overview (clean test sets)", scores, rows, cols,
                         [NOTE, "Frozen upstreams, learnable softmax-weighted layer sum, small heads "
                                "(SUPERB recipes)."])


def robustness_table(infos: dict[str, UpstreamInfo], scores: Scores, conditions: Sequence[str]) -> Table:
    """Robustness (arXiv 2210.07978, 2312.12153): KS / IC / ASR under clean, in-domain and out-of-domain
    distortions (and real speech), baseline vs cross-distortion mapping vs domain-adversarial vs correlation."""
    students = [(s, i) for i in infos.values() if (s := robustness_section(i))]
    order = ["baseline", "cross-distortion mapping", "domain-adversarial", "correlation metrics"]
    students.sort(key=lambda r: order.index(r[0]))
    teachers = dict.fromkeys(t for _, i in students for t in i.teachers if t in infos)
    rows = _with_references(infos, [("teacher", infos[t]) for t in teachers] + students)
    cols = _columns(scores, ["ks", "ic", "asr"], conditions)
    return _metric_table("robustness", "Robustness to distortions: KS / IC / ASR by test condition", scores, rows,
                         cols, [NOTE, "indomain: Gaussian / coloured noise or babble, with small rooms, pitch shift "
                                "or band-reject (arXiv 2210.07978's double recipe: the distortion family students "
                                "were trained with); ood: unseen sound effects, music, halls, telephone codec, "
                                "clipping; real: Asterisk prompts (real human speech)."])


def ensemble_table(infos: dict[str, UpstreamInfo], scores: Scores) -> Table:
    """Ensembles (arXiv 2302.12757): PR / SID / ER / ASR for the single teachers, single-teacher students
    and ensemble students by aggregation (average, concatenation, multiple heads)."""
    ensembles = [i for i in infos.values() if i.kind == "student" and (i.method == "ensemble" or len(i.teachers) > 1)]
    teachers = dict.fromkeys(t for i in ensembles for t in i.teachers if t in infos)
    singles = [i for i in infos.values() if i.is_baseline and i.teachers[0] in teachers]
    rows = _with_references(infos, [("single teachers", infos[t]) for t in teachers]
                            + [("single-teacher students", i) for i in singles]
                            + [("ensemble students", i) for i in ensembles])
    cols = _columns(scores, ["pr", "sid", "er", "asr"], ["clean"])
    return _metric_table("ensembles", "Ensemble distillation: PR / SID / ER / ASR (clean)", scores, rows, cols,
                         [NOTE, "Single-teacher students: the DistilHuBERT recipe on one of the ensemble's teachers."])


def lstm_table(infos: dict[str, UpstreamInfo], scores: Scores) -> Table:
    """LSTM students (arXiv 2309.09920): parameters, PR and ASR for the transformer student vs LSTM-KD vs
    LSTM-DKD distilled from the same teacher."""
    lstms = [i for i in infos.values() if i.kind == "student" and (i.method in LSTM_METHODS or i.arch == "lstm")]
    teachers = {t for i in lstms for t in i.teachers}
    transformers = [i for i in infos.values() if i.is_baseline and i.teachers[0] in teachers]
    rows = _with_references(infos, [("transformer", i) for i in transformers] + [("LSTM", i) for i in lstms])
    cols = _columns(scores, ["pr", "asr"], ["clean"], {"asr": ["cer"]})
    return _metric_table("lstm", "LSTM students with KD and decoupled KD: parameters, PR, ASR (clean)", scores,
                         rows, cols, [NOTE, "KD / DKD on teacher posteriors over a k-means codebook of teacher "
                                      "features; the transformer student is the DistilHuBERT recipe, same teacher."])


def text_table(infos: dict[str, UpstreamInfo], scores: Scores, conditions: Sequence[str]) -> Table:
    """Text-aligned students (arXiv 2303.03600): intent accuracy, metric-distillation baselines vs PAD-style."""
    rows = [("metric baselines", i) for i in infos.values() if i.kind == "student" and i.method == "text_metric"]
    rows += [("PAD-style", i) for i in infos.values() if i.kind == "student" and i.method == "pad"]
    rows = _with_references(infos, rows)
    cols = _columns(scores, ["ic"], [c for c in conditions if c != "real"])
    return _metric_table("text", "Text-aligned students: intent classification accuracy", scores, rows, cols,
                         [NOTE, "Students aligned to all-MiniLM-L6-v2 text embeddings; PAD-style = global "
                                "(InfoNCE) + local prior-guided monotonic alignment at mixed granularity."])


def summary_table(infos: dict[str, UpstreamInfo], scores: Scores, upstreams: Sequence[str],
                  conditions: Sequence[str]) -> Table:
    """Every upstream x every task and condition (the full grid behind the paper tables)."""
    known = [n for n in upstreams if n in infos]
    rows = [("", infos[n]) for n in known] + [("", UpstreamInfo(n, "")) for n in upstreams if n not in infos]
    cols = _columns(scores, scores.tasks, conditions, real_if_labelled=False)
    cols = [c for c in cols if any((u, c[0], c[1], c[2]) in scores.rows for u in upstreams)]
    return _metric_table("summary", "All downstream results", scores, rows, cols, [NOTE])
