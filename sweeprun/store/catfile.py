"""Reading git objects by name through one long-lived ``git cat-file --batch``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Sequence

from sweeprun.exceptions import GitError


class ObjectReader:
    """One ``git cat-file --batch`` process that reads objects by name, on demand.

    A run loop keeps one for all its jobs (threads share it under a lock) rather than
    starting git once per job; without one, :func:`read_objects` starts it for one use.
    git looks again at the object store when a name is missing, so objects written after
    the process started (queued meanwhile) are found.
    """

    def __init__(self, git_dir: str | os.PathLike[str]) -> None:
        self.git_dir = str(git_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["git", "--git-dir", self.git_dir, "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._proc

    def read(self, names: Sequence[str]) -> list[bytes | None]:
        """Each object's content (``None`` for a missing one), in order."""
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(b"".join(n.encode() + b"\n" for n in names))
                proc.stdin.flush()
                out: list[bytes | None] = []
                for _ in names:
                    header = proc.stdout.readline().split()
                    if len(header) != 3:
                        out.append(None)  # "<name> missing" (or ambiguous)
                        continue
                    out.append(proc.stdout.read(int(header[2]) + 1)[:-1])
                return out
            except (OSError, ValueError):
                self.close()  # a broken pipe: the next read starts a new process
                raise GitError(f"git cat-file failed in {self.git_dir}") from None

    def close(self) -> None:
        """End the process (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
