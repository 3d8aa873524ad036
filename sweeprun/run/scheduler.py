"""The run loop: claim queued records, hand jobs to joblib, publish results as they come.

Jobs are claimed lazily, one per free slot, so several runners can drain one queue and
``-x`` stops dispatching at once. Results are published in completion order by this
(parent) process only; workers never write refs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun.exceptions import GitError, UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import Job, JobReport, JobSetup, Outcome, Record, RunOptions
from sweeprun.run import workspace
from sweeprun.run.executor import not_started, run_job, run_job_once
from sweeprun.run.publisher import (
    CheckpointPublisher,
    prepare_checkpoints,
    remember_workspace_checkpoint,
    resolve_rev,
)
from sweeprun.run.remote import TOPIC, CheckpointInbox, Dispatch, run_remote
from sweeprun.run.task import Shared
from sweeprun.run.warm import WarmPool
from sweeprun.store import fastgit, leases
from sweeprun.store.cache import cache_config
from sweeprun.store.catfile import ObjectReader
from sweeprun.store.git import commit_identity
from sweeprun.store.tiered import configured_remote
from sweeprun.store.transport import TransportError
from sweeprun.system import procs
from sweeprun.system.faults import storage_error
from sweeprun.system.stopping import Stopper
from sweeprun.system.supervisor import Supervisor

if TYPE_CHECKING:
    from sweeprun._core.session import Session

#: The GIL switch interval during a run (see ``sweeprun_runloop``).
SWITCH_INTERVAL = 0.0001
#: ``--backend`` → joblib's backend name.
JOBLIB_BACKENDS = {"threads": "threading", "loky": "loky", "dask": "dask"}


class FailFast:
    """``run_job``, counting failures toward ``-x``/``--maxfail`` in the worker thread.

    joblib asks for the next job the moment one ends, before the run loop has seen its
    report, and takes jobs from the queue ``-j`` at a time: so failures are counted here,
    and a job that reaches a worker once the run is stopping (``-x``, a full disk, a
    signal) does not start: it goes back to the queue.
    """

    def __init__(self, session: Session, maxfail: int, shared: Shared) -> None:
        self.session = session
        self.maxfail = maxfail
        #: The run loop's object reader and watchdog, for the jobs of this process.
        self.shared = shared
        self.failures = 0
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> JobReport:
        if self.session.shouldstop:
            return not_started(job)
        report = run_job(job, self.shared)
        if self.maxfail and not report.passed and not report.interrupted:
            with self._lock:
                self.failures += 1
                if self.failures >= self.maxfail and not self.session.shouldstop:
                    self.session.shouldstop = f"stopping after {self.failures} failures"
        return report


def claim_token(lease: leases.Lease | None) -> str:
    """How a job and a later reclaimer name one claim of an experiment."""
    return "-" if lease is None else f"{lease.pid}.{lease.started!r}"


def job_setup(root: Path, common_dir: Path) -> tuple[JobSetup, dict[str, str]]:
    """What every job of a run shares, resolved once (a few git calls): the fast paths,
    the output cache, and the commit identity (also as environment, for git itself)."""
    fast = fastgit.resolve(root, common_dir)
    ident = commit_identity(root)
    cache_root, types = cache_config(common_dir)
    default = Path(common_dir) / "sweeprun" / "cache"
    setup = JobSetup(
        author=ident.author,
        committer=ident.committer,
        fast_objects=fast.objects,
        fast_add=fast.add,
        fast_switch=fast.switch,
        cache_dir="" if cache_root == default else str(cache_root),
        cache_types=types,
    )
    return setup, ident.env()


def make_job(
    session: Session,
    record: Record,
    options: RunOptions,
    setup: JobSetup | None = None,
    env: dict[str, str] | None = None,
    url: str = "",
) -> Job:
    """The picklable job for a claimed record: a reference to its queued commit (for a
    git-only worker, at ``url``: the job then names no path of this machine)."""
    repo = session.config.repo
    extra = dict(env or {})
    for got in session.hook.sweeprun_job_env(config=session.config, record=record):
        if got:
            extra.update(got)
    journal = session.store.journal.path
    return Job(
        repo_root="" if url else str(repo.root),
        common_dir="" if url else str(repo.common_dir),
        commit=record.commit,
        key=record.key,
        options=options,
        setup=setup or JobSetup(),
        env=tuple(sorted(extra.items())),
        claim=claim_token(session.store.journal.lease(record.key)),
        journal=journal.name if journal is not None and not url else "",
        in_place=session.in_place,
        changed=record.data.changed,
        url=url,
        checkpoints=any(s.checkpoint_outs for s in record.data.stages),
    )


@hookimpl(trylast=True)
def sweeprun_runloop(session: Session, records: list[Record]) -> bool:
    """Run ``records`` on ``-j`` parallel slots of the chosen joblib backend."""
    import joblib  # deferred: ~100 ms to import; commands that only read never need it

    config = session.config
    options = session.options
    rev = resolve_rev(session.store, options.rev) if options.rev else None
    backend = JOBLIB_BACKENDS[options.backend]
    setup, ident_env = job_setup(config.repo.root, config.repo.common_dir)
    common = config.repo.common_dir
    url = (options.worker_url or "") if options.backend == "dask" else ""
    more = session.more
    dispatch = None
    if url:
        remote = configured_remote(config.repo.root)
        # The job names no path of this machine: the worker's cache is its mirror's.
        setup = replace(setup, cache_dir="", cache_remote=str(remote or ""))
        dispatch = Dispatch(common, url, setup)
        dispatch.publish(records)  # before any claim: a refusal leaves the queue as it is

    def watch(sign: str, key: str) -> None:
        """Tell the watchdog a job started (``+``) or ended (``-``)."""
        token = procs.job_token(key, common)
        watchdog.started(token) if sign == "+" else watchdog.ended(token)

    seen = {r.key for r in records}

    def queued() -> Iterator[Record | None]:
        """``records``; for a background worker, then what was queued since, looked at
        each time a slot asks for work and the list is used up. ``None``: nothing yet,
        but jobs still run: the slot waits for work (threads) rather than idle until
        the batch ends."""
        yield from records
        while more is not None and not session.shouldstop:
            fresh = [r for r in more() if r.key not in seen]
            seen.update(r.key for r in fresh)
            if fresh:
                yield from fresh
            elif session.running and backend == "threading":
                yield None
            else:
                return

    def jobs() -> Iterator[Any]:
        for record in queued():
            if record is None:
                yield joblib.delayed(_await_work)(session, seen)
                continue
            if session.shouldstop:
                return
            try:
                claimed = session.store.claim(record)
            except (OSError, GitError) as exc:
                reason = storage_error(exc)
                if reason is None:
                    raise
                session.shouldstop = f"{reason}: stopped dispatching, the rest stays queued"
                return
            if claimed is None:
                continue  # another runner took it
            session.running[record.key] = claimed
            prepare_checkpoints(session.store, claimed, options.reset, rev, session.in_place)
            if dispatch is not None:
                try:
                    dispatch.pass_checkpoints(claimed, options.reset, rev)
                except TransportError as exc:
                    session.running.pop(record.key, None)
                    session.store.release([claimed])
                    session.shouldstop = f"--worker-url {url}: {exc}: stopped dispatching"
                    return
            watch("+", record.key)
            job = make_job(session, claimed, options, setup, ident_env, url)
            yield joblib.delayed(run)(job)

    client = _dask_client(options) if options.backend == "dask" else None
    publisher = CheckpointPublisher(session.store, lambda: list(session.running.items()))
    publisher.publish_all()

    def running() -> list[procs.ProcessRef]:
        found = (workspace.running_command(common, key) for key in list(session.running))
        return [p for p in found if p is not None]

    def on_stop() -> None:
        session.shouldstop = "interrupted"

    # Room for putting claims back in the queue should the disk fill up during the run.
    session.store.keep_reserve()
    # The parent of every command this run starts: it records each exit the moment it
    # happens, and outlives the runner (see sweeprun.system.supervisor). It holds the
    # journal's lock with the runner: a dead runner's claims wait for its last exits.
    hold = None
    with contextlib.suppress(OSError):  # (then the first claim says what is wrong)
        hold = session.store.journal.open()
    watchdog = Supervisor(hold)
    reader = ObjectReader(common)
    warm = WarmPool()
    # In threads, -x/--maxfail is counted as each job ends, and a job joblib took from the
    # queue ahead of time does not start once the run is stopping (see FailFast); jobs
    # there share the run loop's object reader and watchdog.
    run: Callable[[Job], JobReport] = (
        run_remote
        if url
        else FailFast(
            session, options.maxfail, Shared(reader, watchdog, warm=warm, prune=session.prune)
        )
        if backend == "threading"
        else run_job_once
        if backend == "dask"
        else run_job
    )
    receive = None
    inbox: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if dispatch is not None and client is not None:
        journal = session.store.journal.path
        receive = partial(dispatch.receive, journal=journal)
        inbox = CheckpointInbox(common, url, lambda: set(session.running))
        client.subscribe_topic(TOPIC, inbox.handle)
    # A job's thread records its command's exit the moment waitpid returns (so that a
    # runner killed from then on leaves it to be adopted, never run again); with the
    # default 5 ms switch interval it could wait that long for the GIL, a window in which
    # a kill -9 makes the next runner run the command again. 0.1 ms shrinks it 50-fold at
    # no cost here: these threads mostly wait on processes.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    stopper = Stopper(running, on_stop)
    try:
        with stopper, inbox:
            _drain(session, jobs, backend, options, publisher, watch, receive)
    except KeyboardInterrupt:
        # Not from a signal during the run (its handler raises nothing): from elsewhere,
        # e.g. the loop running outside the main thread.
        # Graceful: jobs get SIGINT (checkpoints are kept), the session puts unfinished
        # entries back in the queue and exits 2; a second Ctrl+C kills them.
        session.shouldstop = "interrupted"
        stop_jobs(session, signal.SIGINT, wait=10.0)
        raise
    finally:
        if client is not None:
            client.close()
        if dispatch is not None:
            dispatch.clean_up()
        sys.setswitchinterval(interval)
        # Every job has ended: the watchdog ends (after a stop, with the orphans they left).
        watchdog.close(stopping=stopper.signals > 0 or session.shouldstop == "interrupted")
        warm.close()
        reader.close()
        publisher.announce(_notify(session))
        if session.in_place:
            for record in records:
                remember_workspace_checkpoint(session.store, record.key)
    return True


#: How often a background worker's idle slot looks at the queue.
FOLLOW_POLL = 0.5


def _await_work(session: Session, seen: set[str]) -> None:
    """A background worker's free slot, in a thread: back once something new is queued
    (the slot then takes it), the run stops, or nothing of this batch runs any more."""
    while not session.shouldstop and session.running and session.more is not None:
        if any(r.key not in seen for r in session.more()):
            return
        time.sleep(FOLLOW_POLL)


def _notify(session: Session) -> Callable[[Record, str, int], None]:
    def notify(record: Record, sha: str, step: int) -> None:
        session.hook.sweeprun_checkpoint(session=session, record=record, commit=sha, step=step)

    return notify


def _dask_client(options: RunOptions) -> Any:
    """A client of ``--scheduler`` (or of an in-process cluster); a one-line error when
    no scheduler answers."""
    from distributed import Client  # an optional extra, and slow to import

    address, wait = options.scheduler, options.connect_timeout
    try:
        return (
            Client(address, timeout=wait)  # type: ignore[no-untyped-call]
            if address
            else Client(processes=False)  # type: ignore[no-untyped-call]
        )
    except (OSError, TimeoutError) as exc:
        raise UsageError(
            f"--scheduler {address}: no Dask scheduler answered within {wait:g} s "
            f"({type(exc).__name__})"
        ) from None


def stop_jobs(session: Session, sig: int, wait: float) -> None:
    """Signal every running job's process group; wait for them, SIGKILL on a 2nd Ctrl+C."""
    common = session.store.repo.common_dir
    refs = [p for p in (workspace.running_command(common, k) for k in session.running) if p]
    for ref in refs:
        ref.signal_tree(sig)
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline and any(p.tree_alive() for p in refs):
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    for ref in refs:
        ref.signal_tree(signal.SIGKILL)


