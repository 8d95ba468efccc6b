"""Which public tinynn layers the parity tests exercise, found without running them (and checked again by
``python -m parity`` on what actually ran).

Static scan of ``parity/cases/*.py``: for every test function, the tinynn layer classes it constructs or
names (``layers.LSTM(...)``, ``LSTM``, the string ``"LSTM"``) — directly, in its decorators (parametrized
lambdas) or through module-level helpers and constants it uses — and whether it reaches a parity entry
point (``layer_parity`` / ``training_parity``). A layer counts as covered only by a test that does both.
"""

from __future__ import annotations

import ast
import pathlib
from collections import defaultdict
from dataclasses import dataclass, field

#: registry entries that compute nothing and need no parity case
PLUMBING = frozenset({"InputLayer", "Input", "InputSpec", "Layer"})
LAYER_ENTRY_POINTS = frozenset({"layer_parity"})
TRAINING_ENTRY_POINTS = frozenset({"training_parity"})


def tests_dir() -> pathlib.Path:
    """``parity/cases``: the parity cases, shipped inside this package (pytest runs the same files)."""
    return pathlib.Path(__file__).resolve().parent / "cases"


def public_layers() -> list[str]:
    """Every public layer class of ``tinynn.layers`` that needs a parity case."""
    from tinynn import layers

    return sorted(name for name in layers.registry() if name not in PLUMBING)


@dataclass
class TestInfo:
    file: str
    name: str
    layers: set = field(default_factory=set)
    calls_layer_parity: bool = False
    calls_training_parity: bool = False

    @property
    def function_id(self) -> str:
        return f"{self.file}::{self.name}"


def _names_in(node: ast.AST, layer_names: set[str]) -> tuple[set[str], set[str]]:
    """(layer classes referenced, other identifiers referenced) in ``node``, docstrings excluded."""
    found, idents = set(), set()
    docstrings = set()
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and sub.body:
            first = sub.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            idents.add(sub.attr)
            if sub.attr in layer_names:
                found.add(sub.attr)
        elif isinstance(sub, ast.Name):
            idents.add(sub.id)
            if sub.id in layer_names:
                found.add(sub.id)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in docstrings:
            if sub.value in layer_names:
                found.add(sub.value)
    return found, idents


def scan_source(source: str, file: str, layer_names: set[str]) -> list[TestInfo]:
    """The test functions of one module with the layers each one reaches (through module-level helpers)."""
    tree = ast.parse(source)
    module_defs: dict[str, ast.AST] = {}
    tests: list[tuple[str, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            module_defs[node.name] = node
            if node.name.startswith("test"):
                tests.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            module_defs[node.name] = node
            if node.name.startswith("Test"):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                        tests.append((f"{node.name}::{item.name}", item))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    module_defs[target.id] = node
    direct = {name: _names_in(node, layer_names) for name, node in module_defs.items()}

    def reach(node: ast.AST) -> tuple[set[str], set[str]]:
        layers, idents = _names_in(node, layer_names)
        seen, todo = set(), [i for i in idents if i in module_defs]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            more_layers, more_idents = direct[name]
            layers |= more_layers
            idents |= more_idents
            todo.extend(i for i in more_idents if i in module_defs and i not in seen)
        return layers, idents

    infos = []
    for name, node in tests:
        layers, idents = reach(node)
        infos.append(TestInfo(file, name, layers, bool(idents & LAYER_ENTRY_POINTS),
                              bool(idents & TRAINING_ENTRY_POINTS)))
    return infos


def scan_tests(directory: pathlib.Path | None = None, layer_names: set[str] | None = None) -> list[TestInfo]:
    """Every test function of every ``*.py`` file in ``directory`` (parity/cases by default)."""
    directory = directory or tests_dir()
    if layer_names is None:
        from tinynn import layers

        layer_names = set(layers.registry())
    infos = []
    for path in sorted(directory.glob("*.py")):
        root = directory.parent.parent
        rel = path.relative_to(root).as_posix() if root in path.parents else path.name
        infos.extend(scan_source(path.read_text(), rel, layer_names))
    return infos


def coverage(infos: list[TestInfo], required: list[str]) -> dict[str, dict[str, list[str]]]:
    """For each required layer: the tests that run it through ``layer_parity`` and through ``training_parity``."""
    table: dict[str, dict[str, list[str]]] = {name: {"layer": [], "training": []} for name in required}
    for info in infos:
        for name in info.layers & set(required):
            if info.calls_layer_parity:
                table[name]["layer"].append(info.function_id)
            if info.calls_training_parity:
                table[name]["training"].append(info.function_id)
    return table


def uncovered(table: dict[str, dict[str, list[str]]]) -> list[str]:
    """Layers with no layer-level parity case (forward, dx, dW against Keras)."""
    return sorted(name for name, tests in table.items() if not tests["layer"])


def tests_for_layer(infos: list[TestInfo], layer: str) -> list[str]:
    """Function ids of the parity tests that exercise ``layer`` (for ``python -m parity --layer``)."""
    return [info.function_id for info in infos
            if layer in info.layers and (info.calls_layer_parity or info.calls_training_parity)]


def files_with_tests(directory: pathlib.Path | None = None) -> dict[str, list[str]]:
    """Test function names found in each file (to prove pytest collected all of them)."""
    out: dict[str, list[str]] = defaultdict(list)
    for info in scan_tests(directory, layer_names=set()):
        out[info.file].append(info.name)
    return dict(out)
