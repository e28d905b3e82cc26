"""The claims table: every claim's rows measured on score and prediction files, with an interval and a verdict.

A row compares system A with system B (pipeline/report/claims.py) on one task and condition, on the test items
that every upstream of both was scored on (paired). Per upstream, each item's numerator (correct, or edits) is
averaged over head seeds; items are summed per utterance, so an utterance's distorted copies are resampled
together; a system's replicate upstreams (distillation seeds) are its rows (pipeline/report/bootstrap.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.downstream.predictions import prediction_path, read_predictions
from pipeline.report.bootstrap import LEVEL, RESAMPLES, Difference, paired_bootstrap
from pipeline.report.claims import CLAIMS, MARGIN_NOTES, Claim, Pair, System, systems
from pipeline.report.papers import TASK_NAMES, UpstreamInfo
from pipeline.report.scores import lower_is_better
from pipeline.report.tables import Cell, Column, Table, format_params

NOT_RUN = "not run"
VERDICTS = ("reproduced", "opposite", "inconclusive", NOT_RUN)


@dataclass
class ClaimRow:
    """One claim, pair, task and condition: the measured difference (None when not run), verdict and a note."""

    claim: Claim
    pair: Pair
    task: str
    condition: str
    result: Difference | None = None
    verdict: str = NOT_RUN
    note: str = ""


def verdict(result: Difference, margin: float) -> str:
    """reproduced / opposite / inconclusive: where the interval lies against -margin (0 for superiority claims)."""
    if result.low > -margin:
        return "reproduced"
    if result.high < -margin:
        return "opposite"
    return "inconclusive"


class Measurements:
    """Score records by (upstream, task, condition) and the per-item results in the predictions beside them."""

    def __init__(self, config: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
        from pipeline.workflow import Layout

        self.config = config
        self.layout = Layout(config)
        self.records = {(r["upstream"], r["task"], r["condition"]): r for r in records}
        self._items: dict[tuple[str, str, str], pd.DataFrame] = {}

    def missing(self, upstreams: Sequence[str], task: str, condition: str) -> str:
        """Why these upstreams cannot be compared on (task, condition); '' when every file is there."""
        if task not in self.config["downstream"].get("tasks", {}):
            return f"task {task} is not in downstream.tasks"
        if condition not in self.layout.conditions(task):
            return f"{task} is not scored on {condition}"
        for up in upstreams:
            if up not in self.layout.upstreams(task):
                return f"{up} is not evaluated on {task}"
            if condition not in self.layout.conditions(task, up):
                return f"{up} is not scored on {condition} (downstream.upstream_conditions)"
            record = self.records.get((up, task, condition))
            if record is None:
                return f"no score of {up} on {task} {condition}"
            if not Path(prediction_path(record["file"])).exists():
                return f"no predictions beside {record['file']}: re-run evaluate_{up}"
        return ""

    def items(self, upstream: str, task: str, condition: str) -> pd.DataFrame:
        """Per test item (utt_id, copy): the primary metric's numerator averaged over head seeds, and its den."""
        key = (upstream, task, condition)
        if key not in self._items:
            record = self.records[key]
            path = prediction_path(record["file"])
            frame = read_predictions(path)
            frame = frame[frame["metric"] == record["metric"]]
            if frame.empty:
                raise ValueError(f"{path}: no rows of metric {record['metric']}; re-run evaluate_{upstream}")
            grouped = frame.groupby(["utt_id", "copy"])
            if (grouped["den"].nunique() > 1).any():
                raise ValueError(f"{path}: an item's denominator differs between head seeds; "
                                 f"re-run evaluate_{upstream}")
            self._items[key] = grouped.agg(num=("num", "mean"), den=("den", "first"))
        return self._items[key]

    def higher_is_better(self, upstream: str, task: str, condition: str) -> bool:
        record = self.records[(upstream, task, condition)]
        return bool(record.get("higher_is_better", not lower_is_better(record["metric"])))

    def params(self, system: System) -> float | None:
        """Parameters of a system's first upstream: its student config or teacher extraction, else a score file."""
        name = system.upstreams[0]
        if system.info.num_params is not None:
            return system.info.num_params
        found = [r.get("num_params") for (up, _, _), r in self.records.items() if up == name]
        return next((p for p in found if p is not None), None)


