"""sweeprun: git-native, pytest-style parameter sweeps.

Public API: :func:`main`, :data:`hookimpl`, and :mod:`sweeprun.api`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sweeprun.hookspec import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl", "main"]


def main(args: Sequence[str] | None = None) -> int:
    """Run sweeprun as the command line would, in-process; return the exit code."""
    # Deferred: this package's __init__ runs for every import of a submodule (a worker's
    # executor, a script's api), which must not load the CLI and every plugin.
    from sweeprun._core.cli import main as _main

    return _main(args)
