"""Git-only workers (``--worker-url``): jobs on machines that share nothing but the network.

Runner side: :class:`Dispatch` pushes the queued commits it will hand out to the worker URL
(``refs/sweeprun/jobs/<key>``, one push for the whole run), checks that cached outs have a
cache remote to go to, passes checkpoints the runner holds on to the URL, and unpacks each
returned result (:meth:`Dispatch.receive`) before the run loop writes any ref — only the
runner writes refs. :class:`CheckpointInbox` takes the checkpoints workers announce while
jobs run and journals them like local ones.

Worker side: :func:`run_remote` keeps a bare mirror of the URL in the worker's local
directory, fetches the job's commit into it (only what it lacks), runs the job through the
same :func:`~sweeprun.run.executor.run_job` in a pooled worktree of the mirror, and
returns the result commit's objects and the log in the report. Nothing in the job or on
the worker names a path of the runner's machine.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from sweeprun.exceptions import UsageError
from sweeprun.model import QUEUE, RUNNING, Job, JobReport, JobSetup, Record
from sweeprun.run import checkpoint
from sweeprun.run.executor import job_error, run_job
from sweeprun.run.snapshot import read_result
from sweeprun.run.task import Shared
from sweeprun.store import leases, transport
from sweeprun.store.git import run_git
from sweeprun.store.transport import CHECKPOINTS, JOBS, RESULTS, TransportError
from sweeprun.system import procs

#: The Dask event topic on which workers announce checkpoints.
TOPIC = "sweeprun-checkpoint"
#: Of a long log, this much (its end) comes back with the report.
LOG_LIMIT = 4 << 20
#: How often a remote job asks its worker whether the runner still wants it.
WANTED_POLL = 1.0


# -- worker side --------------------------------------------------------------------------


def worker_dir(worker: Any) -> Path:
    """Where this worker keeps its mirrors: ``SWEEPRUN_WORKER_DIR``, else the Dask
    ``worker``'s local directory, else a directory of this user's in the temporary one."""
    env = os.environ.get("SWEEPRUN_WORKER_DIR")
    if env:
        return Path(env)
    if worker is not None:
        return Path(worker.local_directory) / "sweeprun"
    return Path(tempfile.gettempdir()) / f"sweeprun-worker-{os.getuid()}"


def run_remote(job: Job) -> JobReport:
    """Run ``job`` on a git-only worker: mirror, fetch, run, return objects and log."""
    started = time.time()
    host = socket.gethostname()
    worker = _current_worker()
    try:
        mirror = transport.open_mirror(worker_dir(worker), job.url)
        transport.fetch_job(mirror, job.url, job.key, job.commit, job.checkpoints)
    except (OSError, TransportError) as exc:
        why = f"worker {host} could not fetch the experiment from {job.url}: {exc}"
        return job_error(job, started, " ".join(why.split()))
    adopted = _published(mirror, job, host)
    if adopted is not None:
        return adopted
    # The mirror stands in for the repository (its cache, in front of the cache remote,
    # for the runner's: the job carries no ``cache_dir``).
    local = replace(job, repo_root=str(mirror), common_dir=str(mirror), journal="")
    # A rerun on this worker starts from the URL's checkpoints, not a stale local journal.
    checkpoint.journal_path(mirror, job.key).unlink(missing_ok=True)
    relay = _relay(mirror, job.url, job.key, worker)
    with _cancel_when_unwanted(procs.job_token(job.key, mirror)):
        report = run_job(local, Shared(relay=relay))
    objects = b""
    if report.result_commit:
        try:
            objects = transport.pack(mirror, [report.result_commit], [job.commit])
        except TransportError as exc:
            return job_error(job, started, f"worker {host} could not pack the result: {exc}")
        # Published before Dask hears of it: if this worker dies before it reports, the
        # task Dask runs again elsewhere finds the result there and does not run the job.
        with contextlib.suppress(TransportError):
            transport.push(mirror, job.url, [f"+{report.result_commit}:{_result_ref(job)}"])
    return replace(report, log_path="", objects=objects, log=_read_log(report.log_path))


def _result_ref(job: Job) -> str:
    """Where a job publishes its result: under its key and this run's claim of it (``.``
    in a claim is no trouble for a ref), so only a task of the same claim adopts it — a
    later runner's claim of an experiment whose job was killed runs it."""
    return f"{RESULTS}{job.key}/{job.claim.replace(':', '_')}"


