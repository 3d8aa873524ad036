"""Damaged private state is set aside, never fatal.

A journal full of random bytes, a lock path that has become a directory, a folder that
has become a file: each is moved to ``.git/sweeprun/corrupt/`` with one warning line naming
it, and the run goes on with a fresh one (or with what git still knows, for checkpoints).
Nothing is deleted: the damaged thing can be looked at later.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def corrupt_dir(state_dir: Path) -> Path:
    """Where damaged private files go: ``.git/sweeprun/corrupt``."""
    return state_dir / "corrupt"


def set_aside(path: Path, state_dir: Path, why: str) -> Path | None:
    """Move ``path`` (a file or a directory) out of the way, with one warning line."""
    dest_dir = corrupt_dir(state_dir)
    dest = dest_dir / f"{path.name}-{time.time_ns()}"
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    except FileNotFoundError:
        return None  # another process set it aside first
    print(f"sweeprun: warning: {path} {why}; set aside as {dest}", file=sys.stderr)
    return dest


def ensure_dir(path: Path, state_dir: Path) -> None:
    """``mkdir -p path``, setting aside a file that stands where the directory belongs."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        set_aside(path, state_dir, "is not a directory")
        path.mkdir(parents=True, exist_ok=True)


def open_lock(path: Path, state_dir: Path) -> int:
    """Open (creating) a lock file; a directory or other damage in its place is set aside."""
    for attempt in (1, 2):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            if attempt == 2:
                raise
            set_aside(path, state_dir, "is a directory, not a lock file")
        except FileNotFoundError:
            if attempt == 2:
                raise
            ensure_dir(path.parent, state_dir)
    raise AssertionError("unreachable")


def close(fd: int) -> None:
    """Close a descriptor from :func:`open_lock`."""
    with contextlib.suppress(OSError):
        os.close(fd)


@contextlib.contextmanager
def held(path: Path, state_dir: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the lock file ``path`` (made, or set aside and made anew
    if damaged: see :func:`open_lock`), held across processes while the block runs."""
    ensure_dir(path.parent, state_dir)
    fd = open_lock(path, state_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        close(fd)  # closing drops the lock
