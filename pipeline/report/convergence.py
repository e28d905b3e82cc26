"""Did the downstream heads converge? Per task: steps run, the dev-selected step as a share of them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from pipeline.report.tables import Cell, Column, Table

TASK_ORDER = ("ks", "ic", "sid", "er", "pr", "asr")


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def head_runs(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """One entry per trained head (upstream, seed) and task, from the clean score files (a head is scored on
    every condition, trained once)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("condition") != "clean":
            continue
        for run in r.get("per_seed") or []:
            curve = run.get("curve") or []
            ran = curve[-1]["step"] if curve else None  # early stopping ends the curve where the run ended
            if run.get("best_step") and ran:
                out.setdefault(r["task"], []).append({"upstream": r["upstream"], "best": run["best_step"],
                                                      "ran": ran, "steps": r.get("steps") or ran,
                                                      "late_gain": late_gain(curve, r.get("metric", ""))})
    return out


def late_gain(curve: Sequence[dict[str, Any]], metric: str) -> float | None:
    """How much the best dev value improved over the last quarter of the run (metric units, >= 0): near zero
    when the head had flattened, whether or not its best step is the last one."""
    key = f"dev_{metric}"
    points = [(row["step"], row[key]) for row in curve if key in row]
    if len(points) < 2:
        return None
    lower = metric in ("per", "wer", "cer")
    pick = min if lower else max
    cut = 0.75 * points[-1][0]
    before = [v for step, v in points if step <= cut]
    if not before:
        return None
    return abs(pick(v for _, v in points) - pick(before))


def convergence_table(records: Sequence[dict[str, Any]]) -> Table:
    """Rows per task: heads, configured steps, median steps run, how many stopped early, and the best (dev-
    selected) step as a share of the steps run: median and the largest. A share near 100 % means the dev metric
    was still improving at the end; early stopping (`patience`) ends a run once it has flattened."""
    cols = [Column("task", "task"), Column("heads", "heads"), Column("steps", "steps (max)"),
            Column("ran", "steps run (median)"), Column("early", "stopped early"),
            Column("share", "best step / steps run (median)"), Column("share_max", "(largest)"),
            Column("last", "best at the last step"), Column("late", "dev gain, last quarter (median)"),
            Column("late_max", "(largest)")]
    table = Table("convergence", "Downstream heads: where the dev-selected step falls in each run", cols,
                  notes=["One row per task over every upstream and seed (clean score files). Early stopping ends a "
                         "run once the dev metric has not improved for `patience` evaluations (20 per run). Dev gain, "
                         "last quarter: how much the best dev value improved over the last 25 % of the steps run, in "
                         "points (a head that has flattened gains about nothing, even when its best step is the last "
                         "one, as under a learning rate decaying to zero)."])
    runs = head_runs(records)
    for task in [t for t in TASK_ORDER if t in runs] + sorted(set(runs) - set(TASK_ORDER)):
        rs = runs[task]
        shares = [r["best"] / r["ran"] for r in rs]
        gains = [r["late_gain"] for r in rs if r["late_gain"] is not None]
        table.add("", [Cell(task.upper()), Cell(len(rs), kind="int"), Cell(max(r["steps"] for r in rs), kind="int"),
                       Cell(statistics.median(r["ran"] for r in rs), kind="int"),
                       Cell(sum(r["ran"] < r["steps"] for r in rs), kind="int"),
                       Cell(statistics.median(shares), kind="share"), Cell(max(shares), kind="share"),
                       Cell(sum(r["best"] == r["ran"] for r in rs), kind="int"),
                       Cell(_median(gains), kind="pct"), Cell(max(gains) if gains else None, kind="pct")])
    return table
