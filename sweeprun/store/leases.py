"""Who runs what: one append-only lease journal per runner process.

A runner claims an experiment by moving its ref from ``queue/`` to ``running/``; the ref
says *that* it runs, the journal says *who* runs it, so a runner that was killed can be
told apart from a live one and its experiments put back in the queue.

``.git/sweeprun/leases/<host>-<pid>-<ns>.lease`` starts with a JSON header (host, pid,
start time); every claim appends ``<key> <time>`` *before* the ref moves (so a running ref
never lacks a claimant) and a failed claim appends ``<key> -`` to take it back. One file
per runner, appended to and deleted when the runner ends, rather than a file per
experiment: creating and deleting inodes is what costs on the per-experiment path.

A runner is alive while it holds an exclusive ``flock`` on its journal: the kernel drops
the lock when the process dies, however it dies, and a pid that another process has
reused since says nothing either way. The pid in the header is for people to read.
The runner's supervisor (:mod:`sweeprun.system.supervisor`) inherits the locked descriptor:
the lock outlives a killed runner until its supervisor has written the exit of every
command that finished and exited too, so no other runner takes a claim in that gap.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sweeprun.model import Reapable, unlink_later
from sweeprun.system import procs
from sweeprun.system.damage import ensure_dir

SUFFIX = ".lease"


@dataclass(frozen=True)
class Lease:
    """One runner's claim of an experiment."""

    host: str
    pid: int
    started: float  # when the runner claimed it
    journal: Path | None = None
    #: The result commit its job made, once made (``<key> done <sha>``): a killed runner's
    #: finished experiment is published from it, not run again.
    result: str | None = None

    def alive(self) -> bool | None:
        """Whether the runner lives; ``None`` when it runs on another host."""
        if self.host != socket.gethostname():
            return None
        return self.journal is not None and journal_locked(self.journal)


def journal_locked(path: Path) -> bool:
    """Whether a live runner holds the lock of the journal at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # gone: its runner ended
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)  # also drops the probe's own lock
    return False


class LeaseJournal:
    """This process's journal, created at its first claim. Thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path: Path | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._host = socket.gethostname()
        self._mine: dict[str, Lease] = {}

    def claiming(self, key: str) -> None:
        """Record a claim of ``key`` (call before the claim's ref transaction)."""
        now = time.time()
        self._append(f"{key} {now!r}\n")
        self._mine[key] = Lease(self._host, os.getpid(), now, self.path)

    def failed(self, key: str) -> None:
        """Take back a claim whose transaction failed (another runner was first)."""
        self._append(f"{key} -\n")
        self._mine.pop(key, None)

    def lease(self, key: str) -> Lease | None:
        """This runner's claim of ``key``, if it made one."""
        return self._mine.get(key)

    def open(self) -> int:
        """Create the journal now (else at the first claim); its locked descriptor."""
        with self._lock:
            return self._open()

    def _open(self) -> int:
        if self._fd is None:
            ensure_dir(self.directory, self.directory.parent)
            pid = os.getpid()
            self.path = self.directory / f"{self._host}-{pid}-{time.time_ns()}{SUFFIX}"
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
            # Held until this process (and its supervisor) ends: "this runner lives".
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            # The process's start time too: a pid reused by another process (a dead
            # runner's, say) is not this runner.
            header = {
                "host": self._host,
                "pid": pid,
                "started": time.time(),
                "start": procs.start_time(pid),
            }
            os.write(self._fd, (json.dumps(header) + "\n").encode())
        return self._fd

    def _append(self, line: str) -> None:
        with self._lock:
            # One short O_APPEND write: whole, even with other threads appending.
            os.write(self._open(), line.encode())

    def close(self) -> None:
        """The runner ends: every experiment it claimed is finished or back in the queue."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.path is not None:
                self.path.unlink(missing_ok=True)
                self.path = None


def record_result(journal: str | os.PathLike[str], key: str, commit: str) -> None:
    """Append ``<key> done <sha>`` to a runner's journal (from the job, in any process of
    that runner): one short O_APPEND write, whole even beside the runner's own."""
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"{key} done {commit}\n".encode())
    finally:
        os.close(fd)


