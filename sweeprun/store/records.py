"""The experiment store: the repository is the database.

Layout (see ``docs/explanation/storage.md``)::

    refs/sweeprun/queue/<key>              queued experiment (commit: baseline + workspace + params)
    refs/sweeprun/running/<key>            the same commit while a runner owns it
    refs/sweeprun/exps/<baseline>/<name>   finished experiment (commit: parent = baseline)

``key`` is a content hash of (baseline, workspace tree, params, stages), so the same
experiment queued twice is recognised. Each commit message carries a JSON record (state,
params, metrics, timings…), so one ``for-each-ref`` reads every experiment. Refs change
only through compare-and-swap transactions, and only in the parent process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeprun.exceptions import UsageError
from sweeprun.model import (
    EXPS,
    FAILED_STATES,
    QUEUE,
    RUNNING,
    QueueRecord,
    Record,
    format_message,
    is_record,
    parse_message,
    result_ref,
)
from sweeprun.spec import names
from sweeprun.store import leases
from sweeprun.store.git import (
    ZERO,
    FastCommit,
    RefConflict,
    RefOp,
    RefUpdater,
    RepoPaths,
    commit_identity,
    fast_import_commits,
    for_each_ref,
    run_git,
)
from sweeprun.store.snapshots import snapshot_tree
from sweeprun.system.faults import storage_error

if TYPE_CHECKING:
    from sweeprun.spec.collect import Experiment


@dataclass
class QueueOutcome:
    """What :meth:`ExpStore.enqueue` did."""

    queued: list[Record] = field(default_factory=list)
    skipped: list[tuple[Experiment, Record]] = field(default_factory=list)


#: Space kept free for ref bookkeeping on a full disk (see :meth:`ExpStore.release`).
RESERVE = "reserve"
RESERVE_BYTES = 256 * 1024


class ExpStore:
    """Reads and writes experiment refs of one repository."""

    def __init__(self, repo: RepoPaths) -> None:
        self.repo = repo
        self.cwd = str(repo.root)
        self._updater: RefUpdater | None = None
        #: This process's claims (see :mod:`sweeprun.store.leases`).
        self.journal = leases.LeaseJournal(repo.state_dir / "leases")

    @property
    def updater(self) -> RefUpdater:
        if self._updater is None:
            self._updater = RefUpdater(self.cwd)
        return self._updater

    def close(self) -> None:
        """Stop helper processes; end this runner's lease journal."""
        if self._updater is not None:
            self._updater.close()
        self.journal.close()

    # -- reading ----------------------------------------------------------------------------

    def records(self, *namespaces: str) -> list[Record]:
        """Every record under ``namespaces`` (default: queue, running and results)."""
        patterns = list(namespaces) or [QUEUE, RUNNING, EXPS]
        out = []
        for ref, sha, message in for_each_ref(self.cwd, [p.rstrip("/") for p in patterns]):
            meta = parse_message(message)
            if meta is not None and is_record(meta):
                out.append(Record(ref=ref, commit=sha, raw=meta))
        return out

    def head(self) -> str:
        """The baseline commit: ``HEAD`` of the user's workspace."""
        return run_git(["rev-parse", "--verify", "HEAD^{commit}"], self.cwd).strip()

    def branch(self) -> str | None:
        """The checked-out branch name, or ``None`` when detached."""
        out = run_git(["symbolic-ref", "-q", "--short", "HEAD"], self.cwd, check=False).strip()
        return out or None

    # -- queueing ---------------------------------------------------------------------------

    def snapshot_workspace(self, results: Sequence[str] = (), exclude: Sequence[str] = ()) -> str:
        """Tree of the workspace as it is (see :func:`~sweeprun.store.git.snapshot_tree`)."""
        return snapshot_tree(self.repo.root, results, self.repo.git_dir / "index", exclude)

    def enqueue(
        self,
        items: Sequence[Experiment],
        *,
        force: bool = False,
        force_items: set[int] | None = None,
        in_place: bool = False,
        exclude: Sequence[str] = (),
    ) -> QueueOutcome:
        """Queue ``items`` atomically: all refs are created in one transaction or none.

        Duplicates of experiments already queued, running or finished at the same
        baseline are skipped (``force`` re-queues them). Name clashes are errors.
        """
        outcome = QueueOutcome()
        if not items:
            return outcome
        baseline = self.head()
        tree = self.snapshot_workspace(exclude=exclude)
        existing = [r for r in self.records() if r.baseline == baseline]
        by_key = {r.key: r for r in existing}
        taken = {r.name: r for r in existing}
        now = int(time.time())
        commits: list[FastCommit] = []
        records: list[QueueRecord] = []
        batch: dict[str, Record] = {}
        for item in items:
            files = item.rendered_files()
            key = content_key(baseline, tree, files, item.stages_record())
            if key in batch:
                outcome.skipped.append((item, batch[key]))  # the same point twice
                continue
            old = by_key.get(key)
            if old is not None and not (force or id(item) in (force_items or ())):
                outcome.skipped.append((item, old))
                continue
            if old is not None and old.state == "queued":
                continue  # forcing something still queued: it will run anyway
            name = item.name or names.default_name(key)
            if item.name is None:
                # Default names are hash prefixes: lengthen on the rare collision.
                width = 7
                while name in taken and taken[name].key != key and width < len(key):
                    width += 1
                    name = names.default_name(key, width)
            clash = taken.get(name)
            replaces = None
            if clash is not None and clash.key != key:
                if not (
                    item.retries is not None
                    and clash.ref == item.retries.ref
                    and clash.state in FAILED_STATES
                ):
                    raise item.name_error(
                        f"experiment name {name!r} is already used by {clash.id!r} "
                        f"at baseline {baseline[:7]} (choose another name)"
                    )
                replaces = clash  # --lf: the failed result gives way when this one lands
            # The attempts are kept: each result names the one it replaced.
            record = item.record(
                key=key,
                name=name,
                baseline=baseline,
                queued_at=now,
                tree=tree,
                replaces=replaces.commit if replaces is not None else None,
                in_place=in_place,
            )
            batch[key] = taken[name] = Record(ref=QUEUE + key, commit="", data=record)
            records.append(record)
            commits.append(
                FastCommit(
                    parent=baseline,
                    tree=tree,
                    message=format_message(f"sweeprun: queue {name} {item.id}", record),
                    files={p: t.encode() for p, t in files.items()},
                    timestamp=now,
                )
            )
        if not commits:
            return outcome
        author = commit_identity(self.cwd).committer_pair
        shas = fast_import_commits(self.cwd, commits, author)
        ops = [RefOp(QUEUE + r.key, sha, ZERO) for r, sha in zip(records, shas, strict=True)]
        try:
            self.updater.transaction(ops)
        except RefConflict as exc:
            raise UsageError(f"queue changed while queueing, nothing queued: {exc}") from None
        outcome.queued = [
            Record(ref=QUEUE + r.key, commit=sha, data=r)
            for r, sha in zip(records, shas, strict=True)
        ]
        return outcome

    # -- claiming and finishing -------------------------------------------------------------

    def leases(self) -> dict[str, list[leases.Lease]]:
        """Every standing claim by experiment key, the latest first."""
        return leases.read_all(self.journal.directory)

    def claim(self, record: Record) -> Record | None:
        """Move a queued record to running; ``None`` if another runner took it first."""
        running = RUNNING + record.key
        # The claim is journalled first, so a running ref never exists without a claimant.
        self.journal.claiming(record.key)
        try:
            self.updater.transaction(
                [
                    RefOp(record.ref, ZERO, record.commit),
                    RefOp(running, record.commit, ZERO),
                ]
            )
        except RefConflict as exc:
            self.journal.failed(record.key)
            if storage_error(exc):
                raise  # not a lost race: git could not write (a full disk)
            return None
        return Record(ref=running, commit=record.commit, data=record.data, raw=record.raw)

    def orphans(self) -> list[Record]:
        """Running records whose runner is gone (a dead process on this host, or none).

        "Dead" is a journal lock nobody holds, not a missing pid. While a live runner's
        journal cannot be read, an experiment nobody claims may be that runner's: it is
        left alone rather than taken from under it.
        """
        claims, opaque = leases.read_claims(self.journal.directory)
        return [
            rec
            for rec in self.records(RUNNING)
            if (rec.key in claims or not opaque)
            and all(lease.alive() is False for lease in claims.get(rec.key, []))
        ]

    def reclaim(
        self, kill: Callable[[str], None], adopt: Callable[[Record], bool] | None = None
    ) -> list[Record]:
        """Put orphaned running records back in the queue; return them.

        ``kill(key)`` first kills whatever the dead runner left running of that
        experiment (see ``run.workspace.kill_leftovers``): it must not keep writing into a
        workspace that another job is about to take. ``adopt`` may record an orphan
        instead (its command had finished): it returns whether it did.
        """
        found = self.orphans()
        for rec in found:
            kill(rec.key)
        if adopt is not None:
            found = [rec for rec in found if not adopt(rec)]
        self.release(found)
        for journal in leases.dead_journals(self.journal.directory):
            journal.unlink(missing_ok=True)  # all it named is back in the queue now
        return found

    def release(self, records: Iterable[Record]) -> None:
        """Put running records back in the queue (after an interrupt or internal error).

        On a full disk git cannot write the refs' lock files: the space the store keeps in
        reserve is given up for this, so that the queue is right when the run ends.
        """
        for rec in records:
            ops = [RefOp(rec.ref, ZERO, rec.commit), RefOp(QUEUE + rec.key, rec.commit, ZERO)]
            try:
                self.updater.transaction(ops)
            except RefConflict as exc:
                if not (storage_error(exc) and self._free_reserve()):
                    continue  # another runner moved it (or no room at all: reclaimed later)
                with contextlib.suppress(RefConflict):
                    self.updater.transaction(ops)

    def keep_reserve(self) -> None:
        """Keep :data:`RESERVE_BYTES` of disk for the refs a full disk would leave
        running (best effort: a read-only or full disk gets none)."""
        path = self.repo.state_dir / RESERVE
        if path.exists():
            return
        tmp = path.with_name(RESERVE + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())  # really allocated, not promised
            tmp.replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _free_reserve(self) -> bool:
        """Give the reserve's room back to the disk; whether there was one."""
        try:
            (self.repo.state_dir / RESERVE).unlink()
        except OSError:
            return False
        return True

    def drop_queued(self, records: Iterable[Record]) -> None:
        """Delete queue entries, each only if it still holds the same commit."""
        for rec in records:
            with contextlib.suppress(RefConflict):
                self.updater.transaction([RefOp(QUEUE + rec.key, ZERO, rec.commit)])

    def finish(self, running: Record, result_commit: str, name: str) -> str:
        """Publish a result and drop the running ref, in one transaction."""
        ref = result_ref(running.baseline, name)
        drop = RefOp(running.ref, ZERO, running.commit)
        try:
            # The common case: a new name. Re-runs (--force) take the slower path below.
            self.updater.transaction([RefOp(ref, result_commit, ZERO), drop])
        except RefConflict:
            current = run_git(["rev-parse", "-q", "--verify", ref], self.cwd, check=False)
            if not current.strip():
                raise
            self.updater.transaction([RefOp(ref, result_commit, current.strip()), drop])
        return ref


def content_key(
    baseline: str, tree: str, files: dict[str, str], stages: list[dict[str, Any]]
) -> str:
    """The identity of an experiment: same inputs → same key."""
    h = hashlib.sha256()
    h.update(f"{baseline}\0{tree}\0".encode())
    for path in sorted(files):
        h.update(f"{path}\0{hashlib.sha256(files[path].encode()).hexdigest()}\0".encode())
    h.update(json.dumps(stages, sort_keys=True).encode())
    return h.hexdigest()[:20]
