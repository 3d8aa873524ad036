"""What ``gc`` may remove: each owner of private files names its own leftovers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Reapable:
    """One thing ``gc`` would remove: how it is shown, its size, and how it goes."""

    what: str
    size: int
    reap: Callable[[], None]


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file below a directory (0 when it is gone)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def unlink_later(path: Path, what: str, base: Path) -> Reapable:
    """A private file that can simply be deleted."""
    return Reapable(
        f"{what} {path.relative_to(base)}", size_of(path), lambda: path.unlink(missing_ok=True)
    )
