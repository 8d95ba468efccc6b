"""The saving package's place in the import graph: it never imports ``tinynn.models`` (models register their
classes with it), imports nothing inside functions, and no import cycle runs through it or through models —
counting imports deferred into function bodies too (the old io.py ↔ models.py ↔ keras_io.py triangle)."""

from __future__ import annotations

import ast
import pathlib

import tinynn

ROOT = pathlib.Path(tinynn.__file__).resolve().parent


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(modules: dict[str, pathlib.Path]) -> list[tuple[str, str, bool]]:
    """(importer, imported tinynn module, deferred: inside a function body)."""
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        in_function = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for node in ast.walk(fn)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges += [(name, t, id(node) in in_function) for t in targets if t in modules and t != name]
    return edges


def _cycles(edges) -> list[set[str]]:
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    closure = {v: reach(v) for v in graph}
    return [{v} | {w for w in closure[v] if v in closure[w]} for v in graph if v in closure[v]]


def test_saving_never_imports_models_and_defers_nothing():
    edges = _imports(_modules())
    saving = [(a, b, deferred) for a, b, deferred in edges if a.startswith("tinynn.saving")]
    assert saving, "the scan found no imports in tinynn.saving"
    assert not [e for e in saving if e[1] == "tinynn.models"]
    assert not [e for e in saving if e[2]], "imports inside functions in tinynn.saving"
    assert ("tinynn.models", "tinynn.saving", False) in edges  # models use saving, not the other way round


def test_no_import_cycle_through_saving_or_models():
    modules = _modules()
    assert "tinynn.io" not in modules and "tinynn.keras_io" not in modules  # replaced by tinynn.saving
    for cycle in _cycles(_imports(modules)):
        assert not any(m == "tinynn.models" or m.startswith("tinynn.saving") for m in cycle), sorted(cycle)
