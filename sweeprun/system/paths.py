"""Where a path really is, before sweeprun removes or writes it.

The rule (``docs/explanation/safety.md``): sweeprun deletes, replaces or writes a file
only when its real location — every symlink on the way followed, the last one included —
is inside the tree it works on: the repository for the user's workspace, the pooled
workspace for a job. Checking the text of a path (``../``, absolute) is not enough: a
symlinked directory (``data -> /mnt/disk``) takes an innocent ``data/model.pkl``
elsewhere. Spec paths are checked when the spec is loaded (a located error, nothing
queued) and again in the workspace right before anything is touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from sweeprun.exceptions import UsageError


class OutsideError(UsageError):
    """A path whose real location is outside the tree sweeprun may change."""

    def __init__(self, rel: str, real: Path, base: Path, what: str = "path") -> None:
        self.rel = rel
        self.real = real
        self.base = base
        super().__init__(
            f"{what} {rel!r} resolves to {real}, outside {base}: sweeprun never removes or "
            "writes a file outside the tree it works on (make the link point inside it)"
        )


def real_location(base: Path, rel: str) -> Path:
    """``base/rel`` with every symlink followed (whether or not it exists)."""
    return Path(os.path.realpath(base / rel))


def reason_outside(base: Path, rel: str) -> Path | None:
    """Where ``base/rel`` really is, when that is outside ``base``; else ``None``."""
    root = Path(os.path.realpath(base))
    real = real_location(base, rel)
    if real == root or root in real.parents:
        return None
    return real


def guarded(base: Path, rel: str, what: str = "path") -> Path:
    """``base/rel``, once it is known to resolve inside ``base``; raise :class:`OutsideError`.

    Call it before removing, replacing or writing a path a spec or a record names.
    """
    real = reason_outside(base, rel)
    if real is not None:
        raise OutsideError(rel, real, Path(os.path.realpath(base)), what)
    return base / rel


def guarded_entry(base: Path, rel: str, what: str = "path") -> Path:
    """``base/rel`` for removing or replacing the entry itself, once its directory is known
    to resolve inside ``base``. The entry may be a symlink leading anywhere: unlinking or
    replacing a link never touches where it leads, so only the way to it is checked."""
    parent = os.path.dirname(rel.rstrip("/"))
    real = reason_outside(base, parent) if parent else None
    if real is not None:
        raise OutsideError(rel, real, Path(os.path.realpath(base)), what)
    return base / rel


def in_git_dir(rel: str) -> bool:
    """Whether a repository-relative path names git's own directory or something in it."""
    return rel.split("/", 1)[0] == ".git"