def _unrecorded(
    session: Session, report: JobReport, running: Record | None, why: str, storage: bool
) -> JobReport:
    """The report of a job whose result could not be published: back in the queue."""
    session.running.pop(report.key, None)
    if running is not None:
        with contextlib.suppress(Exception):
            session.store.release([running])  # best effort; else the next runner reclaims
    return replace(
        report,
        outcome=Outcome.ERROR,
        result_commit=None,
        message=why,
        log_tail=f"sweeprun: {why} (the experiment goes back to the queue)",
        storage_fault=storage,
    )


def _drain(
    session: Session,
    jobs: Any,
    backend: str,
    options: RunOptions,
    publisher: CheckpointPublisher,
    watch: Callable[[str, str], None],
    receive: Callable[[JobReport, Record | None], JobReport] | None = None,
) -> None:
    """Feed jobs to joblib and publish each result as it arrives (this thread only);
    ``receive`` stores what a git-only worker returned before anything is published."""
    import joblib  # deferred: ~100 ms to import, and only a run needs it

    maxfail = options.maxfail
    notify = _notify(session)
    with joblib.parallel_config(backend=backend, n_jobs=options.jobs), publisher:
        parallel = joblib.Parallel(
            return_as="generator_unordered", pre_dispatch="n_jobs", batch_size=1
        )
        failures = 0
        for report in parallel(jobs()):
            if report is None:  # a slot that waited for work (see _await_work)
                continue
            watch("-", report.key)
            running = session.running.get(report.key)
            if report.interrupted:
                # Cut short by the stop: not a result. Back to the queue, not reported.
                session.running.pop(report.key, None)
                if running is not None:
                    session.store.release([running])
                continue
            try:
                if receive is not None:
                    report = receive(report, running)
                if running is not None:
                    publisher.publish(report.key, running)
                publisher.announce(notify)
                session.hook.sweeprun_store_result(session=session, report=report)
            except (OSError, GitError) as exc:
                # Not a crash of the run: this experiment goes back to the queue, the
                # others go on.
                reason = storage_error(exc)
                why = f"{reason} while recording it" if reason else f"could not record it: {exc}"
                report = _unrecorded(session, report, running, why, storage=bool(reason))
            if report.storage_fault:
                # A full disk fails every next job too: stop dispatching, keep them queued.
                session.shouldstop = session.shouldstop or f"{report.message}: stopped dispatching"
            session.reports.append(report)
            session.hook.sweeprun_report(session=session, report=report)
            if not report.passed:
                failures += 1
                if maxfail and failures >= maxfail and not session.shouldstop:
                    session.shouldstop = f"stopping after {failures} failures"
