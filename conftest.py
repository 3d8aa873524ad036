"""Root conftest: enables the ``sweepproject`` fixture for every test."""

import os

from hypothesis import settings

pytest_plugins = ["sweeprun.testing"]

# In CI, property tests are derandomized so a run is reproducible; locally they explore.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
