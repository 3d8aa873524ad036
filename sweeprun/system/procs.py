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

A job's whole process tree is more than its process group: a descendant may call
``setsid`` (a daemon, a launcher) and leave the group. Every command gets a token in its
environment (``SWEEPRUN_JOB=<key>@<repository>``), which descendants inherit; the tree is
the group plus every process whose environment holds the token (``/proc/<pid>/environ``
read through a pidfd, so a process that exits meanwhile is never confused with one that
took its pid). A program that clears its environment and leaves its group escapes this.

When a runner dies however it dies (``kill -9``), its supervisor
(:mod:`sweeprun.system.supervisor`) sees its pipe close and kills the trees of the jobs it
had running, so that no job runs on unsupervised, finishes, and is run again by the next
runner.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: The environment variable that marks every process of a job's tree.
TOKEN_ENV = "SWEEPRUN_JOB"


def gone(pid: int) -> bool:
    """Whether no process has this pid (a pid reused since reads as alive: callers that
    wait or keep things for a dead process then do the cautious thing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, someone else's
    return False


def job_token(key: str, common_dir: str | os.PathLike[str]) -> str:
    """The token of experiment ``key``'s processes in the repository at ``common_dir``."""
    repo = hashlib.sha1(os.fsencode(os.path.realpath(common_dir))).hexdigest()[:10]
    return f"{key}@{repo}"


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data.startswith(needle) or b"\0" + needle in data


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def signal_token(token: str, sig: int, skip_group: int = 0) -> int:
    """Signal every process whose environment holds ``token`` (but those of process group
    ``skip_group``, signalled already: a signal must arrive once); how many were hit."""
    needle = f"{TOKEN_ENV}={token}\0".encode()
    me = os.getpid()
    hit = 0
    if not sys.platform.startswith("linux"):  # pragma: no cover - not Linux
        try:
            import psutil  # off Linux only (declared for those platforms)
        except ImportError:
            return 0
        for p in psutil.process_iter(["environ"]):
            env = p.info.get("environ") or {}
            if p.pid != me and env.get(TOKEN_ENV) == token and _pgid(p.pid) != skip_group:
                with contextlib.suppress(Exception):
                    p.send_signal(sig)
                    hit += 1
        return hit
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            fd = os.pidfd_open(pid)  # this process, even if its pid is reused meanwhile
        except OSError:
            continue
        try:
            if _environ_has(pid, needle) and _pgid(pid) != skip_group:
                signal.pidfd_send_signal(fd, sig)
                hit += 1
        except OSError:
            pass  # it exited meanwhile: the pidfd says so, nobody else is signalled
        finally:
            os.close(fd)
    return hit


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
        import psutil  # off Linux only (declared for those platforms)

        return repr(psutil.Process(pid).create_time())
    except Exception:  # pragma: no cover - gone, or no psutil
        return None


@dataclass(frozen=True)
class ProcessRef:
    """A process (or the group it leads) as recorded: pid plus start time."""

    pid: int
    start: str | None
    #: The job's token (see :func:`job_token`): its tree beyond the process group.
    token: str | None = None

    @classmethod
    def of(cls, pid: int, token: str | None = None) -> ProcessRef:
        """The identity of a live process (a child just started, say)."""
        return cls(pid, start_time(pid), token)

    def __str__(self) -> str:
        return f"{self.pid} {self.start or '-'}" + (f" {self.token}" if self.token else "")

    @classmethod
    def parse(cls, text: str) -> ProcessRef | None:
        """Read what :meth:`__str__` wrote; ``None`` for anything else."""
        pid, start, token, *_ = [*text.split(), "", "", ""]
        if not pid.isdigit():
            return None
        return cls(int(pid), start if start and start != "-" else None, token or None)

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

    def signal_tree(self, sig: int) -> bool:
        """Signal the group and every process carrying the job's token (see above)."""
        hit = self.signal_group(sig)
        if self.token and self.start is not None:
            hit = signal_token(self.token, sig, skip_group=self.pid if hit else 0) > 0 or hit
        return hit

    def tree_alive(self) -> bool:
        """Whether any process of the tree still lives."""
        return self.signal_tree(0)


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a child before exec: be killed when the parent dies (Linux), even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@functools.lru_cache(maxsize=1)
def pdeathsig_prefix() -> tuple[str, ...]:
    """An argv prefix that makes the command die the instant its runner does (util-linux
    ``setpriv --pdeathsig KILL``: an exec, ~1 ms, where a Python ``preexec_fn`` costs a
    fork of the whole runner, ~2 ms); empty where there is no such program."""
    if not sys.platform.startswith("linux"):
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    probe = subprocess.run(
        [setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, check=False
    )
    return (setpriv, "--pdeathsig", "KILL", "--") if probe.returncode == 0 else ()


def can_die_with_parent() -> bool:
    """Whether :func:`die_with_parent` does anything here."""
    return sys.platform.startswith("linux")


def become_subreaper() -> bool:  # pragma: no cover - runs in the supervisor process
    """Orphans of this process's descendants become its children (Linux ``prctl``
    ``PR_SET_CHILD_SUBREAPER``); whether that worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children() -> list[tuple[int, str]]:  # pragma: no cover - runs in the supervisor
    """(pid, state letter) of this process's children, from ``/proc`` (empty elsewhere)."""
    me, out = os.getpid(), []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[1]) == me:
                    out.append((int(entry.name), fields[0].decode()))
    return out
