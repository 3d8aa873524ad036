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

    corrupt/<digest>-<ns>       objects that failed verification, set aside

Restoring an object makes a reflink where the file system has them, else a copy: a
program or a person may write the restored file in place (as root, read-only bits do not
stop them), and that must never change the cached object. Hardlinks are an explicit
opt-in (``git config sweeprun.cacheType hardlink``, like DVC's ``cache.type``).

Objects are verified when read. Every object is stored with a fixed modification time
(:data:`STAMP_NS`); writing to it in place, through a hardlink say, changes that time, so
a restore that finds another time hashes the object first. Small objects are hashed on
every restore, copies as they are copied. A corrupt object is set aside and reported
(:class:`CorruptObjectError`), never restored.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from sweeprun.exceptions import UsageError
from sweeprun.model import Reapable, size_of
from sweeprun.store.files import (
    DIR_SUFFIX,
    STAMP_NS,
    clone_or_copy,
    copy_hashing,
    hash_file,
    manifest_digest,
    reflink,
    remove,
    seal,
    stamped,
    temporary,
    walk,
)
from sweeprun.system import damage

#: Objects up to this size are hashed on every restore, whatever the link type.
VERIFY_ALWAYS = 1 << 20
LINK_TYPES = ("reflink", "hardlink", "copy")
DEFAULT_LINK_TYPES = ("reflink", "copy")


class CacheObjectError(UsageError):
    """A cache object cannot be restored: it is missing or its bytes are not its digest."""

    def __init__(self, digest: str, message: str) -> None:
        self.digest = digest
        super().__init__(message)


class CorruptObjectError(CacheObjectError):
    """A cache object whose content no longer matches its digest (it was set aside)."""


def link_types(value: str, where: str = "git config sweeprun.cacheType") -> tuple[str, ...]:
    """Parse a ``cacheType`` value: link types in order of preference."""
    types = tuple(t.strip() for t in value.split(",") if t.strip())
    bad = [t for t in types if t not in LINK_TYPES]
    if bad or not types:
        raise UsageError(
            f"{where}: {value!r} is not a list of link types "
            f"(valid: {', '.join(LINK_TYPES)}, comma-separated in order of preference)"
        )
    return types


def cache_config(common_dir: str | os.PathLike[str]) -> tuple[Path, tuple[str, ...]]:
    """Where the cache of the repository with git directory ``common_dir`` lives, and how
    its objects are restored (``sweeprun.cacheDir``, ``sweeprun.cacheType``): one git call.
    """
    proc = subprocess.run(
        [
            "git",
            "--git-dir",
            str(common_dir),
            "config",
            "-z",
            "--get-regexp",
            r"^sweeprun\.cache(dir|type)$",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    conf: dict[str, str] = {}
    for item in proc.stdout.split("\0"):
        key, _, value = item.partition("\n")
        if key:
            conf[key] = value
    env = os.environ.get("SWEEPRUN_CACHE_DIR")
    if env:
        root = Path(env).resolve()
    elif conf.get("sweeprun.cachedir"):
        root = Path(conf["sweeprun.cachedir"]).expanduser().resolve()
    else:
        root = Path(common_dir) / "sweeprun" / "cache"
    types = link_types(conf["sweeprun.cachetype"]) if "sweeprun.cachetype" in conf else None
    return root, types or DEFAULT_LINK_TYPES


def cache_dir(common_dir: str | os.PathLike[str]) -> Path:
    """Where the cache of the repository with git directory ``common_dir`` lives."""
    return cache_config(common_dir)[0]


class Cache:
    """A content-addressed store of files and directories."""

    def __init__(self, root: Path, types: tuple[str, ...] = DEFAULT_LINK_TYPES) -> None:
        self.root = root
        #: How objects are restored, in order of preference (see :func:`link_types`).
        self.types = types
        self.objects = root / "objects"
        self.runs = root / "runs"
        self.locks = root / "locks"
        self.corrupt = root / "corrupt"

    @classmethod
    def for_repo(cls, common_dir: str | os.PathLike[str]) -> Cache:
        """The cache of a repository, as configured."""
        return cls(*cache_config(common_dir))

    def path_of(self, digest: str) -> Path:
        """Where an object lives."""
        return self.objects / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        """Whether an object (for a directory: its manifest and every file) is present."""
        if not self.path_of(digest).is_file():
            return False
        if digest.endswith(DIR_SUFFIX):
            try:
                files = self.manifest(digest)
            except CacheObjectError:
                return False
            return all(self.path_of(d).is_file() for d in files.values())
        return True

    def manifest(self, digest: str) -> dict[str, str]:
        """A directory object's ``{relative path: digest}`` (verified)."""
        try:
            data = self.path_of(digest).read_bytes()
        except OSError:
            raise self._missing(digest) from None
        if hashlib.sha256(data).hexdigest() + DIR_SUFFIX != digest:
            raise self._set_aside(digest)
        try:
            manifest: dict[str, str] = json.loads(data)
        except ValueError:
            raise self._set_aside(digest) from None
        return manifest

    def store_file(self, src: Path, digest: str) -> None:
        """Store the file ``src`` as object ``digest`` (known to be its hash)."""
        target = self.path_of(digest)
        if stamped(target):
            return
        # Absent, or an object whose time says it may have been written since it was
        # stored: the bytes at hand are known good, so they replace it.
        target.parent.mkdir(parents=True, exist_ok=True)
        with temporary(target) as tmp:
            clone_or_copy(src, tmp)
            seal(tmp)
            os.replace(tmp, target)

    # -- verification ---------------------------------------------------------------------

    def _missing(self, digest: str) -> CacheObjectError:
        return CacheObjectError(digest, f"cache object {digest[:12]} is missing from {self.root}")

    def _set_aside(self, digest: str) -> CorruptObjectError:
        """Move a corrupt object out of the way; the error to report."""
        src = self.path_of(digest)
        self.corrupt.mkdir(parents=True, exist_ok=True)
        dest = self.corrupt / f"{digest}-{time.time_ns()}"
        with contextlib.suppress(FileNotFoundError):  # another job set it aside first
            os.replace(src, dest)
        return CorruptObjectError(
            digest,
            f"cache object {digest[:12]} is corrupt (its bytes no longer match its digest); "
            f"set aside as {dest}",
        )

    def check(self, digest: str) -> None:
        """Raise unless a file object is present and (cheaply, or by hashing) intact."""
        path = self.path_of(digest)
        try:
            st = path.stat()
        except OSError:
            raise self._missing(digest) from None
        if st.st_mtime_ns == STAMP_NS and st.st_size > VERIFY_ALWAYS:
            return
        if hash_file(path) != digest:
            raise self._set_aside(digest)
        if st.st_mtime_ns != STAMP_NS:
            # Intact: an object of an older version, or touched without a change.
            with contextlib.suppress(OSError):
                os.utime(path, ns=(st.st_atime_ns, STAMP_NS))

    def verify(self, digest: str) -> bool:
        """Hash an object (a directory: its manifest and files); set it aside if corrupt."""
        try:
            if digest.endswith(DIR_SUFFIX):
                return all(self.verify(d) for d in self.manifest(digest).values())
            if hash_file(self.path_of(digest)) != digest:
                self._set_aside(digest)
                return False
        except (OSError, CacheObjectError):  # corrupt (now set aside) or unreadable
            return False
        return True

    def save(self, path: Path) -> str:
        """Store a file or directory; return its digest. Content already present is not copied."""
        if path.is_dir():
            manifest = {}
            for rel, full in walk(path):
                digest = hash_file(full)
                self.store_file(full, digest)
                manifest[rel] = digest
            digest = manifest_digest(manifest)
            target = self.path_of(digest)
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                with temporary(target) as tmp:
                    tmp.write_text(json.dumps(manifest, sort_keys=True))
                    os.replace(tmp, target)
            return digest
        digest = hash_file(path)
        self.store_file(path, digest)
        return digest

    def checkout(self, digest: str, dest: Path) -> None:
        """Materialise an object at ``dest`` (replacing what is there), verified.

        The caller has checked that ``dest`` is a path it may replace. Raises
        :class:`CacheObjectError` (nothing restored at ``dest``) for a missing or corrupt
        object.
        """
        if digest.endswith(DIR_SUFFIX):
            files = self.manifest(digest)
            remove(dest)
            dest.mkdir(parents=True)
            try:
                for rel, d in files.items():
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._restore_file(d, target)
            except CacheObjectError:
                remove(dest)
                raise
        else:
            remove(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._restore_file(digest, dest)

    def _restore_file(self, digest: str, dest: Path) -> None:
        src = self.path_of(digest)
        for kind in self.types:
            if kind == "copy":
                try:
                    got = copy_hashing(src, dest)
                except FileNotFoundError:
                    raise self._missing(digest) from None
                if got != digest:
                    dest.unlink(missing_ok=True)
                    raise self._set_aside(digest)
                if not stamped(src):  # intact, from an older version: stamp it now
                    with contextlib.suppress(OSError):
                        os.utime(src, ns=(time.time_ns(), STAMP_NS))
                return
            if kind == "reflink" and reflink(src, dest):
                try:
                    self.check(digest)
                except CacheObjectError:
                    dest.unlink(missing_ok=True)
                    raise
                return
            if kind == "hardlink":
                self.check(digest)
                try:
                    os.link(src, dest)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                        raise
        # None of the preferred kinds works here (e.g. "reflink" alone on ext4).
        raise UsageError(
            f"git config sweeprun.cacheType {','.join(self.types)}: none of these link types "
            f"works between {self.root} and {dest.parent} (add 'copy')"
        )

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
        with temporary(self.runs / f"{key}.json") as tmp:
            tmp.write_text(json.dumps(outputs, sort_keys=True))
            os.replace(tmp, self.runs / f"{key}.json")

    @contextlib.contextmanager
    def stage_lock(self, key: str) -> Iterator[None]:
        """Exclusive while a stage with ``key`` is being computed (across processes)."""

        with damage.held(self.locks / f"{key}.lock", self.root):
            yield

    def unused(self, used: set[str]) -> list[Reapable]:
        """For ``gc``: objects none of the ``used`` digests (or their manifests) names,
        and run-cache entries whose outputs are gone."""
        used = set(used)
        for d in list(used):
            if d.endswith(DIR_SUFFIX) and self.path_of(d).is_file():
                used.update(self.manifest(d).values())
        out = [
            Reapable(f"cache object {d[:12]}", size_of(self.path_of(d)), partial(self._drop, d))
            for d in self.all_objects()
            if d not in used
        ]
        if out or self.runs.is_dir():
            out.append(Reapable("", 0, self._drop_dead_runs))  # shown as nothing: bookkeeping
        return out

    def _drop(self, digest: str) -> None:
        path = self.path_of(digest)
        os.chmod(path, 0o644)
        path.unlink(missing_ok=True)

    def _drop_dead_runs(self) -> None:
        for entry in self.runs.glob("*.json") if self.runs.is_dir() else ():
            if self.run_entry(entry.stem) is None:
                entry.unlink(missing_ok=True)

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
