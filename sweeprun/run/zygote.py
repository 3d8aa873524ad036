"""The warm worker of a workspace slot: imports a Python module once, forks a run per job.

Started by :mod:`sweeprun.run.warm` as ``python zygote.py FD MODULE`` with the slot's
workspace as its working directory, under the interpreter the stage names. It runs as a
script (only the standard library), so it works in any environment the user's program
works in, sweeprun installed there or not.

Protocol on the ``SOCK_SEQPACKET`` socket ``FD`` (one JSON message each way, the log
file's descriptor passed along with a request):

- at start: ``{"ready": true, "files": {path: sha256}}`` — the files of the workspace it
  imported (so the runner can tell when a job's code differs), or ``{"ready": false,
  "error": "..."}`` when the import failed (the runner then runs the job the usual way);
- request ``{"cwd", "env", "module", "call", "argv"}`` + the log's descriptor: it forks;
  the child makes its own session (a process group the runner signals as it signals any
  command), dies with the zygote, writes to the log, and runs the module as ``__main__``
  (``runpy``) or calls ``call`` in it; answers ``{"pid": N}`` then ``{"exit": rc}``.

The zygote dies with its runner (``PR_SET_PDEATHSIG``), and each child with the zygote.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import hashlib
import importlib
import importlib.util
import json
import os
import runpy
import signal
import socket
import sys
import traceback
from collections.abc import Iterator
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


#: The job running now (its pid, 0 between jobs) and whether the runner is gone.
_STATE = {"pid": 0, "gone": 0}


def _runner_gone(signum: int, frame: object) -> None:  # pragma: no cover - a signal handler
    """The runner died (our parent-death signal): kill the job still running (it did not
    finish: it runs again); one that exited on its own keeps its exit (written below)."""
    _STATE["gone"] = 1
    if _STATE["pid"]:
        with contextlib.suppress(OSError):
            os.killpg(_STATE["pid"], signal.SIGKILL)


def _overwrite(path: str, text: str) -> None:
    """Rewrite a slot's pid file in place (as the runner does: no new inode).

    The same few lines as ``store.objects.overwrite`` and the supervisor's: this script
    runs under the user's interpreter, where sweeprun may not be importable."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _start_time(pid: int) -> str:
    """The process's start time, as the runner records it (``procs.start_time``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return "-"


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _imported_files(root: str) -> dict[str, str]:
    """Every imported module file below ``root``, with the hash of its content."""
    out = {}
    prefix = os.path.realpath(root) + os.sep
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if not path:
            continue
        real = os.path.realpath(path)
        if real.startswith(prefix):
            with contextlib.suppress(OSError), open(real, "rb") as f:
                out[os.path.relpath(real, prefix)] = hashlib.sha256(f.read()).hexdigest()
    return out


#: At most this much of a child's module list is written to its pipe: less than a pipe
#: holds, so the child never waits for the zygote to read (it reads after the exit).
_LEARN_BYTES = 60_000


def _tell_imports(before: set[str], pipe: int, root: str) -> None:
    """Write the modules the run imported (not the workspace's own) for the zygote to
    import before its next fork: what a program imports lazily on its first run (Hydra's
    plugins, parts of scikit-learn, ~180 ms) is then paid once per slot, not per job."""
    prefix = os.path.realpath(root) + os.sep
    names = []
    for name in set(sys.modules) - before:
        path = getattr(sys.modules.get(name), "__file__", None) or ""
        if not name.startswith("__") and not os.path.realpath(path).startswith(prefix):
            names.append(name)
    data = "\n".join(sorted(names)).encode()[:_LEARN_BYTES]
    with contextlib.suppress(OSError):
        os.write(pipe, data)


def _learn(pipe: int) -> None:
    """Import what a child's run imported (see :func:`_tell_imports`); a module that does
    not import here is left to each run."""
    os.set_blocking(pipe, False)
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := os.read(pipe, 1 << 16):
            chunks.append(chunk)
    for name in b"".join(chunks).decode(errors="replace").splitlines():
        if name and name not in sys.modules:
            with contextlib.suppress(BaseException):
                importlib.import_module(name)


def _preload(module: str) -> None:
    """Import what ``module`` imports at its top level — not the module itself, whose body
    is each job's to run (``python -m``: as ``__main__``; ``call:``: imported in the job).
    A script whose body does the work unguarded by ``if __name__ == "__main__"`` would
    otherwise run once more, here, when the worker starts."""
    spec = importlib.util.find_spec(module)  # (imports the packages above it)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return
    with open(spec.origin, "rb") as f:
        tree = ast.parse(f.read(), spec.origin)
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    for node, optional in _top_imports(tree.body):
        for name, guess in _names(node, package):
            if name in sys.modules:
                continue
            try:
                importlib.import_module(name)
            except ImportError:
                if not (guess or optional):
                    raise  # as importing the module would: the job runs the usual way


def _top_imports(body: list[ast.stmt]) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """The module's top-level imports (``optional``: inside a ``try``)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, False
        elif isinstance(node, ast.Try):
            for inner in node.body:
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner, True


def _names(node: ast.Import | ast.ImportFrom, package: str) -> list[tuple[str, bool]]:
    """Modules an import statement imports (``guess``: ``from x import y`` where ``y`` may
    be a submodule or only a name)."""
    if isinstance(node, ast.Import):
        return [(alias.name, False) for alias in node.names]
    if node.module == "__future__":
        return []
    base = node.module or ""
    if node.level:
        base = importlib.util.resolve_name("." * node.level + base, package)
    return [(base, False), *((f"{base}.{a.name}", True) for a in node.names if a.name != "*")]


def _child(request: dict[str, Any], logfd: int, learn: int | None = None) -> int:
    """Run the job in the forked child; its exit code."""
    before = set(sys.modules)
    os.setsid()  # its own process group: signalled, timed out and killed as one
    _die_with_parent()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = list(request["argv"])
    sys.path[0] = request["cwd"]
    rc = 0
    try:
        if request["call"]:
            target = importlib.import_module(request["module"])
            result = getattr(target, request["call"])()
            rc = result if isinstance(result, int) and not isinstance(result, bool) else 0
        else:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code
        else:
            print(code, file=sys.stderr)
            rc = 1
    except KeyboardInterrupt:
        # As a Python program dies of Ctrl+C: by the signal itself.
        sys.stdout.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        rc = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if learn is not None:
        _tell_imports(before, learn, request["cwd"])
    return rc & 0xFF


def main() -> None:
    fd, module = int(sys.argv[1]), sys.argv[2]
    # As the runner's supervisor does for its commands: when the runner dies, a job that
    # exited on its own keeps its exit (the next runner adopts it, never runs it again);
    # one still running is killed. SIGTERM, handled, rather than SIGKILL, unhandled.
    signal.signal(signal.SIGTERM, _runner_gone)
    _die_with_parent(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C goes to the jobs, not here
    sock = socket.socket(fileno=fd)
    sys.path.insert(0, os.getcwd())
    try:
        _preload(module)
    except BaseException:
        _send(sock, {"ready": False, "error": traceback.format_exc(limit=3)})
        return
    _send(sock, {"ready": True, "files": _imported_files(os.getcwd())})
    learned = False
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 1)
        if not msg:
            return  # the runner closed the socket: done
        request = json.loads(msg.decode())
        sys.stdout.flush()
        sys.stderr.flush()
        learn = None if learned else os.pipe()  # the first job tells what it imported
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                code = _child(request, fds[0], learn[1] if learn else None)
            finally:
                os._exit(code)
        os.close(fds[0])
        pidfile, (key, stage, claim) = request.get("pidfile"), request.get("exit") or ("", 0, "")
        _STATE["pid"] = pid
        if pidfile:  # KEY PID START [TOKEN], as the runner's announce writes it
            token = request["env"].get("SWEEPRUN_JOB", "")
            with contextlib.suppress(OSError):
                _overwrite(
                    pidfile, f"{key} {pid} {_start_time(pid)}{' ' + token if token else ''}\n"
                )
        _send(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _STATE["pid"] = 0
        rc = os.waitstatus_to_exitcode(status)
        # First thing: from now on its end is known, whatever happens to the runner. Not
        # for SIGKILL: the runner's death has it killed (here, or by the runner's
        # supervisor, which may act before this process hears of that death): it did not
        # finish and runs again. (A live runner writes that exit itself, as any other.)
        if pidfile and rc != -signal.SIGKILL:
            with contextlib.suppress(OSError):
                _overwrite(pidfile, f"{key} exit {rc} {stage} {claim}\n")
        if _STATE["gone"]:
            return
        _send(sock, {"exit": rc})
        if learn is not None:
            os.close(learn[1])
            _learn(learn[0])
            os.close(learn[0])
            learned = True


if __name__ == "__main__":
    main()
