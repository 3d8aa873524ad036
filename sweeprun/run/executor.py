"""Running one experiment: the job function that local and remote workers execute.

A :class:`Job` is a small picklable value (what to run, at which commit); the worker
checks the commit out in a pooled workspace, runs the stages, writes the result as git
*objects* (never refs) and returns a small :class:`JobReport`. The parent process turns
reports into refs. Nothing here knows about YAML, plugins or the session.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweeprun.run import pipeline, workspace
from sweeprun.run.command import run_command
from sweeprun.run.snapshot import commit_result, commit_tree
from sweeprun.spec.loader import Stage
from sweeprun.store import leases
from sweeprun.store.cache import DEFAULT_LINK_TYPES, Cache
from sweeprun.store.git import run_git
from sweeprun.system import procs
from sweeprun.system.faults import disk_full, storage_error
from sweeprun.system.paths import OutsideError, guarded

LOG_TAIL_LINES = 40
RETRY_BACKOFF = 0.2
LOG_TAIL_BYTES = 8192


@dataclass(frozen=True)
class Job:
    """What a worker needs to run one experiment."""

    key: str
    name: str
    exp_id: str
    commit: str  # the queued commit (baseline + workspace + params)
    baseline: str
    repo_root: str
    common_dir: str
    stages: tuple[Stage, ...]
    meta: dict[str, Any] = field(hash=False)
    env: tuple[tuple[str, str], ...] = ()
    log_path: str = ""
    timeout: float | None = None
    retries: int = 0
    #: ``--slots``/``--gpus`` values; each concurrent job gets one as CUDA_VISIBLE_DEVICES.
    slots: tuple[str, ...] = ()
    #: ``Name <email>`` of result commits; empty → let git decide (slow path).
    author: str = ""
    committer: str = ""
    #: Whether result objects may be written in-process (SHA-1 repositories).
    fast_objects: bool = False
    #: ``commit`` described as the workspace snapshot tree plus these params files, which
    #: lets a pooled workspace switch between sibling experiments without git.
    base_tree: str = ""
    files: tuple[tuple[str, bytes], ...] = ()
    #: The output cache (resolved once by the parent) and whether to ignore the run-cache.
    cache_dir: str = ""
    cache_types: tuple[str, ...] = DEFAULT_LINK_TYPES
    force: bool = False
    #: This run's claim of the experiment (its lease time): an outcome left in a slot by a
    #: killed runner is adopted only for the claim it was made under.
    claim: str = "-"
    #: The runner's lease journal: the job notes its result commit there the moment it
    #: exists, for the next runner to publish if this one dies first.
    journal: str = ""
    #: New files the result may take without asking git (the declared results, which are
    #: committed even when ignored); empty disables the in-process ``git add`` (filters
    #: or attributes are configured).
    allowed_new: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobReport:
    """What comes back from a worker: small, picklable, enough to publish and report."""

    key: str
    name: str
    exp_id: str
    outcome: str  # "passed", "failed" or "error" (sweeprun itself failed)
    returncode: int | None
    started: float
    finished: float
    result_commit: str | None
    log_path: str
    log_tail: str
    metrics: dict[str, Any] = field(default_factory=dict, hash=False)
    message: str = ""
    #: Set when the machine failed the job (no space left, I/O error): a runner stops
    #: dispatching, since every next job would fail the same way.
    storage_fault: bool = False
    #: Set when the run's stop (Ctrl+C, SIGTERM, SIGHUP) cut the job short: it is not a
    #: result, and goes back to the queue.
    interrupted: bool = False
    #: The recorded state (``success``, ``failed``, ``timeout``, ``expect-failed``).
    state: str = ""

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


def log_tail(path: str | os.PathLike[str]) -> str:
    """The last lines of a log file (bounded in lines and bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()
    if size > LOG_TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-LOG_TAIL_LINES:])


def read_metrics(ws: Path, stages: tuple[Stage, ...]) -> dict[str, Any]:
    """Parse every declared metrics file present in the workspace (path → data)."""
    out: dict[str, Any] = {}
    for stage in stages:
        for rel in stage.metrics:
            path = ws / rel
            if not path.is_file():
                continue
            out[rel] = parse_metrics_file(path)
    return out


def parse_metrics_file(path: Path) -> Any:
    """JSON, YAML or TOML by suffix; an unreadable file yields ``None``."""
    try:
        return load_metrics_file(path)
    except ValueError:
        return None


