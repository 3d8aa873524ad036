"""DVC repositories as DVC sees them: every ``dvc.yaml`` below a directory, one pipeline.

``dvc exp run`` at a repository's root runs the stages of every ``dvc.yaml`` in it — a root
file may hold only ``metrics:``/``plots:`` that point into a pipeline nested in
``src/pipelines/<name>/dvc.yaml`` — and ``dvc exp show`` lists the metrics every file
declares. So does sweeprun when no spec is named (or a directory is): the stages of every
file are read as one pipeline (a nested file's stages are named as DVC names them,
``src/pipelines/p/dvc.yaml:train``), each file's top-level metrics and plots are recorded
with the stage that produces them (else after the pipeline's last stage), and bare params
keys keep meaning the ``params.yaml`` beside their own ``dvc.yaml``. Directories that
``.dvcignore`` lists (gitignore patterns: the last that matches decides, ``!`` re-includes,
``dir/`` matches directories only) are not looked into.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweeprun.model.stage import Stage
from sweeprun.spec import dvcyaml
from sweeprun.spec.reader import Loader, read_mapping
from sweeprun.spec.stages import check_inside, load_stage, rel_path
from sweeprun.spec.yamlio import LocatedDict, Mark

PIPELINE = "dvc.yaml"


@dataclass
class DvcFile:
    """One ``dvc.yaml`` read: its stages (errors located in it) and what it declares."""

    path: str  # relative to the root
    ld: Loader
    stages: list[Stage]
    params_files: list[str]  # its own default first
    plots: list[Any]
    raw: dict[str, tuple[LocatedDict, Mark]]
    fixed: list[str]
    #: Top-level ``metrics:`` (root-relative), with where each is written.
    metrics: list[tuple[str, Mark]] = field(default_factory=list)


def read_pipeline(
    root: Path,
    path: Path,
    env: dict[str, str],
    spec_default: str | None = None,
    need_stages: bool = True,
) -> DvcFile:
    """Read one ``dvc.yaml``. ``spec_default``: the params file bare keys mean in the spec
    it is part of (a nested file's own bare keys are then written ``file:key``)."""
    rel, data, ld = read_mapping(root, path)
    spec_dir = posixpath.dirname(rel)
    pipeline = dvcyaml.expand(ld, root, data, spec_dir, spec_default)
    if need_stages and not pipeline.stages:
        raise ld.err(data.mark, "nothing to run: dvc.yaml has no 'stages'")
    plots = list(pipeline.plots)
    own = posixpath.normpath(posixpath.join(spec_dir, dvcyaml.DEFAULT_PARAMS))
    stages = []
    for s in pipeline.stages:
        # DVC's meaning: a stage that declares no params reads none.
        stage = load_stage(ld, s.name, s.body, spec_dir, env, s.values, plots, False)
        if spec_default is not None and own != spec_default:
            bare = [k if ":" in k else f"{own}:{k}" for k in stage.params]
            stage = replace(stage, params=tuple(bare))
        stages.append(stage)
    metrics = []
    for m, mark in pipeline.metrics:
        p = rel_path(spec_dir, "", m)
        check_inside(ld, p, mark)
        metrics.append((p, mark))
    raw = {s.name: (s.body, s.mark) for s in pipeline.stages}
    return DvcFile(rel, ld, stages, pipeline.params_files, plots, raw, pipeline.fixed, metrics)


def find_pipelines(root: Path, directory: Path) -> list[Path]:
    """Every ``dvc.yaml`` at or below ``directory`` (its own first), not in ``.git``,
    ``.dvc`` or a path ``.dvcignore`` lists."""
    patterns = _dvcignore(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        here = Path(dirpath).relative_to(root).as_posix()
        here = "" if here == "." else here
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in (".git", ".dvc")
            and not _ignored(posixpath.join(here, d), patterns, is_dir=True)
        )
        if PIPELINE in filenames and not _ignored(posixpath.join(here, PIPELINE), patterns):
            found.append(Path(dirpath) / PIPELINE)
    return found


def _dvcignore(root: Path) -> list[str]:
    try:
        lines = (root / ".dvcignore").read_text().splitlines()
    except OSError:
        return []
    return [ln.rstrip() for ln in lines if ln.strip() and not ln.startswith("#")]


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """A gitignore glob as a regex: ``*`` and ``?`` stop at ``/``, ``**`` crosses it."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _ignored(rel: str, patterns: list[str], is_dir: bool = False) -> bool:
    """Whether gitignore-style ``patterns`` exclude ``rel`` (a root-relative path): the
    last pattern that matches decides, a ``!`` one re-including."""
    name = posixpath.basename(rel)
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pat = pattern[1:] if negated else pattern
        if pat.endswith("/") and not is_dir:
            continue  # `dir/`: directories only
        pat = pat.rstrip("/")
        if pat.startswith("/") or "/" in pat:
            hit = _glob(pat.lstrip("/")).fullmatch(rel) is not None
        else:
            hit = fnmatch.fnmatchcase(name, pat)
        if hit:
            ignored = not negated
    return ignored


@dataclass
class DvcProject:
    """Every ``dvc.yaml`` below a directory, read as one pipeline."""

    path: str  # the spec's path: the directory's own dvc.yaml (whether or not it exists)
    files: list[DvcFile]
    stages: list[Stage]
    params_files: list[str]  # the default first
    plots: list[Any]
    fixed: list[str]
    #: Stage name → its mapping, position and the loader of its file (located errors).
    where: dict[str, tuple[LocatedDict, Mark, Loader]]


def load_project(root: Path, directory: Path, env: dict[str, str]) -> DvcProject:
    """The DVC pipelines at and below ``directory`` (at least one file must exist)."""
    paths = find_pipelines(root, directory)
    base = directory.resolve().relative_to(root).as_posix()
    base = "" if base == "." else base
    own = posixpath.join(base, dvcyaml.DEFAULT_PARAMS)
    # Several files: bare keys of -S mean the directory's params.yaml, as DVC's (without
    # one, the first pipeline's own), and each file's bare keys are written file:key where
    # they mean another. One file: its own default, as when it is named.
    default: str | None = None
    if len(paths) > 1:
        firsts = [
            posixpath.join(
                posixpath.dirname(p.relative_to(root).as_posix()), dvcyaml.DEFAULT_PARAMS
            )
            for p in paths
        ]
        default = next((d for d in [own, *firsts] if (root / d).is_file()), None)
    files = [read_pipeline(root, p, env, default, need_stages=False) for p in paths]
    spec_path = posixpath.join(base, PIPELINE)
    stages: list[Stage] = []
    where: dict[str, tuple[LocatedDict, Mark, Loader]] = {}
    for f in files:
        nested = f.path != spec_path
        for stage in f.stages:
            name = f"{f.path}:{stage.name}" if nested else stage.name
            stages.append(replace(stage, name=name) if nested else stage)
            body, mark = f.raw[stage.name]
            where[name] = (body, mark, f.ld)
    if not stages:
        first = files[0]
        raise first.ld.err((1, 1), f"nothing to run: no dvc.yaml below {base or '.'} has 'stages'")
    params: list[str] = [posixpath.normpath(default)] if default else []
    for f in files:
        params.extend(p for p in f.params_files if p not in params)
    return DvcProject(
        path=spec_path,
        files=files,
        stages=stages,
        params_files=params,
        plots=[p for f in files for p in f.plots],
        fixed=sorted({k for f in files for k in f.fixed}),
        where=where,
    )
