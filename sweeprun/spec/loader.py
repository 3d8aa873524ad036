"""``sweeps.yaml``: the data model and a strict, located loader.

Every problem is a :class:`SpecError` with ``file:line:col``. Paths inside a spec are
relative to the spec's directory (as in ``dvc.yaml``); the model stores them relative
to the repository root so nothing downstream needs to know where the spec was.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweeprun.exceptions import SpecError
from sweeprun.hookspec import hookimpl
from sweeprun.model.stage import Stage
from sweeprun.spec.dag import PipelineError, inside, order_stages, outputs
from sweeprun.spec.dvcproject import find_pipelines, load_project, read_pipeline
from sweeprun.spec.hydra import HydraApp
from sweeprun.spec.reader import Loader, read_mapping
from sweeprun.spec.stages import check_inside, load_env, load_stage, rel_path
from sweeprun.spec.sweeps import Sweep, load_sweep
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark

#: The keys of a one-stage spec's stage, written at top level.
TOP_STAGE_KEYS = ("cmd", "call", "warm", "deps", "outs", "metrics", "plots", "wdir")
TOP_KEYS = ("params", *TOP_STAGE_KEYS, "env", "stages", "sweeps", "pipeline")
DEFAULT_STAGE = "main"
#: Pipeline files a directory may hold, in the order they are looked for.
SPEC_NAMES = ("sweeps.yaml", "sweeps.yml")
DVC_FILE = "dvc.yaml"


def default_spec(directory: Path) -> Path | None:
    """The spec of ``directory`` when none is named: ``sweeps.yaml``, else, where there is
    a ``dvc.yaml``, the DVC project of every ``dvc.yaml`` at or below it (returned as the
    directory itself), as ``dvc exp run`` takes them."""
    for name in SPEC_NAMES:
        if (directory / name).is_file():
            return directory / name
    if (directory / DVC_FILE).is_file():
        return directory
    return None


@dataclass
class Spec:
    """A loaded ``sweeps.yaml``."""

    path: str  # relative to the repository root (POSIX)
    root: Path
    params_files: list[str]
    stages: list[Stage]
    sweeps: list[Sweep]
    raw: LocatedDict
    #: Plot definitions: DVC's top-level ``plots`` and per-file properties (``x``, ``y``, …).
    plots: list[Any] = field(default_factory=list)
    #: The Hydra app the stages run (``params: {hydra: …}``), if the spec declares one.
    hydra: HydraApp | None = None
    #: Params keys ``dvc.yaml`` resolved once into paths (``${data_dir}/x``): no experiment
    #: may change them, since the paths would not follow.
    fixed_keys: tuple[str, ...] = ()
    #: Params files that only a stage names (``params: [{other.yaml: [x]}]``): read, keyed,
    #: recorded and settable with ``-S other.yaml:x=…`` like the declared ones, but never
    #: the default file of bare keys.
    stage_params_files: tuple[str, ...] = ()

    @property
    def all_params_files(self) -> list[str]:
        """Every params file an experiment of this spec reads: declared ones first."""
        return [*self.params_files, *self.stage_params_files]

    @property
    def dir(self) -> str:
        """The spec's directory relative to the root (``""`` for the root)."""
        d = posixpath.dirname(self.path)
        return d

    def error(self, mark: Mark, message: str) -> SpecError:
        """A located error in this spec."""
        return SpecError(self.path, mark[0], mark[1], message)


def _stage_params_files(stages: list[Stage], declared: list[str]) -> tuple[str, ...]:
    """Files named by a stage's ``params`` (``file:key``) that the spec does not declare
    (the stage loader checked that each exists)."""
    found = [key.rpartition(":")[0] for s in stages for key in s.params if ":" in key]
    return tuple(p for p in dict.fromkeys(found) if p not in declared)


def _load_dvc_spec(root: Path, path: Path) -> Spec:
    """A ``dvc.yaml`` named as the spec, or (``path`` a directory) every one below it."""
    if path.is_dir():
        project = load_project(root, path, {})
        stages = _check_pipeline(root, project.stages, project.where)
        metrics = [m for f in project.files for m, _ in f.metrics]
        spec_path, params_files, plots = project.path, project.params_files, project.plots
        fixed = project.fixed
    else:
        f = read_pipeline(root, path, {})
        stages = _check_pipeline(root, f.stages, _where(f.ld, f.raw))
        metrics = [m for m, _ in f.metrics]
        spec_path, params_files, plots, fixed = f.path, f.params_files, f.plots, f.fixed
    stages = _attach_metrics(stages, metrics)
    return Spec(
        path=spec_path,
        root=root,
        params_files=params_files,
        stages=stages,
        sweeps=[],
        raw=LocatedDict(),
        plots=plots,
        fixed_keys=tuple(fixed),
        stage_params_files=_stage_params_files(stages, params_files),
    )


_Pipeline = tuple[
    list[Stage],
    list[Any],
    dict[str, tuple[LocatedDict, Mark, Loader]],
    tuple[str, ...],
    list[str],
    list[str],
]


