"""Working with results: ``apply``, ``branch``, ``rename``, ``remove`` and name resolution.

Every command resolves its arguments first and fails as a whole — one unknown name and
nothing is changed; ref changes are single compare-and-swap transactions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING

from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import EXPS, FAILED_STATES, CheckpointRecord, Record, parse_record
from sweeprun.run.publisher import WORKSPACE_CHECKPOINT
from sweeprun.store.cache import Cache, CacheObjectError, remove
from sweeprun.store.git import ZERO, RefConflict, RefOp, run_git
from sweeprun.store.records import ExpStore
from sweeprun.system.paths import guarded

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry

STASH_REF = "refs/sweeprun/stash"
#: How a stash records an ignored symlink that apply replaces.
LINK = "link:"


def resolve(store: ExpStore, names: list[str], records: list[Record] | None = None) -> list[Record]:
    """Records for names, ``name@step`` checkpoints, key or commit prefixes, or full refs.

    Names of the current baseline win over other baselines. Unknown or ambiguous names
    raise a ``UsageError`` naming every problem at once.
    """
    records = store.records() if records is None else records
    head = store.head()
    out: list[Record] = []
    problems = []
    for name in names:
        base, _, step = name.partition("@")
        matches = [r for r in records if name == r.ref or base == r.name]
        if len({r.baseline for r in matches}) > 1:
            matches = [r for r in matches if r.baseline == head] or matches
        if not matches and len(name) >= 4:
            matches = [r for r in records if r.key.startswith(name) or r.commit.startswith(name)]
        if len(matches) == 1 and step:
            ckpt = checkpoint_commit(store, matches[0], step)
            if ckpt is None:
                problems.append(f"{name!r}: no checkpoint {step}")
                continue
            matches = [ckpt]
        if not matches:
            problems.append(f"{name!r}: no such experiment")
        elif len(matches) > 1:
            problems.append(
                f"{name!r} is ambiguous: "
                + ", ".join(f"{r.name} ({r.baseline[:7]})" for r in matches[:5])
            )
        else:
            out.append(matches[0])
    if problems:
        raise UsageError("; ".join(problems) + " (see 'sweeprun show')")
    return out


def _remember_checkpoint(store: ExpStore, rec: Record) -> None:
    """The workspace now holds this checkpoint (or this result's last one): the next
    ``sweeprun run`` continues from it (see ``run.publisher``)."""
    marker = store.repo.state_dir / WORKSPACE_CHECKPOINT
    sha = ""
    if isinstance(rec.data, CheckpointRecord):
        sha = rec.commit
    elif rec.result is not None and rec.result.checkpoints:
        sha = run_git(["rev-parse", "-q", "--verify", f"{rec.commit}^1"], store.cwd).strip()
    if sha:
        marker.write_text(sha + "\n")
    else:
        marker.unlink(missing_ok=True)


def checkpoint_commit(store: ExpStore, rec: Record, step: str) -> Record | None:
    """The checkpoint ``step`` of an experiment, as a record (not a ref of its own)."""
    from sweeprun.run.checkpoint import REF_PREFIX, chain

    tip = rec.commit if rec.ref.startswith(EXPS) else REF_PREFIX + rec.key
    for sha, meta in chain(store.cwd, tip, rec.baseline):
        if str(meta.get("step")) == step:
            data = parse_record(meta)
            return Record(ref=rec.ref, commit=sha, data=data) if data is not None else None
    return None


# -- apply ----------------------------------------------------------------------------------


def _tree_files(store: ExpStore, commit: str) -> set[str]:
    out = run_git(["ls-tree", "-r", "-z", "--name-only", commit], store.cwd)
    return {p for p in out.split("\0") if p}


def _lock_outs(store: ExpStore, commit: str) -> dict[str, str]:
    """The cached outs (path → digest) a result's ``sweeprun.lock`` names."""
    from sweeprun.run.pipeline import LOCK_FILE

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
    for path in sorted(files | set(outs)):
        guarded(root, path)
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
    previous = run_git(["rev-parse", "-q", "--verify", STASH_REF], store.cwd, check=False).strip()
    meta = {"kind": "stash", "previous": previous or None, "at": time.time(), "before": before}
    commit = run_git(
        ["commit-tree", tree, "-p", head],
        store.cwd,
        input=f"sweeprun: stash before apply\n\n{json.dumps(meta)}\n",
    ).strip()
    store.updater.transaction([RefOp(STASH_REF, commit, previous or ZERO)])
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
            cache.checkout(saved, target)
    return sum(1 for saved in before.values() if saved is not None), removed


def _apply(config: Config) -> int:
    store = ExpStore(config.repo)
    cache = Cache.for_repo(store.repo.common_dir)
    out = config.stdout
    try:
        if config.getoption("undo"):
            stash = run_git(
                ["rev-parse", "-q", "--verify", STASH_REF], store.cwd, check=False
            ).strip()
            if not stash:
                raise UsageError("apply --undo: nothing to undo (no saved workspace)")
            restored, removed = undo_apply(store, stash, cache)
            out.write(
                f"restored the workspace saved before apply ({stash[:7]}): "
                f"your files as they were, {restored} ignored file(s) among them"
                + (f"; removed {removed} file(s) apply had added" if removed else "")
                + "\n"
            )
            return 0
        name = config.getoption("name")
        if not name:
            raise UsageError("apply: name an experiment (or use --undo)")
        (rec,) = resolve(store, [name])
        files, outs = _plan(store, rec.commit, cache)
        saved, dirty = stash_workspace(store, files | set(outs), cache)
        restore_tree(store, rec.commit, cache, outs)
        _remember_checkpoint(store, rec)
        if dirty:
            out.write(
                f"saved your uncommitted work ({saved[:7]}): "
                "'sweeprun apply --undo' brings it back\n"
            )
        out.write(f"applied {rec.name} ({rec.state}, {rec.commit[:7]})\n")
        return 0
    finally:
        store.close()


# -- branch / rename --------------------------------------------------------------------------


def _branch(config: Config) -> int:
    store = ExpStore(config.repo)
    try:
        (rec,) = resolve(store, [config.getoption("name")])
        branch = config.getoption("branch") or f"{rec.name}-branch"
        if rec.state in ("queued", "running"):
            raise UsageError(f"branch: {rec.name} has no result yet ({rec.state})")
        exists = run_git(
            ["rev-parse", "-q", "--verify", f"refs/heads/{branch}"], store.cwd, check=False
        ).strip()
        if exists:
            raise UsageError(f"branch: a branch named {branch!r} already exists")
        proc = run_git(["check-ref-format", "--branch", branch], store.cwd, check=False)
        if not proc.strip():
            raise UsageError(f"branch: {branch!r} is not a valid branch name")
        try:
            store.updater.transaction([RefOp(f"refs/heads/{branch}", rec.commit, ZERO)])
        except RefConflict:
            raise UsageError(f"branch: a branch named {branch!r} already exists") from None
        config.stdout.write(f"branch {branch} now points at {rec.name} ({rec.commit[:7]})\n")
        return 0
    finally:
        store.close()


def _rename(config: Config) -> int:
    from sweeprun.spec.names import is_ref_safe

    store = ExpStore(config.repo)
    try:
        (rec,) = resolve(store, [config.getoption("old")])
        new = config.getoption("new")
        if not is_ref_safe(new):
            raise UsageError(f"rename: {new!r} is not usable as an experiment name")
        if not rec.ref.startswith(EXPS):
            raise UsageError(f"rename: {rec.name} is {rec.state}; rename it once it finished")
        taken = [r for r in store.records(EXPS) if r.baseline == rec.baseline and r.name == new]
        if taken:
            raise UsageError(f"rename: {new!r} already names an experiment of that baseline")
        target = f"{EXPS}{rec.baseline}/{new}"
        store.updater.transaction(
            [RefOp(target, rec.commit, ZERO), RefOp(rec.ref, ZERO, rec.commit)]
        )
        config.stdout.write(f"renamed {rec.name} to {new}\n")
        return 0
    finally:
        store.close()


# -- remove ---------------------------------------------------------------------------------


def select_for_removal(config: Config, store: ExpStore) -> list[Record]:
    """What ``remove`` deletes, all resolved before anything is touched."""
    records = store.records()
    chosen: dict[str, Record] = {}
    names = config.getoption("names") or []
    for rec in resolve(store, names, records) if names else []:
        chosen[rec.ref] = rec
    if config.getoption("queue"):
        chosen.update({r.ref: r for r in records if r.state == "queued"})
    if config.getoption("failed"):
        chosen.update({r.ref: r for r in records if r.state in FAILED_STATES})
    if config.getoption("all"):
        chosen.update({r.ref: r for r in records if r.state != "running"})
    rev = config.getoption("rev")
    if rev:
        sha = run_git(
            ["rev-parse", "-q", "--verify", f"{rev}^{{commit}}"], store.cwd, check=False
        ).strip()
        if not sha:
            raise UsageError(f"remove --rev {rev}: no such commit")
        chosen.update({r.ref: r for r in records if r.baseline == sha and r.state != "running"})
    if not (
        names
        or config.getoption("queue")
        or config.getoption("failed")
        or config.getoption("all")
        or rev
    ):
        raise UsageError("remove: name experiments, or use --queue, --failed, --all or --rev")
    if config.getoption("keep"):
        chosen = {r.ref: r for r in records if r.ref not in chosen and r.state != "running"}
    running = [r.name for r in chosen.values() if r.state == "running"]
    if running:
        raise UsageError(f"remove: {', '.join(running)} is running (kill it first)")
    return list(chosen.values())


def _remove(config: Config) -> int:
    from sweeprun.run.checkpoint import REF_PREFIX, journal_path

    store = ExpStore(config.repo)
    try:
        doomed = select_for_removal(config, store)
        remote = config.getoption("remote")
        if remote:
            refs = [r.ref for r in doomed if r.ref.startswith(EXPS)]
            if refs:
                out = run_git(
                    ["push", "--porcelain", remote, *[f":{r}" for r in refs]],
                    store.cwd,
                    check=False,
                )
                if "[deleted]" not in out and "deleted" not in out:
                    raise UsageError(f"remove -g {remote}: the remote refused: {out.strip()}")
            config.stdout.write(f"removed {len(refs)} experiments from {remote}\n")
            return 0
        ops = [RefOp(r.ref, ZERO, r.commit) for r in doomed]
        ckpts = {
            ref.split("/")[-1]: sha
            for ref, sha in (
                line.split()
                for line in run_git(
                    ["for-each-ref", "--format=%(refname) %(objectname)", REF_PREFIX], store.cwd
                ).splitlines()
            )
        }
        for r in doomed:
            if r.key in ckpts and not any(
                o.key == r.key for o in store.records() if o.ref not in {d.ref for d in doomed}
            ):
                ops.append(RefOp(REF_PREFIX + r.key, ZERO, ckpts[r.key]))
        try:
            store.updater.transaction(ops)
        except RefConflict as exc:
            raise UsageError(
                f"remove: experiments changed meanwhile, nothing removed: {exc}"
            ) from None
        for r in doomed:
            if any(op.ref == REF_PREFIX + r.key for op in ops):
                journal_path(store.repo.common_dir, r.key).unlink(missing_ok=True)
        config.stdout.write(
            f"removed {len(doomed)} experiment{'s' if len(doomed) != 1 else ''}"
            + (
                ": " + ", ".join(sorted(r.name for r in doomed))
                if doomed and len(doomed) <= 10
                else ""
            )
            + "\n"
        )
        return 0
    finally:
        store.close()


def _apply_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="experiment name, id prefix, ref or name@step")
    p.add_argument("--undo", action="store_true", help="restore the work saved by apply")


def _branch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="experiment")
    p.add_argument("branch", nargs="?", help="branch name (default: NAME-branch)")


def _rename_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("old")
    p.add_argument("new")


def _remove_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="names, id prefixes or refs")
    p.add_argument("--queue", action="store_true", help="every queued experiment")
    p.add_argument("--failed", action="store_true", help="every failed experiment")
    p.add_argument("--all", action="store_true", help="every experiment (not running ones)")
    p.add_argument("--rev", help="every experiment of this baseline")
    p.add_argument("--keep", action="store_true", help="remove all but the selected ones")
    p.add_argument("-g", "--git-remote", dest="remote", help="remove them on this remote")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register apply, branch, rename and remove."""
    commands.add(
        "apply", "bring an experiment's files and outs into the workspace", _apply_args, _apply
    )
    commands.add("branch", "make a git branch of an experiment", _branch_args, _branch)
    commands.add("rename", "rename a finished experiment", _rename_args, _rename)
    commands.add("remove", "delete experiments or queue entries", _remove_args, _remove)
