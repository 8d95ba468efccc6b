"""The coverage guard, at run time: every public tinynn layer went through ``layer_parity`` in a parity case
that ran and passed.

The harness notes every layer report (:func:`note_layer_report`: the layer class and the classes nested in
its config, e.g. the LSTM inside a Bidirectional) under the pytest node id of the running test; the
``parity/cases`` conftest feeds in which test is running and how each ended. A layer counts as covered only
by a test that called ``layer_parity`` on it *and passed*: a skipped test, a layer named in an assertion
message or in code that never runs, and a test that failed count for nothing.
``parity/cases/test_layer_coverage.py`` asserts this at the end of a run of the whole ``parity/cases``
directory (pytest runs it last); ``python -m parity`` checks the same on what it recorded.
"""

from __future__ import annotations

from collections import defaultdict

LAYER_RUNS: dict[str, set[str]] = defaultdict(set)  # node id -> layer classes compared by layer_parity
OUTCOMES: dict[str, str] = {}  # node id -> passed / failed / skipped
CURRENT: list[str] = [""]
#: The flag pytest-xdist's workers get (``config.workerinput``) when every parity case runs on one worker
#: (``--dist loadfile``: ``parity/cases/conftest.py`` makes the directory one file), as the guard needs.
XDIST_TOGETHER = "parity_cases_together"


def split_over_workers(config) -> str | None:
    """Why the guard cannot judge this pytest run (None: it can): under pytest-xdist it sees only its own worker's
    records, so every parity case must run on its worker, as ``--dist loadfile`` does here."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or workerinput.get(XDIST_TOGETHER):
        return None
    return ("pytest-xdist without --dist loadfile: the parity cases ran on several workers and the coverage guard "
            "sees only its own; run with --dist loadfile (as make test does)")


def nested_layers(config) -> set[str]:
    """Layer classes nested in a layer config (e.g. the LSTM inside a Bidirectional)."""
    found = set()
    if isinstance(config, dict):
        if "class_name" in config and "config" in config:
            found.add(config["class_name"])
        for v in config.values():
            found |= nested_layers(v)
    elif isinstance(config, list):
        for v in config:
            found |= nested_layers(v)
    return found


def note_layer_report(report) -> None:
    if CURRENT[0]:
        LAYER_RUNS[CURRENT[0]] |= {report.layer} | nested_layers(report.config)


def start(nodeid: str) -> None:
    CURRENT[0] = nodeid


def note_outcome(report) -> None:
    """pytest's report of one phase of a test: a failed phase fails the test, a skip skips it."""
    if report.failed:
        OUTCOMES[report.nodeid] = "failed"
    elif report.skipped and OUTCOMES.get(report.nodeid) != "failed":
        OUTCOMES[report.nodeid] = "skipped"
    elif report.when == "call" and report.nodeid not in OUTCOMES:
        OUTCOMES[report.nodeid] = "passed"


def uncovered(required, layer_runs=None, outcomes=None) -> list[str]:
    """The required layers that no passed test compared through ``layer_parity``."""
    layer_runs = LAYER_RUNS if layer_runs is None else layer_runs
    outcomes = OUTCOMES if outcomes is None else outcomes
    covered = set()
    for nodeid, names in layer_runs.items():
        if outcomes.get(nodeid) == "passed":
            covered |= names
    return sorted(set(required) - covered)
