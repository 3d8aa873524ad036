"""A cache remote behind each machine's own cache (see :mod:`sweeprun.store.remotes`).

A worker that runs without the runner's file system (``--worker-url``) uses a
:class:`TieredCache`: its own cache first, the remote behind it. Stage locks are taken in
the remote, so a stage the whole sweep shares is computed once across all machines;
everything a job saves is copied to the remote, so that checkpoints resume on any worker
and ``apply`` on the runner's machine can fetch the outs it needs (:func:`fetch_missing`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from sweeprun.store.cache import DEFAULT_LINK_TYPES, Cache
from sweeprun.store.git import run_git
from sweeprun.store.remotes import CONFIG_KEY, Remote, open_remote


def configured_remote(cwd: str | os.PathLike[str]) -> Remote | None:
    """The cache remote of the repository at ``cwd``, if one is configured."""
    value = run_git(["config", CONFIG_KEY], cwd, check=False).strip()
    return open_remote(value) if value else None


def fetch_missing(cache: Cache, remote: Remote | None, digests: Iterable[str]) -> int:
    """Bring the objects ``cache`` lacks from the cache remote (if any); the count."""
    return remote.fetch(cache, digests) if remote is not None else 0  # (it skips what is here)


class TieredCache(Cache):
    """This machine's cache in front of a cache remote shared by every machine."""

    def __init__(
        self, root: Path, types: tuple[str, ...] = DEFAULT_LINK_TYPES, *, remote: Remote
    ) -> None:
        super().__init__(root, types)
        self.remote = remote

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
        self.remote.fetch(self, entry.values())
        super().record_run(key, entry)
        return super().run_entry(key)

    def record_run(self, key: str, outputs: dict[str, str]) -> None:
        self.remote.send(self, outputs.values())
        self.remote.record_run(key, outputs)
        super().record_run(key, outputs)

    def save(self, path: Path) -> str:
        """Store locally and in the remote (a checkpoint's outs then resume anywhere)."""
        digest = super().save(path)
        self.remote.send(self, [digest])
        return digest

    def checkout(self, digest: str, dest: Path) -> None:
        if not self.exists(digest):
            self.remote.fetch(self, [digest])
        super().checkout(digest, dest)
