"""Hypothesis profiles for the parity cases (the same ones tests/ uses), also when run from an installed wheel."""

import os

# The suite tests the fast kernels themselves: compile them where they are called, never fall back to the NumPy
# twins while they compile in the background (tinynn.kernels.warmup).
os.environ.setdefault("TINYNN_COMPILE", "wait")

from hypothesis import settings

from parity import recorder

recorder.register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
