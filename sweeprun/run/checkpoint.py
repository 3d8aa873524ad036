"""Checkpoints: a signal-file protocol, a watcher per job, and a crash-proof journal.

Protocol (any language): a stage with a ``checkpoint: true`` out gets the path of a signal
file in ``SWEEPRUN_CHECKPOINT``. To checkpoint, the program creates that file and waits
until it disappears. The watcher (a thread beside the job, polling every 5 ms) then

1. snapshots the checkpoint outs into the output cache,
2. writes a checkpoint commit (git objects only): the workspace with ``sweeprun.lock``
   naming the outs' digests, metrics as they are now; its parent is the previous
   checkpoint (the first one's, the baseline),
3. appends the commit to the experiment's journal, ``.git/sweeprun/checkpoints/<key>``,
   and fsyncs it,
4. removes the signal file, releasing the program.

Only the runner (parent) writes refs: it publishes journals to
``refs/sweeprun/checkpoints/<key>`` while the job runs, and any later runner publishes what
a killed one left. So a checkpoint survives Ctrl+C, ``kill -9`` of the runner, a crash
or a timeout as soon as the program has been released.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sweeprun.model import (
    CHECKPOINT_ENV,
    EXPS,
    CheckpointRecord,
    Reapable,
    Record,
    Stage,
    format_message,
    parse_message,
    unlink_later,
)
from sweeprun.run import pipeline
from sweeprun.run.metrics import read_metrics
from sweeprun.run.snapshot import commit_tree
from sweeprun.store.cache import Cache
from sweeprun.store.catfile import ObjectReader
from sweeprun.store.git import run_git
from sweeprun.system.damage import set_aside
from sweeprun.system.paths import guarded

if TYPE_CHECKING:
    from sweeprun.run.task import Task

POLL = 0.005
ENV = CHECKPOINT_ENV
REF_PREFIX = "refs/sweeprun/checkpoints/"


def journal_path(common_dir: str | os.PathLike[str], key: str) -> Path:
    """Where a job's checkpoint journal lives."""
    return Path(common_dir) / "sweeprun" / "checkpoints" / key


def signal_path(common_dir: str | os.PathLike[str], key: str) -> Path:
    """The signal file of a job (outside every work tree)."""
    return Path(common_dir) / "sweeprun" / "signals" / f"{key}.ckpt"


_LINE = re.compile(rb"([0-9a-f]{40}) ([0-9]+)")
_TORN = re.compile(rb"[0-9a-f]{0,40}|[0-9a-f]{40} [0-9]*")  # what a cut-short append leaves


def read_journal(path: Path) -> list[tuple[str, int]]:
    """``[(commit, step), …]`` from a journal; a torn last line is ignored; a damaged
    journal reads as empty (see :func:`load_chain`, which also sets it aside)."""
    return _parse_journal(path) or []