def _named_pipeline(
    ld: Loader, root: Path, data: LocatedDict, spec_dir: str, env: dict[str, str]
) -> _Pipeline:
    """``pipeline:`` — a ``dvc.yaml``, or a directory (every ``dvc.yaml`` below it) — with
    ``metrics:``/``plots:`` beside it: (stages, plots, where, fixed keys, metrics files,
    params files)."""
    ppath = ld.string(data, "pipeline") or ""
    mark = data.value_marks["pipeline"]
    prel = rel_path(spec_dir, "", ppath)
    check_inside(ld, prel or ".", mark)
    target = root / prel
    if target.is_dir():
        if not find_pipelines(root, target):
            raise ld.err(mark, f"pipeline {ppath!r}: no dvc.yaml at or below it")
        project = load_project(root, target, env)
        stages, plots, where = project.stages, project.plots, project.where
        fixed, params = project.fixed, project.params_files
        metrics = [m for f in project.files for m, _ in f.metrics]
    else:
        if posixpath.basename(prel) != DVC_FILE:
            raise ld.err(
                mark, f"pipeline {ppath!r}: valid: a dvc.yaml file, or a directory of them"
            )
        if not target.is_file():
            raise ld.err(mark, f"pipeline {ppath!r} not found")
        dvc = read_pipeline(root, target, env)
        stages, plots, where = dvc.stages, dvc.plots, _where(dvc.ld, dvc.raw)
        fixed, params = dvc.fixed, dvc.params_files
        metrics = [m for m, _ in dvc.metrics]
    for m, m_mark in ld.str_list(data, "metrics"):
        beside = rel_path(spec_dir, "", m)
        check_inside(ld, beside, m_mark)
        metrics.append(beside)
    plots = [*plots, *({rel_path(spec_dir, "", p): {}} for p, _ in ld.str_list(data, "plots"))]
    return stages, plots, where, tuple(fixed), metrics, params


def _attach_metrics(stages: list[Stage], metrics: list[str]) -> list[Stage]:
    """Top-level metrics files of a ``dvc.yaml`` (or beside ``pipeline:``): recorded with
    the stage that writes them (one of its outputs holds them), else after the last one."""
    out = list(stages)
    for m in metrics:
        at = next(
            (i for i, s in enumerate(out) if any(inside(m, o) for o in outputs(s))),
            len(out) - 1,
        )
        if m not in out[at].metrics:
            out[at] = replace(out[at], metrics=(*out[at].metrics, m))
    return out


def _where(
    ld: Loader, raw: dict[str, tuple[LocatedDict, Mark]]
) -> dict[str, tuple[LocatedDict, Mark, Loader]]:
    return {name: (body, mark, ld) for name, (body, mark) in raw.items()}