def load_metrics_file(path: Path) -> Any:
    """JSON, YAML or TOML by suffix; ``ValueError`` saying why a file does not parse."""
    text = path.read_text(encoding="utf-8", errors="replace")
    kind = {".json": "JSON", ".toml": "TOML"}.get(path.suffix, "YAML")
    try:
        if kind == "JSON":
            return json.loads(text)
        if kind == "TOML":
            import tomlkit

            return tomlkit.parse(text).unwrap()
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"is not {kind} ({first})") from None


def unparseable_metrics(ws: Path, stages: tuple[Stage, ...]) -> str:
    """Why the first declared metrics file that exists does not parse, or ``""``."""
    for rel in (m for s in stages for m in s.metrics):
        path = ws / rel
        if path.is_file():
            try:
                load_metrics_file(path)
            except ValueError as exc:
                return f"metrics file {rel!r} {exc}"
    return ""


def job_env(job: Job, ws: Path) -> dict[str, str]:
    """The environment of the experiment's commands."""
    env = dict(os.environ)
    env.update(dict(job.env))
    env.update(
        {
            "SWEEPRUN_EXP_NAME": job.name,
            "SWEEPRUN_EXP_ID": job.exp_id,
            "SWEEPRUN_BASELINE_REV": job.baseline,
            "SWEEPRUN_ROOT": job.repo_root,
            "SWEEPRUN_WORKSPACE": str(ws),
            # Marks the job's whole process tree, for killing it (see sweeprun.system.procs).
            procs.TOKEN_ENV: procs.job_token(job.key, job.common_dir),
        }
    )
    return env


def execute_pipeline(
    job: Job,
    ws: Path,
    env: dict[str, str],
    log: Any,
    pid: dict[str, Any] | None = None,
    adopted: pipeline.RunCommand | None = None,
) -> list[pipeline.StageOutcome]:
    """Link ignored deps, run or restore every stage (the caller records the lock).

    ``pid`` (filled in by :func:`~sweeprun.run.command.run_command`) tells the caller about
    the commands: ``interrupted`` when the run's stop cut one short. ``adopted`` stands
    in for running the commands: they ran already, under a runner that died.
    """
    cache = (
        Cache(Path(job.cache_dir), job.cache_types)
        if job.cache_dir
        else Cache.for_repo(job.common_dir)
    )
    try:
        missing = pipeline.link_ignored_deps(job.stages, ws, Path(job.repo_root))
    except OutsideError as exc:
        return [pipeline.StageOutcome(job.stages[0].name, "failed", 1, str(exc))]
    if missing:
        return [
            pipeline.StageOutcome(
                job.stages[0].name, "failed", 1, f"dep {missing[0]!r} exists nowhere"
            )
        ]

    if pid is None:
        pid = {}
    pid.update({"pidfile": workspace.pid_file(ws), "key": job.key, "claim": job.claim})

    params_files = list(job.meta.get("params", {}))
    ckpt_outs = [o.path for s in job.stages for o in s.outs if o.checkpoint]

    names = [s.name for s in job.stages]

    def run(stage: Stage, cwd: Path, env: dict[str, str], log: Any) -> int:
        pid["stage"] = names.index(stage.name)
        return run_command(
            stage.cmd, cwd, env, log, job.timeout, pid, bool(ckpt_outs), dict(stage.values)
        )

    if adopted is not None:
        return pipeline.run_stages(
            job.stages, ws, cache, params_files, env, log, adopted, force=True, keep_outs=True
        )
    if not ckpt_outs:
        outcomes = pipeline.run_stages(
            job.stages, ws, cache, params_files, env, log, run, force=job.force
        )
    else:
        outcomes = _run_with_checkpoints(
            job, ws, cache, params_files, env, log, run, pid, ckpt_outs
        )
    if pid.get("timeout") and outcomes and outcomes[-1].status == "failed":
        outcomes[
            -1
        ].message = f"timeout: stage {outcomes[-1].name!r} ran longer than {job.timeout:g} s"
    return outcomes


