"""A reusable pool of temporary git worktrees, one per concurrent job.

Creating a worktree costs a full checkout; re-pointing an existing one at the next
experiment costs only the files that differ (usually just the params file), which is
what keeps per-experiment overhead at a few milliseconds. Slots are claimed with
``flock`` so runner processes and threads on one machine never share a workspace; a
crashed runner's lock dies with it, so its slot is simply reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sweeprun.git import run_git

MAX_SLOTS = 512


def pool_dir(common_dir: str | os.PathLike[str]) -> Path:
    """Where the pool lives: inside the git directory, invisible to ``git status``."""
    return Path(common_dir) / "sweeprun" / "ws"


@contextlib.contextmanager
def acquire(common_dir: str, repo_root: str, commit: str) -> Iterator[Path]:
    """Yield a clean worktree checked out (detached) at ``commit``; release it after."""
    base = pool_dir(common_dir)
    base.mkdir(parents=True, exist_ok=True)
    for i in itertools.count():
        if i >= MAX_SLOTS:
            raise RuntimeError(f"no free workspace slot in {base}")
        lock = open(base / f"w{i}.lock", "a+")  # noqa: SIM115 - held for the with-body
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        break
    ws = base / f"w{i}"
    try:
        _checkout(ws, repo_root, commit)
        yield ws
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _checkout(ws: Path, repo_root: str, commit: str) -> None:
    if (ws / ".git").is_file():
        try:
            # -x: outputs of the previous experiment (ignored or not) must not leak.
            run_git(["clean", "-ffdxq"], ws)
            run_git(["checkout", "-q", "-f", "--detach", commit], ws)
            return
        except Exception:
            pass  # a damaged slot: rebuild it below
    if ws.exists():
        shutil.rmtree(ws, ignore_errors=True)
    run_git(["worktree", "prune"], repo_root, check=False)
    run_git(["worktree", "add", "-q", "-f", "--detach", str(ws), commit], repo_root)
