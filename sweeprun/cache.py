"""The content-addressed cache of declared outputs.

Outputs never enter git objects: their bytes live here, addressed by SHA-256, and commits
record only digests (in ``sweeprun.lock``). The cache sits in the repository's common git
directory (``.git/sweeprun/cache``), so every worktree shares it; ``git config
sweeprun.cacheDir PATH`` or ``SWEEPRUN_CACHE_DIR`` points several clones at one cache.

Layout::

    objects/ab/cdef…            file contents (read-only)
    objects/ab/cdef….dir        directory manifests: JSON {relative path: file digest}
    runs/<stage key>.json       run-cache entries: {path: digest} of a stage's outputs
    locks/<stage key>.lock      flock so parallel jobs compute one stage once

Checkouts use a reflink where the filesystem has them, else a hardlink (objects are
read-only, so a program cannot corrupt the cache through it), else a copy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20
SMALL = 1 << 16
DIR_SUFFIX = ".dir"
_FICLONE = 0x40049409  # linux/fs.h: ioctl that makes a reflink


def cache_dir(common_dir: str | os.PathLike[str]) -> Path:
    """Where the cache of the repository with git directory ``common_dir`` lives."""
    env = os.environ.get("SWEEPRUN_CACHE_DIR")
    if env:
        return Path(env).resolve()
    proc = subprocess.run(
        ["git", "--git-dir", str(common_dir), "config", "sweeprun.cacheDir"],
        capture_output=True,
        text=True,
        check=False,
    )
    configured = proc.stdout.strip()
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(common_dir) / "sweeprun" / "cache"


def hash_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _walk(path: Path) -> list[tuple[str, Path]]:
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
        manifest = {rel: hash_file(full) for rel, full in _walk(path)}
        return _manifest_digest(manifest)
    return hash_file(path)


def _manifest_digest(manifest: dict[str, str]) -> str:
    data = json.dumps(manifest, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest() + DIR_SUFFIX


class Cache:
    """A content-addressed store of files and directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.runs = root / "runs"
        self.locks = root / "locks"

    @classmethod
    def for_repo(cls, common_dir: str | os.PathLike[str]) -> Cache:
        """The cache of a repository."""
        return cls(cache_dir(common_dir))

    def path_of(self, digest: str) -> Path:
        """Where an object lives."""
        return self.objects / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        """Whether an object (for a directory: its manifest and every file) is present."""
        if not self.path_of(digest).is_file():
            return False
        if digest.endswith(DIR_SUFFIX):
            return all(self.path_of(d).is_file() for d in self.manifest(digest).values())
        return True

    def manifest(self, digest: str) -> dict[str, str]:
        """A directory object's ``{relative path: digest}``."""
        data: dict[str, str] = json.loads(self.path_of(digest).read_text())
        return data

    def _store_file(self, src: Path, digest: str) -> None:
        target = self.path_of(digest)
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp(target)
        _clone_or_copy(src, tmp)
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)

    def save(self, path: Path) -> str:
        """Store a file or directory; return its digest. Content already present is not copied."""
        if path.is_dir():
            manifest = {}
            for rel, full in _walk(path):
                digest = hash_file(full)
                self._store_file(full, digest)
                manifest[rel] = digest
            digest = _manifest_digest(manifest)
            target = self.path_of(digest)
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = _tmp(target)
                tmp.write_text(json.dumps(manifest, sort_keys=True))
                os.replace(tmp, target)
            return digest
        digest = hash_file(path)
        self._store_file(path, digest)
        return digest

    def checkout(self, digest: str, dest: Path) -> None:
        """Materialise an object at ``dest`` (replacing what is there)."""
        remove(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if digest.endswith(DIR_SUFFIX):
            dest.mkdir()
            for rel, d in self.manifest(digest).items():
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(self.path_of(d), target)
        else:
            link_or_copy(self.path_of(digest), dest)

    # -- run cache ------------------------------------------------------------------------

    def run_entry(self, key: str) -> dict[str, str] | None:
        """The outputs recorded for a stage key, if all of them are still in the cache."""
        try:
            entry: dict[str, str] = json.loads((self.runs / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return entry if all(self.exists(d) for d in entry.values()) else None

    def record_run(self, key: str, outputs: dict[str, str]) -> None:
        """Remember that the stage with ``key`` produced ``outputs``."""
        self.runs.mkdir(parents=True, exist_ok=True)
        tmp = _tmp(self.runs / f"{key}.json")
        tmp.write_text(json.dumps(outputs, sort_keys=True))
        os.replace(tmp, self.runs / f"{key}.json")

    @contextlib.contextmanager
    def stage_lock(self, key: str) -> Iterator[None]:
        """Exclusive while a stage with ``key`` is being computed (across processes)."""
        self.locks.mkdir(parents=True, exist_ok=True)
        with open(self.locks / f"{key}.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def all_objects(self) -> list[str]:
        """Every object digest in the cache (for gc)."""
        if not self.objects.is_dir():
            return []
        return sorted(
            f"{d.name}{f.name}"
            for d in self.objects.iterdir()
            if d.is_dir()
            for f in d.iterdir()
            if ".tmp" not in f.name
        )


def _tmp(target: Path) -> Path:
    # Unique per writer: threads of one runner may store the same object at once.
    return target.with_name(f"{target.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove(path: Path) -> None:
    """Delete a file, link or directory tree (read-only files included) if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        for dirpath, _, filenames in os.walk(path):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                with contextlib.suppress(OSError):
                    os.chmod(Path(dirpath) / name, 0o644, follow_symlinks=False)
        shutil.rmtree(path)


def _clone_or_copy(src: Path, dest: Path) -> None:
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
    """Reflink, else hardlink, else copy ``src`` to ``dest``."""
    try:
        with open(src, "rb") as s, open(dest, "wb") as d:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        os.chmod(dest, 0o644)
        return
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dest)