def _run_with_checkpoints(
    job: Job,
    ws: Path,
    cache: Cache,
    params_files: list[str],
    env: dict[str, str],
    log: Any,
    run: pipeline.RunCommand,
    pid: dict[str, Any],
    ckpt_outs: list[str],
) -> list[pipeline.StageOutcome]:
    """Run the stages with a checkpoint watcher, resuming from the last checkpoint."""
    from sweeprun.run import checkpoint

    journal = checkpoint.journal_path(job.common_dir, job.key)
    chain = checkpoint.load_chain(job.common_dir, ws, job.key)
    parent, step = chain[-1] if chain else (job.baseline, 0)
    if chain:
        lock = json.loads(run_git(["show", f"{parent}:{pipeline.LOCK_FILE}"], ws))
        for path, digest in lock.get("checkpoint_outs", {}).items():
            cache.checkout(digest, guarded(ws, path, "checkpoint out"))
        log.write(f"+ resuming from checkpoint {step} ({parent[:7]})\n".encode())

    def snapshot(step: int, parent: str) -> str:
        from sweeprun.store.records import format_message

        digests = {p: cache.save(ws / p) for p in ckpt_outs if (ws / p).exists()}
        metrics = read_metrics(ws, job.stages)
        guarded(ws, pipeline.LOCK_FILE).write_text(
            json.dumps({"schema": 1, "checkpoint": step, "checkpoint_outs": digests}, indent=2)
            + "\n"
        )
        meta = checkpoint.checkpoint_meta(job.meta, step, metrics)
        meta["checkpoint_outs"] = digests
        return commit_tree(
            ws,
            job,
            format_message(f"sweeprun: checkpoint {step} {job.name} {job.exp_id}", meta),
            parent,
        )

    env = dict(env, **{checkpoint.ENV: str(checkpoint.signal_path(job.common_dir, job.key))})
    # Checkpointed outs are the program's state: keep them between stages and runs.
    stages = [
        replace(s, outs=tuple(replace(o, persist=o.persist or o.checkpoint) for o in s.outs))
        for s in job.stages
    ]
    watcher = checkpoint.Watcher(
        checkpoint.signal_path(job.common_dir, job.key),
        snapshot,
        journal,
        parent,
        step,
        checkpoint.kill_group(pid),
    )
    with watcher:
        outcomes = pipeline.run_stages(
            stages, ws, cache, params_files, env, log, run, force=job.force or bool(chain)
        )
    if watcher.error:
        failed = pipeline.StageOutcome(stages[-1].name, "failed", 1, watcher.error)
        return [o for o in outcomes if o.status != "failed"] + [failed]
    return outcomes


def run_job(job: Job) -> JobReport:
    """Run one experiment end to end in a pooled workspace and return its report.

    Never raises for a failing command (that is a failed experiment); an error of
    sweeprun itself becomes an ``error`` report without a result commit.
    """
    started = time.time()
    log_path = Path(job.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, job.retries + 2):
        report = _attempt(job, started, log_path, attempt)
        if report.passed or report.outcome == "error" or attempt > job.retries:
            return report  # (an interrupted report is an "error" one)
        # Keep this attempt's log beside the next one's, then back off briefly.
        os.replace(log_path, log_path.with_name(f"{job.key}.attempt{attempt}.log"))
        time.sleep(min(RETRY_BACKOFF * 2 ** (attempt - 1), 5.0))
    raise AssertionError("unreachable")


def error_report(
    job: Job, started: float, log_path: Path, message: str, tail: str, storage: bool = False
) -> JobReport:
    """A report of sweeprun failing to run or record a job: no result, back to the queue."""
    return JobReport(
        key=job.key,
        name=job.name,
        exp_id=job.exp_id,
        outcome="error",
        returncode=None,
        started=started,
        finished=time.time(),
        result_commit=None,
        log_path=str(log_path),
        log_tail=tail,
        message=message,
        storage_fault=storage,
    )


def _attempt(job: Job, started: float, log_path: Path, attempt: int) -> JobReport:
    phase = ["checking out its workspace"]
    try:
        with workspace.acquire(
            job.common_dir, job.repo_root, job.commit, job.base_tree, dict(job.files)
        ) as ws:
            try:
                phase[0] = "running its stages"
                return _in_workspace(job, ws, started, log_path, attempt, phase)
            except Exception as exc:
                if storage_error(exc):
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
            return error_report(job, started, log_path, what, f"sweeprun: {what}", storage=True)
        return error_report(
            job, started, log_path, "sweeprun could not run the job", traceback.format_exc(limit=6)
        )