def paired_counts(ms: Measurements, a: System, b: System, task: str,
                  condition: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A's and B's numerators (replicates x utterances) and the shared denominators per utterance, on the items every
    upstream of both was scored on; and how many items of the largest set were left out to pair them."""
    frames = {up: ms.items(up, task, condition) for up in (*a.upstreams, *b.upstreams)}
    common = None
    for frame in frames.values():
        common = frame.index if common is None else common.intersection(frame.index)
    common = common.sort_values()
    if common.empty:
        raise ValueError(f"{task} {condition}: {', '.join(frames)} share no scored test item")
    dens = [frame.loc[common, "den"].to_numpy() for frame in frames.values()]
    if any(not np.array_equal(d, dens[0]) for d in dens[1:]):
        raise ValueError(f"{task} {condition}: {', '.join(frames)} count different reference lengths for the same "
                         "items (scored against different manifests?); re-run their evaluate jobs")
    table = pd.DataFrame({up: frame.loc[common, "num"].to_numpy() for up, frame in frames.items()}, index=common)
    table["den"] = dens[0]
    per_utt = table.groupby(level="utt_id", sort=True).sum()
    dropped = max(len(f) for f in frames.values()) - len(common)
    return (per_utt[list(a.upstreams)].to_numpy().T, per_utt[list(b.upstreams)].to_numpy().T,
            per_utt["den"].to_numpy(), dropped)


def measure(claim: Claim, pair: Pair, task: str, condition: str, ms: Measurements) -> ClaimRow:
    """One row: 'not run' with the reason, or the bootstrap difference and its verdict."""
    row = ClaimRow(claim, pair, task, condition)
    if pair.a is None or pair.b is None:
        row.note = pair.missing
        return row
    why = ms.missing([*pair.a.upstreams, *pair.b.upstreams], task, condition)
    if why:
        row.note = why
        return row
    a, b, den, dropped = paired_counts(ms, pair.a, pair.b, task, condition)
    row.result = paired_bootstrap(a, b, den, ms.higher_is_better(pair.a.upstreams[0], task, condition),
                                  claim.scale_b)
    row.verdict = verdict(row.result, claim.margin)
    notes = []
    if claim.show_params:
        layers = ms.config.get("students", {}).get(pair.a.upstreams[0], {}).get("arch", {}).get("layers")
        pa, pb = ms.params(pair.a), ms.params(pair.b)
        notes += [f"A has {layers} layers"] if layers else []
        notes += [f"params {format_params(pa)} / {format_params(pb)} = {pa / pb:.2f}x"] if pa and pb else []
    if len(pair.a.upstreams) > 1 or len(pair.b.upstreams) > 1:
        notes.append(f"distillation seeds: A {len(pair.a.upstreams)}, B {len(pair.b.upstreams)}")
    if dropped:
        notes.append(f"paired on {int(den.size)} utterances; {dropped} items scored for only one side left out")
    row.note = "; ".join(notes)
    return row


def measure_claims(config: dict[str, Any] | None, infos: dict[str, UpstreamInfo],
                   records: Sequence[dict[str, Any]]) -> list[ClaimRow]:
    """Every claim x pair x task x condition; without the run's config every row is 'not run' (nothing to select)."""
    if config is None:
        blank = Pair(None, None, "needs the run's config (python -m pipeline report --config ...)")
        return [ClaimRow(c, blank, t, k, note=blank.missing) for c in CLAIMS for t in c.tasks for k in c.conditions]
    found, ms = systems(config, infos), Measurements(config, records)
    return [measure(claim, pair, task, condition, ms) for claim in CLAIMS for pair in claim.pairs(found)
            for task in claim.tasks for condition in claim.conditions]


def _task_label(task: str) -> str:
    metric = {"pr": "PER", "asr": "WER"}.get(task, "acc")
    return f"{TASK_NAMES.get(task, task)} ({metric}{'↓' if lower_is_better(metric.lower()) else '↑'})"


NOTES = (
    "One row per claim, compared pair, task and condition. A and B are chosen by method, options, views and teachers, "
    "as in the paper tables, never by name; names joined by + are distillation seeds of one recipe, averaged per "
    "utterance.",
    "difference: points of the task's metric, signed so that positive means the claim holds (A's accuracy minus B's; "
    "B's PER / WER minus A's). 95 % CI: paired bootstrap over test utterances ({resamples} resamples, fixed seed, "
    "percentile interval): both systems on the same utterances, an utterance's distorted copies drawn together, an "
    "error rate as the resample's edits over its reference tokens; head seeds averaged per item; distillation seeds "
    "resampled too where a recipe has several.",
    "verdict: reproduced when the interval lies above 0 (above -margin for non-inferiority claims), opposite when it "
    "lies below, inconclusive when it contains it: the test sets are too small to tell, which is not evidence of no "
    "difference. not run: the config does not train or evaluate what the claim compares (the note says what).",
)


def claims_table(rows: Sequence[ClaimRow]) -> Table:
    """The claims table: a section per claim (its one line, paper and test), a row per pair, task and condition."""
    columns = [Column("a", "A"), Column("b", "B"), Column("task", "task"), Column("condition", "condition"),
               Column("value_a", "A", "score (%)"), Column("value_b", "B", "score (%)"),
               Column("difference", "difference (points)"), Column("ci_low", "low", f"{LEVEL:.0%} CI"),
               Column("ci_high", "high", f"{LEVEL:.0%} CI"), Column("verdict", "verdict"),
               Column("utterances", "utterances"), Column("note", "note")]
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    notes = [NOTES[0], NOTES[1].format(resamples=RESAMPLES), NOTES[2],
             *(MARGIN_NOTES[m] for m in sorted({r.claim.margin for r in rows}) if m in MARGIN_NOTES),
             "This run: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."]
    table = Table("claims", "The papers' claims, tested", columns, notes=notes)
    for r in rows:
        d = r.result
        table.add(r.claim.title, [
            Cell(r.pair.a.name if r.pair.a else "-"), Cell(r.pair.b.name if r.pair.b else "-"),
            Cell(_task_label(r.task)), Cell(r.condition),
            Cell(d and d.a, kind="pct"), Cell(d and d.b, kind="pct"), Cell(d and d.value, kind="dpct"),
            Cell(d and d.low, kind="dpct"), Cell(d and d.high, kind="dpct"), Cell(r.verdict),
            Cell(d and d.utterances, kind="int"), Cell(r.note)])
    return table


def figure_rows(rows: Sequence[ClaimRow]) -> list[dict[str, Any]]:
    """The measured rows as plain records for `figures.claims_figure`."""
    return [{"label": f"{r.claim.key}: {r.pair.a.label} vs {r.pair.b.label}, {TASK_NAMES.get(r.task, r.task)} "
                      f"{r.condition}", "value": r.result.value, "low": r.result.low, "high": r.result.high,
             "margin": r.claim.margin, "verdict": r.verdict} for r in rows if r.result is not None]