def read_all(directory: Path) -> dict[str, list[Lease]]:
    """Every standing claim, by experiment key, from every runner's journal."""
    return read_claims(directory)[0]


def read_claims(directory: Path) -> tuple[dict[str, list[Lease]], bool]:
    """Every standing claim by key, and whether a live runner's journal was unreadable
    (then a running experiment nobody claims may still be that runner's)."""
    out: dict[str, list[Lease]] = {}
    opaque = False
    if not directory.is_dir():
        return out, opaque
    for path in directory.glob(f"*{SUFFIX}"):
        claims = _read(path)
        if claims is None:
            opaque = opaque or journal_locked(path)
            continue
        for key, lease in claims.items():
            out.setdefault(key, []).append(lease)
    for leases in out.values():
        leases.sort(key=lambda lease: lease.started, reverse=True)  # the latest first
    return out, opaque


def dead_journals(directory: Path) -> list[Path]:
    """Journals of runners on this host that are gone (left by ``kill -9`` or a crash)."""
    host = socket.gethostname()
    out = []
    for path in directory.glob(f"*{SUFFIX}") if directory.is_dir() else ():
        header = _header(path)
        if header is not None and header[0] == host and not journal_locked(path):
            out.append(path)
    return out


def await_supervisors(directory: Path, timeout: float = 30.0) -> None:
    """Wait (``timeout`` at most) for the journals of dead runners on this host whose lock
    their supervisor still holds: it is writing their last exits and killing what they
    left, usually for milliseconds. A ``--run-all`` right after a ``kill -9`` then takes
    the dead runner's experiments back instead of finding them all still claimed."""
    host, deadline = socket.gethostname(), time.monotonic() + timeout
    for path in directory.glob(f"*{SUFFIX}") if directory.is_dir() else ():
        header = _header(path)
        if header is None or header[0] != host or not _runner_gone(header[1], header[2]):
            continue
        while journal_locked(path) and time.monotonic() < deadline:
            time.sleep(0.02)


def _runner_gone(pid: int, start: str | None) -> bool:
    """Whether the runner of a journal is gone: no process has its pid, or the one that
    has it started at another time (its pid reused)."""
    if procs.gone(pid):
        return True
    return start is not None and procs.start_time(pid) not in (None, start)


def _header(path: Path) -> tuple[str, int, str | None] | None:
    try:
        with open(path, encoding="utf-8") as f:
            head = json.loads(f.readline())
        start = head.get("start")
        return str(head["host"]), int(head["pid"]), None if start is None else str(start)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _read(path: Path) -> dict[str, Lease] | None:
    """The standing claims of one journal; ``None`` when it cannot be read."""
    try:
        first, *lines = path.read_text(encoding="utf-8").splitlines()
        head = json.loads(first)
        host, pid = str(head["host"]), int(head["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being created, damaged, or not ours
    claims: dict[str, Lease] = {}
    for line in lines:
        key, _, when = line.partition(" ")
        if when == "-":
            claims.pop(key, None)
            continue
        if when.startswith("done ") and key in claims:
            claims[key] = replace(claims[key], result=when[5:].strip())
            continue
        try:
            claims[key] = Lease(host, pid, float(when), path)
        except ValueError:
            continue  # a line cut short by a crash
    return claims


def results_noted(journal: str | os.PathLike[str]) -> dict[str, str]:
    """The result commits noted in one runner's journal, by key (claims standing)."""
    claims = _read(Path(journal)) or {}
    return {key: lease.result for key, lease in claims.items() if lease.result}


def leftovers(directory: Path) -> list[Reapable]:
    """For ``gc``: journals of dead runners (reclaim requeues what they ran first) and the
    per-experiment lease files of older versions."""
    old = list(directory.glob("*.json*")) if directory.is_dir() else []
    return [unlink_later(p, "leftover", directory.parent) for p in dead_journals(directory) + old]
