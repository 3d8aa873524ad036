"""Working with results: ``branch``, ``rename``, ``remove`` and name resolution.

Every command resolves its arguments first and fails as a whole — one unknown name and
nothing is changed; ref changes are single compare-and-swap transactions.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from sweeprun._core.exitcode import ExitCode
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import EXPS, FAILED_STATES, CheckpointRecord, Record, parse_record
from sweeprun.report.safe import shown
from sweeprun.run.checkpoint import at_step, journal_path
from sweeprun.spec.names import is_ref_safe
from sweeprun.store.git import RefConflict, run_git
from sweeprun.store.records import ExpStore

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


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


def checkpoint_commit(store: ExpStore, rec: Record, step: str) -> Record | None:
    """The checkpoint ``step`` of an experiment, as a record (not a ref of its own)."""

    found = at_step(store.cwd, rec, int(step)) if step.isdigit() else None
    if found is None:
        return None
    data = parse_record(found[1])
    if not isinstance(data, CheckpointRecord):
        return None
    # Its queued facts (params, stages) are its experiment's: the message names them.
    return Record(ref=rec.ref, commit=found[0], data=data.of(rec.data))


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
            store.create_branch(branch, rec.commit)
        except RefConflict:
            raise UsageError(f"branch: a branch named {branch!r} already exists") from None
        config.stdout.write(f"branch {branch} now points at {rec.name} ({rec.commit[:7]})\n")
        return ExitCode.OK
    finally:
        store.close()


def _rename(config: Config) -> int:

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
        store.rename(rec, new)  # the records it replaced go with it
        config.stdout.write(f"renamed {rec.name} to {new}\n")
        return ExitCode.OK
    finally:
        store.close()


# -- remove ---------------------------------------------------------------------------------


def select_for_removal(config: Config, store: ExpStore) -> list[Record]:
    """What ``remove`` deletes, all resolved before anything is touched."""
    records = store.records()
    names = config.getoption("names") or []
    rev = config.getoption("rev")
    sha = ""
    if rev:
        sha = run_git(
            ["rev-parse", "-q", "--verify", f"{rev}^{{commit}}"], store.cwd, check=False
        ).strip()
        if not sha:
            raise UsageError(f"remove --rev {rev}: no such commit")
    # Each selector flag as (option, what it selects, the test): with names, a flag
    # narrows them (a named experiment it does not select is an error, never a reason
    # to remove more: DVC's `exp remove --queue NAME` removes just NAME); alone, it selects.
    flags: list[tuple[str, str, Callable[[Record], bool], bool]] = [
        ("--queue", "queued", lambda r: r.state == "queued", config.getoption("queue")),
        ("--failed", "failed", lambda r: r.state in FAILED_STATES, config.getoption("failed")),
        ("--all", "not running", lambda r: r.state != "running", config.getoption("all")),
        (
            f"--rev {rev}",
            f"of baseline {sha[:7]}",
            lambda r: r.baseline == sha and r.state != "running",
            bool(rev),
        ),
    ]
    given = [(opt, what, test) for opt, what, test, on in flags if on]
    if not names and not given:
        raise UsageError("remove: name experiments, or use --queue, --failed, --all or --rev")
    chosen: dict[str, Record] = {}
    if names:
        for rec in resolve(store, names, records):
            for opt, what, test in given:
                if not test(rec):
                    raise UsageError(
                        f"remove {opt} {rec.name}: {rec.name} is {rec.state}, not {what} "
                        f"(nothing removed; drop {opt.split()[0]} to remove it anyway)"
                    )
            chosen[rec.ref] = rec
    else:
        for _, _, test in given:
            chosen.update({r.ref: r for r in records if test(r)})
    if config.getoption("keep"):
        chosen = {r.ref: r for r in records if r.ref not in chosen and r.state != "running"}
    running = [r.name for r in chosen.values() if r.state == "running"]
    if running:
        raise UsageError(f"remove: {', '.join(running)} is running (kill it first)")
    return list(chosen.values())


def _remove(config: Config) -> int:

    store = ExpStore(config.repo)
    try:
        return remove_records(config, store, select_for_removal(config, store))
    finally:
        store.close()


def remove_records(config: Config, store: ExpStore, doomed: list[Record]) -> int:
    """Delete ``doomed`` (one transaction; their replaced records and checkpoints too)."""
    remote = config.getoption("remote", None)
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
        return ExitCode.OK
    # An experiment's name goes with the records its reruns replaced, and its checkpoint
    # chain with the last record of its key.
    earlier = store.earlier(doomed)
    try:
        chains = store.remove(doomed, earlier, chains=True)
    except RefConflict as exc:
        raise UsageError(f"remove: experiments changed meanwhile, nothing removed: {exc}") from None
    for key in chains:
        journal_path(store.repo.common_dir, key).unlink(missing_ok=True)
    config.stdout.write(
        f"removed {len(doomed)} experiment{'s' if len(doomed) != 1 else ''}"
        + (
            ": " + ", ".join(sorted(shown(r.name) for r in doomed))
            if doomed and len(doomed) <= 10
            else ""
        )
        + (f" (and {len(earlier)} earlier record(s) they replaced)" if earlier else "")
        + "\n"
    )
    return ExitCode.OK


def _branch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="experiment")
    p.add_argument("branch", nargs="?", help="branch name (default: NAME-branch)")


def _rename_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("old")
    p.add_argument("new")


def _remove_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="names, id prefixes or refs")
    p.add_argument(
        "--queue", action="store_true", help="every queued experiment (with NAMEs: just those)"
    )
    p.add_argument("--failed", action="store_true", help="every failed experiment")
    p.add_argument("--all", action="store_true", help="every experiment (not running ones)")
    p.add_argument("--rev", help="every experiment of this baseline")
    p.add_argument("--keep", action="store_true", help="remove all but the selected ones")
    p.add_argument("-g", "--git-remote", dest="remote", help="remove them on this remote")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register branch, rename and remove."""
    commands.add(
        "branch",
        "make a git branch of an experiment",
        _branch_args,
        _branch,
        examples=(
            "sweeprun branch best",
            "sweeprun branch best lr-0.05",
        ),
    )
    commands.add(
        "rename",
        "rename a finished experiment",
        _rename_args,
        _rename,
        examples=(
            "sweeprun rename exp-1a2b3c4 best",
            "sweeprun rename best best-old",
        ),
    )
    commands.add(
        "remove",
        "delete experiments or queue entries",
        _remove_args,
        _remove,
        examples=(
            "sweeprun remove exp-1a2b3c4 exp-5d6e7f8",
            "sweeprun remove --queue exp-1a2b3c4    # just that queued one",
            "sweeprun remove --failed               # every failed result",
        ),
    )
