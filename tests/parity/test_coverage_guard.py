"""The coverage guard and the collection check.

The guard itself runs at run time (:mod:`parity.guard`, asserted by parity/cases/test_layer_coverage.py at
the end of the parity cases): a layer counts only if a test that ran and passed compared it through
``layer_parity``. Here: its bookkeeping (a skipped or failed test counts for nothing), the static scan that
``python -m parity --layer`` uses to pick tests, that pytest collects every parity test, and the CI rule
that a skip for a missing package fails under ``CI=true``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from parity import coverage, guard, recorder
from parity.cli import source_inventory
from tinynn import layers


def test_guard_counts_only_tests_that_ran_and_passed():
    runs = {"t::a": {"Dense"}, "t::b": {"LSTM", "Bidirectional"}, "t::c": {"GRU"}, "t::d": {"Conv1D"}}
    outcomes = {"t::a": "passed", "t::b": "passed", "t::c": "skipped", "t::d": "failed"}
    required = ["Bidirectional", "Conv1D", "Dense", "GRU", "LSTM", "Masking"]
    assert guard.uncovered(required, runs, outcomes) == ["Conv1D", "GRU", "Masking"]
    assert "Dense" in coverage.public_layers() and "InputLayer" not in coverage.public_layers()


def test_guard_refuses_parity_cases_spread_over_xdist_workers():
    class Config:
        def __init__(self, **attributes):
            self.__dict__.update(attributes)

    assert guard.split_over_workers(Config()) is None  # no xdist: one process
    assert guard.split_over_workers(Config(workerinput={guard.XDIST_TOGETHER: True})) is None
    for workerinput in ({}, {guard.XDIST_TOGETHER: False}):
        assert "--dist loadfile" in guard.split_over_workers(Config(workerinput=workerinput))


def test_guard_outcomes_follow_pytest_reports():
    class Report:
        def __init__(self, nodeid, when, outcome):
            self.nodeid, self.when = nodeid, when
            self.failed, self.skipped = outcome == "failed", outcome == "skipped"

    saved = dict(guard.OUTCOMES)
    try:
        for r in [Report("x::ok", "setup", "passed"), Report("x::ok", "call", "passed"),
                  Report("x::skip", "setup", "skipped"), Report("x::bad", "call", "passed"),
                  Report("x::bad", "teardown", "failed")]:
            guard.note_outcome(r)
        assert (guard.OUTCOMES["x::ok"], guard.OUTCOMES["x::skip"], guard.OUTCOMES["x::bad"]) == (
            "passed", "skipped", "failed")
    finally:
        guard.OUTCOMES.clear()
        guard.OUTCOMES.update(saved)


CI_CASES = '''
import pytest

def test_missing_package():
    pytest.importorskip("no_such_package_for_tinynn")

@pytest.mark.skipif(True, reason="needs sktime (pip install sktime)")
def test_marked_for_a_package():
    pass

@pytest.mark.skipif(True, reason="glibc only")
def test_other_skip():
    pass
'''


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_package_skips_fail_under_ci(tmp_path, ci):
    (tmp_path / "conftest.py").write_text("from parity.ci import pytest_make_collect_report, pytest_runtest_makereport"
                                          "  # noqa: F401\n")
    (tmp_path / "test_skips.py").write_text(CI_CASES)
    root = str(coverage.tests_dir().parent.parent)  # this checkout's parity package, wherever pytest runs
    env = {**os.environ, "CI": ci, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    summary = out.stdout.strip().splitlines()[-1]
    if ci:
        # a skip at setup (a skipif mark) fails as an error, one in the test body as a failure
        assert "1 failed, 1 skipped, 1 error" in summary, out.stdout[-2000:]
        assert "fails under CI=true" in out.stdout
    else:
        assert "3 skipped" in summary and "failed" not in summary, out.stdout[-2000:]


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
