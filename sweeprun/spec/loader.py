"""``sweeps.yaml``: the data model and a strict, located loader.

Every problem is a :class:`SpecError` with ``file:line:col``. Paths inside a spec are
relative to the spec's directory (as in ``dvc.yaml``); the model stores them relative
to the repository root so nothing downstream needs to know where the spec was.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeprun.exceptions import SpecError
from sweeprun.hookspec import hookimpl
from sweeprun.model.stage import Out, Stage
from sweeprun.spec import yamlio
from sweeprun.spec.dag import PipelineError, inside, order_stages, outputs
from sweeprun.spec.reader import Loader, type_name
from sweeprun.spec.sweeps import Sweep, load_sweep
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark
from sweeprun.system.paths import in_git_dir, reason_outside

TOP_KEYS = ("params", "cmd", "deps", "outs", "metrics", "plots", "wdir", "stages", "sweeps")
STAGE_KEYS = ("cmd", "deps", "outs", "params", "metrics", "plots", "wdir", "desc")
OUT_FLAGS = {"checkpoint": bool, "cache": bool, "persist": bool}
DEFAULT_STAGE = "main"


@dataclass
class Spec:
    """A loaded ``sweeps.yaml``."""

    path: str  # relative to the repository root (POSIX)
    root: Path
    params_files: list[str]
    stages: list[Stage]
    sweeps: list[Sweep]
    raw: LocatedDict

    @property
    def dir(self) -> str:
        """The spec's directory relative to the root (``""`` for the root)."""
        d = posixpath.dirname(self.path)
        return d

    def error(self, mark: Mark, message: str) -> SpecError:
        """A located error in this spec."""
        return SpecError(self.path, mark[0], mark[1], message)


def _rel(spec_dir: str, wdir: str, path: str) -> str:
    joined = posixpath.normpath(posixpath.join(spec_dir, wdir, path))
    return "" if joined == "." else joined


def _check_inside(ld: Loader, path: str, mark: Mark) -> None:
    """Refuse a path outside the repository: by its text, or where its symlinks lead."""
    if path.startswith("../") or path == ".." or posixpath.isabs(path):
        raise ld.err(mark, f"path {path!r} is outside the repository")
    if in_git_dir(path):
        raise ld.err(mark, f"path {path!r} is inside git's own directory, .git")
    real = reason_outside(ld.root, path)
    if real is not None:
        raise ld.err(
            mark,
            f"path {path!r} resolves to {real}, outside the repository (a symlink on the "
            "way leads out): sweeprun never removes or writes files outside the repository "
            "and reads none there; make the link point inside it",
        )


def _load_outs(ld: Loader, d: LocatedDict, key: str, base: str) -> list[Out]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, LocatedList):
        value_list = LocatedList([value])
        value_list.marks = [d.value_marks[key]]
        value = value_list
    outs = []
    for item, mark in zip(value, value.marks, strict=True):
        if isinstance(item, str):
            path = _rel(base, "", item)
            _check_inside(ld, path, mark)
            outs.append(Out(path=path, cache=key == "outs"))
            continue
        if not isinstance(item, LocatedDict) or len(item) != 1:
            raise ld.err(mark, f"items of {key!r} must be a path or {{path: {{flags}}}}")
        ((name, flags),) = item.items()
        if flags is None:
            flags = LocatedDict()
        if not isinstance(name, str) or not isinstance(flags, LocatedDict):
            raise ld.err(mark, f"items of {key!r} must be a path or {{path: {{flags}}}}")
        kwargs: dict[str, bool] = {}
        for flag, fval in flags.items():
            if flag not in OUT_FLAGS:
                raise ld.err(
                    flags.key_marks[flag],
                    f"unknown flag {flag!r} on {name!r} (valid: {', '.join(OUT_FLAGS)})",
                )
            if not isinstance(fval, bool):
                raise ld.err(flags.value_marks[flag], f"{flag!r} must be true or false")
            kwargs[flag] = fval
        path = _rel(base, "", name)
        _check_inside(ld, path, mark)
        kwargs.setdefault("cache", key == "outs")
        outs.append(Out(path=path, **kwargs))
    return outs


_STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")


