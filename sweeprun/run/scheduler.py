"""The run loop: claim queued records, hand jobs to joblib, publish results as they come.

Jobs are claimed lazily, one per free slot, so several runners can drain one queue and
``-x`` stops dispatching at once. Results are published in completion order by this
(parent) process only; workers never write refs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from sweeprun._core.argtypes import nonnegative_int, positive_seconds, slot_list
from sweeprun.exceptions import GitError, UsageError
from sweeprun.run import checkpoint, workspace
from sweeprun.run.executor import Job, JobReport, error_report, run_job
from sweeprun.spec.loader import Out, Stage
from sweeprun.store import leases
from sweeprun.store.cache import DEFAULT_LINK_TYPES, cache_config
from sweeprun.store.git import FALLBACK_IDENTITY, ZERO, RefConflict, RefOp, identity_env, run_git
from sweeprun.system import procs
from sweeprun.system.faults import storage_error
from sweeprun.system.stopping import Stopper

if TYPE_CHECKING:
    from sweeprun._core.registry import CommandRegistry
    from sweeprun._core.session import Session
    from sweeprun.store.records import Record

hookimpl = pluggy.HookimplMarker("sweeprun")

BACKENDS = {"threads": "threading", "loky": "loky", "dask": "dask"}


def stages_from_record(meta: dict[str, Any]) -> tuple[Stage, ...]:
    """Rebuild the stages stored in a queue record."""
    stages = []
    for s in meta.get("stages", []):
        stages.append(
            Stage(
                name=s["name"],
                cmd=s["cmd"],
                wdir=s.get("wdir", "."),
                deps=tuple(s.get("deps", ())),
                outs=tuple(Out(**o) for o in s.get("outs", ())),
                params=tuple(s.get("params", ())),
                metrics=tuple(s.get("metrics", ())),
                plots=tuple(s.get("plots", ())),
                values=tuple(sorted(s.get("values", {}).items())),
            )
        )
    return tuple(stages)


def commit_identity(cwd: str | os.PathLike[str]) -> tuple[str, str, bool]:
    """(author, committer) as ``Name <email>`` and whether objects can be written in-process.

    Resolved once per run with ``git var`` (honours GIT_AUTHOR_* and config); the
    fallback identity when none is configured.
    """
    fmt = run_git(["rev-parse", "--show-object-format"], cwd, check=False).strip() or "sha1"
    idents = []
    for var, fallback in (("GIT_AUTHOR_IDENT", "AUTHOR"), ("GIT_COMMITTER_IDENT", "COMMITTER")):
        out = run_git(["var", var], cwd, check=False).strip()
        if out:
            idents.append(out.rsplit(" ", 2)[0])  # drop the timestamp and zone
        else:
            name = os.environ.get(f"GIT_{fallback}_NAME") or FALLBACK_IDENTITY["GIT_AUTHOR_NAME"]
            email = os.environ.get(f"GIT_{fallback}_EMAIL") or FALLBACK_IDENTITY["GIT_AUTHOR_EMAIL"]
            idents.append(f"{name} <{email}>")
    return idents[0], idents[1], fmt == "sha1"


def _plain_add(root: Path, common_dir: Path) -> bool:
    """Whether ``git add`` would store files byte for byte with their executable bit.

    Line-ending conversion, filters (they act through attributes, so any attributes file
    counts), ``core.filemode=false`` (git keeps the index's mode) and case folding all
    need git's judgement. ``git init`` writes ``core.filemode=true`` itself, which is the
    plain case.
    """
    out = run_git(
        [
            "config",
            "-z",
            "--get-regexp",
            r"^(core\.(autocrlf|eol|filemode|ignorecase|attributesfile)|filter\..*)$",
        ],
        root,
        check=False,
    )
    conf: dict[str, str] = {}
    for item in out.split("\0"):
        if item:
            key, newline, value = item.partition("\n")
            # The last one wins, as in git; a bare key (no "=") is a true boolean.
            conf[key] = value if newline else "true"
    if any(key.startswith("filter.") for key in conf):
        return False
    if _git_bool(conf.get("core.autocrlf", "false")) is not False or "core.eol" in conf:
        return False  # "input" is neither true nor false: a conversion too
    if _git_bool(conf.get("core.filemode", "true")) is not True:
        return False
    if _git_bool(conf.get("core.ignorecase", "false")) is not False:
        return False
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    attribute_files = [common_dir / "info" / "attributes", Path(xdg) / "git" / "attributes"]
    if conf.get("core.attributesfile"):
        attribute_files.append(Path(os.path.expanduser(conf["core.attributesfile"])))
    return not any(f.exists() for f in attribute_files)


def _git_bool(value: str) -> bool | None:
    """git's reading of a boolean config value; ``None`` when it is not one."""
    v = value.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0", ""):
        return False
    return None


class FastAddPolicy:
    """Decides, once per run, whether results may be recorded without ``git add``."""

    def __init__(self, root: Path, common_dir: Path) -> None:
        self.enabled = _plain_add(root, common_dir)

    def allowed(self, stages: tuple[Stage, ...]) -> tuple[str, ...]:
        """The new files a result may take in-process: every declared result, ignored
        or not, since those are committed either way (empty: always ask git)."""
        if not self.enabled:
            return ()
        from sweeprun.run.pipeline import committed_results

        return tuple(committed_results(stages))


class FailFast:
    """``run_job``, counting failures toward ``-x``/``--maxfail`` in the worker thread.

    joblib asks for the next job the moment one ends, before the run loop has seen its
    report, and takes jobs from the queue ``-j`` at a time: so failures are counted here,
    and a job that reaches a worker once the run is stopping (``-x``, a full disk, a
    signal) does not start: it goes back to the queue.
    """

    def __init__(self, session: Session, maxfail: int) -> None:
        self.session = session
        self.maxfail = maxfail
        self.failures = 0
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> JobReport:
        if self.session.shouldstop:
            stopped = error_report(job, time.time(), Path(job.log_path), "not started", "")
            return replace(stopped, interrupted=True)
        report = run_job(job)
        if self.maxfail and not report.passed and not report.interrupted:
            with self._lock:
                self.failures += 1
                if self.failures >= self.maxfail and not self.session.shouldstop:
                    self.session.shouldstop = f"stopping after {self.failures} failures"
        return report


def claim_token(lease: leases.Lease | None) -> str:
    """How a job and a later reclaimer name one claim of an experiment."""
    return "-" if lease is None else f"{lease.pid}.{lease.started!r}"


def make_job(
    session: Session,
    record: Record,
    env: dict[str, str],
    identity: tuple[str, str, bool] = ("", "", False),
    cache: tuple[str, tuple[str, ...]] | None = None,
    fast_add: FastAddPolicy | None = None,
) -> Job:
    """The picklable job for a claimed record."""
    repo = session.config.repo
    stages = stages_from_record(record.meta)
    extra = dict(env)
    for got in session.hook.sweeprun_job_env(config=session.config, record=record):
        if got:
            extra.update(got)
    return Job(
        key=record.key,
        name=record.name,
        exp_id=record.id,
        commit=record.commit,
        baseline=record.baseline,
        repo_root=str(repo.root),
        common_dir=str(repo.common_dir),
        stages=stages,
        meta=record.meta,
        env=tuple(sorted(extra.items())),
        log_path=str(repo.state_dir / "logs" / f"{record.key}.log"),
        timeout=session.config.getoption("timeout"),
        retries=int(session.config.getoption("retries") or 0),
        slots=tuple(s for s in (session.config.getoption("slots") or "").split(",") if s),
        author=identity[0],
        committer=identity[1],
        fast_objects=identity[2],
        base_tree=str(record.meta.get("tree", "")),
        cache_dir=str(cache[0]) if cache else "",
        cache_types=cache[1] if cache else DEFAULT_LINK_TYPES,
        force=bool(record.meta.get("force") or session.config.getoption("reset")),
        allowed_new=fast_add.allowed(stages) if fast_add is not None else (),
        claim=claim_token(session.store.journal.lease(record.key)),
        journal=str(session.store.journal.path or ""),
        files=tuple((p, t.encode()) for p, t in sorted(record.meta.get("files", {}).items())),
    )


@hookimpl
def sweeprun_addoption(parser: argparse.ArgumentParser, commands: CommandRegistry) -> None:
    """Where jobs run."""
    g = parser.add_argument_group("scheduling")
    g.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default="threads",
        help="joblib backend (threads: default; dask: a Dask cluster)",
    )
    g.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786"
    )
    g.add_argument(
        "--connect-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="S",
        help="how long to wait for the Dask scheduler (default 10)",
    )
    f = parser.add_argument_group("failure policy and resources")
    f.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        help="kill an experiment's whole process tree after S seconds (outcome: timeout)",
    )
    f.add_argument(
        "--retries",
        type=nonnegative_int,
        default=0,
        metavar="N",
        help="run failed or timed-out experiments up to N more times",
    )
    f.add_argument(
        "--slots",
        "--gpus",
        dest="slots",
        type=slot_list,
        metavar="LIST",
        help="e.g. 0,1: each parallel job gets one as CUDA_VISIBLE_DEVICES",
    )
    c = parser.add_argument_group("checkpoints")
    c.add_argument(
        "--reset", action="store_true", help="discard the experiments' checkpoints and start over"
    )
    c.add_argument(
        "--rev", metavar="CKPT", help="resume from this checkpoint commit instead of the last one"
    )


