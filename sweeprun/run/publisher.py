"""Checkpoints seen from the runner: publishing journals as refs, ``--reset``/``--rev``.

Only the runner (parent) writes refs. While jobs run, a background thread moves each
job's checkpoint journal into ``refs/sweeprun/checkpoints/<key>``; the checkpoints it
found are announced to plugins (``sweeprun_checkpoint``) from the run loop's own thread,
as each report arrives and when the run ends — never from the background thread.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from sweeprun.exceptions import UsageError
from sweeprun.model import EXPS, Record, parse_message, parse_record
from sweeprun.run import checkpoint
from sweeprun.store.git import RefConflict, run_git
from sweeprun.store.records import ExpStore

#: Where ``apply NAME@N`` and in-place checkpoints leave the checkpoint that the user's
#: workspace holds: the next ``sweeprun run`` continues from it.
WORKSPACE_CHECKPOINT = "workspace-checkpoint"

Notify = Callable[[Record, str, int], None]


class CheckpointPublisher:
    """Moves journals of running jobs into ``refs/sweeprun/checkpoints/<key>``."""

    def __init__(
        self, store: ExpStore, running: Callable[[], Iterable[tuple[str, Record]]]
    ) -> None:
        self.store = store
        self.running = running
        self.seen: dict[str, int] = {}
        self._pending: list[tuple[Record, str, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeprun-publish", daemon=True)

    def publish(self, key: str, record: Record | None = None) -> None:
        """Publish ``key``'s journal; its new checkpoints wait for :meth:`announce`."""
        store = self.store
        chain = checkpoint.load_chain(store.repo.common_dir, store.cwd, key)
        with self._lock:
            if not chain or self.seen.get(key) == len(chain):
                return
            current = store.checkpoint_tip(key)
            if current != chain[-1][0]:
                with contextlib.suppress(RefConflict):
                    store.move_checkpoints(key, chain[-1][0], current)
            if record is not None:
                for sha, step in chain[self.seen.get(key, 0) :]:
                    self._pending.append((record, sha, step))
            self.seen[key] = len(chain)

    def announce(self, notify: Notify) -> None:
        """Tell ``notify`` about every checkpoint published since the last call."""
        with self._lock:
            pending, self._pending = self._pending, []
        for record, sha, step in pending:
            notify(record, sha, step)

    def publish_all(self) -> None:
        """What any runner left behind, killed ones included (announced to nobody)."""
        d = Path(self.store.repo.common_dir) / "sweeprun" / "checkpoints"
        if d.is_dir():
            for journal in d.iterdir():
                if "." not in journal.name:  # not a journal being rewritten
                    self.publish(journal.name)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            for key, rec in list(self.running()):
                self.publish(key, rec)

    def __enter__(self) -> CheckpointPublisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


_NAME_AT = re.compile(r"(.+)@([0-9]+)")


def resolve_rev(store: ExpStore, rev: str) -> str:
    """The checkpoint commit ``rev`` names: ``NAME@N`` (the ids ``show`` prints; the
    current baseline's experiment first) or anything git resolves to a commit."""
    match = _NAME_AT.fullmatch(rev)
    if match:
        name, step = match.group(1), int(match.group(2))
        head = store.head()
        found = sorted(
            (r for r in store.records(EXPS) if r.name == name),
            key=lambda r: r.baseline != head,
        )
        for rec in found:
            hit = checkpoint.at_step(store.cwd, rec, step)
            if hit is not None:
                return hit[0]
        raise UsageError(f"--rev {rev}: no checkpoint {step} of an experiment named {name!r}")
    sha = run_git(["rev-parse", "-q", "--verify", f"{rev}^{{commit}}"], store.cwd, check=False)
    if not sha.strip():
        raise UsageError(f"--rev {rev}: no such checkpoint commit (or NAME@N, as 'show' prints it)")
    return sha.strip()


def prepare_checkpoints(
    store: ExpStore, record: Record, reset: bool, rev: str | None, in_place: bool = False
) -> None:
    """``--reset`` drops an experiment's checkpoints; ``--rev`` (a resolved commit) rewinds
    them to one of its own or seeds them from another experiment's. An in-place run
    continues from the checkpoint the workspace holds (``apply NAME@N``, or its last one)."""
    common = store.repo.common_dir
    marker = store.repo.state_dir / WORKSPACE_CHECKPOINT
    if reset:
        checkpoint.journal_path(common, record.key).unlink(missing_ok=True)
        current = store.checkpoint_tip(record.key)
        if current:
            store.move_checkpoints(record.key, "", current)
        return
    if not any(s.checkpoint_outs for s in record.data.stages):
        return  # nothing of this experiment checkpoints: no chain to continue
    if rev is None and in_place and marker.is_file():
        rev = marker.read_text().strip() or None
    if not rev:
        return
    chain = checkpoint.load_chain(common, store.cwd, record.key)
    shas = [c for c, _ in chain]
    if rev in shas:
        checkpoint.write_journal(common, record.key, chain[: shas.index(rev) + 1])
        return
    meta = parse_message(run_git(["log", "-1", "--format=%B", rev], store.cwd, check=False))
    data = parse_record(meta) if meta is not None else None
    if data is None or data.baseline != record.baseline:
        if in_place and rev == (marker.read_text().strip() if marker.is_file() else ""):
            return  # the workspace's checkpoint belongs to another baseline: start afresh
        raise UsageError(f"--rev {rev[:12]}: not a checkpoint at baseline {record.baseline[:7]}")
    older = reversed(checkpoint.chain(store.cwd, rev, record.baseline))
    checkpoint.write_journal(common, record.key, [(sha, int(m["step"])) for sha, m in older])


def remember_workspace_checkpoint(store: ExpStore, key: str) -> None:
    """After an in-place run: the workspace now holds this experiment's last checkpoint."""
    chain = checkpoint.read_journal(checkpoint.journal_path(store.repo.common_dir, key))
    set_workspace_checkpoint(store, chain[-1][0] if chain else "")


def set_workspace_checkpoint(store: ExpStore, commit: str) -> None:
    """Note the checkpoint commit the user's workspace holds (empty: none)."""
    marker = store.repo.state_dir / WORKSPACE_CHECKPOINT
    if commit:
        marker.write_text(commit + "\n")
    else:
        marker.unlink(missing_ok=True)
