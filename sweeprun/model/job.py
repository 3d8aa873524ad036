"""What crosses from the runner to a worker and back: small, picklable values.

A :class:`Job` is a reference — where the repository is, which queued commit, under
which options — never the experiment's params or stages: the worker reads those from the
queued commit, so a job stays the same small size whatever the params files weigh, and
names no path of the runner's machine but the repository's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeprun.model.states import Outcome, State

if TYPE_CHECKING:
    from sweeprun.model.records import Result

#: The environment variable naming a checkpointing stage's signal file.
CHECKPOINT_ENV = "SWEEPRUN_CHECKPOINT"
#: ``--backend`` choices.
BACKENDS = ("threads", "loky", "dask")


@dataclass(frozen=True)
class RunOptions:
    """How to run experiments: the options below the command line (never the Namespace)."""

    jobs: int = 1
    backend: str = "threads"
    scheduler: str | None = None
    connect_timeout: float = 10.0
    #: ``--worker-url``: workers reach the repository only through this git URL.
    worker_url: str | None = None
    #: Kill an experiment's whole process tree after this many seconds.
    timeout: float | None = None
    retries: int = 0
    #: ``--slots``/``--gpus``: each concurrent job gets one as CUDA_VISIBLE_DEVICES.
    slots: tuple[str, ...] = ()
    #: Discard checkpoints and start over.
    reset: bool = False
    #: Resume from this checkpoint (a commit or ``NAME@N``) instead of the last one.
    rev: str | None = None
    #: Run stages even when the run-cache has their outputs.
    force: bool = False
    #: Stop dispatching after this many failures (0: never; ``-x`` is 1).
    maxfail: int = 0


@dataclass(frozen=True)
class JobSetup:
    """What the runner resolved once per run and every job shares."""

    #: ``Name <email>`` of result commits; empty → let git decide (slow path).
    author: str = ""
    committer: str = ""
    #: Whether result objects may be written in-process (SHA-1 repositories, fast paths on).
    fast_objects: bool = False
    #: Whether a result may take its declared results without ``git add`` (no filters,
    #: attributes or conversions configured) — see ``FastAddPolicy``.
    fast_add: bool = False
    #: Whether a pooled workspace may switch between sibling experiments without git.
    fast_switch: bool = False
    #: The output cache when configured outside the repository (``sweeprun.cacheDir``);
    #: empty: the repository's own.
    cache_dir: str = ""
    cache_types: tuple[str, ...] = ("reflink", "copy")
    #: ``sweeprun.cacheRemote`` (a directory every machine mounts, or an object store
    #: URL): the cache that git-only workers share, behind their own.
    cache_remote: str = ""


@dataclass(frozen=True)
class Job:
    """One experiment to run: a reference to its queued commit."""

    #: Where the repository is: its work tree and its (common) git directory (empty for
    #: a git-only worker, which works in its own mirror of ``url``).
    repo_root: str
    common_dir: str
    #: The queued commit (baseline + workspace + params files) and the experiment's key.
    commit: str
    key: str
    options: RunOptions = field(default_factory=RunOptions)
    setup: JobSetup = field(default_factory=JobSetup)
    #: Extra environment from plugins (``sweeprun_job_env``) and the commit identity.
    env: tuple[tuple[str, str], ...] = ()
    #: This run's claim of the experiment: an outcome a killed runner left in a slot is
    #: adopted only for the claim it was made under.
    claim: str = "-"
    #: File name of the runner's lease journal (in the repository's state directory):
    #: the job notes its result commit there the moment it exists.
    journal: str = ""
    #: Run in the repository's own work tree (``sweeprun run``), not a pooled workspace.
    in_place: bool = False
    #: The params files the queued commit changes, when its record says (schema 2): the
    #: worker then reads the commit and those files in one request.
    changed: tuple[str, ...] | None = None
    #: The git URL a git-only worker fetches the queued commit from (``--worker-url``);
    #: empty: the worker sees the repository at ``repo_root``.
    url: str = ""
    #: Whether a stage checkpoints: a git-only worker then fetches the URL's checkpoints
    #: of this experiment before it starts (to resume where another worker stopped).
    checkpoints: bool = False


@dataclass(frozen=True)
class JobReport:
    """What comes back from a worker: small, picklable, enough to publish and report."""

    key: str
    name: str
    exp_id: str
    outcome: Outcome
    returncode: int | None
    started: float
    finished: float
    result_commit: str | None
    log_path: str
    log_tail: str
    metrics: Mapping[str, Any] = field(default_factory=dict, hash=False)
    message: str = ""
    #: Set when the machine failed the job (no space left, I/O error): a runner stops
    #: dispatching, since every next job would fail the same way.
    storage_fault: bool = False
    #: Set when the run's stop (Ctrl+C, SIGTERM, SIGHUP) cut the job short: it is not a
    #: result, and goes back to the queue.
    interrupted: bool = False
    #: The recorded state.
    state: State = State.UNKNOWN
    #: Each stage's (name, status, message): ``ran``, ``cached``, ``skipped``, ``failed``.
    stages: tuple[tuple[str, str, str], ...] = ()
    #: From a git-only worker: the result's git objects (a pack the runner unpacks and
    #: verifies before writing a ref) and the whole log.
    objects: bytes = field(default=b"", repr=False)
    log: bytes = field(default=b"", repr=False)

    @classmethod
    def of_result(cls, result: Result, commit: str, log_path: str) -> JobReport:
        """The report of a job whose result commit exists already: adopted, not run."""
        return cls(
            key=result.key,
            name=result.name,
            exp_id=result.id,
            outcome=(
                Outcome.PASSED if result.state in (State.SUCCESS, State.PRUNED) else Outcome.FAILED
            ),
            returncode=result.returncode,
            started=result.started,
            finished=result.finished,
            result_commit=commit,
            log_path=log_path,
            log_tail=result.log_tail,
            metrics=result.metrics,
            message=result.message,
            state=result.state,
        )

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED
