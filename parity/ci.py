"""pytest hooks shared by the project's test directories (imported by their conftest.py files).

Under CI (``CI=true``, as CI services set it) a test that skips because a package is missing fails instead:
a CI run must have every package, and a skip there would silently drop what the test checks. A skip counts
as "for a missing package" when its reason says so (``pytest.importorskip``'s "could not import", "No module
named", "needs ...", "not installed", "pip install").
"""

from __future__ import annotations

import os
import re

import pytest

MISSING_PACKAGE = re.compile(r"could not import|no module named|\bneeds?\b|not installed|pip install", re.IGNORECASE)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def missing_package_skip(report) -> str | None:
    """The reason of a skip caused by a missing package (None for any other outcome)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    reason = _skip_reason(report.longrepr)
    return reason if MISSING_PACKAGE.search(reason) else None


def _fail_under_ci(report) -> None:
    reason = missing_package_skip(report) if in_ci() else None
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"skipped for a missing package, which fails under CI=true: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_under_ci(outcome.get_result())
