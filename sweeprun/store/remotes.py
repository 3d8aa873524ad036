"""Cache remotes: where every machine's cached outputs meet.

``git config sweeprun.cacheRemote`` (or ``push/pull --cache-remote``) names either a
directory every machine mounts (a path or ``file://`` URL: :class:`DirRemote`), or an
object store through fsspec (``s3://bucket/prefix``, ``gs://``, ``az://``, any fsspec URL
whose package is installed: :class:`ObjectRemote`). Both keep the local cache's layout
(``objects/ab/cdef…``, ``runs/<key>.json``, ``locks/<key>``). Credentials and endpoints come
from each service's standard places (for S3: the ``AWS_*`` environment, ``~/.aws``,
``AWS_ENDPOINT_URL`` for S3-compatible servers) — sweeprun has none of its own.

An object is written once under its digest (an object store's PUT is atomic: the object
appears whole or not at all) and verified when it is fetched (its hash must be its name);
a manifest is sent after the files it names, so a directory never appears half there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from sweeprun.exceptions import UsageError
from sweeprun.store.cache import Cache, CacheObjectError
from sweeprun.store.files import DIR_SUFFIX, hash_file, temporary

#: The git config key naming the cache remote.
CONFIG_KEY = "sweeprun.cacheRemote"
#: How long a stage lock in an object store lasts unless its holder renews it (seconds,
#: ``SWEEPRUN_LOCK_LEASE`` when set); the holder renews it every third of that. A holder
#: that died leaves a lock that others take over once it has expired.
LEASE = 60.0
#: Packages that provide the common object stores (said when one is missing).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


class Remote(Protocol):
    """What the cache needs of a remote."""

    #: As the user wrote it (for messages, and for a job to open it again).
    url: str

    def send(self, cache: Cache, digests: Iterable[str]) -> int:
        """Copy objects ``cache`` holds that the remote lacks; the count copied."""

    def fetch(self, cache: Cache, digests: Iterable[str]) -> int:
        """Bring objects ``cache`` lacks from the remote, verified; the count."""

    def run_entry(self, key: str) -> dict[str, str] | None:
        """The outputs recorded for a stage key, if the remote holds all of them."""

    def record_run(self, key: str, outputs: dict[str, str]) -> None:
        """Remember that the stage with ``key`` produced ``outputs``."""

    def stage_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Held while one machine computes a stage the others then restore."""


def open_remote(value: str, where: str = f"git config {CONFIG_KEY}") -> Remote:
    """The remote ``value`` names: a directory (path or ``file://``) or an fsspec URL."""
    parsed = urlparse(value)
    if parsed.scheme == "file":
        return DirRemote(Path(unquote(parsed.path)).resolve(), value)
    if parsed.scheme and len(parsed.scheme) > 1:  # (a Windows drive letter is no scheme)
        return ObjectRemote(value, where)
    return DirRemote(Path(value).expanduser().resolve(), value)


class DirRemote:
    """A directory every machine mounts: a cache of its own."""

    def __init__(self, root: Path, url: str = "") -> None:
        self.root = root
        self.url = url or str(root)
        self.cache = Cache(root)

    def send(self, cache: Cache, digests: Iterable[str]) -> int:
        return copy_objects(cache, self.cache, digests)

    def fetch(self, cache: Cache, digests: Iterable[str]) -> int:
        wanted = [d for d in digests if not cache.exists(d)]
        return copy_objects(self.cache, cache, wanted) if wanted else 0

    def run_entry(self, key: str) -> dict[str, str] | None:
        return self.cache.run_entry(key)

    def record_run(self, key: str, outputs: dict[str, str]) -> None:
        self.cache.record_run(key, outputs)

    def stage_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        return self.cache.stage_lock(key)


def copy_objects(src: Cache, dst: Cache, digests: Iterable[str]) -> int:
    """Copy objects (directories with their files) that ``dst`` lacks; the count copied.

    Each object arrives whole or not at all (written aside, then renamed), so machines
    copying the same object at once, or a copy cut short, never leave a torn one.
    """
    n = 0
    for d in sorted(set(digests)):
        wanted = [d]
        if d.endswith(DIR_SUFFIX) and src.path_of(d).is_file():
            wanted = [*src.manifest(d).values(), d]  # the files before their manifest
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


