"""The coverage guard: every public tinynn layer has a parity case, and pytest collects every parity test.

The scan is static (parity.coverage reads parity/cases's sources), so a layer counts as covered only if a
test function both constructs it (directly, in a decorator, or through module-level helpers/constants)
and calls ``layer_parity``. ``python -m parity`` checks the same thing again on what actually ran.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from parity import coverage, recorder
from parity.cli import source_inventory
from tinynn import layers


def test_every_public_layer_has_a_layer_parity_case():
    required = coverage.public_layers()
    assert "Dense" in required and "InputLayer" not in required  # the guard cannot pass on an empty registry
    infos = coverage.scan_tests()
    assert sum(info.calls_layer_parity for info in infos) >= len(required) // 2, "the scan found (almost) no tests"
    table = coverage.coverage(infos, required)
    missing = coverage.uncovered(table)
    assert missing == [], f"public layers with no layer_parity case in {coverage.tests_dir()}: {missing}"


def test_registry_is_every_exported_layer_class():
    exported = {name for name in layers.__all__
                if isinstance(getattr(layers, name), type) and issubclass(getattr(layers, name), layers.Layer)}
    assert set(layers.registry()) == exported - {"Layer"}


SOURCE = '''
from parity.harness import layer_parity
from tinynn import layers
import tinynn as tn


def helper(units):
    return layers.LSTM(units)


CASES = {"gru": lambda: tn.layers.GRU(2)}


def test_via_helper():
    layer_parity(helper(3), x)


@pytest.mark.parametrize("make", [lambda: layers.Conv1D(2, 3)])
def test_via_decorator(make):
    layer_parity(make(), x)


def test_constructed_never_compared():
    layers.Dense(3)(x)


def test_docstring_only():
    """Embedding is mentioned here only."""
    layer_parity(CASES["gru"](), x)


class TestGrouped:
    def test_by_name(self):
        layer_parity(getattr(layers, "SimpleRNN")(2), x)
'''


def test_scan_finds_layers_through_helpers_decorators_and_names():
    names = {"LSTM", "GRU", "Conv1D", "Dense", "Embedding", "SimpleRNN", "Masking"}
    infos = coverage.scan_source(SOURCE, "t.py", names)
    assert [i.name for i in infos] == ["test_via_helper", "test_via_decorator", "test_constructed_never_compared",
                                       "test_docstring_only", "TestGrouped::test_by_name"]
    table = coverage.coverage(infos, sorted(names))
    assert coverage.uncovered(table) == ["Dense", "Embedding", "Masking"]
    assert coverage.tests_for_layer(infos, "GRU") == ["t.py::test_docstring_only"]


@pytest.mark.skipif(os.environ.get(recorder.CLI_ENV) == "1", reason="python -m parity checks collection itself")
def test_pytest_collects_every_parity_test():
    """A test file pytest silently ignores (misnamed file or class, import-time skip) would hide its layers."""
    test_dir = coverage.tests_dir()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(test_dir)],
        capture_output=True, text=True, cwd=test_dir.parent.parent, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    collected = {line.split("[", 1)[0] for line in out.stdout.splitlines() if "::" in line}
    root = test_dir.parent.parent
    expected = set()
    for path, names in source_inventory(test_dir).items():
        if names:
            assert path.name.startswith("test_"), f"{path.name} defines tests but pytest only collects test_*.py"
        expected |= {f"{pathlib.Path(path).relative_to(root).as_posix()}::{name}" for name in names}
    assert len(expected) > 20
    assert expected - collected == set(), f"never collected: {sorted(expected - collected)}"
