"""``dvc.yaml`` as DVC documents it: ``vars``, ``${…}`` templating, ``foreach``/``do``, ``matrix``.

:func:`expand` turns a DVC pipeline file into plain stage mappings (with their source
marks kept, so errors still point into ``dvc.yaml``) that the spec loader reads like the
stages of a ``sweeps.yaml``. It follows DVC's parser (``dvc/parsing``): ``params.yaml``
next to ``dvc.yaml`` is the default vars source, then each ``vars`` entry (a file,
``file:key1,key2``, or an inline mapping) in order; a stage may have its own ``vars``;
``foreach`` adds ``item`` (and ``key`` for a mapping); ``matrix`` adds ``item`` (a mapping of
the matrix keys) and ``key``; generated stages are named ``name@key`` as DVC names them.

``${…}`` in ``deps``, ``outs``, ``wdir`` and the other fields is resolved here with the
baseline's values. In ``cmd`` a reference to a params file's key stays a reference, so
each experiment binds its own value (``-S train.lr=0.1,0.2`` reaches the program); a
mapping reference (``${train}``) becomes DVC's ``--key value`` flags, one reference per
leaf. Every value reaches the program as argument bytes (see
:mod:`sweeprun.spec.template`), never as shell text.
"""

from __future__ import annotations

import itertools
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeprun.spec import yamlio
from sweeprun.spec.dvcvars import Context, bind_cmd, load_vars, resolve, to_str
from sweeprun.spec.params import ParamsFile
from sweeprun.spec.reader import Loader, type_name
from sweeprun.spec.stages import check_inside
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark

TOP_KEYS = ("stages", "vars", "params", "metrics", "plots", "artifacts", "datasets")
DEFAULT_PARAMS = "params.yaml"


@dataclass
class DvcStage:
    """One stage of ``dvc.yaml`` after templating (``foreach``/``matrix`` stages expanded)."""

    name: str
    body: LocatedDict  # the stage mapping, ``${…}`` resolved outside ``cmd``
    mark: Mark
    #: Constant values of ``cmd`` references (``item``, inline vars), bound at load time.
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class _Reading:
    """The ``dvc.yaml`` being read: where errors point and paths start, and the params
    files found so far (the default one first)."""

    ld: Loader
    root: Path
    spec_dir: str
    files: list[str]
    default: str


@dataclass
class DvcPipeline:
    """What ``dvc.yaml`` declares, ready for the spec loader."""

    stages: list[DvcStage]
    params_files: list[str]  # root-relative; the first one is the default for bare keys
    metrics: list[tuple[str, Mark]]  # top-level metrics files, dvc.yaml-relative
    plots: list[Any]  # top-level plot definitions, as written (resolved)
    #: Params keys resolved into paths and fields other than ``cmd`` (see Context.fixed).
    fixed: list[str] = field(default_factory=list)


def expand(
    ld: Loader, root: Path, data: LocatedDict, spec_dir: str, spec_default: str | None = None
) -> DvcPipeline:
    """Read a ``dvc.yaml`` mapping into stage mappings, params files and plot definitions.

    ``spec_default``: the params file bare keys refer to in the spec this file is part of
    (several ``dvc.yaml`` files read as one: references into this file's own default
    are then written ``file:key``); by default this file's own.
    """
    ld.check_keys(data, TOP_KEYS, "dvc.yaml")
    for key in ("artifacts", "datasets"):
        if key in data:
            raise ld.err(
                data.key_marks[key],
                f"{key!r} (DVC's model registry / datasets) is not supported by sweeprun",
            )
    files: list[str] = []
    ctx = Context()
    default = posixpath.normpath(posixpath.join(spec_dir, DEFAULT_PARAMS))
    if (root / default).is_file():
        check_inside(ld, default, data.mark)
        ctx.merge(ld, ParamsFile.load(root, default).data, default, data.mark)
        files.append(default)
    load_vars(ld, root, spec_dir, ctx, data, files)
    default_file = spec_default or (files[0] if files else default)
    ctx.default = default_file
    reading = _Reading(ld, root, spec_dir, files, default_file)

    stages: list[DvcStage] = []
    raw = data.get("stages")
    if raw is not None:
        if not isinstance(raw, LocatedDict):
            raise ld.err(data.value_marks["stages"], "'stages' must be a mapping")
        for name, body in raw.items():
            mark = raw.key_marks[name]
            if not isinstance(body, LocatedDict):
                raise ld.err(raw.value_marks[name], f"stage {name!r} must be a mapping")
            stages.extend(_stage_group(reading, ctx, str(name), body, mark))

    for p, mark in ld.str_list(data, "params"):
        rel = posixpath.normpath(posixpath.join(spec_dir, p))
        check_inside(ld, rel, mark)
        if rel not in files and (root / rel).is_file():
            files.append(rel)
    metrics = [
        (str(resolve(ld, ctx, m, mark, "metrics")), mark)
        for m, mark in ld.str_list(data, "metrics")
    ]
    plots: list[Any] = []
    if "plots" in data:
        value = data["plots"]
        if not isinstance(value, LocatedList):
            raise ld.err(data.value_marks["plots"], "'plots' must be a list of plot definitions")
        plots = yamlio.plain(resolve(ld, ctx, value, data.value_marks["plots"], "plots"))
    return DvcPipeline(
        stages=stages, params_files=files, metrics=metrics, plots=plots, fixed=sorted(ctx.fixed)
    )


