"""The mutation check's mutants still apply: each snippet occurs exactly once in its file, the mutated
file still parses, and every test named to catch it exists. A refactor that moves code fails here,
loudly, instead of silently disabling a mutant (``make mutation`` runs the mutants themselves)."""

from __future__ import annotations

import ast

import pytest

from parity import coverage, mutation

ROOT = coverage.tests_dir().parent.parent


@pytest.mark.parametrize("mutant", mutation.MUTANTS, ids=[m.name for m in mutation.MUTANTS])
def test_mutant_applies_once_and_names_real_tests(mutant):
    source = (ROOT / mutant.file).read_text()
    mutated = mutation.apply(source, mutant)  # raises unless the snippet occurs exactly once
    assert mutated != source
    ast.parse(mutated, filename=mutant.file)
    inventory = coverage.files_with_tests(coverage.tests_dir())
    for test in mutant.tests:
        path, _, name = test.partition("::")
        assert (ROOT / path).is_file(), f"{mutant.name}: no test file {path}"
        names = inventory.get(path, [])
        assert not name or name in names, f"{mutant.name}: {path} has no test {name!r} ({names})"


def test_mutants_are_distinct_and_cover_the_issue_areas():
    names = [m.name for m in mutation.MUTANTS]
    assert len(names) == len(set(names)) and len(names) >= 25
    topics = " ".join(names)
    for topic in ("gate_order", "padding", "epsilon", "tie", "sparse", "mask", "hard_sigmoid_keras2", "softplus"):
        assert topic in topics, f"no mutant about {topic}"


def test_apply_refuses_a_missing_or_repeated_snippet():
    m = mutation.Mutant("x", "f.py", "a = 1", "a = 2", (), "")
    assert mutation.apply("a = 1\n", m) == "a = 2\n"
    for source in ("b = 1\n", "a = 1\na = 1\n"):
        with pytest.raises(ValueError, match="exactly once|expected once"):
            mutation.apply(source, m)
