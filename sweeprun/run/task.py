"""A job as its worker sees it: the reference it was given and what it read from git.

The worker reads the experiment's record (stages, params, expectations) and its params
files from the queued commit — one ``git cat-file --batch`` — so the job that travelled
stays small whatever the params weigh.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeprun.model import Job, QueueRecord, Stage, parse_message, parse_record
from sweeprun.run.warm import WarmPool
from sweeprun.spec.dag import committed_results
from sweeprun.store.cache import Cache
from sweeprun.store.catfile import ObjectReader
from sweeprun.store.remotes import open_remote
from sweeprun.store.tiered import TieredCache
from sweeprun.system import procs
from sweeprun.system.supervisor import Supervisor


class QueuedCommitError(RuntimeError):
    """The queued commit is missing or carries no queue record."""


def read_queued(
    common_dir: str,
    commit: str,
    reader: ObjectReader | None = None,
    changed: tuple[str, ...] | None = None,
) -> tuple[QueueRecord, dict[str, bytes]]:
    """The queue record in ``commit``'s message, and the params files whose content the
    commit changes relative to the workspace snapshot (``record.tree``).

    With ``changed`` (the job knows which files those are) the commit and the files are
    read in one request; otherwise each params file is compared with the snapshot's.
    """
    if reader is None:
        with ObjectReader(common_dir) as own:
            return read_queued(common_dir, commit, own, changed)
    names = [commit] + [f"{commit}:{p}" for p in changed or ()]
    raw, *known = reader.read(names)
    _, _, message = (raw or b"").partition(b"\n\n")
    meta = parse_message(message.decode("utf-8", "replace"))
    record = parse_record(meta) if meta is not None else None
    if not isinstance(record, QueueRecord):
        raise QueuedCommitError(f"{commit}: not a queued experiment")
    record = record.queued()
    if changed is not None:
        files = {p: b for p, b in zip(changed, known, strict=True) if b is not None}
        return record, files
    paths = list(record.params)
    names = [f"{commit}:{p}" for p in paths]
    if record.tree:
        names += [f"{record.tree}:{p}" for p in paths]
    blobs = reader.read(names)
    new, old = blobs[: len(paths)], blobs[len(paths) :] or [None] * len(paths)
    files = {p: n for p, n, o in zip(paths, new, old, strict=True) if n is not None and n != o}
    return record, files


@dataclass(frozen=True)
class Shared:
    """What a job shares with the process it runs in: the run loop (a thread of the
    default backend) or a git-only worker; never pickled, never sent to another process."""

    #: The run loop's ``git cat-file --batch``: the job reads its queued commit through it.
    reader: ObjectReader | None = None
    #: The runner's watchdog: the job announces its command's process group to it.
    watchdog: Supervisor | None = None
    #: A git-only worker's relay: each checkpoint ``(commit, step)`` is handed to it
    #: before the program goes on (pushed where the runner and other workers see it).
    relay: Callable[[str, int], None] | None = None
    #: The run's warm Python workers (``call:`` and ``warm: true`` stages), if it keeps any.
    warm: WarmPool | None = None
    #: Asked at each checkpoint ``(key, step, metrics)`` of an ``optimize:`` trial whether
    #: to stop it: why (it is then pruned), or "" to go on.
    prune: Callable[[str, int, Mapping[str, Any]], str] | None = None


@dataclass(frozen=True)
class Task:
    """One job being worked on: the job, its queue record and its params files."""

    job: Job
    record: QueueRecord
    #: The params files the queued commit adds to the workspace snapshot ``record.tree``.
    files: dict[str, bytes] = field(default_factory=dict)
    shared: Shared = field(default_factory=Shared)

    @classmethod
    def load(cls, job: Job, shared: Shared | None = None) -> Task:
        """Read the job's queued commit (through the run loop's reader when it shares one)."""
        shared = shared or Shared()
        record, files = read_queued(job.common_dir, job.commit, shared.reader, job.changed)
        return cls(job, record, files, shared)

    # The job's reference, and the record's facts, under the names the worker uses.
    @property
    def key(self) -> str:
        return self.job.key

    @property
    def commit(self) -> str:
        return self.job.commit

    @property
    def repo_root(self) -> str:
        return self.job.repo_root

    @property
    def common_dir(self) -> str:
        return self.job.common_dir

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def exp_id(self) -> str:
        return self.record.id

    @property
    def baseline(self) -> str:
        return self.record.baseline

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.record.stages

    @property
    def base_tree(self) -> str:
        return self.record.tree

    @property
    def state_dir(self) -> Path:
        return Path(self.job.common_dir) / "sweeprun"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / f"{self.key}.log"

    @property
    def journal(self) -> str:
        """The runner's lease journal (empty: none)."""
        return str(self.state_dir / "leases" / self.job.journal) if self.job.journal else ""

    @property
    def params_files(self) -> list[str]:
        """The experiment's params files, the one bare keys refer to first (records list
        files in sorted order, which says nothing of which one is the default)."""
        files = list(self.record.params)
        default = self.record.params_default
        if not default:  # a record written before it said: params.yaml, as DVC would
            default = next((p for p in files if posixpath.basename(p) == "params.yaml"), "")
        if default not in files:
            return files
        return [default, *(p for p in files if p != default)]

    @property
    def force(self) -> bool:
        """Run every stage, whatever the run-cache holds."""
        return self.job.options.force or self.job.options.reset

    @property
    def allowed_new(self) -> tuple[str, ...]:
        """The new files a result may take in-process: every declared result, ignored
        or not, since those are committed either way (empty: always ask git)."""
        return tuple(committed_results(self.stages)) if self.job.setup.fast_add else ()

    def cache(self) -> Cache:
        """The output cache."""
        setup = self.job.setup
        root = Path(setup.cache_dir) if setup.cache_dir else self.state_dir / "cache"
        if self.job.url and setup.cache_remote:
            # A git-only worker: its own cache, then the one every machine shares.
            return TieredCache(root, setup.cache_types, remote=open_remote(setup.cache_remote))
        return Cache(root, setup.cache_types)

    def env(self, ws: Path) -> dict[str, str]:
        """The environment of the experiment's commands."""
        env = dict(os.environ)
        env.update(dict(self.job.env))
        env.update(
            {
                "SWEEPRUN_EXP_NAME": self.name,
                "SWEEPRUN_EXP_ID": self.exp_id,
                "SWEEPRUN_BASELINE_REV": self.baseline,
                "SWEEPRUN_ROOT": self.repo_root,
                "SWEEPRUN_WORKSPACE": str(ws),
                # What `dvc repro` gives its commands, and `dvc exp run`'s name: dvclive then
                # logs into the workspace as a pipeline step and never saves an experiment
                # (refs) of its own. Not DVC_EXP_BASELINE_REV: with it dvclive git-adds its
                # files, writing the object store every pooled workspace shares, and its
                # dulwich fails when two experiments add the same object at once (sweeprun
                # records those files anyway).
                "DVC_ROOT": str(ws),
                "DVC_EXP_NAME": self.name,
                # Marks the job's whole process tree, for killing it (see sweeprun.system.procs).
                procs.TOKEN_ENV: procs.job_token(self.key, self.common_dir),
            }
        )
        if self.job.options.slots and not self.job.in_place:
            # One device per concurrent job: the pooled workspace's slot number.
            slots = self.job.options.slots
            env["CUDA_VISIBLE_DEVICES"] = slots[int(ws.name[1:]) % len(slots)]
        return env
