"""A reusable pool of temporary git worktrees, one per concurrent job.

Creating a worktree costs a full checkout; re-pointing an existing one at the next
experiment costs only the files that differ (usually just the params file), which is
what keeps per-experiment overhead at a few milliseconds. Slots are claimed with
``flock`` so runner processes and threads on one machine never share a workspace. A
crashed runner's lock dies with it, but its slot is reused only once nothing there is
still needed: a command that finished under a runner that died before recording it left
its exit and outputs there, which is how the next runner adopts the result (see
:mod:`sweeprun.run.adopt`) instead of running the command again.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from sweeprun.model import RUNNING, Reapable, size_of
from sweeprun.store import fastgit
from sweeprun.store import objects as gitobjects
from sweeprun.store.git import run_git
from sweeprun.system import damage, procs
from sweeprun.system.procs import ProcessRef

MAX_SLOTS = 512
#: Above this many index entries, walking the tree in Python is slower than git clean.


def worktree_git_dir(ws: Path) -> Path:
    """The private git directory of the linked worktree ``ws`` (holds its index and HEAD)."""
    return _worktree_git_dir(ws)


def pool_dir(common_dir: str | os.PathLike[str]) -> Path:
    """Where the pool lives: inside the git directory, invisible to ``git status``."""
    return Path(common_dir) / "sweeprun" / "ws"


@contextlib.contextmanager
def acquire(
    common_dir: str,
    repo_root: str,
    commit: str,
    base_tree: str = "",
    files: dict[str, bytes] | None = None,
    fast: bool = True,
) -> Iterator[Path]:
    """Yield a clean worktree checked out (detached) at ``commit``; release it after.

    ``base_tree`` and ``files`` describe ``commit`` as "this tree plus these files"
    (a queued experiment: the workspace snapshot plus its params files). When the slot
    last held a sibling of it, switching is done in-process — see
    :func:`sweeprun.store.fastgit.switch`.
    """
    base = pool_dir(common_dir)
    damage.ensure_dir(base, base.parent)
    for i in itertools.count():
        if i >= MAX_SLOTS:
            raise RuntimeError(f"no free workspace slot in {base}")
        lock = damage.open_lock(base / f"w{i}.lock", base.parent)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            damage.close(lock)
            continue
        if _awaits_adoption(base / f"w{i}.pid", common_dir):
            fcntl.flock(lock, fcntl.LOCK_UN)
            damage.close(lock)
            continue
        break
    ws = base / f"w{i}"
    state = base / f"w{i}.json"
    try:
        if os.path.lexists(ws) and (ws.is_symlink() or not ws.is_dir()):
            # Nothing is checked out, cleaned or switched through a link (it could lead
            # anywhere): the slot is made anew.
            damage.set_aside(ws, base.parent, "is not a workspace directory")
            state.unlink(missing_ok=True)
        switched = (
            base_tree
            and files
            and (ws / ".git").is_file()
            and fastgit.switch(ws, _worktree_git_dir(ws), state, commit, base_tree, files)
        )
        if not switched:
            _checkout(ws, common_dir, repo_root, commit, fast)
            fastgit.remember_checkout(_worktree_git_dir(ws), state, base_tree, files or {})
        yield ws
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        damage.close(lock)


@contextlib.contextmanager
def admin_lock(common_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Serialise changes to the registry of worktrees (``.git/worktrees``).

    ``git worktree add`` reads every registered sibling and fails ("failed to read
    .git/worktrees/wN/commondir") when another ``add`` has half-written one; ``git
    worktree prune`` may drop a registration that is being created. Both are rare (a
    slot is created once), so one pool-wide lock, held across processes, costs nothing.
    """
    base = pool_dir(common_dir)
    with damage.held(base / "admin.lock", base.parent):
        yield


def pid_file(ws: Path) -> Path:
    """Where the job holding slot ``ws`` names its running command: ``KEY PGID START``."""
    return ws.parent / f"{ws.name}.pid"


def _awaits_adoption(pidfile: Path, common_dir: str | os.PathLike[str]) -> bool:
    """Whether the slot holds a finished command of a runner that died before recording
    it (``KEY exit RC STAGE CLAIM``, the claim's runner gone, the experiment still in
    ``running/``): the slot is left as it is for the runner that adopts the result."""
    try:
        words = pidfile.read_text().split()
    except (OSError, UnicodeDecodeError):
        return False
    if len(words) != 5 or words[1] != "exit":
        return False
    runner = words[4].partition(".")[0]
    if not runner.isdigit() or int(runner) == os.getpid():
        return False  # this runner's own: it records it itself
    if not procs.gone(int(runner)):
        return False  # alive: it records it (or noted the result in its journal)
    ref = RUNNING + words[0]
    # Rare (a slot whose last command was a dead runner's): a git call is affordable.
    return bool(run_git(["rev-parse", "--verify", "-q", ref], common_dir, check=False).strip())


def in_place_pid_file(common_dir: str | os.PathLike[str]) -> Path:
    """The pid file of a job running in the user's own work tree (``sweeprun run``)."""
    base = pool_dir(common_dir)
    damage.ensure_dir(base, base.parent)
    return base / "here.pid"


