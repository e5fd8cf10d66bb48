"""The seams hold: no import cycles between modules or between packages, lazy imports included."""

from __future__ import annotations

import grimp


def _graph():
    return grimp.build_graph("memviz", cache_dir=None)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each a cycle's members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])  # memviz.core, memviz.ui, memviz.cli ...


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    graph = _graph()
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    # the graph is the whole package, imports inside functions included (load_backend's of gpt2)
    assert {"memviz.cli", "memviz.core.session", "memviz.ui.main_window", "memviz.panels.base"} <= set(edges)
    assert "memviz.backends.gpt2" in edges["memviz.backends.registry"]
    assert _cycles(edges) == []


def test_no_import_cycles_between_packages():
    graph = _graph()
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = _package(module), _package(imported)
            if a != b:
                edges.setdefault(a, set()).add(b)
    ui, panels = edges.get("memviz.ui", set()), edges.get("memviz.panels", set())
    assert {"memviz.core", "memviz.panels"} <= ui and "memviz.core" in panels  # the real graph
    assert _cycles(edges) == []
