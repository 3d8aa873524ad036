"""``sweeprun apply``: bring an experiment's files and cached outs into the workspace.

Everything is planned and checked first (paths, cache objects); the workspace's state is
always saved in a stash with a ``before`` record, so ``apply --undo`` restores exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sweeprun._core.exitcode import ExitCode
from sweeprun.commands.results import resolve
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import CheckpointRecord, Record
from sweeprun.run.publisher import set_workspace_checkpoint
from sweeprun.spec.dag import LOCK_FILE
from sweeprun.spec.hydra import RUN_OVERRIDES
from sweeprun.store.cache import Cache, CacheObjectError
from sweeprun.store.files import remove
from sweeprun.store.git import run_git
from sweeprun.store.records import ExpStore
from sweeprun.store.tiered import configured_remote, fetch_missing
from sweeprun.system.paths import guarded, guarded_entry

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry

#: Where ``apply`` of a Hydra app's experiment writes its overrides (in the app's wdir).
OVERRIDES_FILE = "hydra-overrides.txt"
#: How a stash records an ignored symlink that apply replaces.
LINK = "link:"


def _remember_checkpoint(store: ExpStore, rec: Record) -> None:
    """The workspace now holds this checkpoint (or this result's last one): the next
    ``sweeprun run`` continues from it (see ``run.publisher``)."""
    sha = ""
    if isinstance(rec.data, CheckpointRecord):
        sha = rec.commit
    elif rec.result is not None and rec.result.checkpoints:
        sha = run_git(["rev-parse", "-q", "--verify", f"{rec.commit}^1"], store.cwd).strip()
    set_workspace_checkpoint(store, sha)


def _tree_files(store: ExpStore, commit: str) -> set[str]:
    out = run_git(["ls-tree", "-r", "-z", "--name-only", commit], store.cwd)
    return {p for p in out.split("\0") if p}


def _lock_outs(store: ExpStore, commit: str) -> dict[str, str]:
    """The cached outs (path → digest) a result's ``sweeprun.lock`` names."""

    text = run_git(["show", f"{commit}:{LOCK_FILE}"], store.cwd, check=False)
    try:
        lock = json.loads(text) if text else {}
    except ValueError:
        return {}
    outs: dict[str, str] = dict(lock.get("checkpoint_outs", {}))
    for stage in lock.get("stages", {}).values():
        outs.update(stage.get("outs", {}))
    return outs


def _plan(store: ExpStore, commit: str, cache: Cache) -> tuple[set[str], dict[str, str]]:
    """What applying ``commit`` writes: its files and its cached outs, all checked first
    (paths inside the repository, cache objects present and intact), so that a refusal
    changes nothing."""
    root = store.repo.root
    files = _tree_files(store, commit)
    outs = {p: d for p, d in _lock_outs(store, commit).items() if p not in files}
    for path in sorted(files):
        guarded_entry(root, path)  # git replaces what is there (a link too), never through it
    for path in sorted(outs):
        guarded(root, path)
    # Outs computed on other machines (git-only workers) are in the cache remote.
    fetch_missing(cache, configured_remote(store.cwd), outs.values())
    problems = []
    for path, digest in sorted(outs.items()):
        try:
            for d in cache.manifest(digest).values() if digest.endswith(".dir") else [digest]:
                cache.check(d)
        except CacheObjectError as exc:
            problems.append(f"{path}: {exc}")
    if problems:
        raise UsageError(
            "apply: nothing changed, some outputs cannot be restored: "
            + "; ".join(problems)
            + " (sweeprun pull --cache-remote DIR brings objects from another cache)"
        )
    return files, outs


def stash_workspace(store: ExpStore, paths: set[str], cache: Cache) -> tuple[str, bool]:
    """Save the workspace before ``apply`` changes ``paths``; return (commit, was dirty).

    The commit (``refs/sweeprun/stash``) holds the workspace snapshot (tracked changes
    and untracked files); its record says, for every other path ``apply`` writes, what
    was there: nothing (``None``: undo removes it), or an ignored file the snapshot cannot
    hold (an out, an ignored result) as a cache digest. That is what ``apply --undo``
    needs to put back exactly what was there, and to remove what was not.
    """
    root = store.repo.root
    status = run_git(["status", "--porcelain", "--untracked-files=all"], store.cwd)
    head = store.head()
    tree = store.snapshot_workspace()
    snapshot = _tree_files(store, tree)
    before: dict[str, str | None] = {}
    for path in sorted(paths):
        full = root / path
        if path in snapshot:
            continue  # ``git restore`` from the snapshot brings it back
        if full.is_symlink():
            before[path] = LINK + os.readlink(full)
        elif full.exists():
            before[path] = cache.save(full)  # ignored: the snapshot cannot hold it
        else:
            before[path] = None  # apply creates it: undo removes it
    previous = store.stash()
    meta = {"kind": "stash", "previous": previous or None, "at": time.time(), "before": before}
    commit = run_git(
        ["commit-tree", tree, "-p", head],
        store.cwd,
        input=f"sweeprun: stash before apply\n\n{json.dumps(meta)}\n",
    ).strip()
    store.set_stash(commit, previous)
    return commit, bool(status.strip())


def restore_tree(store: ExpStore, commit: str, cache: Cache, outs: dict[str, str]) -> None:
    """Make the workspace's files those of ``commit`` (HEAD and index untouched), outs too."""
    run_git(["restore", f"--source={commit}", "--worktree", "--", ":/"], store.cwd)
    for path, digest in outs.items():
        cache.checkout(digest, guarded(store.repo.root, path))


def undo_apply(store: ExpStore, stash: str, cache: Cache) -> tuple[int, int]:
    """Put the workspace back as the stash recorded it; (files restored, files removed)."""
    root = store.repo.root
    try:  # older stashes have no "before": then only the snapshot is put back
        meta = json.loads(run_git(["log", "-1", "--format=%b", stash], store.cwd))
    except ValueError:
        meta = {}
    before: dict[str, str | None] = meta.get("before", {}) if isinstance(meta, dict) else {}
    for path in before:
        # A link that apply made is removed itself: only the way to it must be inside.
        if (root / path).is_symlink():
            guarded_entry(root, path)
        else:
            guarded(root, path)
    run_git(["restore", f"--source={stash}", "--worktree", "--", ":/"], store.cwd)
    removed = 0
    for path, saved in before.items():
        target = root / path
        if saved is None:
            if target.exists() or target.is_symlink():
                remove(target)
                removed += 1
        elif saved.startswith(LINK):
            remove(target)
            os.symlink(saved[len(LINK) :], target)
        else:
            if target.is_symlink():
                remove(target)  # the link, never written through
            cache.checkout(saved, target)
    return sum(1 for saved in before.values() if saved is not None), removed


def hydra_rerun(rec: Record) -> tuple[str, list[str], str] | None:
    """A Hydra app's experiment: (overrides file, its overrides, the command that reruns
    it in the workspace); ``None`` for any other experiment."""
    data = rec.data
    if not data.hydra_app:
        return None
    for stage in data.stages:
        head, sep, _ = stage.cmd.partition(" ${hydra.override.0}")
        if sep:
            # The words the app got, in their order, less sweeprun's own run directory.
            given = dict(stage.values)
            words = [
                given[f"hydra.override.{i}"]
                for i in range(len(given))
                if f"hydra.override.{i}" in given
            ]
            words = [w for w in words if w not in RUN_OVERRIDES]
            cd = f"cd {shlex.quote(stage.wdir)} && " if stage.wdir not in ("", ".") else ""
            path = posixpath.normpath(posixpath.join(stage.wdir, OVERRIDES_FILE))
            return path, words, cd + " ".join([head, *map(shlex.quote, words)])
    return None


def _apply(config: Config) -> int:
    store = ExpStore(config.repo)
    cache = Cache.for_repo(store.repo.common_dir)
    out = config.stdout
    try:
        if config.getoption("undo"):
            stash = store.stash()
            if not stash:
                raise UsageError("apply --undo: nothing to undo (no saved workspace)")
            restored, removed = undo_apply(store, stash, cache)
            out.write(
                f"restored the workspace saved before apply ({stash[:7]}): "
                f"your files as they were, {restored} ignored file(s) among them"
                + (f"; removed {removed} file(s) apply had added" if removed else "")
                + "\n"
            )
            return ExitCode.OK
        name = config.getoption("name")
        if not name:
            raise UsageError("apply: name an experiment (or use --undo)")
        (rec,) = resolve(store, [name])
        files, outs = _plan(store, rec.commit, cache)
        rerun = hydra_rerun(rec)
        written = {rerun[0]} if rerun else set()
        saved, dirty = stash_workspace(store, files | set(outs) | written, cache)
        restore_tree(store, rec.commit, cache, outs)
        _remember_checkpoint(store, rec)
        if dirty:
            out.write(
                f"saved your uncommitted work ({saved[:7]}): "
                "'sweeprun apply --undo' brings it back\n"
            )
        out.write(f"applied {rec.name} ({rec.state}, {rec.commit[:7]})\n")
        if rerun:
            path, words, cmd = rerun
            # A Hydra app's point lives in its overrides, not in a file apply could restore.
            Path(store.cwd, path).write_text("".join(w + "\n" for w in words), encoding="utf-8")
            out.write(
                f"its Hydra overrides are in {path} (one per line; 'apply --undo' removes "
                f"it); rerun it with:\n  {cmd}\n"
            )
        return ExitCode.OK
    finally:
        store.close()


def _apply_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="experiment name, id prefix, ref or name@step")
    p.add_argument("--undo", action="store_true", help="restore the work saved by apply")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun apply``."""
    commands.add(
        "apply",
        "bring an experiment's files and outs into the workspace",
        _apply_args,
        _apply,
        examples=(
            "sweeprun apply best                    # its files and outs in your workspace",
            "sweeprun apply best@3                  # its checkpoint 3",
            "sweeprun apply --undo                  # your work as it was before",
        ),
    )
