"""Verb `report`: every table (Markdown, CSV, LaTeX, HTML) and figure, regenerated from result files alone.

A `Table` is rows of typed cells under (optionally grouped) columns; one renderer per format. Missing
results render as "-", so a config with only some upstreams or tasks still gets every table.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DASH = "-"
MISSING_MARK = "†"


@dataclass
class Cell:
    """A value in native units (fractions for metrics) and how to show it; None renders as a dash."""

    value: Any = None
    std: float | None = None
    kind: str = "text"  # pct | dpct (signed difference in points) | params | int | sec | mb | x | float | share | text
    best: bool = False
    missing: int = 0  # labelled test utterances the score left out for lack of features: marked MISSING_MARK


    def numeric(self) -> float | None:
        if isinstance(self.value, int | float) and not (isinstance(self.value, float) and math.isnan(self.value)):
            return float(self.value)
        return None

    def text(self, pm: str = "±") -> str:
        """The value as shown, with MISSING_MARK when the score left test utterances out."""
        return self._text(pm) + (MISSING_MARK if self.missing else "")

    def _text(self, pm: str) -> str:
        v = self.numeric()
        if v is None:
            return DASH if self.value is None or self.kind != "text" else str(self.value)
        if self.kind == "pct":
            std = "" if self.std is None or math.isnan(self.std) else f" {pm} {self.std * 100:.1f}"
            return f"{v * 100:.1f}{std}"
        if self.kind == "dpct":
            return f"{v * 100:+.1f}"
        if self.kind == "params":
            return format_params(v)
        if self.kind == "int":
            return f"{int(round(v)):,}"
        if self.kind == "x":
            return f"{v:.1f}x"
        if self.kind == "float":
            return f"{v:.3f}"
        if self.kind == "share":
            return f"{v * 100:.0f} %"
        return f"{v:.1f}" if self.kind in ("sec", "mb") else f"{v:g}"


@dataclass
class Column:
    key: str
    header: str
    group: str = ""  # adjacent columns with the same non-empty group share a spanning header


@dataclass
class Table:
    """A paper table: title, notes, columns, rows of cells (one per column) and a section label per row."""

    name: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, cells: Sequence[Cell]) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.name}: row has {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))
        self.sections.append(section)

    def mark_best(self, key: str, lower: bool) -> None:
        """Bold the best value of a column (ties all bold); needs two or more different numbers to compare."""
        j = [c.key for c in self.columns].index(key)
        values = [(i, row[j].numeric()) for i, row in enumerate(self.rows)]
        values = [(i, v) for i, v in values if v is not None]
        if len({v for _, v in values}) < 2:
            return
        top = min(v for _, v in values) if lower else max(v for _, v in values)
        for i, v in values:
            self.rows[i][j].best = v == top

    def groups(self) -> list[tuple[str, int]]:
        spans: list[tuple[str, int]] = []
        for col in self.columns:
            if spans and col.group and spans[-1][0] == col.group:
                spans[-1] = (col.group, spans[-1][1] + 1)
            else:
                spans.append((col.group, 1))
        return spans


def format_params(n: float | None) -> str:
    """Parameter count as 1.2B / 94.7M / 830K ('-' when unknown)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return DASH
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(int(n))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    """A GitHub-flavoured markdown table: columns in `left` left-aligned (text), the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [str(c).ljust(w) if i in left else str(c).rjust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(":" + "-" * (w + 1) if i in left else "-" * (w + 1) + ":" for i, w in enumerate(widths))
    return "\n".join([line(header), rule + "|", *map(line, rows)]) + "\n"


def _has_sections(table: Table) -> bool:
    return any(table.sections)


def to_markdown(table: Table) -> str:
    """Title, notes and one header row (group and column joined); a leading group column if rows have sections."""
    header = [f"{c.group} {c.header}".strip() for c in table.columns]
    rows = [[c.text() if not c.best else f"**{c.text()}**" for c in row] for row in table.rows]
    left = sorted(_text_columns(table))
    if _has_sections(table):
        header, left = ["", *header], [0, *(j + 1 for j in left)]
        rows = [[s if i == 0 or table.sections[i - 1] != s else "", *r]
                for i, (s, r) in enumerate(zip(table.sections, rows, strict=True))]
    body = markdown_table(header, rows, left) if rows else "_(no upstream of this kind in the config)_\n"
    notes = "".join(f"{n}\n" for n in table.notes)
    return f"## {table.title}\n\n{notes}\n{body}"


def to_csv(table: Table, path: Path) -> None:
    """Machine-readable: column keys as headers, native units (fractions for metrics), a `<key>_std` column
    beside columns with seed stds and a `<key>_missing` column beside columns with left-out test utterances."""
    data: dict[str, list[Any]] = {}
    if _has_sections(table):
        data["section"] = table.sections
    for j, col in enumerate(table.columns):
        key = col.key
        cells = [row[j] for row in table.rows]
        data[key] = [c.numeric() if c.numeric() is not None else (None if c.value is None else c.value)
                     for c in cells]
        if any(c.std is not None and not math.isnan(c.std) for c in cells):
            data[f"{key}_std"] = [c.std for c in cells]
        if any(c.missing for c in cells):
            data[f"{key}_missing"] = [c.missing for c in cells]
    pd.DataFrame(data).to_csv(path, index=False)


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("→", r"$\rightarrow$"), (MISSING_MARK, r"$^\dagger$")):
        text = text.replace(a, b)
    return text


def to_latex(table: Table) -> str:
    """A booktabs tabular: spanning group headers with cmidrules, section rows, best values in bold."""
    lead = 1 if _has_sections(table) else 0
    n = len(table.columns)
    lines = [rf"% {_tex(table.title)}", r"\begin{tabular}{" + "l" * (1 + lead) + "r" * (n - 1) + "}", r"\toprule"]
    spans = table.groups()
    if any(g for g, _ in spans):
        cells, rules, col = [""] * lead, [], 1 + lead
        for group, width in spans:
            cells.append(rf"\multicolumn{{{width}}}{{c}}{{{_tex(group)}}}" if group else "")
            if group:
                rules.append(rf"\cmidrule(lr){{{col}-{col + width - 1}}}")
            col += width
        lines += [" & ".join(cells) + r" \\", " ".join(rules)]
    lines += [" & ".join([""] * lead + [_tex(c.header) for c in table.columns]) + r" \\", r"\midrule"]
    previous = None
    for section, row in zip(table.sections, table.rows, strict=True):
        if lead and section != previous and previous is not None:
            lines.append(r"\midrule")
        label = [_tex(section) if section != previous else ""] if lead else []
        previous = section
        vals = [_tex(c.text(pm="±")) for c in row]
        vals = [rf"\textbf{{{v}}}" if c.best else v for v, c in zip(vals, row, strict=True)]
        lines.append(" & ".join(label + vals) + r" \\")
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


CSS = """body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
table{border-collapse:collapse;font-size:14px}th,td{padding:4px 9px;border-bottom:1px solid #ddd}
th{background:#f3f4f6}td{text-align:right;white-space:nowrap}td.l,th.l{text-align:left;white-space:normal}
.g{border-left:2px solid #cbd5e1}tr.sec td{background:#eef2ff;text-align:left;font-style:italic;white-space:normal}
p.note{color:#555;font-size:13px;max-width:70em}"""


def _text_columns(table: Table) -> set[int]:
    return {j for j in range(len(table.columns)) if all(row[j].kind == "text" for row in table.rows)}


def to_html(table: Table) -> str:
    """A standalone HTML page of the table (for the Snakemake report and browsers)."""
    esc = html.escape
    left = _text_columns(table) | {0}
    starts = {j for j, c in enumerate(table.columns) if c.group and (j == 0 or table.columns[j - 1].group != c.group)}

    def cls(j: int) -> str:
        names = (["l"] if j in left else []) + (["g"] if j in starts else [])
        return f' class="{" ".join(names)}"' if names else ""

    head = []
    spans = table.groups()
    if any(g for g, _ in spans):
        head.append("<tr>" + "".join(f'<th colspan="{w}"{" class=g" if g else ""}>{esc(g)}</th>' for g, w in spans)
                    + "</tr>")
    head.append("<tr>" + "".join(f"<th{cls(j)}>{esc(c.header)}</th>" for j, c in enumerate(table.columns)) + "</tr>")
    body, previous = [], None
    for section, row in zip(table.sections, table.rows, strict=True):
        if section and section != previous:
            body.append(f'<tr class="sec"><td colspan="{len(table.columns)}">{esc(section)}</td></tr>')
        previous = section
        body.append("<tr>" + "".join(f"<td{cls(j)}>{'<b>' if c.best else ''}{esc(c.text())}{'</b>' if c.best else ''}"
                                     "</td>" for j, c in enumerate(row)) + "</tr>")
    if not body:
        body.append(f'<tr><td class="l" colspan="{max(1, len(table.columns))}">no upstream of this kind in the '
                    "config</td></tr>")
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in table.notes)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(table.title)}</title>'
            f"<style>{CSS}</style></head><body><h2>{esc(table.title)}</h2>{notes}"
            f"<table><thead>{''.join(head)}</thead><tbody>{''.join(body)}</tbody></table></body></html>\n")


def write_table(table: Table, out_dir: Path) -> None:
    """<name>.md, .csv, .tex and .html in out_dir."""
    (out_dir / f"{table.name}.md").write_text(to_markdown(table))
    to_csv(table, out_dir / f"{table.name}.csv")
    (out_dir / f"{table.name}.tex").write_text(to_latex(table))
    (out_dir / f"{table.name}.html").write_text(to_html(table))
