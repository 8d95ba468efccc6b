"""Set-up of the parity cases, also when run from an installed wheel: the hypothesis profiles (the same ones
tests/ uses), the run-time coverage guard's bookkeeping (:mod:`parity.guard`; its test runs last), and the
CI rule that a skip for a missing package fails (:mod:`parity.ci`).

Under pytest-xdist's ``--dist loadfile`` (``make test``: two worker processes) this directory counts as one
file: one worker runs every parity case, the guard last, and the guard sees every case's record."""

import os

import pytest

# The suite tests the fast kernels themselves: compile them where they are called, never fall back to the NumPy
# twins while they compile in the background (tinynn.kernels.warmup).
os.environ.setdefault("TINYNN_COMPILE", "wait")

from hypothesis import settings

from parity import guard, recorder
from parity.ci import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401  (pytest hooks)

recorder.register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

GUARD_TEST = "test_layer_coverage.py::test_every_public_layer_ran_through_layer_parity"
CASES = "parity/cases/"


def pytest_collection_modifyitems(session, config, items):
    """The coverage guard runs after every other parity case."""
    last = [item for item in items if item.nodeid.endswith(GUARD_TEST)]
    items[:] = [item for item in items if item not in last] + last


def _cases_together(config) -> bool:
    """Whether this run's pytest-xdist scheduler keeps the directory on one worker (``--dist loadfile``, below)."""
    return config.getvalue("dist") == "loadfile"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's ``--dist loadfile``, with this directory as one file."""
    if not _cases_together(config):
        return None
    from xdist.scheduler import LoadFileScheduling

    class CasesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return CASES if CASES in path else path

    return CasesTogether(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput[guard.XDIST_TOGETHER] = _cases_together(node.config)


def pytest_runtest_setup(item):
    guard.start(item.nodeid)


def pytest_runtest_logreport(report):
    guard.note_outcome(report)