def _published(mirror: Path, job: Job, host: str) -> JobReport | None:
    """The report of this very job's result, when a worker published it already (it died
    before Dask heard of it, and Dask runs the task again here): adopted, not run."""
    ref = _result_ref(job)
    try:
        sha = transport.remote_refs(mirror, job.url, ref).get(ref)
        if not sha:
            return None
        transport.fetch_objects(mirror, job.url, ref)
        result = read_result(mirror, sha)
        if result is None or result.queue_commit != job.commit:
            return None  # another run's result for this key: this job runs
        objects = transport.pack(mirror, [sha], [job.commit])
    except (OSError, TransportError):
        return None  # cannot tell: running it is the safe side
    note = f"sweeprun: adopted on {host}: the worker that ran it died before reporting it\n"
    report = JobReport.of_result(result, sha, "")
    return replace(report, objects=objects, log=(result.log_tail + "\n" + note).encode())


def _read_log(path: str) -> bytes:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - LOG_LIMIT))
        return f.read()
    return b""


def _current_worker() -> Any:
    """The Dask worker running this task (asked from the task's own thread), or ``None``."""
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker  # optional extra; ValueError: not in a worker

        return get_worker()
    return None


def _relay(mirror: Path, url: str, key: str, worker: Any) -> Callable[[str, int], None]:
    """What a checkpoint does besides the mirror's journal: it is pushed to the URL
    (before the program goes on, so a lost worker loses at most what came after) and
    announced to the runner. (It runs in the checkpoint watcher's thread, where Dask no
    longer knows its worker: ``worker`` was asked for before.)"""

    def relay(sha: str, step: int) -> None:
        transport.push(mirror, url, [f"+{sha}:{CHECKPOINTS}{key}"])
        if worker is not None:
            worker.log_event(TOPIC, {"key": key, "sha": sha, "step": step})

    return relay


