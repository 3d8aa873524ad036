"""The background queue: ``sweeprun queue start | stop`` and the worker they manage.

``queue start`` starts a *worker*: ``sweeprun --run-all --worker ID`` with the given run
options, detached (a session of its own, stdin from ``/dev/null``, output to
``.git/sweeprun/workers/ID.log``), so it survives the terminal that started it. The worker
drains the queue, then waits for more (a look at the queue refs every half second) and runs
what is queued later — in a slot that frees, or in one that waits for work while others
run (see ``run.runner``) — until ``queue stop`` or ``--idle-timeout`` seconds with nothing
queued. Each batch is an ordinary ``--run-all``: dead runners' claims are adopted or put
back first, experiments are claimed exactly once (so several workers and a foreground
``--run-all`` share one queue), and results are published as they come.

A worker is alive while it holds an exclusive ``flock`` on ``workers/ID.lock`` (the
kernel drops it however the worker dies, as for lease journals); ``workers/ID.json`` says
who it is (pid and start time, options, log) and what it has done, rewritten as it goes.
``queue stop`` sends SIGUSR1 — running experiments finish, nothing new starts — or, with
``--kill``, SIGINT: running experiments are interrupted and go back to the queue, as
Ctrl+C does. Either signal is sent only to a process whose pid *and* start time match.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sweeprun._core import studies
from sweeprun._core.argtypes import positive_int
from sweeprun._core.options import add_idle_timeout, add_run_options
from sweeprun._core.runloop import SessionEvents
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import JobReport, Record
from sweeprun.run.adopt import adopter
from sweeprun.run.workspace import kill_leftovers
from sweeprun.store.leases import journal_locked
from sweeprun.system import procs
from sweeprun.system.damage import close, ensure_dir, held, open_lock

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.session import Session

#: How often an idle worker looks at the queue.
POLL = 0.5
#: What ``queue stop`` sends: finish what runs, start nothing new.
DRAIN = signal.SIGUSR1
#: How ``queue start`` tells the worker the options it was started with (to tell a
#: second ``queue start`` with the same options that it runs already).
ARGV_ENV = "SWEEPRUN_WORKER_ARGV"


@dataclass
class WorkerInfo:
    """One worker as ``workers/ID.json`` records it."""

    id: str
    pid: int
    start: str | None  # the process's start time (see ``system.procs``)
    host: str
    argv: list[str]  # the run options it was started with
    jobs: int
    backend: str
    started: float
    log: str
    state: str = "starting"  # starting | running | idle | stopping
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def ref(self) -> procs.ProcessRef:
        """Its process, as recorded."""
        return procs.ProcessRef(self.pid, self.start)


def workers_dir(state_dir: Path) -> Path:
    """``.git/sweeprun/workers``."""
    return state_dir / "workers"


def live_workers(state_dir: Path) -> list[WorkerInfo]:
    """The workers of this repository that are alive (stale files are removed)."""
    base = workers_dir(state_dir)
    found: list[WorkerInfo] = []
    for path in sorted(base.glob("*.json")) if base.is_dir() else ():
        lock = path.with_suffix(".lock")
        try:
            info = WorkerInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            info = None
        if not journal_locked(lock):
            # Ended (or died): nothing of it is needed any more (its log stays).
            for stale in (path, lock):
                stale.unlink(missing_ok=True)
            continue
        if info is not None:
            found.append(info)
    return found


def queued_now(session: Session, results: bool = True) -> list[Record]:
    """What ``--run-all`` runs now: dead runners' experiments adopted or put back first,
    then every queued record, oldest first (``results=False``: studies are looked for
    among queued and running records only)."""
    common = session.config.repo.common_dir
    session.store.reclaim(
        partial(kill_leftovers, common),
        adopter(session.store, session.options, SessionEvents(session)),
    )
    records = session.store.queued()
    if studies.open_from_records(session, results):  # their next trials: a slot's worth
        # Proposed now, so the newest: after what was queued before.
        records += studies.top_up(session, max(1, session.options.jobs - len(records)))
    session.store.set_aside_damaged()  # what can never run is said, not left there
    return records


def _write(path: Path, info: WorkerInfo) -> None:
    """Rewrite ``ID.json`` whole (a reader never sees half of it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, path)


class _Progress:
    """Counts reports into the worker's file (a plugin of the worker's session)."""

    def __init__(self, path: Path, info: WorkerInfo) -> None:
        self.path, self.info = path, info

    @hookimpl
    def sweeprun_report(self, session: Session, report: JobReport) -> None:
        self.info.done += 1
        self.info.failed += 0 if report.passed else 1
        self.info.running = max(0, len(session.running) - 1)
        with contextlib.suppress(OSError):
            _write(self.path, self.info)


