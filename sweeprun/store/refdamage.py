"""Queue and running refs that can never run are set aside, with one warning each.

A queue ref that points to a blob, to a commit without a queue record, or a loose ref file
holding no object name at all (git skips it with a warning of its own) would otherwise sit
in the queue forever: never run, never counted, never said. Each is moved to
``.git/sweeprun/corrupt/`` (a file naming the ref and what it held) and deleted from the
queue, as other damaged private state is (:mod:`sweeprun.system.damage`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from sweeprun.store.git import ZERO, RefConflict, RefOp, RefUpdater, RepoPaths
from sweeprun.system import damage
from sweeprun.system.damage import corrupt_dir

_SHA = re.compile(rb"[0-9a-f]{40}([0-9a-f]{24})?\n?")


def loose_broken(
    repo: RepoPaths, namespaces: Iterable[str], listed: set[str]
) -> list[tuple[str, Path]]:
    """Loose ref files under ``namespaces`` that hold no object name: ``(ref, file)``.

    Only files git did not list (``listed``: the refs its last read returned) are opened —
    a queue of 100,000 costs a directory walk, not 100,000 reads; one created since that
    read holds an object name and is left alone.
    """
    found = []
    for ns in namespaces:
        base = repo.common_dir / ns.rstrip("/")
        if not base.is_dir():
            continue
        for dirpath, _, files in os.walk(base):
            for name in files:
                path = Path(dirpath) / name
                ref = path.relative_to(repo.common_dir).as_posix()
                if name.endswith(".lock") or ref in listed:
                    continue  # a ref being written (git's own, short-lived), or a sound one
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if data.startswith(b"ref: ") or _SHA.fullmatch(data):
                    continue
                found.append((ref, path))
    return found


def set_aside(
    repo: RepoPaths,
    updater: RefUpdater,
    unreadable: Iterable[tuple[str, str, str]],
    namespaces: Iterable[str],
    listed: set[str],
) -> list[str]:
    """Set aside ``unreadable`` refs ``(ref, object, why)`` and broken loose ref files
    under ``namespaces``; return the ref names set aside."""
    done = []
    dest = corrupt_dir(repo.state_dir)
    for ref, sha, why in unreadable:
        note = _note(dest, ref, f"{ref} {sha}\n")
        with contextlib.suppress(RefConflict):
            updater.transaction([RefOp(ref, ZERO, sha)])
            _warn(ref, why, note)
            done.append(ref)
    for ref, path in loose_broken(repo, namespaces, listed):
        # The file itself is the damaged thing: moved aside as other private damage is.
        why = "is a broken ref file (no object name): it can never run"
        if damage.set_aside(path, repo.state_dir, why) is not None:
            done.append(ref)
    return done


def _note(dest: Path, ref: str, text: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{ref.replace('/', '%')}-{time.time_ns()}"
    path.write_text(text)
    return path


def _warn(ref: str, why: str, where: Path) -> None:
    print(
        f"sweeprun: warning: {ref} {why}: it can never run; set aside as {where}", file=sys.stderr
    )
