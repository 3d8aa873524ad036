"""Pipelines: the stage DAG, stage keys, the run-cache and running stages in a workspace.

A stage's *key* hashes what determines its outputs: the command, the content of its deps
and the params values it reads (all params, when it declares none — the safe default).
A stage whose key has a run-cache entry is not run: its outputs are restored from the
cache. Jobs running at once that need the same key take a lock on it, so one computes and
the others restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from sweeprun.model import Stage
from sweeprun.spec.dag import LOCK_FILE as LOCK_FILE
from sweeprun.spec.dag import inside, outputs
from sweeprun.spec.params import ParamsFile, get_path
from sweeprun.spec.template import display
from sweeprun.store.cache import Cache, CacheObjectError
from sweeprun.store.files import hash_path, link_or_copy, remove
from sweeprun.system.paths import OutsideError, guarded


def shown_cmd(stage: Stage) -> str:
    """A stage's command as a person reads it (values shell-quoted in place)."""
    return display(stage.cmd, dict(stage.values))


def params_read(
    stage: Stage, ws: Path, params_files: Sequence[str], texts: dict[str, str] | None = None
) -> dict[str, Any]:
    """The params values a stage reads, by file (all of them if it declares none).

    ``texts`` stands in for files' contents (a dry run with ``-S`` writes nothing).
    """

    texts = texts or {}
    if stage.no_params:
        return {}
    if not stage.params:
        # Reads every param: the files' bytes identify them, and hashing is cheaper than
        # parsing on the per-experiment path.
        return {
            p: "sha256:"
            + hashlib.sha256(texts[p].encode() if p in texts else (ws / p).read_bytes()).hexdigest()
            for p in params_files
            if p in texts or (ws / p).is_file()
        }
    files = {
        p: (ParamsFile.from_text(p, texts[p]) if p in texts else ParamsFile.load(ws, p)).data
        for p in params_files
        if p in texts or (ws / p).is_file()
    }
    default = params_files[0] if params_files else ""
    out: dict[str, Any] = {}
    for key in stage.params:
        path, sep, inner = key.rpartition(":")
        path = path if sep else default
        data = files.get(path, {})
        # ``file:`` (DVC's ``{file: null}``): the stage reads the whole file.
        out.setdefault(path, {})[inner] = get_path(data, inner, None) if inner else data
    return out


