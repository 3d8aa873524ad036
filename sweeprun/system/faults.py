"""Faults of the machine, not of sweeprun or of the experiment: a full disk, a quota, an
I/O error. They are told in one line, and the experiment goes back to the queue.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sweeprun.exceptions import GitError

#: errno values that mean the machine, not sweeprun or the experiment, is at fault.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
_GIT_STORAGE_ERRORS = ("No space left on device", "Disk quota exceeded", "couldn't write")


def storage_error(exc: BaseException) -> str | None:
    """``no space left on device`` (and the like) when ``exc`` is a storage fault."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, GitError):
        text = str(exc)
        for words in _GIT_STORAGE_ERRORS:
            if words in text:
                # git says "couldn't write" when it cannot create a lock file: full disk.
                return "no space left on device" if words == "couldn't write" else words.lower()
    return None


#: Below this much free space, a failing stage is taken to have failed for want of it.
DISK_FULL_BYTES = 1 << 20


def disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no space left."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < DISK_FULL_BYTES
