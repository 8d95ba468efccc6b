"""Shared test set-up: the project's hypothesis profiles (defined in :func:`parity.recorder.register_profiles`).

Profiles: ``ci`` (default, quick: what ``make test`` runs) and ``thorough`` (deep search):
``HYPOTHESIS_PROFILE=thorough pytest``. Importing :mod:`parity` also selects Keras's TensorFlow backend and
float64-faithful TF kernels for the tests that compare against Keras. Under ``CI=true`` a skip for a
missing package fails (:mod:`parity.ci`).
"""

import os

# The suite tests the fast kernels themselves: compile them where they are called, never fall back to the NumPy
# twins while they compile in the background (tinynn.kernels.warmup).
os.environ.setdefault("TINYNN_COMPILE", "wait")

from hypothesis import settings

from parity import recorder
from parity.ci import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401  (pytest hooks)

recorder.register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``backends`` (the parity tool on every Keras backend, over a minute) run only when asked
    for with ``-m backends`` (``make test-backends``), not in ``make test``."""
    if "backends" in (config.option.markexpr or ""):
        return
    skipped = [item for item in items if item.get_closest_marker("backends")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("backends")]
