"""``sweeprun push`` / ``pull`` (experiment refs through any git remote) and ``gc``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import EXPS, Record
from sweeprun.run import workspace
from sweeprun.store.cache import Cache
from sweeprun.store.git import ZERO, RefOp, run_git
from sweeprun.store.leases import dead_journals
from sweeprun.store.records import ExpStore

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


def _check_remote(store: ExpStore, remote: str) -> None:
    known = run_git(["remote"], store.cwd).split()
    if remote not in known and not Path(remote).exists() and "://" not in remote:
        raise UsageError(f"{remote}: no such git remote (remotes: {', '.join(known) or 'none'})")


def _cache_remote(config: Config, store: ExpStore) -> Path | None:
    path = (
        config.getoption("cache_remote")
        or run_git(["config", "sweeprun.cacheRemote"], store.cwd, check=False).strip()
    )
    return Path(path).expanduser().resolve() if path else None


def _lock_digests(store: ExpStore, commits: list[str]) -> set[str]:
    """Every output digest named by the ``sweeprun.lock`` of these commits."""
    digests: set[str] = set()
    for sha in commits:
        text = run_git(["show", f"{sha}:sweeprun.lock"], store.cwd, check=False)
        if not text:
            continue
        try:
            lock = json.loads(text)
        except ValueError:
            continue
        digests.update(lock.get("checkpoint_outs", {}).values())
        for stage in lock.get("stages", {}).values():
            digests.update(stage.get("outs", {}).values())
    return digests


def _copy_objects(src: Cache, dst: Cache, digests: set[str]) -> int:
    n = 0
    for d in sorted(digests):
        wanted = [d]
        if d.endswith(".dir") and src.path_of(d).is_file():
            wanted += list(src.manifest(d).values())
        for w in wanted:
            if src.path_of(w).is_file() and not dst.path_of(w).is_file():
                dst.path_of(w).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src.path_of(w), dst.path_of(w))
                n += 1
    return n


def _sync(config: Config, push: bool) -> int:
    store = ExpStore(config.repo)
    try:
        remote = config.getoption("remote")
        _check_remote(store, remote)
        force = "+" if config.getoption("force") else ""
        if push:
            from sweeprun.commands.results import resolve

            names = config.getoption("names")
            recs = resolve(store, names) if names else store.records(EXPS)
            refs = [r.ref for r in recs if r.ref.startswith(EXPS)]
            specs = [f"{force}{r}:{r}" for r in refs]
        else:
            names = config.getoption("names")
            if names:
                listed = run_git(["ls-remote", remote, EXPS + "*"], store.cwd, check=False)
                refs = [
                    ln.split()[1]
                    for ln in listed.splitlines()
                    if ln.split()[1].rsplit("/", 1)[-1] in names
                ]
                missing = set(names) - {r.rsplit("/", 1)[-1] for r in refs}
                if missing:
                    raise UsageError(f"pull: not on {remote}: {', '.join(sorted(missing))}")
                specs = [f"{force}{r}:{r}" for r in refs]
            else:
                specs = [f"{force}{EXPS}*:{EXPS}*"]
        if not specs:
            config.stdout.write("nothing to push\n")
            return 0
        import subprocess

        # Without "+", git refuses to overwrite a diverged ref: that is the safety we want.
        cmd = ["push", "--porcelain", remote, *specs] if push else ["fetch", remote, *specs]
        res = subprocess.run(
            ["git", *cmd], cwd=store.cwd, capture_output=True, text=True, check=False
        )
        proc_out, err = res.stdout, res.stderr
        rejected = [
            ln
            for ln in (proc_out + err).splitlines()
            if ln.startswith("!") or "[rejected]" in ln or "non-fast-forward" in ln
        ]
        cache_remote = _cache_remote(config, store)
        copied = 0
        if cache_remote is not None:
            local = Cache.for_repo(store.repo.common_dir)
            remote_cache = Cache(cache_remote)
            commits = [r.commit for r in store.records(EXPS)]
            digests = _lock_digests(store, commits)
            copied = (
                _copy_objects(local, remote_cache, digests)
                if push
                else _copy_objects(remote_cache, local, digests)
            )
        verb = "pushed to" if push else "pulled from"
        config.stdout.write(
            f"{verb} {remote}: {len(specs) - len(rejected)} ref update(s)"
            + (f", {copied} cache object(s)" if cache_remote else "")
            + "\n"
        )
        for ln in rejected:
            config.stdout.write(f"diverged, left alone (use --force): {ln.strip()}\n")
        return 1 if rejected else 0
    finally:
        store.close()


def _push(config: Config) -> int:
    return _sync(config, push=True)


def _pull(config: Config) -> int:
    return _sync(config, push=False)


def _sync_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("remote", help="a git remote name or URL")
    p.add_argument("names", nargs="*", help="experiments (default: all)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite diverged refs")
    p.add_argument(
        "--cache-remote",
        metavar="DIR",
        help="also copy cache objects to/from DIR (git config sweeprun.cacheRemote)",
    )


# -- gc -------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _gc(config: Config) -> int:
    import fcntl

    from sweeprun.run.checkpoint import REF_PREFIX

    store = ExpStore(config.repo)
    dry = bool(config.getoption("dry_run"))
    out = config.stdout
    held = contextlib.ExitStack()  # locks of the idle workspaces gc removes
    try:
        reachable_cache: dict[str, bool] = {}

        def reachable(sha: str) -> bool:
            if sha not in reachable_cache:
                found = run_git(
                    ["for-each-ref", "--count=1", "--contains", sha, "refs/heads", "refs/tags"],
                    store.cwd,
                    check=False,
                )
                reachable_cache[sha] = bool(found.strip()) or _is_ancestor(store, sha)
            return reachable_cache[sha]

        records = store.records()
        doomed: list[Record] = [
            r for r in records if r.state != "running" and not reachable(r.baseline)
        ]
        items: list[tuple[str, int]] = [
            (f"experiment {r.name} (baseline {r.baseline[:7]} unreachable)", 0) for r in doomed
        ]
        # stale workspaces: slots nobody holds
        pool = store.repo.state_dir / "ws"
        stale: list[Path] = []
        if pool.is_dir():
            for lock in sorted(pool.glob("w*.lock")):
                f = held.enter_context(open(lock, "a+"))  # noqa: SIM115
                try:
                    # Held until the slot is gone, so no runner takes it meanwhile.
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                slot = lock.with_suffix("")
                stale.append(slot)
                items.append((f"workspace {slot.name}", _size(slot)))
        # leftovers of crashed runs: leases of dead runners, signal files, temp files
        orphans = store.orphans()
        leftovers = [p for d in ("signals",) for p in (store.repo.state_dir / d).glob("*")]
        # Journals of dead runners (reclaim below requeues what they ran), and the
        # per-experiment lease files of older versions.
        lease_dir = store.repo.state_dir / "leases"
        leftovers += dead_journals(lease_dir) + list(lease_dir.glob("*.json*"))
        items += [(f"leftover {p.relative_to(store.repo.state_dir)}", _size(p)) for p in leftovers]
        items += [(f"orphaned running entry {r.name} (back to the queue)", 0) for r in orphans]
        # cache objects no experiment, checkpoint or workspace lock names
        keep_records = [r for r in records if r not in doomed]
        commits = [r.commit for r in keep_records if r.ref.startswith(EXPS)]
        ckpt_refs = run_git(
            ["for-each-ref", "--format=%(objectname)", REF_PREFIX], store.cwd
        ).split()
        for tip in ckpt_refs:
            commits += run_git(["rev-list", tip], store.cwd).split()[:1000]
        used = _lock_digests(store, commits)
        ws_lock = store.repo.root / "sweeprun.lock"
        if ws_lock.is_file():
            with contextlib.suppress(ValueError):
                lock = json.loads(ws_lock.read_text())
                for stage in lock.get("stages", {}).values():
                    used.update(stage.get("outs", {}).values())
        cache = Cache.for_repo(store.repo.common_dir)
        for d in list(used):
            if d.endswith(".dir") and cache.path_of(d).is_file():
                used.update(cache.manifest(d).values())
        corrupt = []
        if config.getoption("verify"):
            # Every object hashed; a corrupt one is set aside (never restored again).
            corrupt = [d for d in cache.all_objects() if not cache.verify(d)]
            for d in corrupt:
                out.write(f"corrupt cache object {d[:12]}: set aside in {cache.corrupt}\n")
            out.write(f"verified the cache: {len(corrupt)} corrupt object(s)\n")
        unused = [d for d in cache.all_objects() if d not in used]
        items += [(f"cache object {d[:12]}", _size(cache.path_of(d))) for d in unused]
        total = sum(s for _, s in items)
        for what, size in items:
            out.write(
                f"{'would remove' if dry else 'removing'} {what}"
                + (f" ({size:,} bytes)" if size else "")
                + "\n"
            )
        out.write(f"{'would free' if dry else 'freed'} {total:,} bytes in {len(items)} item(s)\n")
        if dry:
            return 1 if corrupt else 0
        if doomed:
            store.updater.transaction([RefOp(r.ref, ZERO, r.commit) for r in doomed])
        store.reclaim()  # kills what their dead runners left running, then requeues
        for slot in stale:
            shutil.rmtree(slot, ignore_errors=True)
            # The .lock file stays: a runner may have it open, waiting for our flock.
            for suffix in (".json", ".index", ".pid"):
                slot.with_suffix(suffix).unlink(missing_ok=True)
        with workspace.admin_lock(store.repo.common_dir):
            run_git(["worktree", "prune"], store.cwd, check=False)
        for p in leftovers:
            p.unlink(missing_ok=True)
        for d in unused:
            path = cache.path_of(d)
            os.chmod(path, 0o644)
            path.unlink(missing_ok=True)
        if cache.runs.is_dir():  # run-cache entries whose outputs are gone
            for entry in cache.runs.glob("*.json"):
                key = entry.stem
                if cache.run_entry(key) is None:
                    entry.unlink(missing_ok=True)
        return 1 if corrupt else 0
    finally:
        held.close()
        store.close()


def _is_ancestor(store: ExpStore, sha: str) -> bool:
    import subprocess

    return (
        subprocess.run(
            ["git", "merge-base", "--is-ancestor", sha, "HEAD"],
            cwd=store.cwd,
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def _gc_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="list what would go, with sizes")
    p.add_argument(
        "--verify",
        action="store_true",
        help="hash every cache object; set corrupt ones aside (exit 1 if any)",
    )


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register push, pull and gc."""
    commands.add("push", "send experiments (and cache objects) to a git remote", _sync_args, _push)
    commands.add(
        "pull", "fetch experiments (and cache objects) from a git remote", _sync_args, _pull
    )
    commands.add(
        "gc", "drop unreachable experiments, unused cache objects, stale workspaces", _gc_args, _gc
    )