def _validate_rev(session: Session) -> None:
    rev = session.config.getoption("rev")
    if (
        rev
        and not run_git(
            ["rev-parse", "-q", "--verify", f"{rev}^{{commit}}"],
            session.config.repo.root,
            check=False,
        ).strip()
    ):
        raise UsageError(f"--rev {rev}: no such checkpoint commit")


def _stop_after(session: Session) -> int:
    if session.config.getoption("exitfirst"):
        return 1
    return int(session.config.getoption("maxfail") or 0)


class CheckpointPublisher:
    """Moves journals of running jobs into ``refs/sweeprun/checkpoints/<key>`` (parent only)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeprun-publish", daemon=True)

    def publish(self, key: str, record: Record | None = None) -> None:
        store = self.session.store
        chain = checkpoint.load_chain(store.repo.common_dir, store.cwd, key)
        if not chain or self.seen.get(key) == len(chain):
            return
        ref = checkpoint.REF_PREFIX + key
        current = run_git(["rev-parse", "-q", "--verify", ref], store.cwd, check=False).strip()
        if current != chain[-1][0]:
            with contextlib.suppress(RefConflict):
                store.updater.transaction([RefOp(ref, chain[-1][0], current or ZERO)])
        for sha, step in chain[self.seen.get(key, len(chain) if record is None else 0) :]:
            if record is not None:
                self.session.hook.sweeprun_checkpoint(
                    session=self.session, record=record, commit=sha, step=step
                )
        self.seen[key] = len(chain)

    def publish_all(self) -> None:
        """What any runner left behind, killed ones included."""
        d = Path(self.session.store.repo.common_dir) / "sweeprun" / "checkpoints"
        if d.is_dir():
            for journal in d.iterdir():
                if "." not in journal.name:  # not a journal being rewritten
                    self.publish(journal.name)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            for key, rec in list(self.session.running.items()):
                self.publish(key, rec)

    def __enter__(self) -> CheckpointPublisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def prepare_checkpoints(session: Session, record: Record) -> None:
    """``--reset`` drops an experiment's checkpoints; ``--rev`` rewinds them."""
    store = session.store
    journal = checkpoint.journal_path(store.repo.common_dir, record.key)
    ref = checkpoint.REF_PREFIX + record.key
    reset, rev = session.config.getoption("reset"), session.config.getoption("rev")
    if reset:
        journal.unlink(missing_ok=True)
        current = run_git(["rev-parse", "-q", "--verify", ref], store.cwd, check=False).strip()
        if current:
            store.updater.transaction([RefOp(ref, ZERO, current)])
    elif rev:
        sha = run_git(
            ["rev-parse", "-q", "--verify", f"{rev}^{{commit}}"], store.cwd, check=False
        ).strip()
        chain = checkpoint.load_chain(store.repo.common_dir, store.cwd, record.key)
        shas = [c for c, _ in chain]
        if sha and sha in shas:
            kept = chain[: shas.index(sha) + 1]
            tmp = journal.with_name(journal.name + ".rewind")
            tmp.write_text("".join(f"{c} {s}\n" for c, s in kept))
            os.replace(tmp, journal)


