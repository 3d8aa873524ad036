"""Running a stage's command: without a shell where that changes nothing, in its own
process group, with a timeout, and with its process group named for ``queue kill``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sweeprun import workspace

# Outside quotes, these characters mean shell syntax: operators, expansions, globs,
# redirections, comments, brace expansion, escapes. Inside double quotes only $ ` and \
# do; inside single quotes nothing does.
_UNQUOTED_SHELL = frozenset("|&;<>()$`\\*?[]#~{}!\n")
_DOUBLE_QUOTED_SHELL = frozenset("$`\\")
# A leading VAR=value assignment, or a shell keyword/builtin as the first word.
_SHELL_FIRST_WORD = re.compile(
    r"^\s*[A-Za-z_][A-Za-z0-9_]*="
    r"|^\s*(?:cd|export|source|\.|exec|if|for|while|until|case|set|ulimit|umask|alias|eval"
    r"|read|type|command|hash|time)(?:\s|$)"
)
#: How long a job gets to stop after Ctrl+C before its process group is killed.
INTERRUPT_GRACE = 10.0


def command_argv(cmd: str, path: str | None = None) -> list[str] | None:
    """``cmd`` as an argv when no shell feature is used, else ``None`` (run via the shell).

    Quoting is the one shell feature handled here (``python -c '{"a": 1}'`` is common),
    with the same result as ``sh``. A first word that is no program on ``path`` may be a
    builtin (``exit 3``), so it goes to the shell, which also words the error as users
    know it. Skipping ``/bin/sh`` saves a process per stage: it matters for short commands.
    """
    argv = _argv(cmd, path)
    return None if argv is None else list(argv)


@functools.lru_cache(maxsize=256)
def _argv(cmd: str, path: str | None) -> tuple[str, ...] | None:
    # Cached: every point of a sweep usually runs the same command line.
    if _SHELL_FIRST_WORD.search(cmd) or _needs_shell(cmd):
        return None
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return None
    if not argv or ("/" not in argv[0] and shutil.which(argv[0], path=path) is None):
        return None
    return tuple(argv)


def _needs_shell(cmd: str) -> bool:
    quote = ""
    for ch in cmd:
        if quote == "'":
            quote = "" if ch == "'" else quote
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in _DOUBLE_QUOTED_SHELL:
                return True
        elif ch in "'\"":
            quote = ch
        elif ch in _UNQUOTED_SHELL:
            return True
    return bool(quote)  # unbalanced: let the shell say so


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # If the runner is killed (even with SIGKILL), its commands go too: nothing keeps
    # writing into a workspace another runner may take over.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_command(
    cmd: str,
    cwd: Path,
    env: dict[str, str],
    log: Any,
    timeout: float | None,
    pid_holder: dict[str, Any] | None = None,
    die_with_parent: bool = False,
) -> int:
    """Run one command in its own process group; 124 when ``timeout`` ran out.

    ``pid_holder`` receives ``pid`` (and ``timeout`` when it ran out); when it holds a
    ``pidfile`` path and a ``key``, ``KEY PGID`` is written there while the command runs,
    so ``sweeprun queue kill`` in another process can signal it.
    """
    argv = command_argv(cmd, env.get("PATH"))
    try:
        # A session of its own: the whole process tree can be signalled as one group.
        proc = subprocess.Popen(
            argv or cmd,
            shell=argv is None,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Costs a fork instead of a vfork (~1.5 ms), so only where a program may wait
            # for its runner forever (checkpoints); other orphans are killed on reclaim.
            preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        # What the shell would have said and returned.
        log.write(f"sweeprun: {cmd}: {exc.strerror}\n".encode())
        return 127 if isinstance(exc, FileNotFoundError) else 126
    pidfile: Path | None = None
    if pid_holder is not None:
        pid_holder["pid"] = proc.pid
        pidfile = pid_holder.get("pidfile")
        if pidfile is not None:
            workspace.write_pid(pidfile, f"{pid_holder['key']} {proc.pid}\n")
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)  # the whole tree: children of the command too
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
        kill_group(proc.pid)
        proc.wait()
        raise
    except BaseException:
        kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        if pidfile is not None:
            workspace.write_pid(pidfile, "")


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
