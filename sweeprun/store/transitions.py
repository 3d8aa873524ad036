"""Every ref transition of the experiment store, and only here: commands and the runner
ask for a transition by name; none of them writes an ``update-ref`` transaction.

Each transition is one compare-and-swap transaction (``git update-ref --stdin``), made in
the parent process only: a ref changes only from the value the caller read, so two
runners (or a runner and a command) never both win. A lost race is a
:class:`~sweeprun.store.git.RefConflict`; what it means is the caller's to say.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from sweeprun.model import (
    CHECKPOINTS,
    EXPS,
    QUEUE,
    REPLACED,
    RUNNING,
    STASH,
    Record,
    replaced_ref,
    result_ref,
)
from sweeprun.store import leases
from sweeprun.store.git import ZERO, RefConflict, RefOp, RefUpdater, RepoPaths, run_git
from sweeprun.system.faults import storage_error

#: Loose result refs beyond which a run packs the refs (``git pack-refs --all``): listing
#: 100,000 loose refs takes seconds, packed ones a tenth of one.
PACK_AFTER = 1024
#: Space kept free for ref bookkeeping on a full disk (see :meth:`RefTransitions.release`).
RESERVE = "reserve"
RESERVE_BYTES = 256 * 1024


class RefTransitions:
    """The ref transitions of :class:`~sweeprun.store.records.ExpStore` (its base)."""

    repo: RepoPaths
    cwd: str
    #: This process's claims (see :mod:`sweeprun.store.leases`).
    journal: leases.LeaseJournal
    _updater: RefUpdater | None = None

    @property
    def updater(self) -> RefUpdater:
        """The one ``update-ref --stdin`` of this store (started on first use)."""
        if self._updater is None:
            self._updater = RefUpdater(self.cwd)
        return self._updater

    # -- the run: claim, publish, put back ----------------------------------------------------

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
        """Publish a result and drop the running ref, in one transaction.

        Append-only: the result takes its name's ref only when the ref is free, or holds
        the record this run was queued to replace (that one moves to
        ``refs/sweeprun/replaced/…``, still reachable). Any other holder (a name taken
        meanwhile by another runner) keeps its ref and the result lands under
        ``NAME-2`` (``-3``, …) instead. Returns the ref written.
        """
        drop = RefOp(running.ref, ZERO, running.commit)
        replaces = running.data.replaces
        baseline = running.baseline
        candidate = name
        for n in range(2, 1000):
            ref = result_ref(baseline, candidate)
            try:
                # The common case: a free name.
                self.updater.transaction([RefOp(ref, result_commit, ZERO), drop])
                return ref
            except RefConflict:
                current = run_git(["rev-parse", "-q", "--verify", ref], self.cwd, check=False)
                current = current.strip()
                if not current:
                    raise  # not the name: the running ref moved, or git could not write
            if current == result_commit:  # recorded already (an adopted report, again)
                with contextlib.suppress(RefConflict):
                    self.updater.transaction([drop])
                return ref
            if replaces and current == replaces and candidate == name:
                keep = RefOp(replaced_ref(baseline, name, current), current, ZERO)
                self.updater.transaction([RefOp(ref, result_commit, current), keep, drop])
                return ref
            candidate = f"{name}-{n}"
        raise RefConflict(f"{name}: no free name for the result")

    # -- commands: requeue, remove, rename, branch, stash -------------------------------------

    def requeue(self, records: Sequence[Record]) -> None:
        """Queue finished records again as they were queued (their ``queue_commit``),
        each result giving way to the rerun's and kept under ``replaced/`` (one
        transaction: all or none)."""
        ops = []
        for rec in records:
            ops.append(RefOp(QUEUE + rec.key, str(rec.meta["queue_commit"]), ZERO))
            if rec.ref.startswith(EXPS):
                keep = replaced_ref(rec.baseline, rec.name, rec.commit)
                ops += [RefOp(rec.ref, ZERO, rec.commit), RefOp(keep, rec.commit, ZERO)]
        self.updater.transaction(ops)

    def earlier(self, records: Iterable[Record]) -> list[Record]:
        """The records that reruns replaced under the names of ``records`` (results)."""
        names = {(r.baseline, r.name) for r in records if r.finished}
        if not names:
            return []
        return [r for r in self.records(REPLACED) if (r.baseline, r.name) in names]

    def remove(
        self, records: Sequence[Record], replaced: Sequence[Record] = (), chains: bool = False
    ) -> list[str]:
        """Delete ``records`` and ``replaced`` (the records their reruns replaced: see
        :meth:`earlier`) in one transaction; with ``chains``, the checkpoint chains of
        their keys too, where no other record names the key. Returns the keys whose
        chains went (their journals are the caller's to drop)."""
        doomed = [*records, *replaced]
        ops = [RefOp(r.ref, ZERO, r.commit) for r in doomed]
        dropped: list[str] = []
        if chains:
            gone = {r.ref for r in doomed}
            kept = {r.key for r in self.records() if r.ref not in gone}
            tips = self.checkpoint_tips()
            dropped = sorted({r.key for r in records if r.key in tips and r.key not in kept})
            ops += [RefOp(CHECKPOINTS + k, ZERO, tips[k]) for k in dropped]
        self.updater.transaction(ops)
        return dropped

    def rename(self, record: Record, new: str) -> None:
        """Give a result the name ``new`` (its replaced records go with it)."""
        target = result_ref(record.baseline, new)
        ops = [RefOp(target, record.commit, ZERO), RefOp(record.ref, ZERO, record.commit)]
        for old in self.earlier([record]):
            moved = replaced_ref(old.baseline, new, old.commit)
            ops += [RefOp(moved, old.commit, ZERO), RefOp(old.ref, ZERO, old.commit)]
        self.updater.transaction(ops)

    def create_branch(self, branch: str, commit: str) -> None:
        """``refs/heads/<branch>`` at ``commit``; a conflict if the branch exists."""
        self.updater.transaction([RefOp(f"refs/heads/{branch}", commit, ZERO)])

    def stash(self) -> str:
        """The commit of ``apply``'s stash, or ""."""
        return run_git(["rev-parse", "-q", "--verify", STASH], self.cwd, check=False).strip()

    def set_stash(self, commit: str, previous: str) -> None:
        """Point ``apply``'s stash at ``commit`` (it was at ``previous``, or nowhere)."""
        self.updater.transaction([RefOp(STASH, commit, previous or ZERO)])

    def pack_results(self) -> bool:
        """Pack the refs when more than :data:`PACK_AFTER` results are loose files
        (``git pack-refs --all``, as ``git gc`` does; safe beside other writers: git locks
        what it packs); whether it did."""
        top = Path(self.repo.common_dir) / EXPS
        loose = 0
        with contextlib.suppress(OSError), os.scandir(top) as baselines:
            for entry in baselines:
                if entry.is_dir():
                    with os.scandir(entry.path) as names:
                        loose += sum(1 for _ in names)
                if loose > PACK_AFTER:
                    break
        if loose <= PACK_AFTER:
            return False
        run_git(["pack-refs", "--all"], self.cwd, check=False)
        return True

    # -- checkpoint chains ----------------------------------------------------------------------

    def checkpoint_tips(self) -> dict[str, str]:
        """Every checkpoint chain's last commit, by experiment key."""
        out = run_git(["for-each-ref", "--format=%(refname) %(objectname)", CHECKPOINTS], self.cwd)
        return {
            ref.removeprefix(CHECKPOINTS): sha
            for ref, sha in (line.split() for line in out.splitlines())
        }

    def checkpoint_tip(self, key: str) -> str:
        """The last commit of ``key``'s checkpoint chain, or ""."""
        ref = CHECKPOINTS + key
        return run_git(["rev-parse", "-q", "--verify", ref], self.cwd, check=False).strip()

    def move_checkpoints(self, key: str, commit: str, current: str) -> None:
        """Point ``key``'s chain at ``commit`` (from ``current``; "" to drop: none)."""
        self.updater.transaction([RefOp(CHECKPOINTS + key, commit or ZERO, current or ZERO)])

    # -- what a transition reads (the store's reading) ---------------------------------------

    def records(self, *namespaces: str) -> list[Record]:
        """Every record under ``namespaces`` (default: queue, running and results)."""
        raise NotImplementedError
