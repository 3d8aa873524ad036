"""Running a stage's command: without a shell where that changes nothing, in its own
process group, with a timeout, and with its process group named for ``queue kill``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeprun.run import workspace
from sweeprun.spec.template import prepare
from sweeprun.system import procs
from sweeprun.system.stopping import STOP
from sweeprun.system.supervisor import Supervisor

#: How long a job gets to stop after Ctrl+C before its process group is killed.
INTERRUPT_GRACE = 10.0


def run_command(
    cmd: str,
    cwd: Path,
    env: dict[str, str],
    log: Any,
    timeout: float | None,
    pid_holder: dict[str, Any] | None = None,
    die_with_parent: bool = False,
    values: Mapping[str, str] | None = None,
) -> int:
    """Run one command in its own process group; 124 when ``timeout`` ran out.

    ``pid_holder`` receives ``proc``, the command's :class:`~sweeprun.system.procs.ProcessRef`
    (and ``timeout`` when it ran out); when it holds a ``pidfile`` path and a ``key``,
    ``KEY PGID START`` is written there while the command runs, so ``sweeprun queue
    kill`` in another process can signal it, and nobody else. ``values`` bind the
    command's ``${expr}`` references (see :func:`prepare`).
    """
    if STOP.is_set():
        log.write(b"sweeprun: the run is stopping; not started\n")
        if pid_holder is not None:
            pid_holder["interrupted"] = 1
        return 130
    prepared = prepare(cmd, values, env.get("PATH"))
    if prepared.env:
        env = {**env, **prepared.env}
    args: list[str] | str = prepared.argv or prepared.script
    shell = prepared.argv is None
    # A job dies the instant its runner does (kill -9 included): a command that finished
    # while nobody was there to record it would run again. The watchdog kills the rest of
    # the tree; where setpriv is missing, only checkpointing stages pay for a preexec_fn.
    prefix = procs.pdeathsig_prefix() if pid_holder is not None else ()
    if prefix:
        args = [*prefix, *(prepared.argv or ["/bin/sh", "-c", prepared.script])]
        shell = False
    supervisor = pid_holder.get("watchdog") if pid_holder is not None else None
    log_name = getattr(log, "name", None)
    if (
        pid_holder is not None
        and isinstance(supervisor, Supervisor)
        and supervisor.alive
        and isinstance(log_name, str)
    ):
        argv = args if isinstance(args, list) else ["/bin/sh", "-c", args]
        return _supervised(supervisor, argv, cwd, env, log, log_name, timeout, pid_holder, cmd)
    try:
        # A session of its own: the whole process tree can be signalled as one group.
        proc = subprocess.Popen(
            args,
            shell=shell,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Costs a fork instead of a vfork (~1.5 ms), so only where a program may wait
            # for its runner forever (checkpoints); other orphans are killed on reclaim.
            # If the runner is killed (even with SIGKILL), such commands go too.
            preexec_fn=procs.die_with_parent
            if die_with_parent and not prefix and procs.can_die_with_parent()
            else None,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        # What the shell would have said and returned.
        log.write(f"sweeprun: {cmd}: {exc.strerror}\n".encode())
        return 127 if isinstance(exc, FileNotFoundError) else 126
    pidfile = announce(proc.pid, env, pid_holder)
    if STOP.is_set():  # it started after the stop's signal went out to the others
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(timeout=timeout)
        if pidfile is not None and pid_holder is not None:
            # First thing, so that a runner killed from now on leaves the outcome behind
            # for the next runner to adopt (see sweeprun.run.adopt).
            workspace.write_pid(pidfile, exit_line(pid_holder, rc))
            pidfile = None
        if rc != 0 and STOP.is_set() and pid_holder is not None:
            pid_holder["interrupted"] = 1  # cut short by the stop: it goes back to the queue
        return rc
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid, env)  # the whole tree: children of the command too
        proc.wait()
        if pid_holder is not None:
            pid_holder["timeout"] = 1
        log.write(f"sweeprun: timed out after {timeout:g} s; process group killed\n".encode())
        return 124
    except KeyboardInterrupt:
        # Ctrl+C reached this thread (sequential runs): the job gets SIGINT and a chance
        # to stop cleanly (checkpoints are kept); a second Ctrl+C, or 10 s, kills it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.wait(timeout=INTERRUPT_GRACE)
        kill_tree(proc.pid, env)
        proc.wait()
        raise
    except BaseException:
        kill_tree(proc.pid, env)
        proc.wait()
        raise
    finally:
        if pidfile is not None:
            workspace.write_pid(pidfile, "")


def _supervised(
    supervisor: Supervisor,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log: Any,
    log_name: str,
    timeout: float | None,
    pid_holder: dict[str, Any],
    cmd: str,
) -> int:
    """:func:`run_command` through the runner's supervisor, which starts the command and
    records its exit the moment it happens (see :mod:`sweeprun.system.supervisor`)."""
    log.flush()  # the command appends after what the runner wrote
    pidfile = pid_holder.get("pidfile")
    child = supervisor.spawn(
        argv,
        cwd=cwd,
        env=env,
        log=log_name,
        pidfile=pidfile,
        exit_words=(
            str(pid_holder.get("key", "-")),
            int(pid_holder.get("stage", -1)),
            str(pid_holder.get("claim", "-")),
        ),
    )
    if child.error or child.ref is None:
        # What the shell would have said and returned.
        log.write(f"sweeprun: {cmd}: {os.strerror(child.error or errno.EIO)}\n".encode())
        return 127 if child.error == errno.ENOENT else 126
    ref = procs.ProcessRef(child.pid, child.ref.start, env.get(procs.TOKEN_ENV))
    pid_holder["proc"] = ref
    if STOP.is_set():  # it started after the stop's signal went out to the others
        ref.signal_group(signal.SIGINT)
    try:
        rc = child.wait(timeout)
        if rc != 0 and STOP.is_set():
            pid_holder["interrupted"] = 1  # cut short by the stop: it goes back to the queue
        return rc
    except subprocess.TimeoutExpired:
        child.kill()  # the whole tree: children of the command too
        child.wait()
        pid_holder["timeout"] = 1
        log.write(f"sweeprun: timed out after {timeout:g} s; process group killed\n".encode())
        return 124
    except KeyboardInterrupt:
        # As run_command: SIGINT and a chance to stop cleanly; a second Ctrl+C, or 10 s,
        # kills the tree.
        ref.signal_group(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
            child.wait(INTERRUPT_GRACE)
        child.kill()
        child.wait()
        raise
    except BaseException:
        child.kill()
        child.wait()
        raise


def announce(
    pid: int, env: Mapping[str, str], pid_holder: dict[str, Any] | None, write: bool = True
) -> Path | None:
    """Make a started command known: to the caller, the runner's watchdog and ``queue kill``
    (its pid file, returned: the caller writes the exit there, see :func:`exit_line`;
    ``write=False``: whoever started it wrote the pid file already)."""
    if pid_holder is None:
        return None
    ref = procs.ProcessRef.of(pid, env.get(procs.TOKEN_ENV))
    pid_holder["proc"] = ref
    watchdog = pid_holder.get("watchdog")
    if watchdog is not None:
        watchdog.command(ref)
    pidfile: Path | None = pid_holder.get("pidfile")
    if pidfile is not None and write:
        workspace.write_pid(pidfile, f"{pid_holder['key']} {ref}\n")
    return pidfile


def exit_line(pid_holder: Mapping[str, Any], rc: int) -> str:
    """What a slot's pid file says once its command has exited: ``KEY exit RC STAGE CLAIM``
    (``STAGE``: its index in the pipeline; ``CLAIM`` tells this run of the experiment from
    an earlier one)."""
    stage, claim = pid_holder.get("stage", -1), pid_holder.get("claim", "-")
    return f"{pid_holder['key']} exit {rc} {stage} {claim}\n"


def kill_tree(pid: int, env: Mapping[str, str]) -> None:
    """SIGKILL the group of a child this process started and has not reaped yet (its pid
    cannot have been reused), and the descendants that left the group (by token)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    token = env.get(procs.TOKEN_ENV)
    if token:
        procs.signal_token(token, signal.SIGKILL)