def stage_key(stage: Stage, deps: dict[str, str], params: dict[str, Any]) -> str:
    """The run-cache key of a stage."""
    blob = json.dumps(
        {
            "cmd": stage.cmd,
            "values": dict(stage.values),
            "wdir": stage.wdir,
            "deps": deps,
            "params": params,
            "outs": outputs(stage),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class StageOutcome:
    """What happened to one stage."""

    name: str
    status: str  # "ran", "cached", "failed", "skipped"
    returncode: int = 0
    message: str = ""
    lock: dict[str, Any] = field(default_factory=dict)


def link_ignored_deps(stages: Sequence[Stage], ws: Path, source: Path) -> list[str]:
    """Link deps missing from ``ws`` (git-ignored data) from ``source`` without copying.

    Returns the deps found nowhere (not in ``ws``, not in ``source``, not produced).
    """
    # A frozen stage produces nothing here: its outs are inputs, taken from ``source``.
    produced = [o for s in stages if not s.frozen for o in outputs(s)]
    missing = []
    for s in stages:
        frozen = set(outputs(s)) if s.frozen else set()
        for dep in (*s.deps, *frozen):
            target = ws / dep
            if target.exists() or any(inside(dep, o) for o in produced):
                continue
            guarded(ws, dep, "dep")  # the links are made here: never through a link out
            origin = source / dep
            if not origin.exists():
                if dep not in frozen:  # a stage that needs it says so when it runs
                    missing.append(dep)
                continue
            if origin.is_dir():
                for dirpath, _, filenames in os.walk(origin):
                    for name in filenames:
                        src = Path(dirpath) / name
                        dst = target / src.relative_to(origin)
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        _link(src, dst)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                _link(origin, target)
    return missing


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same inode: no copy
    except OSError:
        link_or_copy(src, dst)


RunCommand = Callable[[Stage, Path, dict[str, str], BinaryIO], int]


def run_stages(
    stages: Sequence[Stage],
    ws: Path,
    cache: Cache,
    params_files: Sequence[str],
    env: dict[str, str],
    log: BinaryIO,
    run_command: RunCommand,
    force: bool = False,
    dry: bool = False,
    params_texts: dict[str, str] | None = None,
    keep_outs: bool = False,
    record_runs: bool = True,
) -> list[StageOutcome]:
    """Run (or restore) ``stages`` in order in ``ws``; stop at the first failure.

    ``keep_outs``: the commands ran already (a killed runner's job being adopted): their
    outputs are in the workspace and must not be removed first. ``record_runs=False``:
    what the commands make depends on more than the stage key says (a checkpoint stage
    that resumed), so it must not reach the run-cache.
    """
    outcomes: list[StageOutcome] = []
    planned: dict[str, str | None] = {}  # dry run: outputs upstream stages would produce
    for stage in stages:
        if stage.frozen:
            # DVC's frozen stage: never run; its outs are taken as they are (linked in
            # like git-ignored data, see link_ignored_deps).
            outcomes.append(StageOutcome(stage.name, "frozen", message="frozen"))
            continue
        deps: dict[str, str] = {}
        if dry:
            unknown = [d for d in stage.deps if planned.get(d, "") is None]
            if unknown:
                outcomes.append(
                    StageOutcome(stage.name, "ran", message=f"{unknown[0]!r} will change upstream")
                )
                planned.update({p: None for p in outputs(stage)})
                continue
        missing = [d for d in stage.deps if not (ws / d).exists() and d not in planned]
        if missing:
            outcomes.append(
                StageOutcome(
                    stage.name, "failed", 1, f"stage {stage.name!r}: dep {missing[0]!r} is missing"
                )
            )
            break
        for dep in stage.deps:
            deps[dep] = planned.get(dep) or hash_path(ws / dep)
        params = params_read(stage, ws, params_files, params_texts)
        key = stage_key(stage, deps, params)
        lock = {"cmd": shown_cmd(stage), "key": key, "deps": deps, "params": params}
        if dry:
            # Only stages with cached outs use the run-cache: for a stage that writes just
            # metrics, a hit means an identical experiment, which queueing already dedupes,
            # and the bookkeeping would cost every experiment a lock and two writes.
            cacheable = any(o.cache for o in stage.outs) and not stage.always_changed
            entry = cache.run_entry(key) if cacheable and not force else None
            outcomes.append(
                StageOutcome(
                    stage.name, "cached" if entry else "ran", lock={**lock, "outs": entry or {}}
                )
            )
            for path in outputs(stage):
                planned[path] = entry.get(path) if entry else None
            continue
        try:
            stage_env = {**env, **dict(stage.env)} if stage.env else env
            outcome = _run_stage(
                stage,
                ws,
                cache,
                stage_env,
                log,
                run_command,
                key,
                lock,
                force,
                keep_outs,
                record_runs,
            )
        except OutsideError as exc:
            outcome = StageOutcome(stage.name, "failed", 1, f"stage {stage.name!r}: {exc}")
        outcomes.append(outcome)
        if outcome.status == "failed":
            break
    return outcomes


def _run_stage(
    stage: Stage,
    ws: Path,
    cache: Cache,
    env: dict[str, str],
    log: BinaryIO,
    run_command: RunCommand,
    key: str,
    lock: dict[str, Any],
    force: bool,
    keep_outs: bool = False,
    record_runs: bool = True,
) -> StageOutcome:
    """Restore one stage from the run-cache, or run it; record its outputs."""
    # Every path this stage makes sweeprun remove or replace, checked where it really is.
    guarded(ws, stage.wdir, "wdir")
    for path in outputs(stage):
        guarded(ws, path, "output")
    cacheable = any(o.cache for o in stage.outs)
    with cache.stage_lock(key) if cacheable else contextlib.nullcontext():
        reuse = cacheable and not force and not stage.always_changed
        entry = cache.run_entry(key) if reuse else None
        if entry is not None:
            try:
                for path, digest in entry.items():
                    cache.checkout(digest, guarded(ws, path, "output"))
            except CacheObjectError as exc:
                # Never restore a damaged result: compute it again.
                log.write(f"+ [{stage.name}] {exc}; running the stage again\n".encode())
            else:
                log.write(f"+ [{stage.name}] restored from the run-cache ({key[:12]})\n".encode())
                log.flush()
                return StageOutcome(stage.name, "cached", 0, lock={**lock, "outs": entry})
        for out in stage.outs:
            if not out.persist and not keep_outs:
                remove(guarded(ws, out.path, "out"))
        log.write(f"+ [{stage.name}] {shown_cmd(stage)}\n".encode())
        log.flush()
        rc = run_command(stage, ws / stage.wdir, env, log)
        if rc != 0:
            return StageOutcome(
                stage.name, "failed", rc, f"stage {stage.name!r} exited with code {rc}"
            )
        problem = missing_result(stage, ws)
        if problem:
            return StageOutcome(stage.name, "failed", 1, f"stage {stage.name!r} {problem}")
        saved = {}
        if cacheable:
            # The command may have made a link on the way: read only what is inside.
            saved = {
                p: cache.save(guarded(ws, p, "output")) for p in outputs(stage) if (ws / p).exists()
            }
            if record_runs:
                cache.record_run(key, saved)
        return StageOutcome(stage.name, "ran", 0, lock={**lock, "outs": saved})


def missing_result(stage: Stage, ws: Path) -> str:
    """Why a stage that exited 0 did not produce what it declares, or ``""``.

    A declared out must exist, as in DVC; so must a metrics file (a file: a directory has
    no metrics to read) and a plot (a file, or a directory of images as DVC allows) —
    an experiment whose declared results are missing is not a success with empty results.
    """
    for out in stage.outs:
        if not (ws / out.path).exists():
            return f"did not produce {out.path!r}"
    for path in stage.metrics:
        full = ws / path
        if not full.exists():
            return f"did not produce its metrics file {path!r}"
        if not full.is_file():
            return f"declares metrics {path!r}, which is a directory, not a file"
    for path in stage.plots:
        if not (ws / path).exists():
            return f"did not produce its plots file {path!r}"
    return ""


def lock_bytes(outcomes: Sequence[StageOutcome]) -> bytes:
    """The content of ``sweeprun.lock`` for the stages that completed.

    The format is JSON, which is also YAML: it diffs line by line like YAML and is an
    order of magnitude cheaper to write on the per-experiment path.
    """
    stages = {o.name: o.lock for o in outcomes if o.status in ("ran", "cached")}
    text = json.dumps({"schema": 1, "stages": stages}, indent=2, sort_keys=True, default=str)
    return (text + "\n").encode()


def write_lock(ws: Path, outcomes: Sequence[StageOutcome]) -> None:
    """Write ``sweeprun.lock`` for the stages that completed into a workspace."""
    guarded(ws, LOCK_FILE).write_bytes(lock_bytes(outcomes))


def read_lock(path: Path) -> dict[str, Any]:
    """Stages of a lock file (``{}`` when absent or unreadable)."""

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    stages = data.get("stages", {}) if isinstance(data, dict) else {}
    return stages if isinstance(stages, dict) else {}