def _load_stage(ld: Loader, name: str, d: LocatedDict, spec_dir: str) -> Stage:
    if not _STAGE_NAME.fullmatch(name) or ".." in name:
        raise ld.err(
            d.mark,
            f"stage name {name!r} is not usable (letters, digits, '_', '-', '.', '@'; "
            "no '/', no '..')",
        )
    ld.check_keys(d, STAGE_KEYS, f"stage {name!r}")
    cmd_value = d.get("cmd")
    if isinstance(cmd_value, list) and all(isinstance(c, str) for c in cmd_value):
        cmd = " && ".join(cmd_value)
    else:
        if cmd_value is not None and not isinstance(cmd_value, str):
            raise ld.err(
                d.value_marks["cmd"],
                f"'cmd' must be a string or a list of strings, not {type_name(cmd_value)}",
            )
        cmd = ld.string(d, "cmd", required=True) or ""
    if not cmd.strip():
        raise ld.err(d.value_marks.get("cmd", d.mark), f"stage {name!r} has an empty 'cmd'")
    wdir = ld.string(d, "wdir") or "."
    base = _rel(spec_dir, wdir, ".")
    _check_inside(ld, base or ".", d.value_marks.get("wdir", d.mark))

    def paths(key: str) -> tuple[str, ...]:
        out = []
        for p, mark in ld.str_list(d, key):
            rel = _rel(base, "", p)
            _check_inside(ld, rel, mark)
            out.append(rel)
        return tuple(out)

    outs = _load_outs(ld, d, "outs", base)
    metrics = [o.path for o in _load_outs(ld, d, "metrics", base)]
    plots = [o.path for o in _load_outs(ld, d, "plots", base)]
    return Stage(
        name=name,
        cmd=cmd,
        wdir=base or ".",
        deps=paths("deps"),
        outs=tuple(outs),
        params=tuple(p for p, _ in ld.str_list(d, "params")),
        metrics=tuple(metrics),
        plots=tuple(plots),
    )


def load_spec(root: Path, path: Path, block_types: tuple[str, ...]) -> Spec:
    """Load and validate the spec at ``path`` (absolute) in the repository at ``root``.

    ``block_types`` are the sweep block keys the registered expanders understand.
    """
    rel = path.resolve().relative_to(root).as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(rel, 0, 0, "file not found") from None
    except UnicodeDecodeError:
        raise SpecError(rel, 0, 0, "not UTF-8 text") from None
    data = yamlio.load_located(text, rel)
    ld = Loader(rel, root)
    if data is None:
        data = LocatedDict()
    if not isinstance(data, LocatedDict):
        raise ld.err((1, 1), f"the spec must be a mapping, not {type_name(data)}")
    ld.check_keys(data, TOP_KEYS, "the spec")
    spec_dir = posixpath.dirname(rel)

    params_files = []
    for p, mark in ld.str_list(data, "params"):
        prel = _rel(spec_dir, "", p)
        _check_inside(ld, prel, mark)
        if not (root / prel).is_file():
            raise ld.err(mark, f"params file {p!r} not found")
        params_files.append(prel)
    if "params" not in data and (root / _rel(spec_dir, "", "params.yaml")).is_file():
        params_files.append(_rel(spec_dir, "", "params.yaml"))

    stage_keys = [k for k in ("cmd", "deps", "outs", "metrics", "plots", "wdir") if k in data]
    stages: list[Stage] = []
    stage_raw: dict[str, tuple[LocatedDict, Mark]] = {}
    if "stages" in data:
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
            stages.append(_load_stage(ld, str(name), sd, spec_dir))
            stage_raw[str(name)] = (sd, raw_stages.key_marks[name])
    elif stage_keys:
        top = LocatedDict({k: data[k] for k in stage_keys})
        top.key_marks = {k: data.key_marks[k] for k in stage_keys}
        top.value_marks = {k: data.value_marks[k] for k in stage_keys}
        top.mark = data.mark
        stages.append(_load_stage(ld, DEFAULT_STAGE, top, spec_dir))
        stage_raw[DEFAULT_STAGE] = (top, data.key_marks[stage_keys[0]])
    else:
        raise ld.err(data.mark, "nothing to run: add a top-level 'cmd:' or 'stages:'")

    stages = _check_pipeline(ld, root, stages, stage_raw)

    sweeps: list[Sweep] = []
    raw_sweeps = data.get("sweeps")
    if raw_sweeps is not None:
        if not isinstance(raw_sweeps, LocatedDict):
            raise ld.err(data.value_marks["sweeps"], "'sweeps' must be a mapping of named sweeps")
        for name, sd in raw_sweeps.items():
            sweeps.append(load_sweep(ld, str(name), sd, raw_sweeps.value_marks[name], block_types))
    return Spec(
        path=rel, root=root, params_files=params_files, stages=stages, sweeps=sweeps, raw=data
    )


def _check_pipeline(
    ld: Loader, root: Path, stages: list[Stage], raw: dict[str, tuple[LocatedDict, Mark]]
) -> list[Stage]:
    """Order the stages; reject cycles, clashing outs and deps that exist nowhere."""

    try:
        ordered = order_stages(stages)
    except PipelineError as exc:
        raise ld.err(raw[exc.stage][1], str(exc)) from None
    produced = [o for s in stages for o in outputs(s)]
    for s in stages:
        for i, dep in enumerate(s.deps):
            if (root / dep).exists() or any(inside(dep, o) for o in produced):
                continue
            d, mark = raw[s.name]
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
