"""The run loop as a service: a :class:`Runner` claims work from a source, hands jobs to
joblib, publishes results as they come, and tells its events to a sink.

Jobs are claimed lazily, one per free slot, so several runners can drain one queue and
``-x`` stops dispatching at once. Results are published in completion order by this
(parent) process only; workers never write refs. The runner knows the run options, the
store (the only door to refs), a stop token, an event sink and a source — not the CLI's
session: ``_core.runloop`` builds one per run and turns its events into plugin hooks.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from sweeprun.exceptions import GitError
from sweeprun.model import Job, JobReport, Outcome, Record, RunOptions
from sweeprun.run import workspace
from sweeprun.run.executor import not_started, run_job, run_job_once
from sweeprun.run.jobs import JOBLIB_BACKENDS, dask_client, job_setup, make_job
from sweeprun.run.publisher import (
    CheckpointPublisher,
    prepare_checkpoints,
    remember_workspace_checkpoint,
    resolve_rev,
)
from sweeprun.run.remote import TOPIC, CheckpointInbox, Dispatch, run_remote
from sweeprun.run.sources import Source
from sweeprun.run.task import Shared
from sweeprun.run.warm import WarmPool
from sweeprun.store.catfile import ObjectReader
from sweeprun.store.records import ExpStore
from sweeprun.store.tiered import configured_remote
from sweeprun.store.transport import TransportError
from sweeprun.system import procs
from sweeprun.system.faults import storage_error
from sweeprun.system.stopping import Stopper, StopToken
from sweeprun.system.supervisor import Supervisor

#: The GIL switch interval during a run (see :meth:`Runner.run`).
SWITCH_INTERVAL = 0.0001
#: How often a following source's idle slot looks for work.
FOLLOW_POLL = 0.5

#: Asked at each checkpoint of a running record: why to stop it (it is then pruned), or "".
Prune = Callable[[Record, int, Mapping[str, Any]], str]


class Events:
    """What a run tells, and asks, the world; the default publishes to the store and
    tells nobody. The session's sink (``_core.runloop``) turns each into its hook, where
    the terminal reporter, junit, the live display and plugins listen."""

    def __init__(self, store: ExpStore) -> None:
        self.store = store

    def job_env(self, record: Record) -> Mapping[str, str]:
        """Extra environment for the job of ``record``."""
        return {}

    def store_result(self, report: JobReport, record: Record) -> str | None:
        """Publish the result of ``record`` (running); the ref written."""
        assert report.result_commit is not None
        return self.store.finish(record, report.result_commit, report.name)

    def report(self, report: JobReport) -> None:
        """An experiment finished (recorded, or back in the queue with a reason)."""

    def checkpoint(self, record: Record, commit: str, step: int) -> None:
        """A running experiment's checkpoint ``step`` was published."""

    def adopted(self, record: Record, report: JobReport) -> None:
        """What a dead runner's command finished was recorded (see ``run.adopt``)."""


class FailFast:
    """``run_job``, counting failures toward ``-x``/``--maxfail`` in the worker thread.

    joblib asks for the next job the moment one ends, before the run loop has seen its
    report, and takes jobs from the queue ``-j`` at a time: so failures are counted here,
    and a job that reaches a worker once the run is stopping (``-x``, a full disk, a
    signal) does not start: it goes back to the queue.
    """

    def __init__(self, stop: StopToken, maxfail: int, shared: Shared) -> None:
        self.stop = stop
        self.maxfail = maxfail
        #: The run loop's object reader and watchdog, for the jobs of this process.
        self.shared = shared
        self.failures = 0
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> JobReport:
        if self.stop:
            return not_started(job)
        report = run_job(job, self.shared)
        if self.maxfail and not report.passed and not report.interrupted:
            with self._lock:
                self.failures += 1
                if self.failures >= self.maxfail:
                    self.stop.stop(f"stopping after {self.failures} failures")
        return report