def _stage_group(
    f: _Reading, ctx: Context, name: str, body: LocatedDict, mark: Mark
) -> list[DvcStage]:
    ld = f.ld
    if "foreach" in body or "matrix" in body:
        if "foreach" in body and "matrix" in body:
            raise ld.err(mark, f"stage {name!r}: 'foreach' and 'matrix' cannot be combined")
        if "foreach" in body:
            extra = [k for k in body if k not in ("foreach", "do")]
            if extra or "do" not in body:
                where = body.key_marks[extra[0]] if extra else mark
                raise ld.err(
                    where, f"stage {name!r}: a 'foreach' stage has only 'foreach' and 'do'"
                )
            items = resolve(
                ld, ctx, body["foreach"], body.value_marks["foreach"], f"stage {name!r}"
            )
            template = body["do"]
            if not isinstance(template, LocatedDict):
                raise ld.err(body.value_marks["do"], f"stage {name!r}: 'do' must be a mapping")
            if isinstance(items, dict):
                members = [(str(k), {"item": yamlio.plain(v), "key": k}) for k, v in items.items()]
            elif isinstance(items, list):
                composite = any(isinstance(i, (dict, list)) for i in items)
                members = [
                    (str(i) if composite else to_str(v), {"item": yamlio.plain(v)})
                    for i, v in enumerate(items)
                ]
            else:
                raise ld.err(
                    body.value_marks["foreach"],
                    f"stage {name!r}: 'foreach' must be a list or a mapping, "
                    f"not {type_name(items)}",
                )
        else:
            matrix = resolve(ld, ctx, body["matrix"], body.value_marks["matrix"], f"stage {name!r}")
            if not isinstance(matrix, dict) or not all(
                isinstance(v, list) and v for v in matrix.values()
            ):
                raise ld.err(
                    body.value_marks["matrix"],
                    f"stage {name!r}: 'matrix' must map names to non-empty lists",
                )
            template = LocatedDict({k: v for k, v in body.items() if k != "matrix"})
            template.key_marks = {k: body.key_marks[k] for k in template}
            template.value_marks = {k: body.value_marks[k] for k in template}
            template.mark = body.mark
            members = []
            for combo in itertools.product(*(list(enumerate(v)) for v in matrix.values())):
                item = {k: yamlio.plain(v) for k, (_, v) in zip(matrix, combo, strict=True)}
                frags = [
                    f"{k}{i}" if isinstance(v, (dict, list)) else to_str(v)
                    for k, (i, v) in zip(matrix, combo, strict=True)
                ]
                key = "-".join(frags)
                members.append((key, {"item": item, "key": key}))
        return [
            _one_stage(f, ctx.child(extra), f"{name}@{key}", template, mark)
            for key, extra in members
        ]
    return [_one_stage(f, ctx, name, body, mark)]


def _one_stage(f: _Reading, ctx: Context, name: str, body: LocatedDict, mark: Mark) -> DvcStage:
    ld = f.ld
    if "vars" in body:
        local = ctx.child({})
        load_vars(ld, f.root, f.spec_dir, local, body, f.files)
        ctx = local
    resolved = LocatedDict()
    resolved.mark = body.mark
    values: dict[str, str] = {}
    for key, value in body.items():
        if key == "vars":
            continue
        vmark = body.value_marks[key]
        if key == "cmd":
            cmds = value if isinstance(value, list) else [value]
            if not all(isinstance(c, str) for c in cmds):
                raise ld.err(vmark, f"stage {name!r}: 'cmd' must be a string or a list of strings")
            rewritten = []
            for c in cmds:
                text, got = bind_cmd(ld, ctx, c, vmark, name, f.default)
                rewritten.append(text)
                values.update(got)
            value = rewritten if isinstance(value, list) else rewritten[0]
        else:
            value = resolve(ld, ctx, value, vmark, f"stage {name!r}: {key!r}")
        resolved[key] = value
        resolved.key_marks[key] = body.key_marks[key]
        resolved.value_marks[key] = vmark
    return DvcStage(name=name, body=resolved, mark=mark, values=values)
