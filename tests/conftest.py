"""Shared test set-up: hypothesis profiles and float64 Keras for strict parity.

Profiles: ``ci`` (default, quick: what ``make test`` runs) and ``thorough`` (deep search):
``HYPOTHESIS_PROFILE=thorough pytest``.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=12, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=250, print_blob=True, **_common)
settings.register_profile("dev", max_examples=4, derandomize=True, print_blob=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
