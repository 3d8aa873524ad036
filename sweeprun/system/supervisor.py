"""The supervisor: the parent of every command a runner starts, and the one that outlives it.

A runner that starts its commands itself records each exit after ``waitpid`` returns, in a
thread that may wait tens of milliseconds for its turn; a ``kill -9`` of the runner in that
gap left a finished command unrecorded, and the next runner ran it again. So the runner
asks its supervisor (a small ``python -S`` process, in a session of its own) to start each
command. The supervisor is the command's parent: it writes the exit into the slot's pid
file (``KEY exit RC STAGE CLAIM``) the moment it reaps it, then tells the runner. When the
runner dies, the supervisor kills the trees still running (their commands did not finish:
they run again), keeps the exits of those that ended on their own (the next runner adopts
them, see :mod:`sweeprun.run.adopt`), and exits.

Protocol, one line each way. Runner → supervisor: ``+TOKEN`` / ``-TOKEN`` (a job runs /
has ended: its tree dies with the runner), ``g TOKEN PID START`` (a command started
elsewhere, e.g. by a warm worker: its group is killed first), ``s JSON`` (start a command)
and ``k ID`` (kill one: its end is then not its own). Supervisor →
runner: ``started ID PID START``, ``failed ID ERRNO`` (it could not be started) and
``exit ID RC``.

On Linux the supervisor is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process a
command leaves behind (a daemon that double-forked, ``setsid env -i …`` — out of the job's
process group and without its token) becomes the supervisor's child when its parent exits.
The supervisor reaps those orphans as they exit and, when its runner dies or stops (``z``),
kills the ones still living; a runner that ends normally (``q``) leaves them be (a command
may start a server on purpose), and they pass to the next subreaper up.

The guarantee holds while the supervisor lives; it dies only if killed itself (a ``kill -9``
of its process, or of the whole session), and then its commands die with it (PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sweeprun.system import procs


class Child:
    """A command the supervisor started for this runner."""

    def __init__(self, supervisor: Supervisor, ident: int) -> None:
        self._supervisor = supervisor
        self.ident = ident
        self.pid = 0
        self.ref: procs.ProcessRef | None = None
        self.error = 0  # errno of a command that could not be started
        self.returncode: int | None = None
        self.started = threading.Event()
        self.ended = threading.Event()

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status (negative: the signal); ``TimeoutExpired`` after ``timeout``."""
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.ident), timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL its whole tree; its exit is then not recorded as its own."""
        self._supervisor._say(f"k {self.ident}")


class Supervisor:
    """The runner's end of the supervisor process (see the module docstring): told which
    jobs run (their trees die with the runner) and asked to start their commands."""

    def __init__(self, hold: int | None = None) -> None:
        """``hold``: a file descriptor the supervisor keeps open for as long as it lives —
        the runner's locked lease journal, so that its claims stay taken until the
        supervisor has written the exits it may still be writing (see ``store.leases``)."""
        self._lock = threading.Lock()
        self._say_lock = threading.Lock()
        self._children: dict[int, Child] = {}
        self._next = 0
        self._reader: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _bootstrap()],
                env={**os.environ, _PARENT_ENV: str(os.getpid())},
                pass_fds=() if hold is None else (hold,),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                start_new_session=True,  # a terminal's Ctrl+C is the runner's to handle
            )
        except OSError:
            self._proc = None
            return
        self._reader = threading.Thread(target=self._read, name="sweeprun-supervisor")
        self._reader.daemon = True
        self._reader.start()

    def _say(self, line: str) -> None:
        # One line at a time: job threads talk to it at once.
        with self._say_lock:
            if self._proc is not None and self._proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._proc.stdin.write(line + "\n")

    def started(self, token: str) -> None:
        """A job with this token runs now: its tree dies with the runner."""
        self._say("+" + token)

    def ended(self, token: str) -> None:
        """The job with this token has ended."""
        self._say("-" + token)

    def command(self, ref: procs.ProcessRef) -> None:
        """A job's command started elsewhere (a warm worker's child): its group is killed
        first, the moment the runner dies (before the slower search by token)."""
        if ref.token:
            self._say(f"g {ref.token} {ref.pid} {ref.start or '-'}")

    def close(self, stopping: bool = False) -> None:
        """Every job has ended: the supervisor exits, and its answers are read to the end.
        ``stopping``: the run was stopped, so the orphans its commands left are killed."""
        if self._proc is None:
            return
        self._say("z" if stopping else "q")
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        self._proc.wait()
        if self._reader is not None:
            self._reader.join()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    @property
    def alive(self) -> bool:
        """Whether it runs (it could not be started where processes cannot be made)."""
        return self._proc is not None and self._proc.poll() is None

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str],
        log: str | os.PathLike[str],
        pidfile: str | os.PathLike[str] | None,
        exit_words: tuple[str, int, str],
    ) -> Child:
        """Start ``argv`` in a session of its own, output appended to ``log``; its pid file
        gets ``KEY PID START`` now and ``KEY exit RC STAGE CLAIM`` (``exit_words``: key,
        stage, claim) when it ends. Returns once it started (or could not)."""
        with self._lock:
            self._next += 1
            child = self._children[self._next] = Child(self, self._next)
        request = {
            "id": child.ident,
            "argv": list(argv),
            "cwd": os.fspath(cwd),
            "env": dict(env),
            "log": os.fspath(log),
            "pidfile": os.fspath(pidfile) if pidfile is not None else None,
            "exit": list(exit_words),
            "token": env.get(procs.TOKEN_ENV),
        }
        self._say("s " + json.dumps(request))
        child.started.wait()
        return child

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            word, _, rest = line.strip().partition(" ")
            ident, _, value = rest.partition(" ")
            with self._lock:
                child = self._children.get(int(ident)) if ident.isdigit() else None
            if child is None:
                continue
            if word == "started":
                pid, _, start = value.partition(" ")
                child.pid = int(pid)
                child.ref = procs.ProcessRef(child.pid, None if start == "-" else start)
                child.started.set()
            elif word == "failed":
                child.error = int(value)
                child.returncode = -1
                child.started.set()
                child.ended.set()
            elif word == "exit":
                child.returncode = int(value)
                child.ended.set()
                with self._lock:
                    self._children.pop(child.ident, None)
        # The supervisor is gone (it could not start, or died): nobody waits forever.
        with self._lock:
            left, self._children = list(self._children.values()), {}
        for child in left:
            child.returncode = -signal.SIGKILL if child.returncode is None else child.returncode
            child.error = child.error or (0 if child.started.is_set() else errno.ECHILD)
            child.started.set()
            child.ended.set()


def _bootstrap() -> str:
    """The supervisor's program: this file and procs.py, with the standard library only
    (``python -S``: no site packages to import, ~15 ms)."""
    here = Path(__file__).resolve().parent
    return (
        "import importlib.util as u, sys, types\n"
        "for n in ('sweeprun', 'sweeprun.system'):\n"
        "    sys.modules[n] = types.ModuleType(n)\n"
        "def load(name, path):\n"
        "    s = u.spec_from_file_location(name, path)\n"
        "    m = sys.modules[name] = u.module_from_spec(s)\n"
        "    s.loader.exec_module(m)\n"
        "    return m\n"
        f"sys.modules['sweeprun.system'].procs = load('sweeprun.system.procs', "
        f"{str(here / 'procs.py')!r})\n"
        f"load('sweeprun.system.supervisor', {str(here / 'supervisor.py')!r}).main()\n"
    )


def _overwrite(path: str, text: str) -> None:
    """Rewrite a pid file in place (as the runner's pid files are: no new inode)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class _Running:
    """The supervisor's side of one command."""

    def __init__(self, request: dict[str, Any], proc: subprocess.Popen[bytes]) -> None:
        self.request = request
        self.proc = proc
        self.ref = procs.ProcessRef.of(proc.pid, request.get("token"))
        #: Killed by the supervisor (asked to, or its runner died): its end is not its own.
        self.killed = False


def _nothing(signum: int, frame: object) -> None:  # pragma: no cover - a signal handler
    """Take a signal and do nothing with it."""


#: The runner's pid, told to the supervisor: it also ends when its parent is no longer that.
_PARENT_ENV = "SWEEPRUN_SUPERVISOR_PARENT"


def _lines() -> Iterator[str]:  # pragma: no cover - runs in the supervisor process
    """The runner's lines, until its end of the pipe closes or it is no longer our
    parent: a process it forked without exec may hold the pipe open after it died."""
    parent, buffered = int(os.environ.pop(_PARENT_ENV, "0") or 0), b""
    while True:
        if not select.select([0], [], [], 0.5)[0]:
            if parent and os.getppid() != parent:
                return
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return
        *lines, buffered = (buffered + chunk).split(b"\n")
        yield from (line.decode() for line in lines)


def main() -> None:  # pragma: no cover - runs in the supervisor process
    """Serve one runner until its end of the pipe closes (see the module docstring)."""
    # The runner's signals are the runner's to act on. A handler that does nothing (not
    # SIG_IGN, which a child would inherit through exec): the commands get the defaults.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _nothing)
    out_lock = threading.Lock()
    # Held while a command is started and registered: the orphan reaper must never reap
    # a command's own process (its waiter would lose the exit status).
    spawn_lock = threading.Lock()
    subreaper = procs.become_subreaper()
    running: dict[int, _Running] = {}
    live: dict[str, procs.ProcessRef | None] = {}  # the watchdog's jobs, by token
    waiters: list[threading.Thread] = []

    def say(line: str) -> None:
        with out_lock, contextlib.suppress(OSError, ValueError):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def reap(ident: int, job: _Running) -> None:
        rc = job.proc.wait()
        request = job.request
        pidfile = request.get("pidfile")
        # Killed here, it did not finish: its pid file keeps naming it (a dead process,
        # which the next runner's reclaim finds gone) and it runs again. Else first thing:
        # from now on its end is known, whatever happens to the runner.
        if isinstance(pidfile, str) and not (job.killed and rc == -signal.SIGKILL):
            key, stage, claim = request["exit"]
            with contextlib.suppress(OSError):
                _overwrite(pidfile, f"{key} exit {rc} {stage} {claim}\n")
        running.pop(ident, None)
        say(f"exit {ident} {rc}")

    def kill(job: _Running) -> None:
        job.killed = True
        job.ref.signal_group(signal.SIGKILL)
        if job.ref.token:
            procs.signal_token(job.ref.token, signal.SIGKILL)

    def orphans() -> list[int]:
        """Living children that are no command of ours: what commands left behind."""
        with spawn_lock:
            ours = {job.proc.pid for job in list(running.values())}
            return [pid for pid, state in procs.children() if pid not in ours and state != "Z"]

    def reap_orphans() -> None:
        while True:
            time.sleep(0.5)
            with spawn_lock:
                ours = {job.proc.pid for job in list(running.values())}
                for pid, state in procs.children():
                    if state == "Z" and pid not in ours:
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(pid, os.WNOHANG)

    def kill_orphans() -> None:
        for pid in orphans():
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)  # and what it started in its group
                os.kill(pid, signal.SIGKILL)

    if subreaper:
        threading.Thread(target=reap_orphans, daemon=True).start()

    def start(request: dict[str, Any]) -> None:
        with spawn_lock:
            _start(request)

    def _start(request: dict[str, Any]) -> None:
        ident = int(request["id"])
        try:
            with open(str(request["log"]), "ab") as log:
                proc = subprocess.Popen(
                    [str(a) for a in request["argv"]],
                    cwd=str(request["cwd"]),
                    env={str(k): str(v) for k, v in request["env"].items()},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its tree is one group: signalled as one
                )
        except OSError as exc:
            say(f"failed {ident} {exc.errno or errno.EIO}")
            return
        job = running[ident] = _Running(request, proc)
        pidfile = request.get("pidfile")
        if isinstance(pidfile, str):
            with contextlib.suppress(OSError):
                _overwrite(pidfile, f"{request['exit'][0]} {job.ref}\n")
        say(f"started {ident} {job.ref.pid} {job.ref.start or '-'}")
        waiter = threading.Thread(target=reap, args=(ident, job), daemon=True)
        waiter.start()
        waiters.append(waiter)

    ending = ""  # "q": the runner ended normally; "z": it was stopped; "": it died
    for line in _lines():
        word = line.strip()
        if word in ("q", "z"):
            ending = word
        elif word.startswith("s "):
            start(json.loads(word[2:]))
        elif word.startswith("k "):
            job = running.get(int(word[2:])) if word[2:].isdigit() else None
            if job is not None:
                kill(job)
        elif word.startswith("+"):
            live[word[1:]] = None
        elif word.startswith("-"):
            live.pop(word[1:], None)
        elif word.startswith("g "):
            _, token, pid, start_ = [*word.split(), "", "", ""][:4]
            if token in live and pid.isdigit():
                live[token] = procs.ProcessRef(int(pid), None if start_ == "-" else start_)
    # The runner is gone. What it was running did not finish and is killed: first the
    # commands started here (their exits, if they beat the kill, are written as theirs),
    # then every tree it announced.
    for job in list(running.values()):
        kill(job)
    for ref in live.values():
        if ref is not None:
            ref.signal_group(signal.SIGKILL)
    for token in live:
        procs.signal_token(token, signal.SIGKILL)
    for waiter in waiters:
        waiter.join(timeout=10)
    if subreaper and ending != "q":
        kill_orphans()
