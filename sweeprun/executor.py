"""Running one experiment: the job function that local and remote workers execute.

A :class:`Job` is a small picklable value (what to run, at which commit); the worker
checks the commit out in a pooled workspace, runs the stages, writes the result as git
*objects* (never refs) and returns a small :class:`JobReport`. The parent process turns
reports into refs. Nothing here knows about YAML, plugins or the session.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweeprun import gitobjects, pipeline, workspace
from sweeprun.cache import Cache
from sweeprun.git import run_git
from sweeprun.spec import Stage

# Outside quotes, these characters mean shell syntax: operators, expansions, globs,
# redirections, comments, brace expansion, escapes. Inside double quotes only $ ` and \
# do; inside single quotes nothing does.
_UNQUOTED_SHELL = frozenset("|&;<>()$`\\*?[]#~{}!\n")
_DOUBLE_QUOTED_SHELL = frozenset("$`\\")
# A leading VAR=value assignment, or a shell keyword/builtin as the first word.
_SHELL_FIRST_WORD = re.compile(
    r"^\s*[A-Za-z_][A-Za-z0-9_]*="
    r"|^\s*(?:cd|export|source|\.|exec|if|for|while|until|case|set|ulimit|umask|alias|eval"
    r"|read|type|command|hash|time)(?:\s|$)"
)
LOG_TAIL_LINES = 40
RETRY_BACKOFF = 0.2
INTERRUPT_GRACE = 10.0
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
    force: bool = False
    #: New files the result may take without asking git (declared, not-ignored results);
    #: empty disables the in-process ``git add`` (filters or attributes are configured).
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
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix == ".toml":
            import tomlkit

            return tomlkit.parse(text).unwrap()
        import yaml

        return yaml.safe_load(text)
    except Exception:
        return None


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
        }
    )
    return env


def command_argv(cmd: str, path: str | None = None) -> list[str] | None:
    """``cmd`` as an argv when no shell feature is used, else ``None`` (run via the shell).

    Quoting is the one shell feature handled here (``python -c '{"a": 1}'`` is common),
    with the same result as ``sh``. A first word that is no program on ``path`` may be a
    builtin (``exit 3``), so it goes to the shell, which also words the error as users
    know it. Skipping ``/bin/sh`` saves a process per stage: it matters for short commands.
    """
    if _SHELL_FIRST_WORD.search(cmd) or _needs_shell(cmd):
        return None
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return None
    if not argv or ("/" not in argv[0] and shutil.which(argv[0], path=path) is None):
        return None
    return argv


def _needs_shell(cmd: str) -> bool:
    quote = ""
    for ch in cmd:
        if quote == "'":
            quote = "" if ch == "'" else quote
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in _DOUBLE_QUOTED_SHELL:
                return True
        elif ch in "'\"":
            quote = ch
        elif ch in _UNQUOTED_SHELL:
            return True
    return bool(quote)  # unbalanced: let the shell say so


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # If the runner is killed (even with SIGKILL), its commands go too: nothing keeps
    # writing into a workspace another runner may take over.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_command(
    cmd: str,
    cwd: Path,
    env: dict[str, str],
    log: Any,
    timeout: float | None,
    pid_holder: dict[str, Any] | None = None,
    die_with_parent: bool = False,
) -> int:
    """Run one command in its own process group; 124 when ``timeout`` ran out.

    ``pid_holder`` receives ``pid`` (and ``timeout`` when it ran out); when it holds a
    ``pidfile`` path and a ``key``, ``KEY PGID`` is written there while the command runs,
    so ``sweeprun queue kill`` in another process can signal it.
    """
    argv = command_argv(cmd, env.get("PATH"))
    try:
        # A session of its own: the whole process tree can be signalled as one group.
        proc = subprocess.Popen(
            argv or cmd,
            shell=argv is None,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Costs a fork instead of a vfork (~1.5 ms), so only where a program may wait
            # for its runner forever (checkpoints); other orphans are killed on reclaim.
            preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        # What the shell would have said and returned.
        log.write(f"sweeprun: {cmd}: {exc.strerror}\n".encode())
        return 127 if isinstance(exc, FileNotFoundError) else 126
    pidfile: Path | None = None
    if pid_holder is not None:
        pid_holder["pid"] = proc.pid
        pidfile = pid_holder.get("pidfile")
        if pidfile is not None:
            workspace.write_pid(pidfile, f"{pid_holder['key']} {proc.pid}\n")
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)  # the whole tree: children of the command too
        proc.wait()
        if pid_holder is not None:
            pid_holder["timeout"] = 1
        log.write(f"sweeprun: timed out after {timeout:g} s; process group killed\n".encode())
        return 124
    except KeyboardInterrupt:
        # Ctrl+C reached this thread (sequential runs): the job gets SIGINT and a chance
        # to stop cleanly (checkpoints are kept); a second Ctrl+C, or 10 s, kills it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.wait(timeout=INTERRUPT_GRACE)
        _kill_group(proc.pid)
        proc.wait()
        raise
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        if pidfile is not None:
            workspace.write_pid(pidfile, "")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def add_all(ws: Path, job: Job) -> None:
    """``git add -A`` in the workspace, with the cached outs treated as ignored.

    Outs go to the cache, never into git. Naming them as ``:(exclude)`` pathspecs makes
    git fail when the user's .gitignore lists them too, so they go into an excludes file
    of this worktree instead (the user's own .gitignore files still apply).
    """
    outs = [o.path for s in job.stages for o in s.outs if o.cache]
    args = ["add", "-A", "--", "."]
    if outs:
        excludes = workspace.worktree_git_dir(ws) / "sweeprun-excludes"
        text = "".join(f"/{p}\n" for p in outs)
        if not excludes.is_file() or excludes.read_text() != text:
            excludes.write_text(text)
        args = ["-c", f"core.excludesFile={excludes}", *args]
    run_git(args, ws)


FAST_ADD_MAX_ENTRIES = 2000


def fast_entries(ws: Path, job: Job) -> list[gitobjects.IndexEntry] | None:
    """What ``git add -A`` would stage, computed in-process — or ``None`` to let git do it.

    Only when nothing needs git's judgement: no attributes or filters (checked by the
    runner), no symlinks or submodules, and every file that is not tracked is one of the
    experiment's declared, not-ignored results (metrics, plots, the lock file). Anything
    else — a stray ``__pycache__``, an unknown new file — goes to ``git add -A``.
    """
    if not job.allowed_new:
        return None
    gd = workspace.worktree_git_dir(ws)
    index = gd / "index"
    entries = gitobjects.read_index(index)
    if entries is None or len(entries) > FAST_ADD_MAX_ENTRIES:
        return None
    if any(
        e.mode not in (0o100644, 0o100755) or e.path.endswith(b".gitattributes") for e in entries
    ):
        return None
    racy = index.stat().st_mtime_ns
    by_path = {e.path: e for e in entries}
    allowed = {p.encode() for p in job.allowed_new}
    outs = [o.path.encode() for s in job.stages for o in s.outs if o.cache]
    objects = Path(job.common_dir) / "objects"
    out: list[gitobjects.IndexEntry] = []
    seen = 0
    changed = False
    for full in gitobjects.walk_files(ws):
        rel = os.fsencode(os.path.relpath(full, ws))
        if any(rel == o or rel.startswith(o + b"/") for o in outs):
            continue
        st = os.lstat(full)
        if not stat.S_ISREG(st.st_mode):
            return None
        mode = 0o100755 if st.st_mode & 0o100 else 0o100644
        old = by_path.get(rel)
        if old is None and rel not in allowed:
            return None
        if old is not None:
            seen += 1
            s = old.stat
            if (
                old.mode == mode
                and s[9] == st.st_size & 0xFFFFFFFF
                and s[5] == st.st_ino & 0xFFFFFFFF
                and s[2] * 10**9 + s[3] == st.st_mtime_ns
                and st.st_mtime_ns < racy
            ):
                out.append(old)
                continue
        content = Path(full).read_bytes()
        sha = gitobjects.write_object(objects, "blob", content)
        if old is not None and (sha != old.sha or mode != old.mode):
            changed = True
        out.append(gitobjects.IndexEntry(rel, mode, sha))
    if changed or seen != len(by_path):
        # A tracked file changed or went away: the index no longer tells the next
        # experiment's fast switch what to restore, so that slot must check out for real.
        workspace.forget(ws)
    return out


def commit_result(
    ws: Path,
    job: Job,
    meta: dict[str, Any],
    parent: str = "",
    extra: dict[str, bytes] | None = None,
) -> str:
    """Record the workspace as a commit (parent: the baseline, or the last checkpoint).

    ``extra`` files (``sweeprun.lock``) join the commit as they would if written into the
    workspace first; on the in-process path they go straight into the object store, so
    the workspace stays as the command left it and the next experiment has less to undo.
    """
    from sweeprun.gitstore import format_message

    subject = f"sweeprun: {meta['state']} {job.name} {job.exp_id}"
    message = format_message(subject, meta)
    extra = extra or {}
    if job.fast_objects and job.author and job.committer:
        objects = Path(job.common_dir) / "objects"
        entries = fast_entries(ws, job)
        if entries is not None:
            # Only what git would add: declared results that no .gitignore rule excludes.
            virtual = {p.encode(): data for p, data in extra.items() if p in job.allowed_new}
            entries = [e for e in entries if e.path not in virtual]
            for path, data in virtual.items():
                blob = gitobjects.write_object(objects, "blob", data)
                entries.append(gitobjects.IndexEntry(path, 0o100644, blob))
        else:
            _write_files(ws, extra)
            add_all(ws, job)
            entries = gitobjects.read_index(workspace.worktree_git_dir(ws) / "index")
        if entries is not None:
            tree = gitobjects.write_tree(objects, entries)
            return gitobjects.write_commit(
                objects,
                tree,
                [parent or job.baseline],
                gitobjects.format_ident(job.author),
                gitobjects.format_ident(job.committer),
                message,
            )
    # The general path: write-tree + commit-tree (parent: the baseline) runs none of the
    # user's hooks and leaves the worktree's HEAD alone.
    _write_files(ws, extra)
    add_all(ws, job)
    tree = run_git(["write-tree"], ws).strip()
    return run_git(
        ["commit-tree", tree, "-p", parent or job.baseline],
        ws,
        input=message,
        env=dict(job.env),  # carries the commit identity when git has none configured
    ).strip()


def _write_files(ws: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (ws / rel).write_bytes(data)


def execute_pipeline(
    job: Job, ws: Path, env: dict[str, str], log: Any
) -> list[pipeline.StageOutcome]:
    """Link ignored deps, run or restore every stage (the caller records the lock)."""
    cache = Cache(Path(job.cache_dir)) if job.cache_dir else Cache.for_repo(job.common_dir)
    missing = pipeline.link_ignored_deps(job.stages, ws, Path(job.repo_root))
    if missing:
        return [
            pipeline.StageOutcome(
                job.stages[0].name, "failed", 1, f"dep {missing[0]!r} exists nowhere"
            )
        ]

    pid: dict[str, Any] = {"pidfile": workspace.pid_file(ws), "key": job.key}

    params_files = list(job.meta.get("params", {}))
    ckpt_outs = [o.path for s in job.stages for o in s.outs if o.checkpoint]

    def run(cmd: str, cwd: Path, env: dict[str, str], log: Any) -> int:
        return _run_command(cmd, cwd, env, log, job.timeout, pid, bool(ckpt_outs))

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
    from sweeprun import checkpoint

    journal = checkpoint.journal_path(job.common_dir, job.key)
    chain = checkpoint.read_journal(journal)
    parent, step = chain[-1] if chain else (job.baseline, 0)
    if chain:
        lock = json.loads(run_git(["show", f"{parent}:{pipeline.LOCK_FILE}"], ws))
        for path, digest in lock.get("checkpoint_outs", {}).items():
            cache.checkout(digest, ws / path)
        log.write(f"+ resuming from checkpoint {step} ({parent[:7]})\n".encode())

    def snapshot(step: int, parent: str) -> str:
        from sweeprun.gitstore import format_message

        digests = {p: cache.save(ws / p) for p in ckpt_outs if (ws / p).exists()}
        metrics = read_metrics(ws, job.stages)
        (ws / pipeline.LOCK_FILE).write_text(
            json.dumps({"schema": 1, "checkpoint": step, "checkpoint_outs": digests}, indent=2)
            + "\n"
        )
        meta = checkpoint.checkpoint_meta(job.meta, step, metrics)
        meta["checkpoint_outs"] = digests
        return _commit_tree(
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


def _commit_tree(ws: Path, job: Job, message: str, parent: str) -> str:
    """Commit the workspace as it is (cached outs excluded) with ``parent``."""
    add_all(ws, job)
    tree = run_git(["write-tree"], ws).strip()
    return run_git(
        ["commit-tree", tree, "-p", parent], ws, input=message, env=dict(job.env)
    ).strip()


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
            return report
        # Keep this attempt's log beside the next one's, then back off briefly.
        os.replace(log_path, log_path.with_name(f"{job.key}.attempt{attempt}.log"))
        time.sleep(min(RETRY_BACKOFF * 2 ** (attempt - 1), 5.0))
    raise AssertionError("unreachable")


def _attempt(job: Job, started: float, log_path: Path, attempt: int) -> JobReport:
    try:
        with workspace.acquire(
            job.common_dir, job.repo_root, job.commit, job.base_tree, dict(job.files)
        ) as ws:
            env = job_env(job, ws)
            if job.slots:
                # One device per concurrent job: the pooled workspace's slot number.
                env["CUDA_VISIBLE_DEVICES"] = job.slots[int(ws.name[1:]) % len(job.slots)]
            rc = 0
            message = ""
            with open(log_path, "wb") as log:
                outcomes = execute_pipeline(job, ws, env, log)
            failed = [o for o in outcomes if o.status == "failed"]
            if failed:
                rc, message = failed[0].returncode or 1, failed[0].message
            metrics = read_metrics(ws, job.stages)
            if rc == 0 and job.meta.get("expect"):
                from sweeprun.expect import check

                missed = check(job.meta["expect"], metrics)
                if missed:
                    message = "; ".join(missed)
                    with open(log_path, "ab") as log:
                        log.write(("\n".join(missed) + "\n").encode())
            finished = time.time()
            outcome = "passed" if rc == 0 and not message else "failed"
            tail = log_tail(log_path)
            meta = dict(job.meta)
            meta.pop("files", None)  # already in the tree; keep records small
            state = (
                "success"
                if outcome == "passed"
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
            from sweeprun.checkpoint import journal_path, read_journal

            chain = read_journal(journal_path(job.common_dir, job.key))
            if chain:
                meta["checkpoints"] = chain[-1][1]
            lock = {}
            if any(o.status != "failed" for o in outcomes):
                lock[pipeline.LOCK_FILE] = pipeline.lock_bytes(outcomes)
            result = commit_result(ws, job, meta, chain[-1][0] if chain else "", lock)
    except Exception:
        finished = time.time()
        return JobReport(
            key=job.key,
            name=job.name,
            exp_id=job.exp_id,
            outcome="error",
            returncode=None,
            started=started,
            finished=finished,
            result_commit=None,
            log_path=str(log_path),
            log_tail=traceback.format_exc(limit=6),
            message="sweeprun could not run the job",
        )
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
    )
