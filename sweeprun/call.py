"""``python -m sweeprun.call pkg.mod:func [ARGS…]``: what a ``call:`` stage runs.

Imports ``pkg.mod`` with the working directory first on ``sys.path`` (as ``python -m``
does), sets ``sys.argv`` to ``[pkg.mod, ARGS…]`` and calls ``func()``; an integer it
returns is the exit code. A warm run (:mod:`sweeprun.run.warm`) does the same in a forked
worker without starting Python again; this is the cold path, used where no warm worker is
kept.
"""

from __future__ import annotations

import importlib
import os
import sys


def main(argv: list[str]) -> int:
    """Call the ``module:function`` named by ``argv[0]`` with ``argv[1:]`` as its arguments."""
    if not argv or ":" not in argv[0]:
        print("usage: python -m sweeprun.call pkg.module:function [ARGS...]", file=sys.stderr)
        return 2
    module, _, func = argv[0].partition(":")
    sys.path.insert(0, os.getcwd())
    sys.argv = [module, *argv[1:]]
    result = getattr(importlib.import_module(module), func)()
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
