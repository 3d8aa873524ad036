"""Running a stage's command: without a shell where that changes nothing, in its own
process group, with a timeout, and with its process group named for ``queue kill``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeprun.run import workspace
from sweeprun.system import procs

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
#: Environment variables that carry ``${key}`` values into a command that needs a shell.
VALUE_ENV = "SWEEPRUN_VALUE_"
#: How long a job gets to stop after Ctrl+C before its process group is killed.
INTERRUPT_GRACE = 10.0
#: Set when the run is stopping (a signal, see :mod:`sweeprun.system.stopping`): no command starts
#: any more, and one that fails from now on was cut short rather than failed.
STOP = threading.Event()


@dataclass(frozen=True)
class _Ref:
    """A ``${expr}`` in a command template, and the quoting it stands in."""

    expr: str
    quote: str  # "", "'" or '"'
    text: str  # as written, for a template whose values do not name it


_Part = str | _Ref


@dataclass(frozen=True)
class Template:
    """A command line split into words once, with its ``${…}`` references kept as such.

    ``words`` is what the program would receive when no shell is needed (each word a
    sequence of literal text and references); ``script`` is the same line for
    ``/bin/sh`` with every reference left in place, to be rendered as a quoted
    environment variable so that no value ever reaches the shell's parser.
    """

    words: tuple[tuple[_Part, ...], ...]
    script: tuple[_Part, ...]
    needs_shell: bool

    @property
    def exprs(self) -> list[str]:
        """Every ``${expr}`` used, in order of first use."""
        seen: dict[str, None] = {}
        for part in self.script:
            if isinstance(part, _Ref):
                seen.setdefault(part.expr, None)
        return list(seen)


@functools.lru_cache(maxsize=256)
def parse(cmd: str) -> Template:
    """Split ``cmd`` into words as ``sh`` would, keeping ``${expr}`` references whole.

    Cached: every point of a sweep usually runs the same command line. A reference is a
    reference inside any quotes (values are substituted before any shell sees the line,
    as in DVC); a backslash before ``$`` keeps it literal (``\\${x}``).
    """
    words: list[tuple[_Part, ...]] = []
    word: list[_Part] = []
    in_word = False
    script: list[_Part] = []
    needs_shell = bool(_SHELL_FIRST_WORD.search(cmd))
    quote = ""
    i, n = 0, len(cmd)
    while i < n:
        ch = cmd[i]
        if ch == "$" and cmd.startswith("${", i) and (end := cmd.find("}", i + 2)) > 0:
            ref = _Ref(cmd[i + 2 : end].strip(), quote, cmd[i : end + 1])
            word.append(ref)
            script.append(ref)
            in_word = True
            i = end + 1
            continue
        if ch == "\\" and quote != "'" and i + 1 < n:
            # An escape: the next character is literal (the shell's business).
            needs_shell = True
            script.append(cmd[i : i + 2])
            word.append(cmd[i + 1])
            in_word = True
            i += 2
            continue
        script.append(ch)
        i += 1
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                word.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            else:
                needs_shell = needs_shell or ch in _DOUBLE_QUOTED_SHELL
                word.append(ch)
        elif ch in "'\"":
            quote = ch
            in_word = True
        elif ch in " \t":
            if in_word:
                words.append(tuple(word))
                word, in_word = [], False
        else:
            needs_shell = needs_shell or ch in _UNQUOTED_SHELL
            word.append(ch)
            in_word = True
    if in_word:
        words.append(tuple(word))
    # Unbalanced quotes: let the shell say so.
    return Template(tuple(words), tuple(script), needs_shell or bool(quote))


@dataclass(frozen=True)
class Prepared:
    """How to start a command: an argv without a shell, or a script for ``/bin/sh``."""

    argv: list[str] | None
    script: str
    env: dict[str, str]


def prepare(cmd: str, values: Mapping[str, str] | None = None, path: str | None = None) -> Prepared:
    """``cmd`` with its ``${expr}`` references bound to ``values``, ready to start.

    Without shell syntax the program gets the words directly, every value byte for byte
    in its word whatever the quoting. With shell syntax the script refers to each value
    as a double-quoted environment variable (``"${SWEEPRUN_VALUE_1}"``), so the shell
    expands it as one literal word piece and never parses it. A first word that is no
    program on ``path`` may be a builtin (``exit 3``), so it goes to the shell, which
    also words the error as users know it. Skipping ``/bin/sh`` saves a process per
    stage: it matters for short commands.
    """
    values = values or {}
    tpl = parse(cmd)
    unbound = any(isinstance(p, _Ref) and p.expr not in values for p in tpl.script)
    if not tpl.needs_shell and not unbound and tpl.words:
        argv = ["".join(values[p.expr] if isinstance(p, _Ref) else p for p in w) for w in tpl.words]
        if "/" in argv[0] or _which(argv[0], path):
            return Prepared(argv, "", {})
    names: dict[str, str] = {}
    out: list[str] = []
    for part in tpl.script:
        if not isinstance(part, _Ref):
            out.append(part)
        elif part.expr not in values:
            out.append(part.text)  # not a reference of this experiment (older records)
        else:
            var = names.setdefault(part.expr, f"{VALUE_ENV}{len(names) + 1}")
            out.append(
                {"": f'"${{{var}}}"', '"': f"${{{var}}}", "'": f"'\"${{{var}}}\"'"}[part.quote]
            )
    return Prepared(None, "".join(out), {var: values[expr] for expr, var in names.items()})


@functools.lru_cache(maxsize=256)
def _which(program: str, path: str | None) -> bool:
    return shutil.which(program, path=path) is not None


def command_argv(cmd: str, path: str | None = None) -> list[str] | None:
    """``cmd`` as an argv when no shell feature is used, else ``None`` (run via the shell)."""
    return prepare(cmd, {}, path).argv


def display(cmd: str, values: Mapping[str, str]) -> str:
    """``cmd`` as a person reads it: each reference shown as its shell-quoted value."""
    if not values:
        return cmd
    return "".join(
        shlex.quote(values[p.expr])
        if isinstance(p, _Ref) and p.expr in values
        else (p.text if isinstance(p, _Ref) else p)
        for p in parse(cmd).script
    )


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
    pidfile: Path | None = None
    if pid_holder is not None:
        ref = procs.ProcessRef.of(proc.pid, env.get(procs.TOKEN_ENV))
        pid_holder["proc"] = ref
        if procs.current is not None:
            procs.current.command(ref)
        pidfile = pid_holder.get("pidfile")
        if pidfile is not None:
            workspace.write_pid(pidfile, f"{pid_holder['key']} {ref}\n")
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
