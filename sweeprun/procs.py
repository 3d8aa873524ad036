"""Process identity and signalling: the operating-system-specific half of running jobs.

A pid alone names a process only while that process lives: pids wrap within minutes on a
busy machine, so a pid read from a file may belong to a stranger by now. sweeprun records
a process as its pid *and* its start time, and signals it only when both still match
(:class:`ProcessRef`). On Linux the start time is the kernel's ``starttime`` in
``/proc/<pid>/stat`` (clock ticks since boot: exact and stable); elsewhere psutil's
creation time.

A process group is signalled through its leader's identity. While the leader lives its
start time must match. Once the leader has exited, the group id cannot be given to a new
process as long as any member of the group lives (the kernel keeps an id in use while a
group uses it), so the signal reaches the recorded group's members or nobody.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> str | None:
    """An opaque token that differs between two processes that had the same pid."""
    if pid <= 0:
        return None
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[19].decode()  # field 22, starttime
    try:  # pragma: no cover - not Linux
        import psutil

        return repr(psutil.Process(pid).create_time())
    except Exception:  # pragma: no cover - gone, or no psutil
        return None


@dataclass(frozen=True)
class ProcessRef:
    """A process (or the group it leads) as recorded: pid plus start time."""

    pid: int
    start: str | None

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        """The identity of a live process (a child just started, say)."""
        return cls(pid, start_time(pid))

    def __str__(self) -> str:
        return f"{self.pid} {self.start or '-'}"

    @classmethod
    def parse(cls, text: str) -> ProcessRef | None:
        """Read what :meth:`__str__` wrote; ``None`` for anything else."""
        pid, _, start = text.strip().partition(" ")
        if not pid.isdigit():
            return None
        return cls(int(pid), start if start and start != "-" else None)

    def is_running(self) -> bool:
        """Whether this very process still exists."""
        return self.start is not None and start_time(self.pid) == self.start

    def _group_is_ours(self) -> bool:
        if self.start is None:
            return False  # no way to tell it from a stranger: never signal it
        now = start_time(self.pid)
        # The leader lives: it must be the same. It is gone: the id is still reserved for
        # the group's members while any lives, so the group is ours or empty.
        return now is None or now == self.start

    def signal_group(self, sig: int) -> bool:
        """Signal the process group this process leads, if it is verifiably the same one."""
        if not self._group_is_ours():
            return False
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def group_alive(self) -> bool:
        """Whether any member of this process's group still lives."""
        return self.signal_group(0)


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a child before exec: be killed when the parent dies (Linux), even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def can_die_with_parent() -> bool:
    """Whether :func:`die_with_parent` does anything here."""
    return sys.platform.startswith("linux")
