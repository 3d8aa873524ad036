"""Root conftest: enables the ``sweepproject`` fixture for every test."""

import os

from hypothesis import settings

pytest_plugins = ["sweeprun.testing"]

# In CI, property tests are derandomized so a run is reproducible; locally they explore.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_generate_tests(metafunc):  # type: ignore[no-untyped-def]
    """Tests marked ``both_git_modes`` run with sweeprun's in-process git fast paths on and
    off (``SWEEPRUN_FAST_GIT=0``: git itself does every checkout, add and write-tree)."""
    if metafunc.definition.get_closest_marker("both_git_modes") and (
        "sweepproject" in metafunc.fixturenames
    ):
        metafunc.parametrize("git_mode", ["fast", "git"], indirect=True)