def adopt_job(job: Job, ws: Path, rc: int, stage_index: int) -> JobReport:
    """Record what a killed runner's job left in slot ``ws``: its commands had run, the
    last (stage ``stage_index``) exiting with ``rc``; nothing runs again."""

    def ran(stage: Stage, cwd: Path, env: dict[str, str], log: Any) -> int:
        log.write(b"sweeprun: adopted: this command had finished under a runner that died\n")
        return rc if job.stages[stage_index].name == stage.name else 0

    started = time.time()
    try:
        return _in_workspace(job, ws, started, Path(job.log_path), 1, ["adopting"], ran)
    except Exception:
        return error_report(
            job, started, Path(job.log_path), "could not adopt", traceback.format_exc(limit=6)
        )


def _in_workspace(
    job: Job,
    ws: Path,
    started: float,
    log_path: Path,
    attempt: int,
    phase: list[str],
    adopted: pipeline.RunCommand | None = None,
) -> JobReport:
    """Run the stages in a checked-out workspace and record the result commit."""
    env = job_env(job, ws)
    if job.slots:
        # One device per concurrent job: the pooled workspace's slot number.
        env["CUDA_VISIBLE_DEVICES"] = job.slots[int(ws.name[1:]) % len(job.slots)]
    rc = 0
    message = ""
    holder: dict[str, Any] = {}
    with open(log_path, "ab" if adopted else "wb") as log:
        outcomes = execute_pipeline(job, ws, env, log, holder, adopted)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed and holder.get("interrupted"):
        return replace(
            error_report(job, started, log_path, "interrupted", log_tail(log_path)),
            interrupted=True,
        )
    if failed and disk_full(ws):
        # The program most likely failed for want of space, not of its own accord: the
        # experiment goes back to the queue instead of being recorded as failed.
        raise OSError(errno.ENOSPC, f"{failed[0].message}, with the disk full", str(ws))
    if failed:
        rc, message = failed[0].returncode or 1, failed[0].message
    metrics = read_metrics(ws, job.stages)
    # Written but not readable: a failure, not a success whose numbers are missing.
    problem = unparseable_metrics(ws, job.stages) if None in metrics.values() else ""
    if rc == 0 and problem:
        rc, message = 1, problem
        with open(log_path, "ab") as log:
            log.write(f"sweeprun: {message}\n".encode())
    if rc == 0 and job.meta.get("expect"):
        from sweeprun.spec.expect import check

        missed = check(job.meta["expect"], metrics)
        if missed:
            message = "; ".join(missed)
            with open(log_path, "ab") as log:
                log.write(("\n".join(missed) + "\n").encode())
    finished = time.time()
    outcome = "passed" if rc == 0 and not message else "failed"
    expect_missed = rc == 0 and bool(message)
    tail = log_tail(log_path)
    meta = dict(job.meta)
    meta.pop("files", None)  # already in the tree; keep records small
    # A missed expectation is not a crash: both fail the experiment, told apart in the
    # record's state (show, junit, the summary).
    state = (
        "success"
        if outcome == "passed"
        else "expect-failed"
        if expect_missed
        else ("timeout" if message.startswith("timeout:") else "failed")
    )
    meta.update(
        {
            "state": state,
            "attempts": attempt,
            "returncode": rc,
            "started": started,
            "finished": finished,
            "duration": round(finished - started, 6),
            "metrics": metrics,
            "message": message,
            "log_tail": tail,
            "queue_commit": job.commit,
            "host": socket.gethostname(),
        }
    )
    from sweeprun.run.checkpoint import journal_path, read_journal

    chain = read_journal(journal_path(job.common_dir, job.key))
    if chain:
        meta["checkpoints"] = chain[-1][1]
    phase[0] = "recording its result"
    lock = {}
    if any(o.status != "failed" for o in outcomes):
        lock[pipeline.LOCK_FILE] = pipeline.lock_bytes(outcomes)
    result = commit_result(ws, job, meta, chain[-1][0] if chain else "", lock)
    if job.journal:
        with contextlib.suppress(OSError):
            leases.record_result(job.journal, job.key, result)
    return JobReport(
        key=job.key,
        name=job.name,
        exp_id=job.exp_id,
        outcome=outcome,
        returncode=rc,
        started=started,
        finished=finished,
        result_commit=result,
        log_path=str(log_path),
        log_tail=tail,
        metrics=metrics,
        message=message,
        state=state,
    )