def _parse_journal(path: Path) -> list[tuple[str, int]] | None:
    """The journal's chain; ``None`` when it is damaged (not a torn last line)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError:
        return None
    lines = data.split(b"\n")
    out = []
    for i, line in enumerate(lines):
        match = _LINE.fullmatch(line)
        if match:
            out.append((match.group(1).decode(), int(match.group(2))))
        elif line and (i < len(lines) - 1 or not _TORN.fullmatch(line)):
            return None  # only the last line may be cut short (a crash mid-append)
    return out


def load_chain(
    common_dir: str | os.PathLike[str], cwd: str | os.PathLike[str], key: str
) -> list[tuple[str, int]]:
    """An experiment's checkpoints, ``[(commit, step), …]``: from its journal, or, when the
    journal is empty or damaged, from its published ref ``refs/sweeprun/checkpoints/<key>``
    (a damaged journal is set aside, and written anew from the ref)."""
    path = journal_path(common_dir, key)
    got = _parse_journal(path)
    if got is None:
        set_aside(path, Path(common_dir) / "sweeprun", "is damaged (not a checkpoint journal)")
        got = []
    if got:
        return got
    tip = run_git(["rev-parse", "-q", "--verify", REF_PREFIX + key], cwd, check=False).strip()
    if not tip:
        return []
    meta = parse_message(run_git(["log", "-1", "--format=%B", tip], cwd, check=False)) or {}
    commits = list(reversed(chain(cwd, tip, str(meta.get("baseline", "")) or tip + "^")))
    got = [(sha, int(m.get("step", 0))) for sha, m in commits]
    if got:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".rebuilt")
        tmp.write_text("".join(f"{sha} {step}\n" for sha, step in got))
        os.replace(tmp, path)
    return got


def append_journal(path: Path, commit: str, step: int) -> None:
    """Append durably: the line is on disk before the program is released."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{commit} {step}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class Watcher:
    """Watches one job's signal file and turns each signal into a checkpoint commit."""

    def __init__(
        self,
        signal_file: Path,
        snapshot: Callable[[int, str], str],
        journal: Path,
        first_parent: str,
        first_step: int = 0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.signal_file = signal_file
        self.snapshot = snapshot
        self.journal = journal
        self.parent = first_parent
        self.step = first_step
        self.on_error = on_error
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeprun-ckpt", daemon=True)

    def __enter__(self) -> Watcher:
        self.signal_file.parent.mkdir(parents=True, exist_ok=True)
        self.signal_file.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.signal_file.exists() and not self.error:
            self._take()  # the program signalled just before exiting
        self.signal_file.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stop.wait(POLL):
            if self.signal_file.exists():
                self._take()

    def _take(self) -> None:
        try:
            commit = self.snapshot(self.step + 1, self.parent)
            append_journal(self.journal, commit, self.step + 1)
        except Exception as exc:  # a failed snapshot must not leave the program waiting
            self.error = f"checkpoint {self.step + 1} failed: {type(exc).__name__}: {exc}"
            if self.on_error is not None:
                self.on_error(self.error)
        else:
            self.step += 1
            self.parent = commit
        self.signal_file.unlink(missing_ok=True)


def kill_group(pid_holder: dict[str, Any]) -> Callable[[str], None]:
    """An error handler that stops the job's process group (the one running now)."""

    def stop(_: str) -> None:
        proc = pid_holder.get("proc")
        if proc is not None:
            proc.signal_group(signal.SIGKILL)

    return stop


def chain(cwd: str | os.PathLike[str], tip: str, baseline: str) -> list[tuple[str, dict[str, Any]]]:
    """Checkpoint commits from ``tip`` back to ``baseline``, newest first: (sha, record)."""
    log = run_git(
        ["log", "--first-parent", "--format=%H%x00%B%x1e", tip, f"^{baseline}"], cwd, check=False
    )
    out = []
    for chunk in log.split("\x1e"):
        sha, _, body = chunk.strip().partition("\x00")
        meta = parse_message(body)
        if sha and meta is not None and meta.get("state") == "checkpoint":
            out.append((sha, meta))
    return out


def at_step(
    cwd: str | os.PathLike[str], record: Record, step: int
) -> tuple[str, dict[str, Any]] | None:
    """Checkpoint ``step`` of an experiment (a result's chain, or a running one's ref):
    ``(commit, record)``, or ``None``."""
    tip = record.commit if record.ref.startswith(EXPS) else REF_PREFIX + record.key
    for sha, meta in chain(cwd, tip, record.baseline):
        if meta.get("step") == step:
            return sha, meta
    return None


def dumps(obj: Any) -> str:
    """Compact JSON used in journals and records."""
    return json.dumps(obj, sort_keys=True, default=str)


def write_journal(
    common_dir: str | os.PathLike[str], key: str, kept: list[tuple[str, int]]
) -> None:
    """Replace an experiment's journal with ``kept`` (a rewind, or a resume's seed)."""
    path = journal_path(common_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".rewind")
    tmp.write_text("".join(f"{c} {s}\n" for c, s in kept))
    os.replace(tmp, path)


def run_with_checkpoints(
    task: Task,
    ws: Path,
    cache: Cache,
    params_files: list[str],
    env: dict[str, str],
    log: BinaryIO,
    run: pipeline.RunCommand,
    pid: dict[str, Any],
    ckpt_outs: list[str],
) -> list[pipeline.StageOutcome]:
    """Run the stages with a checkpoint watcher, resuming from the last checkpoint."""
    common = task.common_dir
    journal = journal_path(common, task.key)
    reset = task.job.options.reset
    # --reset (and -f) start over: the runner dropped the chain; the outs go too, below.
    chain = [] if reset else load_chain(common, ws, task.key)
    parent, step = chain[-1] if chain else (task.baseline, 0)
    if chain:
        lock = json.loads(run_git(["show", f"{parent}:{pipeline.LOCK_FILE}"], ws))
        for path, digest in lock.get("checkpoint_outs", {}).items():
            cache.checkout(digest, guarded(ws, path, "checkpoint out"))
        # The metrics and plots the last checkpoint recorded are the experiment's as it
        # stands: a program with nothing left to do must not leave them missing.
        restore_results(ws, common, parent, task.stages)
        log.write(f"+ resuming from checkpoint {step} ({parent[:7]})\n".encode())
    # A run that starts from the baseline with no state left lying around is a function
    # of its stage key; anything else (a resumed chain, state the workspace holds) must
    # neither reach the run-cache nor be answered from it.
    fresh = not chain and (reset or not any((ws / p).exists() for p in ckpt_outs))

    def snapshot(step: int, parent: str) -> str:
        digests = {p: cache.save(ws / p) for p in ckpt_outs if (ws / p).exists()}
        metrics = read_metrics(ws, task.stages)
        lock = json.dumps({"schema": 1, "checkpoint": step, "checkpoint_outs": digests}, indent=2)
        record = CheckpointRecord(
            **vars(task.record),
            queue_commit=task.commit,
            step=step,
            metrics=metrics,
            checkpoint_at=time.time(),
            checkpoint_outs=digests,
        )
        subject = f"sweeprun: checkpoint {step} {task.name} {task.exp_id}"
        message = format_message(subject, record)
        commit = commit_tree(
            ws, task, message, parent, {pipeline.LOCK_FILE: (lock + "\n").encode()}
        )
        if task.shared.relay is not None:
            task.shared.relay(commit, step)  # a git-only worker: out to the URL first
        if task.shared.prune is not None and not pid.get("pruned"):
            why = task.shared.prune(task.key, step, metrics)
            if why:
                # Stopped as a timeout is: the whole tree, before the program goes on.
                pid["pruned"] = why
                proc = pid.get("proc")
                if proc is not None:
                    proc.signal_tree(signal.SIGKILL)
        return commit

    env = dict(env, **{ENV: str(signal_path(common, task.key))})
    # Checkpointed outs are the program's state: keep them between stages and runs —
    # except on --reset, which discards them (as DVC's does), in the workspace too.
    stages = [
        replace(
            s,
            outs=tuple(
                replace(o, persist=not (reset and o.checkpoint) and (o.persist or o.checkpoint))
                for o in s.outs
            ),
        )
        for s in task.stages
    ]
    watcher = Watcher(
        signal_path(common, task.key), snapshot, journal, parent, step, kill_group(pid)
    )
    with watcher:
        outcomes = pipeline.run_stages(
            stages,
            ws,
            cache,
            params_files,
            env,
            log,
            run,
            force=task.force or not fresh,
            record_runs=fresh,
        )
    if watcher.error:
        failed = pipeline.StageOutcome(stages[-1].name, "failed", 1, watcher.error)
        return [o for o in outcomes if o.status != "failed"] + [failed]
    return outcomes


def restore_results(ws: Path, common_dir: str, commit: str, stages: tuple[Stage, ...]) -> None:
    """Write the metrics and plots files that ``commit`` holds into ``ws``."""
    paths = [p for s in stages for p in (*s.metrics, *s.plots)]
    if not paths:
        return
    listing = run_git(["ls-tree", "-r", "-z", commit, "--", *paths], ws, check=False)
    blobs = []
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, kind, sha = meta.split()
        if kind == "blob" and mode != "120000":  # a link is never restored through
            blobs.append((path, sha))
    if not blobs:
        return
    with ObjectReader(common_dir) as reader:
        contents = reader.read([sha for _, sha in blobs])
    for (path, _), data in zip(blobs, contents, strict=True):
        if data is not None:
            target = guarded(ws, path, "result")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def leftover_signals(common_dir: str | os.PathLike[str]) -> list[Reapable]:
    """For ``gc``: signal files of checkpoints no job is waiting on any more."""
    base = Path(common_dir) / "sweeprun"
    found = sorted((base / "signals").glob("*"))
    return [unlink_later(p, "leftover", base) for p in found]