@hookimpl(trylast=True)
def sweeprun_runloop(session: Session, records: list[Record]) -> bool:
    """Run ``records`` on ``-j`` parallel slots of the chosen joblib backend."""
    import joblib

    config = session.config
    _validate_rev(session)
    n_jobs = max(1, int(config.getoption("jobs") or 1))
    backend = BACKENDS[config.getoption("backend") or "threads"]
    ident = identity_env(config.repo.root)
    commit_ident = commit_identity(config.repo.root)
    root, types = cache_config(config.repo.common_dir)  # once: it asks git config
    cache = (str(root), types)
    fast_add = FastAddPolicy(config.repo.root, config.repo.common_dir)
    maxfail = _stop_after(session)
    common = config.repo.common_dir

    def watch(sign: str, key: str) -> None:
        """Tell the watchdog a job started (``+``) or ended (``-``)."""
        token = procs.job_token(key, common)
        watchdog.started(token) if sign == "+" else watchdog.ended(token)

    # In threads, -x/--maxfail is counted as each job ends, and a job joblib took from the
    # queue ahead of time does not start once the run is stopping (see FailFast).
    run = FailFast(session, maxfail) if backend == "threading" else run_job

    def jobs() -> Iterator[Any]:
        for record in records:
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
            watch("+", record.key)
            prepare_checkpoints(session, claimed)
            yield joblib.delayed(run)(
                make_job(session, claimed, ident, commit_ident, cache, fast_add)
            )

    client = None
    if backend == "dask":
        from distributed import Client

        address = config.getoption("scheduler")
        wait = config.getoption("connect_timeout")
        try:
            client = (
                Client(address, timeout=wait)  # type: ignore[no-untyped-call]
                if address
                else Client(processes=False)  # type: ignore[no-untyped-call]
            )
        except (OSError, TimeoutError) as exc:
            raise UsageError(
                f"--scheduler {address}: no Dask scheduler answered within {wait:g} s "
                f"({type(exc).__name__})"
            ) from None
    publisher = CheckpointPublisher(session)
    publisher.publish_all()

    def running() -> list[procs.ProcessRef]:
        found = (workspace.running_command(common, key) for key in list(session.running))
        return [p for p in found if p is not None]

    def on_stop() -> None:
        session.shouldstop = "interrupted"

    watchdog = procs.current = procs.Watchdog()
    try:
        with Stopper(running, on_stop):
            _drain(session, jobs, backend, n_jobs, publisher, maxfail, watch)
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
            client.close()  # type: ignore[no-untyped-call]
        watchdog.close()  # every job has ended: the watchdog ends with nothing to do
        procs.current = None
    return True


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
        outcome="error",
        result_commit=None,
        message=why,
        log_tail=f"sweeprun: {why} (the experiment goes back to the queue)",
        storage_fault=storage,
    )


def _drain(
    session: Session,
    jobs: Any,
    backend: str,
    n_jobs: int,
    publisher: CheckpointPublisher,
    maxfail: int,
    watch: Callable[[str, str], None],
) -> None:
    """Feed jobs to joblib and publish each result as it arrives (this thread only)."""
    import joblib

    with joblib.parallel_config(backend=backend, n_jobs=n_jobs), publisher:
        parallel = joblib.Parallel(
            return_as="generator_unordered", pre_dispatch="n_jobs", batch_size=1
        )
        failures = 0
        for report in parallel(jobs()):
            watch("-", report.key)
            running = session.running.get(report.key)
            if report.interrupted:
                # Cut short by the stop: not a result. Back to the queue, not reported.
                session.running.pop(report.key, None)
                if running is not None:
                    session.store.release([running])
                continue
            try:
                if running is not None:
                    publisher.publish(report.key, running)
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
