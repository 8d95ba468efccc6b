"""The run-time coverage guard (:mod:`parity.guard`): after every other parity case has run (the conftest
orders this test last), every public tinynn layer must have gone through ``layer_parity`` in a test that
passed. It needs the whole directory: in a partial run (one file, ``-k``, ``--layer``) it skips."""

import pytest

from parity import coverage, guard, recorder


def test_every_public_layer_ran_through_layer_parity(request):
    here = request.node.nodeid
    cases_dir = coverage.tests_dir()
    selected = {recorder.function_id(item.nodeid).split("::", 1)[-1] + "@" + item.path.name
                for item in request.session.items if item.nodeid != here and item.path.parent == cases_dir}
    expected = {f"{name}@{path.rsplit('/', 1)[-1]}" for path, names in coverage.files_with_tests(cases_dir).items()
                for name in names if name != request.node.name}
    not_run = sorted(expected - selected)
    if not_run:
        pytest.skip(f"partial run of parity/cases ({len(not_run)} test functions not selected): the guard needs all")
    split = guard.split_over_workers(request.config)
    if split:
        pytest.fail(split)
    required = coverage.public_layers()
    missing = guard.uncovered(required)
    assert missing == [], (f"public layers that no passing test ran through layer_parity: {missing} "
                           f"(tests that ran one: {sum(1 for n in guard.LAYER_RUNS if guard.OUTCOMES.get(n))})")
