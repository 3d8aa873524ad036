"""Files sweeprun itself wrote into the work tree (``plots -o``, ``report -o``): never
snapshotted into experiments.

They are listed, one repository-relative path a line (a directory ends with ``/``), in
``.git/sweeprun/written``; every workspace snapshot treats them as ignored. A file the user
has since committed is part of ``HEAD`` and stays in every tree, as any tracked file does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from sweeprun.store.git import RepoPaths

NAME = "written"


def note(repo: RepoPaths, paths: Iterable[Path]) -> None:
    """Remember ``paths`` (absolute) that lie inside the work tree."""
    root = repo.root.resolve()
    new = []
    for path in paths:
        try:
            rel = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue  # outside the work tree: no snapshot sees it
        new.append(rel + ("/" if path.is_dir() else ""))
    known = written(repo)
    new = [p for p in new if p not in known]
    if not new:
        return
    repo.state_dir.mkdir(parents=True, exist_ok=True)
    with open(repo.state_dir / NAME, "a", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in new))


def written(repo: RepoPaths) -> list[str]:
    """The paths :func:`note` remembered (an unreadable list reads as empty)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = (repo.state_dir / NAME).read_text(encoding="utf-8")
        return [p for p in text.splitlines() if p and not p.startswith("#")]
    return []


def excludes(repo: RepoPaths) -> list[str]:
    """The remembered paths that still exist, as snapshot exclusions."""
    root = repo.root
    return [p.rstrip("/") for p in written(repo) if os.path.lexists(root / p.rstrip("/"))]
