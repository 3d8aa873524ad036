"""File operations of the output cache: hashing, sealing, and restoring by reflink or copy.

Pure filesystem work, kept apart from :class:`~sweeprun.store.cache.Cache` (which decides
what is stored where). The Linux reflink ioctl sits here with a copy as its fallback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Read and hash files in chunks of this size.
CHUNK = 1 << 20
#: Below this size a file is copied (and hashed) rather than cloned.
SMALL = 1 << 16
_FICLONE = 0x40049409  # linux/fs.h: ioctl that makes a reflink
#: The modification time of every cache object (2001-09-09T01:46:40Z): any later write
#: to the object changes it, which is how a cheap check sees a write-through.
STAMP_NS = 1_000_000_000 * 10**9
#: The suffix of a directory's manifest object.
DIR_SUFFIX = ".dir"


def hash_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def walk(path: Path) -> list[tuple[str, Path]]:
    """Every file below the directory ``path``, sorted: (relative POSIX path, path)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            out.append((full.relative_to(path).as_posix(), full))
    return out


def hash_path(path: Path) -> str:
    """Digest of a file, or of a directory's manifest (``<sha>.dir``)."""
    if path.is_dir():
        manifest = {rel: hash_file(full) for rel, full in walk(path)}
        return manifest_digest(manifest)
    return hash_file(path)


def manifest_digest(manifest: dict[str, str]) -> str:
    """The digest of a directory object: its manifest's hash, marked as a directory."""
    data = json.dumps(manifest, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest() + DIR_SUFFIX


@contextlib.contextmanager
def temporary(target: Path) -> Iterator[Path]:
    """A temporary sibling of ``target`` that is gone afterwards unless it was renamed:
    a write cut short (a full disk) leaves no half-file behind."""
    # Unique per writer: threads of one runner may store the same object at once.
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def remove(path: Path) -> None:
    """Delete a file, link or directory tree (read-only files included) if it exists.

    A symlink is removed itself, never followed; the caller has checked that ``path``'s
    real location is one it may change (:func:`sweeprun.system.paths.guarded`).
    """
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        # Removing a file needs a writable directory, not a writable file; os.walk does
        # not descend into symlinked directories.
        for dirpath, _, _ in os.walk(path):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(path)


def stamped(path: Path) -> bool:
    """Whether a cache object still has the modification time it was stored with."""
    try:
        return path.stat().st_mtime_ns == STAMP_NS
    except OSError:
        return False


def seal(path: Path) -> None:
    """Make a new object read-only with the cache's modification time."""
    os.chmod(path, 0o444)
    os.utime(path, ns=(time.time_ns(), STAMP_NS))


def reflink(src: Path, dest: Path) -> bool:
    """Clone ``src`` to ``dest`` (a copy-on-write reflink); ``False`` where unsupported."""
    try:
        with open(src, "rb") as s, open(dest, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        return False
    os.chmod(dest, 0o644)
    return True


def copy_hashing(src: Path, dest: Path) -> str:
    """Copy ``src`` to a new writable file ``dest``; the SHA-256 of what was copied."""
    h = hashlib.sha256()
    with open(src, "rb") as s, open(dest, "wb") as d:
        while chunk := s.read(CHUNK):
            h.update(chunk)
            d.write(chunk)
    return h.hexdigest()


def clone_or_copy(src: Path, dest: Path) -> None:
    """Reflink ``src`` to ``dest``, or copy it where the file system cannot."""
    if src.stat().st_size < SMALL:
        shutil.copyfile(src, dest)  # a reflink saves nothing on a small file
        return
    try:
        with open(src, "rb") as s, open(dest, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        return
    except OSError:
        pass
    shutil.copyfile(src, dest)


def link_or_copy(src: Path, dest: Path) -> None:
    """Reflink, else hardlink, else copy ``src`` to ``dest`` (for the user's own files)."""
    if reflink(src, dest):
        return
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dest)
