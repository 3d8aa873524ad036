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

import contextlib
import ctypes
import hashlib
import importlib
import json
import os
import runpy
import signal
import socket
import sys
import traceback
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


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
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C goes to the jobs, not here
    sock = socket.socket(fileno=fd)
    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
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
        _send(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send(sock, {"exit": os.waitstatus_to_exitcode(status)})
        if learn is not None:
            os.close(learn[1])
            _learn(learn[0])
            os.close(learn[0])
            learned = True


if __name__ == "__main__":
    main()