@contextlib.contextmanager
def _cancel_when_unwanted(token: str) -> Iterator[None]:
    """Kill the job's processes when the cluster no longer wants its result (the runner
    that submitted it is gone: Dask releases its tasks but cannot stop a running one)."""
    try:
        # The optional extra (and Dask's own task state): only on a Dask worker.
        from distributed import get_worker
        from distributed.utils import thread_state  # type: ignore[attr-defined]

        worker, key = get_worker(), thread_state.key
    except (ImportError, ValueError, AttributeError):
        yield  # not on a Dask worker: nobody to ask
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(WANTED_POLL):
            ts = worker.state.tasks.get(key)
            if ts is None or ts.state in ("cancelled", "released", "forgotten"):
                procs.signal_token(token, signal.SIGKILL)
                return

    thread = threading.Thread(target=watch, name="sweeprun-wanted", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# -- runner side --------------------------------------------------------------------------


class Dispatch:
    """The runner's half of the git transport for one run."""

    def __init__(self, common_dir: Path, url: str, setup: JobSetup) -> None:
        self.common_dir = common_dir
        self.url = url
        self.cache_remote = setup.cache_remote
        #: Whether returned objects may be written in-process (see ``store_pack``).
        self.fast = setup.fast_objects
        self.keys: set[str] = set()

    def publish(self, records: Iterable[Record]) -> None:
        """Make every record's queued commit fetchable at the URL (one push), after
        checking that what they produce has somewhere to go."""
        records = list(records)
        if not self.cache_remote:
            cached = [r for r in records if any(o.cache for s in r.data.stages for o in s.outs)]
            if cached:
                raise UsageError(
                    f"--worker-url {self.url}: {cached[0].name} has cached outs, which "
                    "git-only workers keep in a cache remote: set git config "
                    "sweeprun.cacheRemote DIR (a directory every machine mounts) or an "
                    "object store URL such as s3://bucket/prefix"
                )
        try:
            transport.push(
                self.common_dir, self.url, [f"+{r.commit}:{JOBS}{r.key}" for r in records]
            )
        except TransportError as exc:
            raise UsageError(
                f"--worker-url {self.url}: cannot push the queued experiments there: {exc}"
            ) from None
        self.keys.update(r.key for r in records)

    def pass_checkpoints(self, record: Record, reset: bool, rev: str | None) -> None:
        """Hand the URL the checkpoint chain a job must continue: with ``--reset`` none,
        with ``--rev`` the rewound one, else the runner's own when the URL has none."""
        if not any(s.checkpoint_outs for s in record.data.stages):
            return
        ref = CHECKPOINTS + record.key
        there = transport.remote_refs(self.common_dir, self.url, ref)
        chain = checkpoint.read_journal(checkpoint.journal_path(self.common_dir, record.key))
        if reset:
            transport.push(self.common_dir, self.url, [f":{ref}"] if there else [])
        elif chain and (rev or ref not in there):
            transport.push(self.common_dir, self.url, [f"+{chain[-1][0]}:{ref}"])

    def receive(self, report: JobReport, record: Record | None, journal: Path | None) -> JobReport:
        """Store a returned result's objects (verified whole) and its log; note the
        result in the runner's journal, as a local job would, so that a runner killed
        before it writes the ref leaves it to be adopted."""
        if record is not None and report.name == report.key:  # it could not read its record
            report = replace(report, name=record.name, exp_id=record.data.id)
        log_path = self.common_dir / "sweeprun" / "logs" / f"{report.key}.log"
        text = report.log or report.log_tail.encode()  # (no log: the job did not start)
        if text:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_bytes(text)
        report = replace(report, log_path=str(log_path), log=b"")
        if report.result_commit is None:
            return replace(report, objects=b"")
        transport.store_pack(self.common_dir, report.objects, report.result_commit, self.fast)
        if journal is not None:
            with contextlib.suppress(OSError):
                leases.record_result(journal, report.key, report.result_commit)
        return replace(report, objects=b"")

    def clean_up(self) -> None:
        """Drop the URL's refs of this run's jobs (their checkpoints and published results)
        that are done:
        not queued (a stopped run put them back) nor running (under another runner)."""
        if not self.keys:
            return
        with contextlib.suppress(TransportError):
            there = transport.remote_refs(self.common_dir, self.url, "refs/sweeprun/*")
            listed = run_git(
                ["for-each-ref", "--format=%(refname)", QUEUE, RUNNING], self.common_dir
            )
            pending = {line.rsplit("/", 1)[-1] for line in listed.splitlines()}
            gone = [
                f":{ref}"
                for ref in there
                if ref.startswith((JOBS, CHECKPOINTS, RESULTS))
                and _key_of(ref) in self.keys - pending
            ]
            transport.push(self.common_dir, self.url, gone)


def _key_of(ref: str) -> str:
    """The experiment key a URL ref of a job is named for."""
    if ref.startswith(RESULTS):
        return ref[len(RESULTS) :].split("/", 1)[0]
    return ref.rsplit("/", 1)[-1]


class CheckpointInbox:
    """Checkpoints that git-only workers announce while their jobs run: fetched from the
    URL and appended to the runner's journals, which the publisher turns into refs."""

    def __init__(self, common_dir: Path, url: str, running: Callable[[], set[str]]) -> None:
        self.common_dir = common_dir
        self.url = url
        self.running = running
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="sweeprun-inbox", daemon=True)

    def handle(self, event: Any) -> None:
        """A Dask event ``(time, message)`` (called on the client's event loop: no I/O)."""
        _, msg = event
        if isinstance(msg, dict):
            self._queue.put(msg)

    def _loop(self) -> None:
        while (msg := self._queue.get()) is not None:
            with contextlib.suppress(Exception):  # a missed one arrives with the result
                self._take(str(msg["key"]), str(msg["sha"]), int(msg["step"]))

    def _take(self, key: str, sha: str, step: int) -> None:
        if key not in self.running():
            return
        path = checkpoint.journal_path(self.common_dir, key)
        chain = checkpoint.read_journal(path)
        if chain and chain[-1][1] >= step:
            return
        if not transport.has_commit(self.common_dir, sha):
            transport.fetch_objects(self.common_dir, self.url, CHECKPOINTS + key)
        if transport.has_commit(self.common_dir, sha):
            checkpoint.append_journal(path, sha, step)

    def __enter__(self) -> CheckpointInbox:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