class ObjectRemote:
    """An object store through fsspec, in the local cache's layout."""

    def __init__(self, url: str, where: str = f"git config {CONFIG_KEY}") -> None:
        self.url = url
        scheme = urlparse(url).scheme
        try:
            import fsspec  # deferred: an optional extra (sweeprun[s3] and friends)

            # (not a cached instance: each remote reads its credentials and endpoint now)
            self.fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True)
        except ImportError as exc:
            extra = EXTRAS.get(scheme, "s3")
            raise UsageError(
                f"{where}: {url!r} needs {exc.name or 'fsspec'} (pip install 'sweeprun[{extra}]')"
            ) from None
        except ValueError as exc:  # a protocol fsspec does not know
            raise UsageError(
                f"{where}: {url!r} is not supported ({exc}; valid: a directory every "
                "machine mounts, a file:// URL, or an fsspec URL such as s3://bucket/prefix)"
            ) from None
        self.root = str(root).rstrip("/")

    def _key(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _object(self, digest: str) -> str:
        return self._key(f"objects/{digest[:2]}/{digest[2:]}")

    @contextlib.contextmanager
    def _said(self) -> Iterator[None]:
        """A refusal of the store (credentials, a missing bucket) as one line."""
        try:
            yield
        except OSError as exc:  # (a missing object is a CacheObjectError, said as it is)
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"cache remote {self.url}: {why}") from None

    def _exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._object(digest)))

    def send(self, cache: Cache, digests: Iterable[str]) -> int:
        n = 0
        with self._said():
            for d in sorted(set(digests)):
                wanted = [d]
                if d.endswith(DIR_SUFFIX) and cache.path_of(d).is_file():
                    wanted = [*cache.manifest(d).values(), d]  # files first
                for w in wanted:
                    if not cache.path_of(w).is_file() or self._exists(w):
                        continue
                    # One PUT: the object is there whole or not at all.
                    self.fs.put_file(str(cache.path_of(w)), self._object(w))
                    n += 1
        return n

    def fetch(self, cache: Cache, digests: Iterable[str]) -> int:
        n = 0
        with self._said():
            for d in sorted(set(digests)):
                if cache.exists(d):
                    continue
                if d.endswith(DIR_SUFFIX):
                    data = self._get(d)
                    for member in json.loads(data).values():
                        if not cache.exists(member):
                            self._download(cache, member)
                            n += 1
                    target = cache.path_of(d)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with temporary(target) as tmp:
                        tmp.write_bytes(data)
                        os.replace(tmp, target)
                else:
                    self._download(cache, d)
                n += 1
        return n

    def _get(self, digest: str) -> bytes:
        """A manifest's bytes, verified."""
        try:
            data: bytes = self.fs.cat_file(self._object(digest))
        except FileNotFoundError:
            raise self._missing(digest) from None
        if hashlib.sha256(data).hexdigest() + DIR_SUFFIX != digest:
            raise CacheObjectError(digest, f"cache object {digest[:12]} in {self.url} is corrupt")
        return data

    def _download(self, cache: Cache, digest: str) -> None:
        """One file object into ``cache``, verified before it is stored."""
        target = cache.path_of(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with temporary(target) as tmp:
            try:
                self.fs.get_file(self._object(digest), str(tmp))
            except FileNotFoundError:
                raise self._missing(digest) from None
            if hash_file(tmp) != digest:
                raise CacheObjectError(
                    digest, f"cache object {digest[:12]} in {self.url} is corrupt (not stored)"
                )
            cache.store_file(tmp, digest)

    def _missing(self, digest: str) -> CacheObjectError:
        return CacheObjectError(
            digest,
            f"cache object {digest[:12]} is missing from {self.url} (was it pushed? "
            "sweeprun push --cache-remote on the machine that made it)",
        )

    def run_entry(self, key: str) -> dict[str, str] | None:
        with self._said():
            try:
                entry: dict[str, str] = json.loads(self.fs.cat_file(self._key(f"runs/{key}.json")))
            except (FileNotFoundError, ValueError):
                return None
            return entry if all(self._exists(d) for d in entry.values()) else None

    def record_run(self, key: str, outputs: dict[str, str]) -> None:
        with self._said():
            body = json.dumps(outputs, sort_keys=True).encode()
            self.fs.pipe_file(self._key(f"runs/{key}.json"), body)

    @contextlib.contextmanager
    def stage_lock(self, key: str) -> Iterator[None]:
        """A lease in the store: ``locks/<key>`` created only if absent (a conditional
        PUT), naming its holder and when it expires; renewed while held. A lock whose
        lease ran out (its holder died) is taken over by the first to claim it."""
        path = self._key(f"locks/{key}")
        me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        with self._said():
            while not self._claim(path, me):
                time.sleep(0.2)
        stop = threading.Event()
        renew = threading.Thread(target=self._renew, args=(path, me, stop), daemon=True)
        renew.start()
        try:
            yield
        finally:
            stop.set()
            renew.join()
            with contextlib.suppress(Exception), self._said():
                self.fs.rm_file(path)

    def _lease(self, holder: str) -> bytes:
        return json.dumps({"holder": holder, "until": time.time() + lease()}).encode()

    def _claim(self, path: str, me: str) -> bool:
        try:
            self.fs.pipe_file(path, self._lease(me), mode="create")
            return True
        except FileExistsError:
            pass
        try:
            held: dict[str, Any] = json.loads(self.fs.cat_file(path))
        except (FileNotFoundError, ValueError):
            return False  # released (or being written) meanwhile: try again
        if float(held.get("until", 0)) > time.time():
            return False
        # Expired: one taker wins the marker of this very lease, then replaces the lock.
        marker = f"{path}.taken-{held.get('holder', '')}-{held.get('until', 0)}"
        try:
            self.fs.pipe_file(marker, me.encode(), mode="create")
        except FileExistsError:
            return False
        # (The marker stays: removed, a late taker that read the same expired lease could
        # win it again and replace this lock.)
        self.fs.pipe_file(path, self._lease(me))
        return True

    def _renew(self, path: str, me: str, stop: threading.Event) -> None:
        while not stop.wait(lease() / 3):
            with contextlib.suppress(Exception):
                self.fs.pipe_file(path, self._lease(me))


def lease() -> float:
    """:data:`LEASE`, or ``SWEEPRUN_LOCK_LEASE`` seconds when that is a number > 0."""
    try:
        value = float(os.environ.get("SWEEPRUN_LOCK_LEASE", ""))
    except ValueError:
        return LEASE
    return value if 0 < value < float("inf") else LEASE
