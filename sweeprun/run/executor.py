"""Running one experiment: the job function that local and remote workers execute.

A :class:`~sweeprun.model.Job` is a small picklable reference (which queued commit, in
which repository, under which options); the worker reads the experiment from that
commit, checks it out in a pooled workspace (or, for ``sweeprun run``, works in the
repository's own work tree), runs the stages, writes the result as git *objects* (never
refs) and returns a small :class:`~sweeprun.model.JobReport`. The parent process turns
reports into refs. Nothing here knows about YAML, plugins or the session.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from sweeprun.model import Job, JobReport, Outcome, Result, State
from sweeprun.run import appconfig, checkpoint, pipeline, snapshot, workspace
from sweeprun.run.command import run_command
from sweeprun.run.metrics import log_tail, read_metrics, unparseable_metrics
from sweeprun.run.task import Shared, Task
from sweeprun.spec.expect import check
from sweeprun.store import leases
from sweeprun.system.faults import disk_full, storage_error
from sweeprun.system.paths import OutsideError

RETRY_BACKOFF = 0.2


def execute_pipeline(
    task: Task,
    ws: Path,
    env: dict[str, str],
    log: BinaryIO,
    pid: dict[str, Any] | None = None,
    adopted: pipeline.RunCommand | None = None,
) -> list[pipeline.StageOutcome]:
    """Link ignored deps, run or restore every stage (the caller records the lock).

    ``pid`` (filled in by :func:`~sweeprun.run.command.run_command`) tells the caller about
    the commands: ``interrupted`` when the run's stop cut one short. ``adopted`` stands
    in for running the commands: they ran already, under a runner that died.
    """
    cache = task.cache()
    stages = task.stages
    if not task.job.in_place:
        try:
            missing = pipeline.link_ignored_deps(stages, ws, Path(task.repo_root))
        except OutsideError as exc:
            return [pipeline.StageOutcome(stages[0].name, "failed", 1, str(exc))]
        if missing:
            return [
                pipeline.StageOutcome(
                    stages[0].name, "failed", 1, f"dep {missing[0]!r} exists nowhere"
                )
            ]

    if pid is None:
        pid = {}
    pidfile = (
        workspace.in_place_pid_file(task.common_dir)
        if task.job.in_place
        else workspace.pid_file(ws)
    )
    pid.update({"pidfile": pidfile, "key": task.key, "claim": task.job.claim})

    params_files = task.params_files
    ckpt_outs = [path for s in stages for path in s.checkpoint_outs]
    names = [s.name for s in stages]
    timeout = task.job.options.timeout

    warm = task.shared.warm

    def run(stage: Any, cwd: Path, env: dict[str, str], log: BinaryIO) -> int:
        pid["stage"] = names.index(stage.name)
        if stage.warm and warm is not None:
            rc = warm.run(stage.cmd, cwd, env, log, timeout, pid, dict(stage.values))
            if rc is not None:
                return rc
        return run_command(
            stage.cmd, cwd, env, log, timeout, pid, bool(ckpt_outs), dict(stage.values)
        )

    if adopted is not None:
        return pipeline.run_stages(
            stages, ws, cache, params_files, env, log, adopted, force=True, keep_outs=True
        )
    if not ckpt_outs:
        outcomes = pipeline.run_stages(
            stages, ws, cache, params_files, env, log, run, force=task.force
        )
    else:
        outcomes = checkpoint.run_with_checkpoints(
            task, ws, cache, params_files, env, log, run, pid, ckpt_outs
        )
    if pid.get("timeout") and outcomes and outcomes[-1].status == "failed":
        outcomes[-1].message = f"timeout: stage {outcomes[-1].name!r} ran longer than {timeout:g} s"
    if pid.get("pruned") and outcomes and outcomes[-1].status == "failed":
        outcomes[-1].message = f"pruned: {pid['pruned']}"
    return outcomes


def run_job(job: Job, shared: Shared | None = None) -> JobReport:
    """Run one experiment end to end and return its report.

    Never raises for a failing command (that is a failed experiment); an error of
    sweeprun itself becomes an ``error`` report without a result commit. ``shared`` is
    what the run loop shares with a job that runs in its own process.
    """
    started = time.time()
    try:
        task = Task.load(job, shared)
    except Exception:
        return _unread(job, started, traceback.format_exc(limit=4))
    log_path = task.log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, job.options.retries + 2):
        report = _attempt(task, started, log_path, attempt)
        if report.passed or report.outcome is Outcome.ERROR or attempt > job.options.retries:
            return report  # (an interrupted report is an "error" one)
        # Keep this attempt's log beside the next one's, then back off briefly.
        os.replace(log_path, log_path.with_name(f"{job.key}.attempt{attempt}.log"))
        time.sleep(min(RETRY_BACKOFF * 2 ** (attempt - 1), 5.0))
    raise AssertionError("unreachable")


def run_job_once(job: Job) -> JobReport:
    """:func:`run_job` for a Dask task on a shared file system: a task that Dask runs again
    because its worker died *after* the job finished finds the result its first run noted
    in the runner's journal (before the task returned) and reports it instead of running
    the job again."""
    if job.journal:
        state = Path(job.common_dir) / "sweeprun"
        with contextlib.suppress(OSError):
            done = leases.results_noted(state / "leases" / job.journal).get(job.key)
            result = snapshot.read_result(job.common_dir, done) if done else None
            if result is not None and result.queue_commit == job.commit:
                log = state / "logs" / f"{job.key}.log"
                with open(log, "ab") as f:
                    f.write(b"sweeprun: adopted: its worker died before reporting this result\n")
                return JobReport.of_result(result, done or "", str(log))
    return run_job(job)


def _error(
    ids: tuple[str, str, str],
    started: float,
    log_path: str,
    message: str,
    tail: str,
    storage: bool = False,
) -> JobReport:
    """A report of sweeprun failing to run or record a job: no result, back to the queue."""
    key, name, exp_id = ids
    return JobReport(
        key=key,
        name=name,
        exp_id=exp_id,
        outcome=Outcome.ERROR,
        returncode=None,
        started=started,
        finished=time.time(),
        result_commit=None,
        log_path=log_path,
        log_tail=tail,
        message=message,
        storage_fault=storage,
    )


def _unread(job: Job, started: float, tail: str) -> JobReport:
    """The report of a job whose queued commit could not be read."""
    message = "sweeprun could not read the queued experiment"
    return _error((job.key, job.key, job.key), started, "", message, tail)


def job_error(job: Job, started: float, why: str) -> JobReport:
    """An error report, before the job's record was read, with a one-line reason (no
    result: the experiment goes back to the queue)."""
    return _error((job.key, job.key, job.key), started, "", why, f"sweeprun: {why}")


def error_report(
    task: Task, started: float, log_path: Path, message: str, tail: str, storage: bool = False
) -> JobReport:
    """A report of sweeprun failing to run or record a job: no result, back to the queue."""
    ids = (task.key, task.name, task.exp_id)
    return _error(ids, started, str(log_path), message, tail, storage)


def not_started(job: Job) -> JobReport:
    """The report of a job that did not start because the run is stopping."""
    return replace(_unread(job, time.time(), ""), message="not started", interrupted=True)


@contextlib.contextmanager
def _workspace(task: Task) -> Iterator[Path]:
    if task.job.in_place:
        yield Path(task.repo_root)  # sweeprun run: the user's own work tree
        return
    with workspace.acquire(
        task.common_dir,
        task.repo_root,
        task.commit,
        task.base_tree if task.job.setup.fast_switch else "",
        task.files,
        fast=task.job.setup.fast_switch,
    ) as ws:
        yield ws


def _attempt(task: Task, started: float, log_path: Path, attempt: int) -> JobReport:
    phase = ["checking out its workspace"]
    try:
        with _workspace(task) as ws:
            try:
                phase[0] = "running its stages"
                return _in_workspace(task, ws, started, log_path, attempt, phase)
            except Exception as exc:
                if storage_error(exc) and not task.job.in_place:
                    # Give back what this experiment took, so that its runner can still
                    # put it back in the queue and the others may finish.
                    with contextlib.suppress(Exception):
                        workspace.clean(ws)
                    workspace.forget(ws)
                raise
    except Exception as exc:
        reason = storage_error(exc)
        if reason is not None:
            # The machine's fault, told in one line: no traceback, back to the queue.
            what = f"{reason} while {phase[0]}"
            return error_report(task, started, log_path, what, f"sweeprun: {what}", storage=True)
        return error_report(
            task, started, log_path, "sweeprun could not run the job", traceback.format_exc(limit=6)
        )


def adopt_job(job: Job, ws: Path, rc: int, stage_index: int) -> JobReport:
    """Record what a killed runner's job left in slot ``ws``: its commands had run, the
    last (stage ``stage_index``) exiting with ``rc``; nothing runs again."""
    started = time.time()
    try:
        task = Task.load(job)
    except Exception:
        return _unread(job, started, traceback.format_exc(limit=4))

    def ran(stage: Any, cwd: Path, env: dict[str, str], log: BinaryIO) -> int:
        log.write(b"sweeprun: adopted: this command had finished under a runner that died\n")
        return rc if task.stages[stage_index].name == stage.name else 0

    try:
        return _in_workspace(task, ws, started, task.log_path, 1, ["adopting"], ran)
    except Exception:
        return error_report(
            task, started, task.log_path, "could not adopt", traceback.format_exc(limit=6)
        )


def _state(rc: int, message: str) -> State:
    # A missed expectation is not a crash: both fail the experiment, told apart in the
    # record's state (show, junit, the summary).
    if rc == 0:
        return State.EXPECT_FAILED if message else State.SUCCESS
    if message.startswith("pruned:"):
        return State.PRUNED
    return State.TIMEOUT if message.startswith("timeout:") else State.FAILED


def _params_that_ran(
    task: Task, ws: Path, outcomes: list[pipeline.StageOutcome], log_path: Path
) -> Mapping[str, Any]:
    """The record's params; a Hydra app's config as the app ran it (``.hydra/``)."""
    app = task.record.hydra_app
    ran = {o.name for o in outcomes if o.status == "ran"}
    got = appconfig.ran_config(ws, task.stages, ran) if app else None
    if got is None or got == task.record.params.get(app):
        return task.record.params
    with open(log_path, "ab") as log:
        where = appconfig.differences(task.record.params.get(app) or {}, got)
        note = f"sweeprun: the app ran with a config other than the queued one: {where}\n"
        log.write(note.encode())
    return {**task.record.params, app: got}


def _in_workspace(
    task: Task,
    ws: Path,
    started: float,
    log_path: Path,
    attempt: int,
    phase: list[str],
    adopted: pipeline.RunCommand | None = None,
) -> JobReport:
    """Run the stages in a checked-out workspace and record the result commit."""
    rc = 0
    message = ""
    holder: dict[str, Any] = {"watchdog": task.shared.watchdog}
    if not adopted:
        open(log_path, "wb").close()  # a new attempt's log starts empty
    # Appending: the commands' output is written to the same file by their own open file
    # (the supervisor's), never overwritten by what sweeprun writes after it.
    with open(log_path, "ab") as log:
        outcomes = execute_pipeline(task, ws, task.env(ws), log, holder, adopted)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed and holder.get("interrupted"):
        return replace(
            error_report(task, started, log_path, "interrupted", log_tail(log_path)),
            interrupted=True,
        )
    if failed and disk_full(ws):
        # The program most likely failed for want of space, not of its own accord: the
        # experiment goes back to the queue instead of being recorded as failed.
        raise OSError(errno.ENOSPC, f"{failed[0].message}, with the disk full", str(ws))
    if failed:
        rc, message = failed[0].returncode or 1, failed[0].message
    metrics = read_metrics(ws, task.stages)
    # Written but not readable: a failure, not a success whose numbers are missing.
    problem = unparseable_metrics(ws, task.stages) if None in metrics.values() else ""
    if rc == 0 and problem:
        rc, message = 1, problem
        with open(log_path, "ab") as log:
            log.write(f"sweeprun: {message}\n".encode())
    if rc == 0 and task.record.expect:
        missed = check(dict(task.record.expect), metrics)
        if missed:
            message = "; ".join(missed)
            with open(log_path, "ab") as log:
                log.write(("\n".join(missed) + "\n").encode())
    params = _params_that_ran(task, ws, outcomes, log_path)
    finished = time.time()
    state = _state(rc, message)
    tail = log_tail(log_path)
    chain = checkpoint.read_journal(checkpoint.journal_path(task.common_dir, task.key))
    result = Result(
        **{**vars(task.record), "params": params},
        state=state,
        attempts=attempt,
        returncode=rc,
        started=started,
        finished=finished,
        metrics=metrics,
        message=message,
        log_tail=tail,
        queue_commit=task.commit,
        host=socket.gethostname(),
        checkpoints=chain[-1][1] if chain else 0,
    )
    phase[0] = "recording its result"
    lock = {}
    if any(o.status != "failed" for o in outcomes):
        lock[pipeline.LOCK_FILE] = pipeline.lock_bytes(outcomes)
    parent = chain[-1][0] if chain else ""
    if task.job.in_place:
        commit = snapshot.commit_in_place(task, result, parent, lock)
    else:
        commit = snapshot.commit_result(ws, task, result, parent, lock)
    if task.journal:
        with contextlib.suppress(OSError):
            leases.record_result(task.journal, task.key, commit)
    return JobReport(
        key=task.key,
        name=task.name,
        exp_id=task.exp_id,
        outcome=Outcome.PASSED if state in (State.SUCCESS, State.PRUNED) else Outcome.FAILED,
        returncode=rc,
        started=started,
        finished=finished,
        result_commit=commit,
        log_path=str(log_path),
        log_tail=tail,
        metrics=metrics,
        message=message,
        state=state,
        stages=tuple((o.name, o.status, o.message) for o in outcomes),
    )
