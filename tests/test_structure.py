"""The package's layout: no import cycles among afmwatch's modules, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "afmwatch"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """afmwatch modules that `path` imports anywhere in the file (top level, functions, TYPE_CHECKING
    blocks excluded), resolved to the module itself rather than its package where one exists."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("afmwatch"):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): imports_of(p, modules) for p in paths}
    for name in graph:  # importing a.b.c runs a/__init__ and a/b/__init__ too: not an edge we count
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_checker_finds_a_cycle_through_an_import_inside_a_function():
    graph = {
        "afmwatch.a": {"afmwatch.b"},
        "afmwatch.b": {"afmwatch.c"},
        "afmwatch.c": {"afmwatch.a"},
        "afmwatch.d": {"afmwatch.a"},
    }
    assert find_cycles(graph) == [["afmwatch.a", "afmwatch.b", "afmwatch.c"]]
    source = "def f():\n    from afmwatch.config import Config\n"
    tmp = PACKAGE / "__cycle_probe__.py"
    try:
        tmp.write_text(source, encoding="utf-8")
        assert imports_of(tmp, {"afmwatch.config", "afmwatch.__cycle_probe__"}) == {"afmwatch.config"}
    finally:
        tmp.unlink()


def test_no_import_cycles_in_the_package():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles (imports inside functions count too): " + "; ".join(
        " <-> ".join(group) for group in cycles
    )
