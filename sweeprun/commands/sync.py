"""``sweeprun push`` / ``pull`` (experiment refs through any git remote) and ``gc``."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from sweeprun._core.exitcode import ExitCode
from sweeprun.commands.results import resolve
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import EXPS
from sweeprun.store.cache import Cache
from sweeprun.store.git import run_git
from sweeprun.store.records import ExpStore
from sweeprun.store.remotes import Remote, open_remote
from sweeprun.store.tiered import configured_remote

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


def _check_remote(store: ExpStore, remote: str) -> None:
    known = run_git(["remote"], store.cwd).split()
    if remote not in known and not Path(remote).exists() and "://" not in remote:
        raise UsageError(f"{remote}: no such git remote (remotes: {', '.join(known) or 'none'})")


def _cache_remote(config: Config, store: ExpStore) -> Remote | None:
    given = config.getoption("cache_remote")
    return open_remote(given, "--cache-remote") if given else configured_remote(store.cwd)


def lock_digests(store: ExpStore, commits: list[str]) -> set[str]:
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


def _sync(config: Config, push: bool) -> int:
    store = ExpStore(config.repo)
    try:
        remote = config.getoption("remote")
        _check_remote(store, remote)
        force = "+" if config.getoption("force") else ""
        if push:
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
            return ExitCode.OK

        cache_remote = _cache_remote(config, store)
        local = Cache.for_repo(store.repo.common_dir)
        copied = 0
        if push and cache_remote is not None:
            # The outs first: a ref on the remote never names an object its cache lacks
            # (a refused upload leaves the remote's refs as they were).
            commits = [r.commit for r in recs if r.ref.startswith(EXPS)]
            digests = lock_digests(store, commits)
            copied = cache_remote.send(local, [d for d in digests if local.exists(d)])
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
        if not push and cache_remote is not None:
            commits = [r.commit for r in store.records(EXPS)]
            copied = cache_remote.fetch(local, lock_digests(store, commits))
        verb = "pushed to" if push else "pulled from"
        config.stdout.write(
            f"{verb} {remote}: {len(specs) - len(rejected)} ref update(s)"
            + (f", {copied} cache object(s)" if cache_remote else "")
            + "\n"
        )
        for ln in rejected:
            config.stdout.write(f"diverged, left alone (use --force): {ln.strip()}\n")
        return ExitCode.TESTS_FAILED if rejected else ExitCode.OK
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
        help="also copy cache objects to/from DIR or an object store URL such as "
        "s3://bucket/prefix (git config sweeprun.cacheRemote)",
    )


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register push and pull."""
    commands.add(
        "push",
        "send experiments (and cache objects) to a git remote",
        _sync_args,
        _push,
        examples=(
            "sweeprun push origin",
            "sweeprun push origin best --cache-remote /mnt/cache",
        ),
    )
    commands.add(
        "pull",
        "fetch experiments (and cache objects) from a git remote",
        _sync_args,
        _pull,
        examples=(
            "sweeprun pull origin",
            "sweeprun pull origin --cache-remote /mnt/cache",
        ),
    )
