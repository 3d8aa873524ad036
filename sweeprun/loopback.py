"""A real git-only cluster on loopback, for tests and benchmarks.

``git daemon`` on 127.0.0.1 serves a bare repository (pushes allowed); ``dask scheduler``
and N ``dask worker`` processes (no nanny: killing one kills it) run beside it. Each worker
runs in its own mount namespace with a tmpfs over every ``hidden`` directory — the
runner's repository — so it can reach the repository only through the git URL, as a
worker on another machine would. That takes root (``unshare --mount``);
:func:`unavailable` says why a machine cannot run it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def unavailable(hide: bool = True) -> str:
    """Why this machine cannot run the cluster (empty: it can)."""
    if shutil.which("git") is None:
        return "git is not installed"
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout
    if not (Path(exec_path.strip()) / "git-daemon").is_file():
        return "git daemon is not installed (Debian: apt-get install git-daemon-run or git)"
    try:
        import distributed  # noqa: F401  (optional extra: only asked whether it is there)
    except ImportError:
        return "dask[distributed] is not installed (pip install 'sweeprun[dask]')"
    if hide:
        if shutil.which("unshare") is None:
            return "unshare (util-linux) is not installed"
        if os.geteuid() != 0:
            return "hiding the runner's repository from workers takes root (unshare --mount)"
    return ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s")


@dataclass
class LoopbackCluster:
    """git daemon + Dask scheduler + workers that cannot see ``hidden`` directories."""

    base: Path
    hidden: list[Path] = field(default_factory=list)
    workers: int = 2
    url: str = ""
    scheduler: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: A Dask preload module every worker loads (``dask worker --preload``): a test's
    #: fault, say.
    preload: str = ""

    @property
    def served(self) -> Path:
        """The bare repository the daemon serves."""
        return self.base / "served" / "repo.git"

    def start(self) -> LoopbackCluster:
        """Start everything; return when the scheduler has every worker."""
        self.base.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", str(self.served)], check=True)
        port = free_port()
        daemon = [
            "git",
            "daemon",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            "--informative-errors",
            f"--base-path={self.served.parent}",
            str(self.served.parent),
        ]
        self._start(daemon, "daemon")
        _wait_port(port, self.procs[-1], "git daemon")
        self.url = f"git://127.0.0.1:{port}/repo.git"
        port = free_port()
        sched = [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1"]
        # (Its HTTP server listens even without a dashboard: never on the fixed 8787.)
        http = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
        self._start([*sched, "--port", str(port), *http], "scheduler")
        _wait_port(port, self.procs[-1], "dask scheduler")
        self.scheduler = f"tcp://127.0.0.1:{port}"
        for i in range(self.workers):
            self.start_worker(i)
        self.wait_for_workers(self.workers)
        return self

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        """Start worker ``i`` (again), in its own mount namespace."""
        local = self.base / f"worker{i}"
        local.mkdir(exist_ok=True)
        cmd = [
            *(sys.executable, "-m", "dask", "worker", self.scheduler, "--no-nanny"),
            *("--nthreads", "1", "--no-dashboard", "--name", f"w{i}"),
            *("--local-directory", str(local), "--death-timeout", "60"),
            *(("--preload", self.preload) if self.preload else ()),
        ]
        if self.hidden:
            mounts = " && ".join(f'mount -t tmpfs none "${j + 1}"' for j in range(len(self.hidden)))
            script = f'{mounts} && shift {len(self.hidden)} && exec "$@"'
            cmd = [
                *("unshare", "--mount", "--propagation", "private", "--"),
                *("sh", "-c", script, "sh", *map(str, self.hidden), *cmd),
            ]
        proc = self._start(cmd, f"worker{i}")
        if i < len(self.worker_procs):
            self.worker_procs[i] = proc
        else:
            self.worker_procs.append(proc)
        return proc

    def _start(self, cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        """Wait until the scheduler counts ``n`` workers."""
        from distributed import Client  # optional extra

        with Client(self.scheduler, timeout=timeout) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(n, timeout=timeout)

    def kill_worker(self, i: int) -> None:
        """``kill -9`` worker ``i`` and everything it started."""
        proc = self.worker_procs[i]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def log(self, name: str) -> str:
        """What one of the processes wrote (``daemon``, ``scheduler``, ``worker0``, …)."""
        return (self.base / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        """Kill every process of the cluster."""
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> LoopbackCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
