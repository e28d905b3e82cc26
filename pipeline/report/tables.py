"""Verb `report`: scores.csv, summary tables (md/csv/tex) and robustness.png from the score JSONs alone."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.report.figures import robustness_figure

REQUIRED = ("upstream", "task", "condition", "metric", "value")
CONDITIONS = ("clean", "indomain", "ood", "real")  # canonical column order; others follow as found
TASK_ORDER = ("ks", "ic", "sid", "er", "pr", "asr")
LOWER_IS_BETTER = {"wer", "cer", "per", "eer"}


def read_scores(scores: Sequence[str]) -> pd.DataFrame:
    """One row per score JSON (long form), with the file it came from; refuses files missing contract keys."""
    rows = []
    for path in scores:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read score JSON ({err}); "
                             "re-run `python -m pipeline score`") from err
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; "
                             "score files come from `python -m pipeline score`")
        seeds = data.get("seeds") or []
        rows.append({k: data[k] for k in REQUIRED} | {
            "value": float(data["value"]), "n": data.get("n"), "seeds": " ".join(map(str, seeds)),
            "lr": data.get("lr"), "steps": data.get("steps"), "num_params": data.get("num_params"),
            "file": str(path),
        })
    if not rows:
        raise ValueError("no score files given; the report needs at least one score JSON")
    return pd.DataFrame(rows)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (upstream, task, condition); refuses duplicated seeds or mixed metrics."""
    dup = long[long.duplicated(["upstream", "task", "condition", "seeds"], keep=False)]
    if not dup.empty:
        raise ValueError("several score files for the same upstream/task/condition/seeds: "
                         f"{dup['file'].tolist()}; pass each score once")
    mixed = long.groupby("task")["metric"].nunique()
    if (mixed > 1).any():
        raise ValueError(f"task(s) {mixed[mixed > 1].index.tolist()} reported with different metrics")
    grouped = long.groupby(["upstream", "task", "condition", "metric"], sort=False)
    out = grouped.agg(value=("value", "mean"), std=("value", "std"), n_seeds=("value", "size")).reset_index()
    params = long.dropna(subset=["num_params"]).groupby("upstream")["num_params"].first()
    out["num_params"] = out["upstream"].map(params)
    return out


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    found = list(dict.fromkeys(values))
    return [v for v in preferred if v in found] + [v for v in found if v not in preferred]


def format_params(n: float | None) -> str:
    """Parameter count as 1.2B / 94.7M / 830K ('-' when unknown)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(int(n))


def _cell(row: pd.Series | None, pm: str) -> str:
    if row is None:
        return "-"
    text = f"{row['value'] * 100:.1f}"
    return text + (f" {pm} {row['std'] * 100:.1f}" if row["n_seeds"] > 1 else "")


class _Grid:
    """The summary laid out as rows (upstreams, largest first) x columns (task, condition)."""

    def __init__(self, summary: pd.DataFrame) -> None:
        self.params = summary.groupby("upstream")["num_params"].first()
        self.metrics = summary.groupby("task")["metric"].first()
        self.upstreams = sorted(dict.fromkeys(summary["upstream"]), key=self._size_key)
        present = set(zip(summary["task"], summary["condition"], strict=True))
        self.columns = [(t, c) for t in _order(summary["task"], TASK_ORDER)
                        for c in _order(summary["condition"], CONDITIONS) if (t, c) in present]
        self.tasks = list(dict.fromkeys(t for t, _ in self.columns))
        self.cells = {(r["upstream"], r["task"], r["condition"]): r for _, r in summary.iterrows()}
        self.best = set()
        for (task, cond, metric), sub in summary.groupby(["task", "condition", "metric"]):
            top = sub["value"].min() if metric in LOWER_IS_BETTER else sub["value"].max()
            self.best |= {(u, task, cond) for u in sub.loc[sub["value"] == top, "upstream"]}

    def _size_key(self, upstream: str) -> tuple:
        n = self.params[upstream]
        return (pd.isna(n), -(n if pd.notna(n) else 0), upstream)

    def cell(self, u: str, t: str, c: str, pm: str, bold: str) -> str:
        text = _cell(self.cells.get((u, t, c)), pm)
        return bold.format(text) if (u, t, c) in self.best and len(self.upstreams) > 1 else text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths))
    return "\n".join([line(header), rule + "|", *map(line, rows)]) + "\n"


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def _summary_csv(grid: _Grid) -> pd.DataFrame:
    wide = pd.DataFrame({"upstream": grid.upstreams, "num_params": [grid.params[u] for u in grid.upstreams]})
    for t, c in grid.columns:
        wide[f"{t}/{c}"] = [grid.cells[(u, t, c)]["value"] if (u, t, c) in grid.cells else None
                            for u in grid.upstreams]
    return wide


def _direction(metric: str) -> str:
    return "lower" if metric in LOWER_IS_BETTER else "higher"


def _summary_md(grid: _Grid) -> str:
    header = ["upstream", "params"] + [f"{t} {grid.metrics[t]} {c}" for t, c in grid.columns]
    rows = [[u, format_params(grid.params[u])] + [grid.cell(u, t, c, "±", "**{}**") for t, c in grid.columns]
            for u in grid.upstreams]
    notes = "; ".join(f"{t}: {grid.metrics[t]}, {_direction(grid.metrics[t])} is better" for t in grid.tasks)
    return ("# Downstream results\n\nValues in %, mean ± std over seeds where several; "
            f"best per column in bold. {notes}.\n\n" + markdown_table(header, rows))


def _summary_tex(grid: _Grid) -> str:
    spans = [sum(t2 == t for t2, _ in grid.columns) for t in grid.tasks]
    lines = [r"\begin{tabular}{lr" + "".join("|" + "c" * s for s in spans) + "}", r"\toprule"]
    lines.append(" & & " + " & ".join(
        rf"\multicolumn{{{s}}}{{c}}{{{_tex_escape(t.upper())} ({_tex_escape(grid.metrics[t])} \%)}}"
        for t, s in zip(grid.tasks, spans, strict=True)) + r" \\")
    starts = [3 + sum(spans[:i]) for i in range(len(spans))]
    lines.append(" ".join(rf"\cmidrule(lr){{{a}-{a + s - 1}}}" for a, s in zip(starts, spans, strict=True)))
    lines.append("Upstream & Params & " + " & ".join(_tex_escape(c) for _, c in grid.columns) + r" \\")
    lines.append(r"\midrule")
    for u in grid.upstreams:
        vals = [grid.cell(u, t, c, r"$\pm$", r"\textbf{{{}}}") for t, c in grid.columns]
        lines.append(" & ".join([_tex_escape(u), format_params(grid.params[u])] + vals) + r" \\")
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


def write_summary(summary: pd.DataFrame, out_dir: Path) -> _Grid:
    """summary.csv (native units) and summary.md / .tex (in %, mean ± std over seeds, best in bold)."""
    grid = _Grid(summary)
    _summary_csv(grid).to_csv(out_dir / "summary.csv", index=False)
    (out_dir / "summary.md").write_text(_summary_md(grid))
    (out_dir / "summary.tex").write_text(_summary_tex(grid))
    return grid


def build_report(scores: list[str], out_dir: str) -> None:
    """Read the score JSONs only; write scores.csv, summary.{md,csv,tex} and robustness.png into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    long = read_scores(scores)
    long.to_csv(out / "scores.csv", index=False)
    summary = summarise(long)
    grid = write_summary(summary, out)
    robustness_figure(summary, out / "robustness.png", grid.tasks, _order(summary["condition"], CONDITIONS),
                      grid.upstreams)
