"""Hypothesis profiles for the parity cases (the same ones tests/ uses), also when run from an installed wheel."""

import os

from hypothesis import settings

from parity import recorder

recorder.register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