def write_pid(path: Path, text: str) -> None:
    """Overwrite a slot's pid file in place (an empty ``text`` clears it).

    One file per slot, rewritten rather than created and deleted per command.
    """
    gitobjects.overwrite(path, text.encode())


def running_command(common_dir: str | os.PathLike[str], key: str) -> ProcessRef | None:
    """The leader of experiment ``key``'s running command (pid and start time), if a
    slot names one. Signal it only through :meth:`ProcessRef.signal_group`, which checks
    that the pid still names that process."""
    base = pool_dir(common_dir)
    if not base.is_dir():
        return None
    for path in [*base.glob("w*.pid"), base / "here.pid"]:
        try:
            found, _, rest = path.read_text().partition(" ")
        except (OSError, UnicodeDecodeError):
            continue
        if found == key:  # empty: that slot runs no command now
            return ProcessRef.parse(rest)
    return None


def kill_leftovers(common_dir: str | os.PathLike[str], key: str) -> None:
    """Kill what a dead runner left running of experiment ``key``: its command's process
    group (only if the pid still names that command) and whatever of its tree left the
    group or outlived the command (found by the job's environment token)."""
    proc = running_command(common_dir, key)
    if proc is not None:
        proc.signal_group(signal.SIGKILL)
    procs.signal_token(procs.job_token(key, common_dir), signal.SIGKILL)


def find_outcome(
    common_dir: str | os.PathLike[str], key: str, claim: str
) -> tuple[Path, int, int] | None:
    """The slot where experiment ``key``'s command exited under claim ``claim``, with the
    exit status and stage index it left (``KEY exit RC STAGE CLAIM``), if any."""
    base = pool_dir(common_dir)
    for path in base.glob("w*.pid") if base.is_dir() else ():
        try:
            words = path.read_text().split()
        except (OSError, UnicodeDecodeError):
            continue
        if len(words) == 5 and words[:2] == [key, "exit"] and words[4] == claim:
            with contextlib.suppress(ValueError):
                return base / path.stem, int(words[2]), int(words[3])
    return None


@contextlib.contextmanager
def hold(ws: Path) -> Iterator[bool]:
    """Take slot ``ws`` as it is (no checkout, nothing cleaned); ``False`` if it is busy."""
    lock = damage.open_lock(ws.parent / f"{ws.name}.lock", ws.parent.parent)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        damage.close(lock)


def clean(ws: Path, fast: bool = True) -> None:
    """Remove everything the index does not track, like ``git clean -ffdx`` (found
    in-process on the fast path: a process less per experiment)."""
    found = fastgit.untracked_outputs(ws, _worktree_git_dir(ws)) if fast else None
    if found is None:
        run_git(["clean", "-ffdxq"], ws)
        return
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _worktree_git_dir(ws: Path) -> Path:
    text = (ws / ".git").read_text().strip()
    if not text.startswith("gitdir:"):
        raise RuntimeError(f"{ws}: not a linked worktree")
    return Path(text.split(":", 1)[1].strip())


def forget(ws: Path) -> None:
    """Make the next use of this slot a real checkout (its index no longer tells the truth)."""
    (ws.parent / f"{ws.name}.json").unlink(missing_ok=True)


def _checkout(ws: Path, common_dir: str, repo_root: str, commit: str, fast: bool) -> None:
    if (ws / ".git").is_file():
        try:
            # Outputs of the previous experiment (ignored or not) must not leak.
            clean(ws, fast)
            run_git(["checkout", "-q", "-f", "--detach", commit], ws)
            return
        except Exception:
            pass  # a damaged slot: rebuild it below
    if ws.exists():
        shutil.rmtree(ws, ignore_errors=True)
    # No `git worktree prune` here (gc prunes); `-f` takes over a stale registration.
    with admin_lock(common_dir):
        run_git(["worktree", "add", "-q", "-f", "--detach", str(ws), commit], repo_root)


def stale_slots(common_dir: str | os.PathLike[str], held: contextlib.ExitStack) -> list[Reapable]:
    """Pooled workspaces no runner holds, for ``gc``. Each slot's lock is taken and kept
    in ``held`` until the slot is gone, so no runner takes it meanwhile."""
    base = pool_dir(common_dir)
    out = []
    for lock in sorted(base.glob("w*.lock")) if base.is_dir() else ():
        f = held.enter_context(open(lock, "a+"))  # noqa: SIM115 (closed by ``held``)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        slot = lock.with_suffix("")
        out.append(Reapable(f"workspace {slot.name}", size_of(slot), partial(_drop_slot, slot)))
    return out


def _drop_slot(slot: Path) -> None:
    if slot.is_symlink() or (os.path.lexists(slot) and not slot.is_dir()):
        slot.unlink()  # the link itself: never what it leads to
    else:
        shutil.rmtree(slot, ignore_errors=True)
    # The .lock file stays: a runner may have it open, waiting for gc's flock.
    for suffix in (".json", ".index", ".pid"):
        slot.with_suffix(suffix).unlink(missing_ok=True)


def prune(common_dir: str | os.PathLike[str], repo_root: str | os.PathLike[str]) -> None:
    """Drop git's registrations of worktrees that are gone (after ``gc`` removed slots)."""
    with admin_lock(common_dir):
        run_git(["worktree", "prune"], repo_root, check=False)