def load_spec(root: Path, path: Path, block_types: tuple[str, ...]) -> Spec:
    """Load and validate the spec at ``path`` (absolute) in the repository at ``root``.

    ``block_types`` are the sweep block keys the registered expanders understand. A file
    named ``dvc.yaml`` is read as DVC's pipeline file (no sweeps: ``-S`` makes them); a
    directory, as the DVC project of every ``dvc.yaml`` below it.
    """
    if path.name == DVC_FILE or path.is_dir():
        return _load_dvc_spec(root, path)
    rel, data, ld = read_mapping(root, path)
    ld.check_keys(data, TOP_KEYS, "the spec")
    spec_dir = posixpath.dirname(rel)
    env = load_env(ld, data, "the spec")

    params_files = []
    hydra_app = _hydra_app(ld, root, data, spec_dir)
    for p, mark in [] if hydra_app else ld.str_list(data, "params"):
        prel = rel_path(spec_dir, "", p)
        check_inside(ld, prel, mark)
        if not (root / prel).is_file():
            raise ld.err(mark, f"params file {p!r} not found")
        params_files.append(prel)

    stage_keys = [k for k in TOP_STAGE_KEYS if k in data]
    stages: list[Stage] = []
    stage_raw: dict[str, tuple[LocatedDict, Mark]] = {}
    plots: list[Any] = []
    fixed_keys: tuple[str, ...] = ()
    pipeline_metrics: list[str] = []
    where: dict[str, tuple[LocatedDict, Mark, Loader]] = {}
    if "pipeline" in data:
        # Metrics and plots beside it are the run's too (as a root dvc.yaml's are).
        clash = [k for k in (*stage_keys, "stages") if k in data and k not in ("metrics", "plots")]
        if clash:
            raise ld.err(
                data.key_marks[clash[0]],
                f"{clash[0]!r} cannot be combined with 'pipeline:' (the stages come from it)",
            )
        pipe = _named_pipeline(ld, root, data, spec_dir, env)
        stages, plots, where, fixed_keys, pipeline_metrics, pipe_params = pipe
        if "params" not in data:
            params_files = pipe_params
    elif "stages" in data:
        if stage_keys:
            raise ld.err(
                data.key_marks[stage_keys[0]],
                f"{stage_keys[0]!r} at top level cannot be combined with 'stages:' "
                "(move it into a stage)",
            )
        raw_stages = data["stages"]
        if not isinstance(raw_stages, LocatedDict) or not raw_stages:
            raise ld.err(data.value_marks["stages"], "'stages' must be a non-empty mapping")
        for name, sd in raw_stages.items():
            if not isinstance(sd, LocatedDict):
                raise ld.err(raw_stages.value_marks[name], f"stage {name!r} must be a mapping")
            stages.append(load_stage(ld, str(name), sd, spec_dir, env, plots=plots))
            stage_raw[str(name)] = (sd, raw_stages.key_marks[name])
    elif stage_keys:
        top = LocatedDict({k: data[k] for k in stage_keys})
        top.key_marks = {k: data.key_marks[k] for k in stage_keys}
        top.value_marks = {k: data.value_marks[k] for k in stage_keys}
        top.mark = data.mark
        stages.append(load_stage(ld, DEFAULT_STAGE, top, spec_dir, env, plots=plots))
        stage_raw[DEFAULT_STAGE] = (top, data.key_marks[stage_keys[0]])
    else:
        raise ld.err(data.mark, "nothing to run: add a top-level 'cmd:', 'stages:' or 'pipeline:'")
    default_params = rel_path(spec_dir, "", "params.yaml")
    if "params" not in data and "pipeline" not in data and (root / default_params).is_file():
        params_files.append(default_params)

    if hydra_app is not None:
        # The app reads its whole config directory: a change there reruns its stages.
        conf = hydra_app.config_dir or "."
        stages = [
            s if any(inside(conf, d) for d in s.deps) else replace(s, deps=(*s.deps, conf))
            for s in stages
        ]
    stages = _check_pipeline(root, stages, where or _where(ld, stage_raw))
    stages = _attach_metrics(stages, pipeline_metrics)

    sweeps: list[Sweep] = []
    raw_sweeps = data.get("sweeps")
    if raw_sweeps is not None:
        if not isinstance(raw_sweeps, LocatedDict):
            raise ld.err(data.value_marks["sweeps"], "'sweeps' must be a mapping of named sweeps")
        for name, sd in raw_sweeps.items():
            sweeps.append(load_sweep(ld, str(name), sd, raw_sweeps.value_marks[name], block_types))
    return Spec(
        path=rel,
        root=root,
        params_files=params_files,
        stages=stages,
        sweeps=sweeps,
        raw=data,
        plots=plots,
        hydra=hydra_app,
        fixed_keys=fixed_keys,
        stage_params_files=() if hydra_app else _stage_params_files(stages, params_files),
    )


def _hydra_app(ld: Loader, root: Path, data: LocatedDict, spec_dir: str) -> HydraApp | None:
    """``params: {hydra: conf/config.yaml}``: the program is a Hydra app with that config."""
    value = data.get("params")
    if not isinstance(value, LocatedDict):
        return None
    ld.check_keys(value, ("hydra", "python"), "'params' (a mapping declares a Hydra app)")
    config = ld.string(value, "hydra", required=True) or ""
    mark = value.value_marks["hydra"]
    rel = rel_path(spec_dir, "", config)
    check_inside(ld, rel, mark)
    if posixpath.splitext(rel)[1] not in (".yaml", ".yml") or not (root / rel).is_file():
        raise ld.err(
            mark,
            f"params: hydra: {config!r} is not a YAML file (valid: the "
            "app's primary config, e.g. conf/config.yaml)",
        )
    python = ld.string(value, "python") or ""
    if python and "/" in python and not posixpath.isabs(python):
        python = str((root / spec_dir / python).resolve())  # relative to the spec
    return HydraApp(rel, python)


def _check_pipeline(
    root: Path, stages: list[Stage], where: dict[str, tuple[LocatedDict, Mark, Loader]]
) -> list[Stage]:
    """Order the stages; reject cycles, clashing outs and deps that exist nowhere (each
    error located in the file of its stage: ``where``)."""

    try:
        ordered = order_stages(stages)
    except PipelineError as exc:
        _, mark, ld = where[exc.stage]
        raise ld.err(mark, str(exc)) from None
    produced = [o for s in stages for o in outputs(s)]
    for s in stages:
        for i, dep in enumerate(s.deps):
            if (root / dep).exists() or any(inside(dep, o) for o in produced):
                continue
            d, mark, ld = where[s.name]
            deps = d.get("deps")
            if isinstance(deps, LocatedList) and i < len(deps.marks):
                mark = deps.marks[i]
            elif "deps" in d:
                mark = d.value_marks["deps"]
            raise ld.err(
                mark, f"stage {s.name!r}: dep {dep!r} does not exist and no stage produces it"
            )
    return ordered


@hookimpl(trylast=True)
def sweeprun_load_spec(path: Path, config: Any) -> Spec:
    """Load a ``sweeps.yaml`` with the block types every expander plugin declares."""
    kinds: list[str] = []
    for got in config.hook.sweeprun_block_types():
        kinds.extend(k for k in got if k not in kinds)
    return load_spec(config.repo.root, path, tuple(kinds))