class Runner:
    """Runs what ``source`` offers on ``-j`` parallel slots of the chosen joblib backend
    until it offers nothing new and nothing runs, or ``stop`` is set.

    :param in_place: ``sweeprun run`` without ``--temp``: the job runs in the work tree.
    :param prune: asked at each checkpoint of a running record (an ``optimize:`` trial).
    """

    def __init__(
        self,
        options: RunOptions,
        store: ExpStore,
        source: Source,
        *,
        stop: StopToken | None = None,
        events: Events | None = None,
        in_place: bool = False,
        prune: Prune | None = None,
    ) -> None:
        self.options = options
        self.store = store
        self.source = source
        self.stop = stop if stop is not None else StopToken()
        self.events = events if events is not None else Events(store)
        self.in_place = in_place
        self.prune = prune
        #: Claimed records by key, until their results are published or put back.
        self.running: dict[str, Record] = {}
        self._seen: set[str] = set()

    def run(self) -> None:
        """Claim, run and publish until the source is used up or the run stops."""
        import joblib  # deferred: ~100 ms to import; commands that only read never need it

        options, store = self.options, self.store
        rev = resolve_rev(store, options.rev) if options.rev else None
        backend = JOBLIB_BACKENDS[options.backend]
        common = store.repo.common_dir
        setup, ident_env = job_setup(store.repo.root, common)
        url = (options.worker_url or "") if options.backend == "dask" else ""
        first = self.source.first()
        dispatch = None
        if url:
            remote = configured_remote(store.repo.root)
            # The job names no path of this machine: the worker's cache is its mirror's.
            setup = replace(setup, cache_dir="", cache_remote=remote.url if remote else "")
            dispatch = Dispatch(common, url, setup)
            dispatch.publish(first)  # before any claim: a refusal leaves the queue as it is

        def watch(sign: str, key: str) -> None:
            """Tell the watchdog a job started (``+``) or ended (``-``)."""
            token = procs.job_token(key, common)
            watchdog.started(token) if sign == "+" else watchdog.ended(token)

        def jobs() -> Iterator[Any]:
            for record in self._work(first, backend):
                if record is None:
                    yield joblib.delayed(self._await_work)()
                    continue
                if self.stop:
                    return
                try:
                    claimed = store.claim(record)
                except (OSError, GitError) as exc:
                    reason = storage_error(exc)
                    if reason is None:
                        raise
                    self.stop.stop(f"{reason}: stopped dispatching, the rest stays queued")
                    return
                if claimed is None:
                    continue  # another runner took it
                self.running[record.key] = claimed
                prepare_checkpoints(store, claimed, options.reset, rev, self.in_place)
                if dispatch is not None:
                    try:
                        dispatch.pass_checkpoints(claimed, options.reset, rev)
                    except TransportError as exc:
                        self.running.pop(record.key, None)
                        store.release([claimed])
                        self.stop.stop(f"--worker-url {url}: {exc}: stopped dispatching")
                        return
                watch("+", record.key)
                env = {**ident_env, **self.events.job_env(claimed)}
                job = make_job(store, claimed, options, setup, env, url, self.in_place)
                yield joblib.delayed(run)(job)

        client = dask_client(options) if options.backend == "dask" else None
        publisher = CheckpointPublisher(store, lambda: list(self.running.items()))
        publisher.publish_all()

        def running() -> list[procs.ProcessRef]:
            found = (workspace.running_command(common, key) for key in list(self.running))
            return [p for p in found if p is not None]

        # Room for putting claims back in the queue should the disk fill up during the run.
        store.keep_reserve()
        # The parent of every command this run starts: it records each exit the moment it
        # happens, and outlives the runner (see sweeprun.system.supervisor). It holds the
        # journal's lock with the runner: a dead runner's claims wait for its last exits.
        hold = None
        with contextlib.suppress(OSError):  # (then the first claim says what is wrong)
            hold = store.journal.open()
        watchdog = Supervisor(hold)
        reader = ObjectReader(common)
        warm = WarmPool()
        # In threads, -x/--maxfail is counted as each job ends, and a job joblib took from
        # the queue ahead of time does not start once the run is stopping (see FailFast);
        # jobs there share the run loop's object reader and watchdog.
        shared = Shared(reader, watchdog, warm=warm, prune=self._pruner())
        run: Callable[[Job], JobReport] = (
            run_remote
            if url
            else FailFast(self.stop, options.maxfail, shared)
            if backend == "threading"
            else run_job_once
            if backend == "dask"
            else run_job
        )
        receive = None
        inbox: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if dispatch is not None and client is not None:
            receive = partial(dispatch.receive, journal=store.journal.path)
            inbox = CheckpointInbox(common, url, lambda: set(self.running))
            client.subscribe_topic(TOPIC, inbox.handle)
        # A job's thread records its command's exit the moment waitpid returns (so that a
        # runner killed from then on leaves it to be adopted, never run again); with the
        # default 5 ms switch interval it could wait that long for the GIL, a window in
        # which a kill -9 makes the next runner run the command again. 0.1 ms shrinks it
        # 50-fold at no cost here: these threads mostly wait on processes.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
        stopper = Stopper(running, lambda: self.stop.stop("interrupted", force=True))
        try:
            with stopper, inbox:
                self._drain(jobs, backend, publisher, watch, receive)
        except KeyboardInterrupt:
            # Not from a signal during the run (its handler raises nothing): from
            # elsewhere, e.g. the loop running outside the main thread. Graceful: jobs get
            # SIGINT (checkpoints are kept), unfinished entries go back to the queue (the
            # caller's, with :attr:`running`); a second Ctrl+C kills them.
            self.stop.stop("interrupted", force=True)
            self.stop_jobs(signal.SIGINT, wait=10.0)
            raise
        finally:
            if client is not None:
                client.close()
            if dispatch is not None:
                dispatch.clean_up()
            sys.setswitchinterval(interval)
            # Every job has ended: the watchdog ends (after a stop, with the orphans they
            # left).
            watchdog.close(stopping=stopper.signals > 0 or self.stop.reason == "interrupted")
            warm.close()
            reader.close()
            publisher.announce(self.events.checkpoint)
            if self.in_place:
                for record in first:
                    remember_workspace_checkpoint(store, record.key)
        # Results accumulate as loose refs: packed now and then, listing them stays quick.
        store.pack_results()

    def _work(self, first: list[Record], backend: str) -> Iterator[Record | None]:
        """The source's records; for a following source, then what it offers since,
        asked each time a slot wants work and the list is used up. ``None``: nothing
        yet, but jobs still run: the slot waits for work (threads) rather than idle until
        the batch ends."""
        self._seen.update(r.key for r in first)
        yield from first
        while self.source.follows and not self.stop:
            fresh = [r for r in self.source.more() if r.key not in self._seen]
            self._seen.update(r.key for r in fresh)
            if fresh:
                yield from fresh
            elif self.running and backend == "threading":
                yield None
            else:
                return

    def _await_work(self) -> None:
        """A following source's free slot, in a thread: back once something new is
        offered (the slot then takes it), the run stops, or nothing of it runs any more."""
        while not self.stop and self.running:
            if any(r.key not in self._seen for r in self.source.more()):
                return
            time.sleep(FOLLOW_POLL)

    def _pruner(self) -> Callable[[str, int, Mapping[str, Any]], str] | None:
        """:attr:`prune` as a job asks it: by key, for a record of this run."""
        prune = self.prune
        if prune is None:
            return None

        def ask(key: str, step: int, metrics: Mapping[str, Any]) -> str:
            record = self.running.get(key)
            return prune(record, step, metrics) if record is not None else ""

        return ask

    def stop_jobs(self, sig: int, wait: float) -> None:
        """Signal every running job's process group; wait, SIGKILL on a 2nd Ctrl+C."""
        common = self.store.repo.common_dir
        refs = [p for p in (workspace.running_command(common, k) for k in self.running) if p]
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
        self, report: JobReport, running: Record | None, why: str, storage: bool
    ) -> JobReport:
        """The report of a job whose result could not be published: back in the queue."""
        self.running.pop(report.key, None)
        if running is not None:
            with contextlib.suppress(Exception):
                self.store.release([running])  # best effort; else the next runner reclaims
        return replace(
            report,
            outcome=Outcome.ERROR,
            result_commit=None,
            message=why,
            log_tail=f"sweeprun: {why} (the experiment goes back to the queue)",
            storage_fault=storage,
        )

    def _publish(self, report: JobReport, running: Record | None) -> None:
        """Write the result's ref, or put the record back in the queue (no result)."""
        self.running.pop(report.key, None)
        if running is None:
            return
        if report.result_commit is None:
            self.store.release([running])
        else:
            self.events.store_result(report, running)

    def _drain(
        self,
        jobs: Callable[[], Iterator[Any]],
        backend: str,
        publisher: CheckpointPublisher,
        watch: Callable[[str, str], None],
        receive: Callable[[JobReport, Record | None], JobReport] | None = None,
    ) -> None:
        """Feed jobs to joblib and publish each result as it arrives (this thread only);
        ``receive`` stores what a git-only worker returned before anything is published."""
        import joblib  # deferred: ~100 ms to import, and only a run needs it

        maxfail = self.options.maxfail
        with joblib.parallel_config(backend=backend, n_jobs=self.options.jobs), publisher:
            parallel = joblib.Parallel(
                return_as="generator_unordered", pre_dispatch="n_jobs", batch_size=1
            )
            failures = 0
            for report in parallel(jobs()):
                if report is None:  # a slot that waited for work (see _await_work)
                    continue
                watch("-", report.key)
                running = self.running.get(report.key)
                if report.interrupted:
                    # Cut short by the stop: not a result. Back to the queue, not reported.
                    self.running.pop(report.key, None)
                    if running is not None:
                        self.store.release([running])
                    continue
                try:
                    if receive is not None:
                        report = receive(report, running)
                    if running is not None:
                        publisher.publish(report.key, running)
                    publisher.announce(self.events.checkpoint)
                    self._publish(report, running)
                except (OSError, GitError) as exc:
                    # Not a crash of the run: this experiment goes back to the queue, the
                    # others go on.
                    reason = storage_error(exc)
                    why = (
                        f"{reason} while recording it" if reason else f"could not record it: {exc}"
                    )
                    report = self._unrecorded(report, running, why, storage=bool(reason))
                if report.storage_fault:
                    # A full disk fails every next job too: stop dispatching, keep them queued.
                    self.stop.stop(f"{report.message}: stopped dispatching")
                self.events.report(report)
                if not report.passed:
                    failures += 1
                    if maxfail and failures >= maxfail:
                        self.stop.stop(f"stopping after {failures} failures")
