"""The house is one-way: no import cycles, and no package imports one from a higher layer.

Built from the source with ``ast`` (every import, including those inside functions and under
``TYPE_CHECKING``), so a new upward or circular import fails here, not in a code review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Bottom to top; a module may import only from its own layer or lower ones.
LAYERS = (
    "utilities",
    "encoders",
    "overlay",
    "datasets",
    "features",
    "analysis",
    "audit",
    "report",
    "study",
    "top",
)
PACKAGES = set(LAYERS[1:-1])
TOP = {"cli", "demo"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "medprobe").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The medprobe module an import of ``name`` loads (the longest existing prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    targets = {t for t in map(_target, names) if t and t != "medprobe" and t != module}
    # Importing a.b.c runs a/__init__ and a/b/__init__ first: those are edges too.
    parents = set()
    for target in targets:
        parts = target.split(".")
        for i in range(2, len(parts)):
            parent = ".".join(parts[:i])
            if not module.startswith(parent + ".") and parent != module:
                parents.add(parent)
    return targets | parents


GRAPH = {module: _imports(module) for module in MODULES}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in TOP:
        return LAYERS.index("top")
    return LAYERS.index(parts[1] if parts[1] in PACKAGES else "utilities")


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in GRAPH[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read():
    # The test must see the imports it judges: a known downward edge and the known layers.
    assert "medprobe.encoders.spec" in GRAPH["medprobe.encoders.registry"]
    assert "medprobe.study.runner" in GRAPH["medprobe.cli"]  # an import inside a function
    assert layer("medprobe.study.runner") > layer("medprobe.report.html") > layer("medprobe.errors")


def test_no_import_cycles():
    assert _cycles() == []


def test_cycle_detection_works(monkeypatch):
    monkeypatch.setitem(GRAPH, "medprobe.errors", {"medprobe.fingerprint"})
    monkeypatch.setitem(GRAPH, "medprobe.fingerprint", {"medprobe.errors"})
    assert ["medprobe.errors", "medprobe.fingerprint"] in _cycles()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down(module):
    upward = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert upward == [], f"{module} imports from a higher layer: {upward}"
