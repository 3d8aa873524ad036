"""Recording a workspace as a result commit: in-process where git would add nothing
but what we can see, with ``git add`` and friends otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweeprun.model import Result, Stage, format_message, parse_message, parse_record
from sweeprun.run import workspace
from sweeprun.spec.dag import committed_results
from sweeprun.store import fastgit, written
from sweeprun.store import objects as gitobjects
from sweeprun.store.git import RepoPaths, run_git
from sweeprun.store.snapshots import force_add_results, snapshot_tree
from sweeprun.system.paths import guarded

if TYPE_CHECKING:
    from sweeprun.run.task import Task


def add_all(ws: Path, task: Task) -> None:
    """``git add -A`` in the workspace, with the cached outs treated as ignored, and the
    declared results added even where git ignores them.

    Outs go to the cache, never into git. Naming them as ``:(exclude)`` pathspecs makes
    git fail when the user's .gitignore lists them too, so they go into an excludes file
    of this worktree instead (the user's own .gitignore files still apply). Metrics,
    plots, uncached outs and the lock file are the result: a ``reports/*`` line in
    ``.gitignore`` must not lose them, so they are force-added.
    """
    outs = [o.path for s in task.stages for o in s.outs if o.cache]
    args = ["add", "-A", "--", "."]
    if outs:
        excludes = workspace.worktree_git_dir(ws) / "sweeprun-excludes"
        text = "".join(f"/{p}\n" for p in outs)
        if not excludes.is_file() or excludes.read_text() != text:
            excludes.write_text(text)
        args = ["-c", f"core.excludesFile={excludes}", *args]
    run_git(args, ws)
    force_add_results(ws, committed_results(task.stages), workspace.worktree_git_dir(ws) / "index")


def commit_result(
    ws: Path,
    task: Task,
    result: Result,
    parent: str = "",
    extra: dict[str, bytes] | None = None,
) -> str:
    """Record the workspace as the result's commit (parent: the baseline, or the last
    checkpoint); see :func:`commit_workspace`."""
    message = format_message(f"sweeprun: {result.state} {task.name} {task.exp_id}", result)
    return commit_workspace(ws, task, message, parent, extra)


def commit_workspace(
    ws: Path,
    task: Task,
    message: str,
    parent: str = "",
    extra: dict[str, bytes] | None = None,
) -> str:
    """Record a pooled workspace as a commit with ``message`` (parent: ``parent``, else
    the baseline): a result, or a checkpoint while the command runs.

    ``extra`` files (``sweeprun.lock``) join the commit as they would if written into the
    workspace first; on the in-process path they go straight into the object store, so
    the workspace stays as the command left it and the next experiment has less to undo.
    """
    extra = extra or {}
    setup = task.job.setup
    if setup.fast_objects and setup.author and setup.committer:
        objects_dir = Path(task.common_dir) / "objects"
        git_dir = workspace.worktree_git_dir(ws)
        outs = [o.path for s in task.stages for o in s.outs if o.cache]
        entries, stale = fastgit.staged_entries(ws, git_dir, objects_dir, task.allowed_new, outs)
        if stale:
            workspace.forget(ws)  # the next experiment in this slot checks out for real
        if entries is not None:
            # Only what git would add: declared results that no .gitignore rule excludes.
            extra = {p: data for p, data in extra.items() if p in task.allowed_new}
        else:
            write_files(ws, extra)
            add_all(ws, task)
            entries, extra = gitobjects.read_index(git_dir / "index"), {}
        if entries is not None:
            parents = [parent or task.baseline]
            return fastgit.commit_entries(
                objects_dir, entries, extra, parents, setup.author, setup.committer, message
            )
    # The general path: write-tree + commit-tree (parent: the baseline) runs none of the
    # user's hooks and leaves the worktree's HEAD alone.
    write_files(ws, extra)
    add_all(ws, task)
    tree = run_git(["write-tree"], ws).strip()
    return run_git(
        ["commit-tree", tree, "-p", parent or task.baseline],
        ws,
        input=message,
        env=dict(task.job.env),  # carries the commit identity when git has none configured
    ).strip()


def write_files(ws: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (path → bytes) into the workspace, each path checked first."""
    for rel, data in files.items():
        guarded(ws, rel).write_bytes(data)


def commit_tree(ws: Path, task: Task, message: str, parent: str, extra: dict[str, bytes]) -> str:
    """Commit the workspace as it is (cached outs excluded) with ``parent`` and ``extra``
    files: a checkpoint, in-process where a result would be (a few ms, not three git
    processes: a trial checkpointing every step waits for each)."""
    if not task.job.in_place:
        return commit_workspace(ws, task, message, parent, extra)
    write_files(ws, extra)
    tree = _in_place_tree(task)
    return run_git(
        ["commit-tree", tree, "-p", parent], ws, input=message, env=dict(task.job.env)
    ).strip()


def commit_in_place(task: Task, result: Result, parent: str, extra: dict[str, bytes]) -> str:
    """Record the user's work tree as it is after a ``sweeprun run`` (parent: the baseline,
    or the last checkpoint) without touching its index or ``HEAD``.

    The lock file is written where the user sees it and cached outs are added to
    ``.gitignore`` (so that they never enter git), as ``dvc exp run`` does.
    """
    root = Path(task.repo_root)
    write_files(root, extra)
    gitignore_outs(root, task.stages)
    tree = _in_place_tree(task)
    message = format_message(f"sweeprun: {result.state} {task.name} (workspace run)", result)
    return run_git(
        ["commit-tree", tree, "-p", parent or task.baseline],
        root,
        input=message,
        env=dict(task.job.env),
    ).strip()


def _in_place_tree(task: Task) -> str:
    """The user's work tree as a tree, through a scratch index (theirs is not touched);
    cached outs are in ``.gitignore`` by then (see :func:`gitignore_outs`)."""
    root = Path(task.repo_root)
    index = run_git(["rev-parse", "--path-format=absolute", "--git-path", "index"], root)
    repo = RepoPaths(root, Path(index.strip()).parent, Path(task.common_dir))
    own = written.excludes(repo)  # sweeprun's plots and reports are not results
    return snapshot_tree(root, committed_results(task.stages), Path(index.strip()), own)


def gitignore_text(root: Path, stages: Sequence[Stage]) -> str | None:
    """The ``.gitignore`` that :func:`gitignore_outs` would write (``None``: no change)."""
    ignore = guarded(root, ".gitignore")
    text = ignore.read_text() if ignore.exists() else ""
    lines = set(text.splitlines())
    new = [f"/{o.path}" for s in stages for o in s.outs if o.cache and f"/{o.path}" not in lines]
    if new:
        # What a pattern already ignores (`data/*`) gets no line of its own.
        paths = "".join(n[1:].rstrip("/") + "\n" for n in new)
        out = run_git(["check-ignore", "--no-index", "--stdin"], root, input=paths, check=False)
        ignored = {"/" + p for p in out.splitlines()}
        new = [n for n in new if n.rstrip("/") not in ignored]
    if not new:
        return None
    sep = "" if not text or text.endswith("\n") else "\n"
    return text + sep + "\n".join(new) + "\n"


def gitignore_outs(root: Path, stages: Sequence[Stage]) -> None:
    """Add cached outs to ``.gitignore`` so they never enter git objects."""
    text = gitignore_text(root, stages)
    if text is not None:
        guarded(root, ".gitignore").write_text(text)


def read_result(git_dir: str | os.PathLike[str], commit: str) -> Result | None:
    """The result record of ``commit``'s message, or ``None``."""
    body = run_git(["log", "-1", "--format=%B", commit], git_dir, check=False)
    meta = parse_message(body)
    result = parse_record(meta) if meta is not None else None
    return result if isinstance(result, Result) else None
