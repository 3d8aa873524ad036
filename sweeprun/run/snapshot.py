"""Recording a workspace as a result commit: in-process where git would add nothing
but what we can see, with ``git add`` and friends otherwise.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun.run import workspace
from sweeprun.run.pipeline import committed_results
from sweeprun.store import objects as gitobjects
from sweeprun.store.git import run_git
from sweeprun.system.paths import guarded

if TYPE_CHECKING:
    from sweeprun.run.executor import Job


def add_all(ws: Path, job: Job) -> None:
    """``git add -A`` in the workspace, with the cached outs treated as ignored, and the
    declared results added even where git ignores them.

    Outs go to the cache, never into git. Naming them as ``:(exclude)`` pathspecs makes
    git fail when the user's .gitignore lists them too, so they go into an excludes file
    of this worktree instead (the user's own .gitignore files still apply). Metrics,
    plots, uncached outs and the lock file are the result: a ``reports/*`` line in
    ``.gitignore`` must not lose them, so they are force-added.
    """
    outs = [o.path for s in job.stages for o in s.outs if o.cache]
    args = ["add", "-A", "--", "."]
    if outs:
        excludes = workspace.worktree_git_dir(ws) / "sweeprun-excludes"
        text = "".join(f"/{p}\n" for p in outs)
        if not excludes.is_file() or excludes.read_text() != text:
            excludes.write_text(text)
        args = ["-c", f"core.excludesFile={excludes}", *args]
    run_git(args, ws)
    force_add_results(ws, committed_results(job.stages), workspace.worktree_git_dir(ws) / "index")


def force_add_results(
    ws: Path, results: list[str], index: Path, env: dict[str, str] | None = None
) -> None:
    """``git add -f`` the declared results that exist but are not staged (ignored ones)."""
    present = [p for p in results if (ws / p).is_file()]
    if not present:
        return
    entries = gitobjects.read_index(index)
    staged = {e.path for e in entries} if entries is not None else set()
    missing = [p for p in present if os.fsencode(p) not in staged]
    if missing:
        run_git(["add", "-f", "--", *missing], ws, env=env)


FAST_ADD_MAX_ENTRIES = 2000


def fast_entries(ws: Path, job: Job) -> list[gitobjects.IndexEntry] | None:
    """What ``git add -A`` would stage, computed in-process — or ``None`` to let git do it.

    Only when nothing needs git's judgement: no attributes or filters (checked by the
    runner), no symlinks or submodules, and every file that is not tracked is one of the
    experiment's declared, not-ignored results (metrics, plots, the lock file). Anything
    else — a stray ``__pycache__``, an unknown new file — goes to ``git add -A``.
    """
    if not job.allowed_new:
        return None
    gd = workspace.worktree_git_dir(ws)
    index = gd / "index"
    entries = gitobjects.read_index(index)
    if entries is None or len(entries) > FAST_ADD_MAX_ENTRIES:
        return None
    if any(
        e.mode not in (0o100644, 0o100755) or e.path.endswith(b".gitattributes") for e in entries
    ):
        return None
    racy = index.stat().st_mtime_ns
    by_path = {e.path: e for e in entries}
    allowed = {p.encode() for p in job.allowed_new}
    outs = [o.path.encode() for s in job.stages for o in s.outs if o.cache]
    objects = Path(job.common_dir) / "objects"
    out: list[gitobjects.IndexEntry] = []
    seen = 0
    changed = False
    for full in gitobjects.walk_files(ws):
        rel = os.fsencode(os.path.relpath(full, ws))
        if any(rel == o or rel.startswith(o + b"/") for o in outs):
            continue
        st = os.lstat(full)
        if not stat.S_ISREG(st.st_mode):
            return None
        mode = 0o100755 if st.st_mode & 0o100 else 0o100644
        old = by_path.get(rel)
        if old is None and rel not in allowed:
            return None
        if old is not None:
            seen += 1
            s = old.stat
            if (
                old.mode == mode
                and s[9] == st.st_size & 0xFFFFFFFF
                and s[5] == st.st_ino & 0xFFFFFFFF
                and s[2] * 10**9 + s[3] == st.st_mtime_ns
                and st.st_mtime_ns < racy
            ):
                out.append(old)
                continue
        content = Path(full).read_bytes()
        sha = gitobjects.write_object(objects, "blob", content)
        if old is not None and (sha != old.sha or mode != old.mode):
            changed = True
        out.append(gitobjects.IndexEntry(rel, mode, sha))
    if changed or seen != len(by_path):
        # A tracked file changed or went away: the index no longer tells the next
        # experiment's fast switch what to restore, so that slot must check out for real.
        workspace.forget(ws)
    return out


def commit_result(
    ws: Path,
    job: Job,
    meta: dict[str, Any],
    parent: str = "",
    extra: dict[str, bytes] | None = None,
) -> str:
    """Record the workspace as a commit (parent: the baseline, or the last checkpoint).

    ``extra`` files (``sweeprun.lock``) join the commit as they would if written into the
    workspace first; on the in-process path they go straight into the object store, so
    the workspace stays as the command left it and the next experiment has less to undo.
    """
    from sweeprun.store.records import format_message

    subject = f"sweeprun: {meta['state']} {job.name} {job.exp_id}"
    message = format_message(subject, meta)
    extra = extra or {}
    if job.fast_objects and job.author and job.committer:
        objects = Path(job.common_dir) / "objects"
        entries = fast_entries(ws, job)
        if entries is not None:
            # Only what git would add: declared results that no .gitignore rule excludes.
            virtual = {p.encode(): data for p, data in extra.items() if p in job.allowed_new}
            entries = [e for e in entries if e.path not in virtual]
            for path, data in virtual.items():
                blob = gitobjects.write_object(objects, "blob", data)
                entries.append(gitobjects.IndexEntry(path, 0o100644, blob))
        else:
            write_files(ws, extra)
            add_all(ws, job)
            entries = gitobjects.read_index(workspace.worktree_git_dir(ws) / "index")
        if entries is not None:
            tree = gitobjects.write_tree(objects, entries)
            return gitobjects.write_commit(
                objects,
                tree,
                [parent or job.baseline],
                gitobjects.format_ident(job.author),
                gitobjects.format_ident(job.committer),
                message,
            )
    # The general path: write-tree + commit-tree (parent: the baseline) runs none of the
    # user's hooks and leaves the worktree's HEAD alone.
    write_files(ws, extra)
    add_all(ws, job)
    tree = run_git(["write-tree"], ws).strip()
    return run_git(
        ["commit-tree", tree, "-p", parent or job.baseline],
        ws,
        input=message,
        env=dict(job.env),  # carries the commit identity when git has none configured
    ).strip()


def write_files(ws: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        guarded(ws, rel).write_bytes(data)


def commit_tree(ws: Path, job: Job, message: str, parent: str) -> str:
    """Commit the workspace as it is (cached outs excluded) with ``parent``."""
    add_all(ws, job)
    tree = run_git(["write-tree"], ws).strip()
    return run_git(
        ["commit-tree", tree, "-p", parent], ws, input=message, env=dict(job.env)
    ).strip()