def serve(session: Session, ident: str) -> int:
    """The worker's life (``--run-all --worker ID``): batches of ``--run-all`` until
    stopped, or idle for ``--idle-timeout`` seconds."""
    config = session.config
    try:
        argv = [str(a) for a in json.loads(os.environ.pop(ARGV_ENV, "[]"))]
    except ValueError:
        argv = []
    base = workers_dir(config.repo.state_dir)
    ensure_dir(base, base.parent)
    lock = open_lock(base / f"{ident}.lock", base.parent)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held until this process ends: "this worker lives"
    path = base / f"{ident}.json"
    options = session.options
    info = WorkerInfo(
        id=ident,
        pid=os.getpid(),
        start=procs.start_time(os.getpid()),
        host=socket.gethostname(),
        argv=argv,
        jobs=options.jobs,
        backend=options.backend,
        started=time.time(),
        log=str(base / f"{ident}.log"),
    )
    # Each free slot asks for work: what is queued meanwhile, the studies' next trials.
    session.follow = True
    progress = _Progress(path, info)
    config.pluginmanager.register(progress, name="sweeprun-worker-progress")
    idle: float | None = config.getoption("idle_timeout")
    draining = threading.Event()

    def drain(signum: int, frame: FrameType | None) -> None:
        draining.set()
        info.state = "stopping"
        with contextlib.suppress(OSError):
            _write(path, info)
        # Within a batch: no new claim, jobs already handed out go back to the queue;
        # running ones finish and are recorded.
        session.stop.stop("queue stop: running experiments finish")

    def stop(signum: int, frame: FrameType | None) -> None:
        draining.set()  # between batches: SIGINT/SIGTERM end the worker

    old = {s: signal.signal(s, h) for s, h in ((DRAIN, drain), (signal.SIGTERM, stop))}
    status = 0
    try:
        since, polls = time.monotonic(), 0
        while not draining.is_set():
            # Every result is read at the start and then once a minute, not every poll.
            records = queued_now(session, results=polls % 120 == 0)
            polls += 1
            if not records:
                info.state = "idle"
                _write(path, info)
                if idle is not None and time.monotonic() - since >= idle:
                    config.stdout.write(f"sweeprun: idle for {idle:g} s, the worker ends\n")
                    break
                draining.wait(POLL)
                continue
            info.state, info.running = "running", min(len(records), options.jobs)
            _write(path, info)
            config.hook.sweeprun_runloop(session=session, records=records)
            config.stdout.flush()
            if session.shouldstop == "interrupted":
                status = 2
                break
            if not draining.is_set():
                session.stop.clear()  # -x ends a batch, not the worker
            since = time.monotonic()
        if any(not r.passed for r in session.reports) and status == 0:
            status = 1
    except KeyboardInterrupt:
        status = 2
        raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        config.pluginmanager.unregister(progress)
        for done in (path, base / f"{ident}.lock"):
            done.unlink(missing_ok=True)
        close(lock)
    return status


def _argv_of(args: Any, parser_actions: list[Any]) -> list[str]:
    """The run options given to ``queue start``, as words for the worker's command line."""
    words: list[str] = []
    for action in parser_actions:
        if not action.option_strings or action.dest in ("help", "action"):
            continue
        value = getattr(args, action.dest, action.default)
        if value is None or value == action.default or value is False:
            continue
        longest = action.option_strings[-1]
        flag = longest if longest.startswith("--") else action.option_strings[0]
        if value is True:
            words.append(flag)
        else:
            words += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return words


@contextlib.contextmanager
def _start_lock(state_dir: Path) -> Iterator[None]:
    """One ``queue start`` at a time in a repository (so two of them start one worker)."""
    with held(workers_dir(state_dir) / "start.lock", state_dir):
        yield


def add_start_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``queue start``: ``-j``, ``--idle-timeout`` and the run options."""
    parser.add_argument(
        "-j", "--jobs", type=positive_int, default=1, metavar="N", help="parallel jobs"
    )
    add_idle_timeout(parser)
    add_run_options(parser)


def start(config: Config) -> int:
    """``queue start``: a detached worker with these run options, unless one runs already."""
    state = config.repo.state_dir
    probe = argparse.ArgumentParser(add_help=False)
    add_start_options(probe)
    argv = _argv_of(config.args, probe._actions)
    out = config.stdout
    with _start_lock(state):
        for info in live_workers(state):
            if info.argv == argv and info.host == socket.gethostname():
                out.write(f"a worker with these options runs already: pid {info.pid}\n")
                return 0
        ident = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        base = workers_dir(state)
        log = base / f"{ident}.log"
        command = [sys.executable, "-m", "sweeprun", "--run-all", "--worker", ident, *argv]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{ARGV_ENV: json.dumps(argv)})
        with open(log, "ab") as sink:
            proc = subprocess.Popen(
                command,
                cwd=config.repo.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not the terminal's: it outlives it, no SIGHUP
            )
        # Registered (its lock taken) before the start lock is let go: a second
        # 'queue start' sees it.
        path = base / f"{ident}.json"
        deadline = time.monotonic() + 60
        while not (path.exists() and journal_locked(base / f"{ident}.lock")):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise _start_failed(log, tail)
            time.sleep(0.02)
    jobs = getattr(config.args, "jobs", 1)
    out.write(f"started a worker: pid {proc.pid}, -j {jobs} (log: {log})\n")
    out.write("sweeprun queue status   # what it does; sweeprun queue stop   # ends it\n")
    return 0


def _start_failed(log: Path, tail: list[str]) -> Exception:
    said = " / ".join(tail) or "no output"
    return UsageError(f"queue start: the worker ended at once ({said}); its log: {log}")


def stop(config: Config, kill: bool, wait: float) -> int:
    """``queue stop [--kill]``: every worker of this repository on this host stops."""
    state = config.repo.state_dir
    out = config.stdout
    workers = [w for w in live_workers(state) if w.host == socket.gethostname()]
    if not workers:
        out.write("no worker runs\n")
        return 0
    sig = signal.SIGINT if kill else DRAIN
    for info in workers:
        if info.ref.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, sig)
        how = "interrupting its experiments" if kill else "running experiments finish"
        out.write(f"stopping worker pid {info.pid} ({how})\n")
    out.flush()
    deadline = time.monotonic() + wait
    lock = {w.id: workers_dir(state) / f"{w.id}.lock" for w in workers}
    while time.monotonic() < deadline and any(journal_locked(p) for p in lock.values()):
        time.sleep(0.05)
    left = [w for w in workers if journal_locked(lock[w.id])]
    for info in left:
        out.write(f"worker pid {info.pid} still runs after {wait:g} s (queue status)\n")
    if not left:
        out.write(f"{len(workers)} worker{'s' if len(workers) != 1 else ''} stopped\n")
    return 0
