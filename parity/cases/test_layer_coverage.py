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
    _check_one_process(request.config)
    required = coverage.public_layers()
    missing = guard.uncovered(required)
    assert missing == [], (f"public layers that no passing test ran through layer_parity: {missing} "
                           f"(tests that ran one: {sum(1 for n in guard.LAYER_RUNS if guard.OUTCOMES.get(n))})")


def _check_one_process(config) -> None:
    """Under pytest-xdist the guard sees only its own worker's records: every parity case must run on its worker,
    as ``--dist loadfile`` does (the cases' conftest makes this directory one file)."""
    if hasattr(config, "workerinput") and not config.workerinput.get(guard.XDIST_TOGETHER):
        pytest.fail("pytest-xdist without --dist loadfile: the parity cases ran on several workers and the coverage "
                    "guard sees only its own; run with --dist loadfile (as make test does)")
