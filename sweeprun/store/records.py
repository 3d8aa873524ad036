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

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sweeprun.exceptions import UsageError
from sweeprun.model import (
    EXPS,
    QUEUE,
    REPLACED,
    RUNNING,
    STUDIES,
    Record,
    format_message,
    is_record,
    parse_message,
)
from sweeprun.store import leases, queueplan, refdamage, resultsindex, written
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
from sweeprun.store.queueplan import QueuePlan
from sweeprun.store.snapshots import snapshot_tree
from sweeprun.store.transitions import RefTransitions

if TYPE_CHECKING:
    from sweeprun.spec.collect import Experiment


@dataclass
class QueueOutcome:
    """What :meth:`ExpStore.enqueue` did."""

    queued: list[Record] = field(default_factory=list)
    skipped: list[tuple[Experiment, Record]] = field(default_factory=list)


class ExpStore(RefTransitions):
    """Reads and writes experiment refs of one repository: the only door to them (its
    ref transitions are :class:`~sweeprun.store.transitions.RefTransitions`')."""

    def __init__(self, repo: RepoPaths) -> None:
        self.repo = repo
        self.cwd = str(repo.root)
        self._updater: RefUpdater | None = None
        #: Queue and running refs read that hold no record: ref → object name.
        self.unreadable: dict[str, str] = {}
        #: Queue and running refs git listed (their loose files need no second look).
        self.listed: set[str] = set()
        #: This process's claims (see :mod:`sweeprun.store.leases`).
        self.journal = leases.LeaseJournal(repo.state_dir / "leases")

    def close(self) -> None:
        """Stop helper processes; end this runner's lease journal."""
        if self._updater is not None:
            self._updater.close()
        self.journal.close()

    # -- reading ----------------------------------------------------------------------------

    def queued(self) -> list[Record]:
        """The queued records in the order they run: oldest first."""
        return sorted(self.records(QUEUE), key=lambda r: (r.meta.get("queued_at", 0), r.id))

    def ledger(self, study: str) -> set[int]:
        """The trial numbers ``study`` has taken (see ``STUDIES``)."""
        out = run_git(["for-each-ref", "--format=%(refname)", STUDIES + study], self.cwd)
        return {int(n) for line in out.split() if (n := line.rsplit("/", 1)[-1]).isdigit()}

    def records(self, *namespaces: str) -> list[Record]:
        """Every record under ``namespaces`` (default: queue, running and results).

        A queue or running ref that holds no queue record is noted in :attr:`unreadable`
        for :meth:`set_aside_damaged`.
        """
        patterns = list(namespaces) or [QUEUE, RUNNING, EXPS]
        out = []
        for ref, sha, message in for_each_ref(self.cwd, [p.rstrip("/") for p in patterns]):
            meta = parse_message(message)
            if ref.startswith((QUEUE, RUNNING)):
                self.listed.add(ref)
            if meta is not None and is_record(meta):
                out.append(Record(ref=ref, commit=sha, raw=meta))
            elif ref.startswith((QUEUE, RUNNING)):
                self.unreadable[ref] = sha
        return out

    def set_aside_damaged(self) -> list[str]:
        """Queue and running refs that can never run (see :mod:`.refdamage`), set aside
        with one warning each: those :meth:`records` met, and broken loose ref files
        (call it after reading the queue)."""
        found = []
        if self.unreadable:
            listing = run_git(
                ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                self.cwd,
                input="".join(f"{sha}\n" for sha in self.unreadable.values()),
                check=False,
            )
            types = dict(line.split(" ", 1) for line in listing.splitlines() if " " in line)
            for ref, sha in self.unreadable.items():
                kind = types.get(sha, "missing object")
                why = (
                    "is a commit without a queue record"
                    if kind == "commit"
                    else f"points to a {kind}, not a queued commit"
                )
                found.append((ref, sha, why))
        self.unreadable = {}
        return refdamage.set_aside(self.repo, self.updater, found, (QUEUE, RUNNING), self.listed)

    def head(self) -> str:
        """The baseline commit: ``HEAD`` of the user's workspace."""
        return run_git(["rev-parse", "--verify", "HEAD^{commit}"], self.cwd).strip()

    def branch(self) -> str | None:
        """The checked-out branch name, or ``None`` when detached."""
        out = run_git(["symbolic-ref", "-q", "--short", "HEAD"], self.cwd, check=False).strip()
        return out or None

    # -- queueing ---------------------------------------------------------------------------

    def snapshot_workspace(
        self,
        results: Sequence[str] = (),
        exclude: Sequence[str] = (),
        overlay: Mapping[str, bytes] | None = None,
    ) -> str:
        """Tree of the workspace as it is (see :func:`~sweeprun.store.git.snapshot_tree`)."""
        root, index = self.repo.root, self.repo.git_dir / "index"
        # What sweeprun wrote itself (plots, reports) is never an experiment's input.
        exclude = [*exclude, *written.excludes(self.repo)]
        return snapshot_tree(root, results, index, exclude, overlay)

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
        baseline are skipped (``force`` queues finished ones again, to replace their
        records); name clashes are errors (see :mod:`sweeprun.store.queueplan`).
        """
        return self.commit_plan(
            self.plan(items, force=force, force_items=force_items, exclude=exclude), in_place
        )

    def plan(
        self,
        items: Sequence[Experiment],
        *,
        force: bool = False,
        force_items: set[int] | None = None,
        exclude: Sequence[str] = (),
        overlay: Mapping[str, bytes] | None = None,
    ) -> QueuePlan:
        """What :meth:`enqueue` would do, with every check that can refuse made, and
        nothing written but git objects of the workspace snapshot (``overlay``: files as
        the caller will write them once the plan stands)."""
        baseline = self.head()
        if not items:
            return QueuePlan(baseline, "")
        tree = self.snapshot_workspace(exclude=exclude, overlay=overlay)
        existing = self.existing(baseline)
        return queueplan.plan(existing, items, baseline, tree, force=force, force_items=force_items)

    def existing(self, baseline: str) -> list[Record]:
        """The queued, running and finished records of ``baseline`` as planning reads them
        (key, name, id, spec, sweep, state) without parsing a record message: queued and
        running ones from their refs' subject lines (``sweeprun: queue NAME ID``; the
        commit's parent is its baseline), results from the results index. At 100,000
        results this is the index's read, not 100,000 messages decoded."""
        out = []
        fmt = "%(refname)%00%(objectname)%00%(parent)%00%(subject)"
        listing = run_git(["for-each-ref", f"--format={fmt}", QUEUE, RUNNING], self.cwd)
        unsure = []
        for line in listing.splitlines():
            ref, sha, parent, subject = [*line.split("\0"), "", "", ""][:4]
            words = subject.split(" ", 3)
            if parent.split(" ")[0] != baseline:
                continue
            if len(words) < 3 or words[:2] != ["sweeprun:", "queue"]:
                unsure.append(ref)  # not a subject this version writes: read the record
                continue
            raw = {"key": ref.rsplit("/", 1)[-1], "name": words[2], "baseline": baseline}
            out.append(Record(ref=ref, commit=sha, raw=raw))
        if unsure:
            wanted = set(unsure)
            out += [r for r in self.records(QUEUE, RUNNING) if r.ref in wanted]
        done = resultsindex.results(self.repo)
        names = resultsindex.FIELDS
        for row in done.rows:
            if row.baseline == baseline:
                fields = dict(zip(names, done.fields[row.pos], strict=True))
                out.append(Record(ref=row.ref, commit=row.commit, raw=fields))
        return out

    def commit_plan(self, plan: QueuePlan, in_place: bool = False) -> QueueOutcome:
        """Write a plan's queued commits and refs (one transaction)."""
        outcome = QueueOutcome(skipped=list(plan.skipped))
        if not plan.planned:
            return outcome
        now = int(time.time())
        records = [
            p.item.record(
                key=p.key,
                name=p.name,
                baseline=plan.baseline,
                queued_at=now,
                tree=plan.tree,
                replaces=p.replaces.commit if p.replaces is not None else None,
                in_place=in_place,
            )
            for p in plan.planned
        ]
        # Made as git takes them: 100,000 messages are not held at once.
        commits = (
            FastCommit(
                parent=plan.baseline,
                tree=plan.tree,
                message=format_message(f"sweeprun: queue {p.name} {p.item.id}", record),
                files={path: t.encode() for path, t in p.files.items()},
                timestamp=now,
            )
            for p, record in zip(plan.planned, records, strict=True)
        )
        author = commit_identity(self.cwd).committer_pair
        shas = fast_import_commits(self.cwd, commits, author)
        ops = [RefOp(QUEUE + r.key, sha, ZERO) for r, sha in zip(records, shas, strict=True)]
        # A study's trial takes its number in the study's ledger in the same transaction.
        ops += [
            RefOp(f"{STUDIES}{r.study}/{r.trial}", sha, ZERO)
            for r, sha in zip(records, shas, strict=True)
            if r.study
        ]
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
        leases.await_supervisors(self.journal.directory)
        found = self.orphans()
        for rec in found:
            kill(rec.key)
        if adopt is not None:
            found = [rec for rec in found if not adopt(rec)]
        self.release(found)
        for journal in leases.dead_journals(self.journal.directory):
            journal.unlink(missing_ok=True)  # all it named is back in the queue now
        return found

    def replaced(self) -> list[Record]:
        """Records that explicit reruns replaced (``show --all-records``)."""
        return self.records(REPLACED)
