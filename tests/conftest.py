"""Shared test set-up: the project's hypothesis profiles (defined in :func:`parity.recorder.register_profiles`).

Profiles: ``ci`` (default, quick: what ``make test`` runs) and ``thorough`` (deep search):
``HYPOTHESIS_PROFILE=thorough pytest``. Importing :mod:`parity` also selects Keras's TensorFlow backend and
float64-faithful TF kernels for the tests that compare against Keras.
"""

import os

# The suite tests the fast kernels themselves: compile them where they are called, never fall back to the NumPy
# twins while they compile in the background (tinynn.kernels.warmup).
os.environ.setdefault("TINYNN_COMPILE", "wait")

from hypothesis import settings

from parity import recorder

recorder.register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
