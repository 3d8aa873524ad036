"""Who runs what: one append-only lease journal per runner process.

A runner claims an experiment by moving its ref from ``queue/`` to ``running/``; the ref
says *that* it runs, the journal says *who* runs it, so a runner that was killed can be
told apart from a live one and its experiments put back in the queue.

``.git/sweeprun/leases/<host>-<pid>-<ns>.lease`` starts with a JSON header (host, pid,
start time); every claim appends ``<key> <time>`` *before* the ref moves (so a running ref
never lacks a claimant) and a failed claim appends ``<key> -`` to take it back. One file
per runner, appended to and deleted when the runner ends, rather than a file per
experiment: creating and deleting inodes is what costs on the per-experiment path.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".lease"


@dataclass(frozen=True)
class Lease:
    """One runner's claim of an experiment."""

    host: str
    pid: int
    started: float  # when the runner claimed it

    def alive(self) -> bool | None:
        """Whether the runner lives; ``None`` when it runs on another host."""
        if self.host != socket.gethostname():
            return None
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        self._mine[key] = Lease(self._host, os.getpid(), now)

    def failed(self, key: str) -> None:
        """Take back a claim whose transaction failed (another runner was first)."""
        self._append(f"{key} -\n")
        self._mine.pop(key, None)

    def lease(self, key: str) -> Lease | None:
        """This runner's claim of ``key``, if it made one."""
        return self._mine.get(key)

    def _append(self, line: str) -> None:
        with self._lock:
            if self._fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                pid = os.getpid()
                self.path = self.directory / f"{self._host}-{pid}-{time.time_ns()}{SUFFIX}"
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
                header = {"host": self._host, "pid": pid, "started": time.time()}
                os.write(self._fd, (json.dumps(header) + "\n").encode())
            # One short O_APPEND write: whole, even with other threads appending.
            os.write(self._fd, line.encode())

    def close(self) -> None:
        """The runner ends: every experiment it claimed is finished or back in the queue."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.path is not None:
                self.path.unlink(missing_ok=True)
                self.path = None


def read_all(directory: Path) -> dict[str, list[Lease]]:
    """Every standing claim, by experiment key, from every runner's journal."""
    out: dict[str, list[Lease]] = {}
    if not directory.is_dir():
        return out
    for path in directory.glob(f"*{SUFFIX}"):
        for key, lease in _read(path).items():
            out.setdefault(key, []).append(lease)
    for claims in out.values():
        claims.sort(key=lambda lease: lease.started, reverse=True)  # the latest first
    return out


def dead_journals(directory: Path) -> list[Path]:
    """Journals of runners on this host that are gone (left by ``kill -9`` or a crash)."""
    host = socket.gethostname()
    out = []
    for path in directory.glob(f"*{SUFFIX}") if directory.is_dir() else ():
        header = _header(path)
        if header is not None and header[0] == host and not pid_alive(header[1]):
            out.append(path)
    return out


def _header(path: Path) -> tuple[str, int] | None:
    try:
        with open(path, encoding="utf-8") as f:
            head = json.loads(f.readline())
        return str(head["host"]), int(head["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read(path: Path) -> dict[str, Lease]:
    try:
        first, *lines = path.read_text(encoding="utf-8").splitlines()
        head = json.loads(first)
        host, pid = str(head["host"]), int(head["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # being created, or not ours
    claims: dict[str, Lease] = {}
    for line in lines:
        key, _, when = line.partition(" ")
        if when == "-":
            claims.pop(key, None)
            continue
        try:
            claims[key] = Lease(host, pid, float(when))
        except ValueError:
            continue  # a line cut short by a crash
    return claims
