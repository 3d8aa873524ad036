"""Typed errors. A user mistake is one of these and becomes one line and exit code 4."""

from __future__ import annotations


class SweeprunError(Exception):
    """Base class of every error sweeprun reports without a traceback."""


class UsageError(SweeprunError):
    """Bad command-line input or a bad request (exit code 4)."""


class SpecError(UsageError):
    """A problem in a spec or params file, located at ``path:line:col``.

    ``line`` and ``col`` are 1-based; 0 means unknown.
    """

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        self.path = path
        self.line = line
        self.col = col
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line:
            where += f":{self.line}:{self.col}"
        return f"{where}: {self.message}"


class SweepValueError(ValueError):
    """A problem in a sweep block found by a pure function (grid, overrides, names).

    ``keypath`` is the path inside the sweep block (e.g. ``("matrix", "train.lr")``)
    so the spec loader can turn it into a located :class:`SpecError`.
    """

    def __init__(self, message: str, keypath: tuple[str | int, ...] = ()) -> None:
        self.message = message
        self.keypath = keypath
        super().__init__(message)


class GitError(SweeprunError):
    """A git command failed in a way that is not the user's input."""


class NotARepositoryError(UsageError):
    """The directory is not inside a git work tree, or has no commit yet."""
