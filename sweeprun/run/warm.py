"""Warm Python workers: a sweep of tiny Python experiments pays imports once per slot.

A stage with ``call: pkg.train:main``, or ``warm: true`` and ``cmd: python -m pkg.train
ARGS``, runs in a child forked from a zygote (:mod:`sweeprun.run.zygote`) that imported the
module once: one zygote per workspace slot, module and interpreter, for the whole run.
Everything else about the command is as for any other: its own process group (signalled,
timed out and killed as one, and announced to the watchdog and ``queue kill``), its
environment, its log, its exit code, and the exit recorded the moment it is known.

The zygote is started again when the files it imported differ in the job's workspace
(another baseline's code), and a job runs the usual way (:func:`run_command`) when the
module does not import in the zygote, when no zygote can be started, or without a pool
(the ``loky`` and Dask backends, ``sweeprun run`` in place).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, BinaryIO

from sweeprun.run import workspace
from sweeprun.run.command import INTERRUPT_GRACE, announce, exit_line, kill_tree
from sweeprun.spec.template import prepare
from sweeprun.system import procs
from sweeprun.system.stopping import STOP

ZYGOTE = Path(__file__).with_name("zygote.py")
#: The module ``call:`` stages run through (``python -m sweeprun.call pkg.mod:func``).
CALL_MODULE = "sweeprun.call"
# Variables of one job that must not stay in the zygote's own environment: a zygote holding
# a job's token would be killed with that job's tree.
_PER_JOB = (procs.TOKEN_ENV, "SWEEPRUN_EXP_NAME", "SWEEPRUN_EXP_ID", "DVC_EXP_NAME")


def python_target(
    argv: list[str] | None, path: str | None
) -> tuple[str, str, str, list[str]] | None:
    """``python -m MOD ARGS`` as (interpreter, module, function to call or "", argv), or None."""
    if not argv or len(argv) < 3 or argv[1] != "-m":
        return None
    name = os.path.basename(argv[0])
    if not (name == "python" or name.startswith("python3")):
        return None
    interpreter = shutil.which(argv[0], path=path)
    if interpreter is None:
        return None
    module, args = argv[2], argv[3:]
    if module == CALL_MODULE:
        if not args or ":" not in args[0]:
            return None
        module, _, func = args[0].partition(":")
        return interpreter, module, func, [module, *args[1:]]
    return interpreter, module, "", [module, *args]


class NotStarted(Exception):
    """The warm worker could not start the job (it died): the job runs the usual way."""


class Zygote:
    """One warm worker process and the socket to it."""

    def __init__(
        self,
        interpreter: str,
        module: str,
        cwd: Path,
        env: dict[str, str],
        timeout: float | None = None,
    ) -> None:
        self.module = module
        self.cwd = cwd
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        clean = {k: v for k, v in env.items() if k not in _PER_JOB}
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(
                [interpreter, str(ZYGOTE), str(theirs.fileno()), module],
                cwd=cwd,
                env=clean,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl+C in the terminal is for the jobs
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        # An import that hangs is bounded by the job's timeout, as its command would be.
        self.sock.settimeout(timeout)
        try:
            ready = self._recv()
        except (TimeoutError, ConnectionError):  # hung, or died before it could say
            ready = {"ready": False}
            if self.proc is not None:
                self.proc.kill()
            self.close()
        finally:
            if self.proc is not None:
                self.sock.settimeout(None)
        self.files: dict[str, str] = ready.get("files", {}) if ready.get("ready") else {}
        self.ok = bool(ready.get("ready"))

    def _recv(self) -> dict[str, Any]:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the warm worker exited")
        message: dict[str, Any] = json.loads(data)
        return message

    def fresh(self) -> bool:
        """Whether the job's workspace holds the code this zygote imported."""
        for rel, digest in self.files.items():
            try:
                if hashlib.sha256((self.cwd / rel).read_bytes()).hexdigest() != digest:
                    return False
            except OSError:
                return False
        return self.proc is not None and self.proc.poll() is None

    def run(
        self,
        request: dict[str, Any],
        log: BinaryIO,
        env: dict[str, str],
        timeout: float | None,
        pid_holder: dict[str, Any] | None,
    ) -> int:
        """Fork the job and wait for it, as :func:`run_command` waits for a command."""
        log.flush()
        if pid_holder is not None and pid_holder.get("pidfile") is not None:
            # The zygote writes the slot's pid file itself (start, then exit the moment
            # it reaps the job), as the supervisor does for other commands.
            exit_words = [pid_holder.get("key", "-"), pid_holder.get("stage", -1)]
            request = {
                **request,
                "pidfile": str(pid_holder["pidfile"]),
                "exit": [*exit_words, pid_holder.get("claim", "-")],
            }
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [log.fileno()])
            pid = int(self._recv()["pid"])
        except (OSError, ConnectionError) as exc:
            raise NotStarted(str(exc)) from None  # the zygote went away: run it cold
        pidfile = announce(pid, env, pid_holder, write=False)
        if STOP.is_set():  # it started after the stop's signal went out to the others
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGINT)
        try:
            self.sock.settimeout(timeout)
            try:
                rc = int(self._recv()["exit"])
            except ConnectionError:
                # The zygote died (its child dies with it): as a command killed by SIGKILL.
                kill_tree(pid, env)
                log.write(b"sweeprun: the warm worker died; the job was killed with it\n")
                rc = -signal.SIGKILL
            except TimeoutError:
                kill_tree(pid, env)
                self.sock.settimeout(None)
                self._recv()
                if pid_holder is not None:
                    pid_holder["timeout"] = 1
                log.write(
                    f"sweeprun: timed out after {timeout:g} s; process group killed\n".encode()
                )
                return 124
            if pidfile is not None and pid_holder is not None:
                # First thing, as run_command does: the exit is known before anything else.
                workspace.write_pid(pidfile, exit_line(pid_holder, rc))
                pidfile = None
            if rc != 0 and STOP.is_set() and pid_holder is not None:
                pid_holder["interrupted"] = 1
            return rc
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGINT)
            self.sock.settimeout(INTERRUPT_GRACE)
            with contextlib.suppress(TimeoutError, KeyboardInterrupt):
                self._recv()
            kill_tree(pid, env)
            raise
        except BaseException:
            kill_tree(pid, env)
            raise
        finally:
            self.sock.settimeout(None)
            if pidfile is not None:
                workspace.write_pid(pidfile, "")

    def close(self) -> None:
        self.sock.close()  # the zygote reads end-of-file and exits
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class WarmPool:
    """The run's warm workers, by slot directory, interpreter and module."""

    def __init__(self) -> None:
        self._zygotes: dict[tuple[str, ...], Zygote] = {}
        self._lock = threading.Lock()

    def run(
        self,
        cmd: str,
        cwd: Path,
        env: dict[str, str],
        log: BinaryIO,
        timeout: float | None,
        pid_holder: dict[str, Any] | None,
        values: dict[str, str],
    ) -> int | None:
        """Run ``cmd`` warm; ``None`` when it cannot be (run it the usual way then)."""
        if STOP.is_set():
            return None  # run_command says why it does not start
        target = python_target(prepare(cmd, values, env.get("PATH")).argv, env.get("PATH"))
        if target is None:
            return None
        interpreter, module, func, argv = target
        # What the import may depend on: a zygote serves only jobs that agree on it.
        key = (
            str(cwd),
            interpreter,
            module,
            env.get("PYTHONPATH", ""),
            env.get("CUDA_VISIBLE_DEVICES", ""),
        )
        zygote = self._zygote(key, interpreter, module, cwd, env, timeout)
        if zygote is None or STOP.is_set():  # (the stop may have come during the import)
            return None
        request = {"cwd": str(cwd), "env": env, "module": module, "call": func, "argv": argv}
        with zygote.lock:
            try:
                return zygote.run(request, log, env, timeout, pid_holder)
            except NotStarted:
                with self._lock:
                    self._zygotes.pop(key, None)
                zygote.close()
                return None

    def _zygote(
        self,
        key: tuple[str, ...],
        interpreter: str,
        module: str,
        cwd: Path,
        env: dict[str, str],
        timeout: float | None,
    ) -> Zygote | None:
        with self._lock:
            zygote = self._zygotes.get(key)
            if zygote is not None and not zygote.ok:
                return None  # the module does not import warm: cold runs, no retries
            if zygote is not None and zygote.fresh():
                return zygote
            if zygote is not None:
                zygote.close()
                del self._zygotes[key]
            try:
                zygote = Zygote(interpreter, module, cwd, env, timeout)
            except (OSError, ConnectionError, ValueError):
                return None
            self._zygotes[key] = zygote
            return zygote if zygote.ok else None

    def close(self) -> None:
        """Stop every warm worker (the run is over)."""
        with self._lock:
            for zygote in self._zygotes.values():
                zygote.close()
            self._zygotes.clear()
