"""Root conftest: enables the ``sweepproject`` fixture for every test."""

pytest_plugins = ["sweeprun.testing"]
