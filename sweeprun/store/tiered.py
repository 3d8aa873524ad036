"""A cache remote: one output cache shared by every machine, behind each machine's own.

``git config sweeprun.cacheRemote DIR`` (a directory every machine mounts, or a
``file://`` URL) holds objects and run-cache entries in the same layout as a local cache.
A worker that runs without the runner's file system (``--worker-url``) uses a
:class:`TieredCache`: its own cache first, the remote behind it. Stage locks are taken in
the remote, so a stage the whole sweep shares is computed once across all machines;
everything a job saves is copied to the remote, so that checkpoints resume on any worker
and ``apply`` on the runner's machine can fetch the outs it needs
(:func:`fetch_missing`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from sweeprun.exceptions import UsageError
from sweeprun.store.cache import DEFAULT_LINK_TYPES, Cache
from sweeprun.store.files import DIR_SUFFIX, temporary
from sweeprun.store.git import run_git

#: The git config key naming the cache remote.
CONFIG_KEY = "sweeprun.cacheRemote"


def remote_root(value: str, where: str = f"git config {CONFIG_KEY}") -> Path:
    """The directory a cache remote setting names (a path or a ``file://`` URL)."""
    parsed = urlparse(value)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).resolve()
    if parsed.scheme and len(parsed.scheme) > 1:  # (a Windows drive letter is no scheme)
        raise UsageError(
            f"{where}: {value!r} is not supported (valid: a directory every machine "
            "mounts, or a file:// URL)"
        )
    return Path(value).expanduser().resolve()


def configured_remote(cwd: str | os.PathLike[str]) -> Path | None:
    """The cache remote of the repository at ``cwd``, if one is configured."""
    value = run_git(["config", CONFIG_KEY], cwd, check=False).strip()
    return remote_root(value) if value else None


def copy_objects(src: Cache, dst: Cache, digests: Iterable[str]) -> int:
    """Copy objects (directories with their files) that ``dst`` lacks; the count copied.

    Each object arrives whole or not at all (written aside, then renamed), so machines
    copying the same object at once, or a copy cut short, never leave a torn one.
    """
    n = 0
    for d in sorted(set(digests)):
        wanted = [d]
        if d.endswith(DIR_SUFFIX) and src.path_of(d).is_file():
            wanted += list(src.manifest(d).values())
        for w in wanted:
            source, target = src.path_of(w), dst.path_of(w)
            if not source.is_file() or target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if w.endswith(DIR_SUFFIX):
                with temporary(target) as tmp:
                    tmp.write_bytes(source.read_bytes())
                    os.replace(tmp, target)
            else:
                dst.store_file(source, w)
            n += 1
    return n


def fetch_missing(cache: Cache, remote: Path | None, digests: Iterable[str]) -> int:
    """Bring the objects ``cache`` lacks from the cache remote (if any); the count."""
    if remote is None:
        return 0
    wanted = [d for d in digests if not cache.exists(d)]
    return copy_objects(Cache(remote), cache, wanted) if wanted else 0


class TieredCache(Cache):
    """This machine's cache in front of a cache remote shared by every machine."""

    def __init__(
        self, root: Path, types: tuple[str, ...] = DEFAULT_LINK_TYPES, *, remote: Path
    ) -> None:
        super().__init__(root, types)
        self.remote = Cache(remote)

    @contextlib.contextmanager
    def stage_lock(self, key: str) -> Iterator[None]:
        """Held in the remote: one machine computes a stage, the others then restore it."""
        with self.remote.stage_lock(key):
            yield

    def run_entry(self, key: str) -> dict[str, str] | None:
        entry = super().run_entry(key)
        if entry is not None:
            return entry
        entry = self.remote.run_entry(key)
        if entry is None:
            return None
        copy_objects(self.remote, self, entry.values())
        super().record_run(key, entry)
        return super().run_entry(key)

    def record_run(self, key: str, outputs: dict[str, str]) -> None:
        copy_objects(self, self.remote, outputs.values())
        self.remote.record_run(key, outputs)
        super().record_run(key, outputs)

    def save(self, path: Path) -> str:
        """Store locally and in the remote (a checkpoint's outs then resume anywhere)."""
        digest = super().save(path)
        copy_objects(self, self.remote, [digest])
        return digest

    def checkout(self, digest: str, dest: Path) -> None:
        if not self.exists(digest):
            copy_objects(self.remote, self, [digest])
        super().checkout(digest, dest)
