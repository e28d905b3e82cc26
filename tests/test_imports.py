"""Imports point down the stages: no import circle inside pipeline/, and the low-level modules (config, audio, cache,
corpus, teachers) import nothing from the higher stages (distill, downstream, report). Read with ast, so nothing is
imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
LOW = ("pipeline.config", "pipeline.audio", "pipeline.cache", "pipeline.corpus", "pipeline.teachers")
HIGH = ("pipeline.distill", "pipeline.downstream", "pipeline.report")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The pipeline modules a file imports, at module level or inside functions (`from a import b` counts a.b when
    b is a module, else a)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            out |= subs or {node.module}
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported(path, set(files)) - {name} for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} imports {d}" for m, deps in graph.items() if m.startswith(LOW)
                  for d in deps if d.startswith(HIGH))


def test_the_checks_see_a_planted_circle_and_an_upward_import():
    graph = {"pipeline.config": {"pipeline.distill.methods"}, "pipeline.distill.methods": {"pipeline.config"},
             "pipeline.audio.io": set()}
    assert circles(graph) == [["pipeline.config", "pipeline.distill.methods"]]
    assert upward(graph) == ["pipeline.config imports pipeline.distill.methods"]


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "pipeline.distill.train" in graph and "pipeline.config" in graph["pipeline.corpus.synthetic"]
    assert "pipeline.config" in graph["pipeline.checks"] and "pipeline.distill.checks" in graph["pipeline.checks"]


def test_no_import_circles_inside_pipeline():
    assert circles(import_graph()) == []


def test_low_level_modules_import_no_higher_stage():
    assert upward(import_graph()) == []
