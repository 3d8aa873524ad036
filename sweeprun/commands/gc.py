"""``sweeprun gc``: drop experiments of unreachable baselines and what nothing needs.

gc decides *which* experiments stay (those whose baseline a branch or tag reaches); each
owner of private files names its own leftovers (:class:`~sweeprun.model.Reapable`): the
workspace pool its idle slots, the lease journals the dead runners', the checkpoint
protocol its stale signal files, the cache the objects no kept experiment names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
from functools import partial
from typing import TYPE_CHECKING

from sweeprun._core.exitcode import ExitCode
from sweeprun.commands.sync import lock_digests
from sweeprun.hookspec import hookimpl
from sweeprun.model import EXPS, REPLACED, Reapable, Record
from sweeprun.run import checkpoint, workspace
from sweeprun.spec.dag import LOCK_FILE
from sweeprun.store import leases
from sweeprun.store.cache import Cache
from sweeprun.store.git import run_git
from sweeprun.store.records import ExpStore

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


def _is_reachable(store: ExpStore, memo: dict[str, bool], sha: str) -> bool:
    """Whether a branch, a tag or ``HEAD`` reaches baseline ``sha`` (memoised)."""
    if sha not in memo:
        found = run_git(
            ["for-each-ref", "--count=1", "--contains", sha, "refs/heads", "refs/tags"],
            store.cwd,
            check=False,
        )
        memo[sha] = bool(found.strip()) or (
            subprocess.run(
                ["git", "merge-base", "--is-ancestor", sha, "HEAD"],
                cwd=store.cwd,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
    return memo[sha]


def _used_digests(store: ExpStore, kept: list[Record]) -> set[str]:
    """Cache objects named by kept results, by every checkpoint and by the workspace's
    own lock file."""
    commits = [r.commit for r in kept if r.ref.startswith((EXPS, REPLACED))]
    tips = run_git(
        ["for-each-ref", "--format=%(objectname)", checkpoint.REF_PREFIX], store.cwd
    ).split()
    for tip in tips:
        commits += run_git(["rev-list", tip], store.cwd).split()[:1000]
    used = lock_digests(store, commits)
    ws_lock = store.repo.root / LOCK_FILE
    if ws_lock.is_file():
        with contextlib.suppress(ValueError):
            lock = json.loads(ws_lock.read_text())
            for stage in lock.get("stages", {}).values():
                used.update(stage.get("outs", {}).values())
    return used


def _gc(config: Config) -> int:
    store = ExpStore(config.repo)
    dry = bool(config.getoption("dry_run"))
    out = config.stdout
    common = store.repo.common_dir
    held = contextlib.ExitStack()  # locks of the idle workspaces gc removes
    try:
        memo: dict[str, bool] = {}
        # Replaced records stay while their baseline does: their outs stay in the cache.
        records = store.records() + store.replaced()
        if not dry:
            store.set_aside_damaged()
        doomed = [
            r
            for r in records
            if r.state != "running" and not _is_reachable(store, memo, r.baseline)
        ]
        items: list[Reapable] = [
            Reapable(f"experiment {r.name} (baseline {r.baseline[:7]} unreachable)", 0, _noop)
            for r in doomed
        ]
        items += workspace.stale_slots(common, held)
        items += checkpoint.leftover_signals(common)
        items += leases.leftovers(store.repo.state_dir / "leases")
        orphans = store.orphans()
        items += [
            Reapable(f"orphaned running entry {r.name} (back to the queue)", 0, _noop)
            for r in orphans
        ]
        cache = Cache.for_repo(common)
        corrupt = []
        if config.getoption("verify"):
            # Every object hashed; a corrupt one is set aside (never restored again).
            corrupt = [d for d in cache.all_objects() if not cache.verify(d)]
            for d in corrupt:
                out.write(f"corrupt cache object {d[:12]}: set aside in {cache.corrupt}\n")
            out.write(f"verified the cache: {len(corrupt)} corrupt object(s)\n")
        kept = [r for r in records if r not in doomed]
        items += cache.unused(_used_digests(store, kept))
        shown = [i for i in items if i.what]
        for item in shown:
            out.write(
                f"{'would remove' if dry else 'removing'} {item.what}"
                + (f" ({item.size:,} bytes)" if item.size else "")
                + "\n"
            )
        total = sum(i.size for i in shown)
        out.write(f"{'would free' if dry else 'freed'} {total:,} bytes in {len(shown)} item(s)\n")
        if dry:
            return ExitCode.TESTS_FAILED if corrupt else ExitCode.OK
        if doomed:
            store.remove(doomed)
        # Kills what their dead runners left running, then requeues.
        store.reclaim(partial(workspace.kill_leftovers, common))
        for item in items:
            item.reap()
        workspace.prune(common, store.cwd)
        return ExitCode.TESTS_FAILED if corrupt else ExitCode.OK
    finally:
        held.close()
        store.close()


def _noop() -> None:
    """Reaped elsewhere (a ref transaction, or the reclaim)."""


def _gc_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="list what would go, with sizes")
    p.add_argument(
        "--verify",
        action="store_true",
        help="hash every cache object; set corrupt ones aside (exit 1 if any)",
    )


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun gc``."""
    commands.add(
        "gc",
        "drop unreachable experiments, unused cache objects, stale workspaces",
        _gc_args,
        _gc,
        examples=(
            "sweeprun gc --dry-run                  # what it would remove",
            "sweeprun gc --verify                   # and check every cache object",
        ),
    )
