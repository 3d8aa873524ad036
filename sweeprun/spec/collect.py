"""Collected experiments: the point of a sweep, its params files and its stages.

Pure data and pure functions (no processes, no git): what the session collects and the
store turns into queued commits.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweeprun.exceptions import SpecError, UsageError
from sweeprun.model import QueueRecord, Record, Stage
from sweeprun.spec import hydra, names
from sweeprun.spec.hydra import RUN_OVERRIDES, Composer, app_program, override_words
from sweeprun.spec.loader import Spec
from sweeprun.spec.overrides import Override, combine
from sweeprun.spec.params import ParamsFile, ParamsSet, get_path, has_path
from sweeprun.spec.sweeps import Sweep
from sweeprun.spec.template import check_inner_shells, parse
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark


@dataclass
class Experiment:
    """One collected experiment: a point of a sweep of a spec."""

    id: str
    sweep: str
    spec: Spec
    params: ParamsSet
    point: dict[str, Any]  # qualified key → value
    stages: list[Stage]
    name: str | None = None
    name_mark: Mark | None = None
    expect: dict[str, str] = field(default_factory=dict)
    #: The failed result this experiment runs again (``--lf``): it takes that result's name,
    #: so each point stays one row, and replaces it when it lands.
    retries: Record | None = None
    #: A Hydra app's experiment: its composed config and group choices (the recorded
    #: params); its point goes to the program as overrides and edits no file.
    composed: dict[str, Any] | None = None
    #: A trial of an ``optimize:`` sweep: its study's digest.
    study: str = ""
    trial: int = 0
    _changes: dict[str, dict[str, Any]] | None = field(default=None, repr=False)
    _rendered: dict[str, str] | None = field(default=None, repr=False)
    _full: dict[str, Any] | None = field(default=None, repr=False)

    def changes(self) -> dict[str, dict[str, Any]]:
        """Point values grouped by params file: path → {dotted key: value}."""
        if self.composed is not None:
            return {}
        if self._changes is None:
            grouped: dict[str, dict[str, Any]] = {}
            for key, value in self.point.items():
                pf, inner = self.params.resolve(key)
                grouped.setdefault(pf.path, {})[inner] = value
            self._changes = grouped
        return self._changes

    def rendered_files(self) -> dict[str, str]:
        """New text of each params file this experiment changes (unchanged ones omitted)."""
        if self._rendered is None:
            out = {}
            for path, changes in self.changes().items():
                pf = self.params.by_path[path]
                text = pf.render(changes)
                if text != pf.text:
                    out[path] = text
            self._rendered = out
        return dict(self._rendered)

    def full_params(self) -> dict[str, Any]:
        """Every params file merged with the point (OmegaConf, see ``ParamsFile.merged``)."""
        if self.composed is not None:
            return self.composed
        if self._full is None:  # (asked for by the stages' interpolation and the record)
            changes = self.changes()
            self._full = {pf.path: pf.merged(changes.get(pf.path, {})) for pf in self.params}
        return self._full

    def stages_record(self) -> list[dict[str, Any]]:
        """The stages as stored in the queue record (commands already interpolated)."""
        return [s.to_json() for s in self.stages]

    def record(
        self,
        *,
        key: str,
        name: str,
        baseline: str,
        queued_at: float,
        tree: str = "",
        replaces: str | None = None,
        in_place: bool = False,
    ) -> QueueRecord:
        """The queue record of this experiment (stored in the queued commit's message)."""
        return QueueRecord(
            key=key,
            name=name,
            id=self.id,
            sweep=self.sweep,
            spec=self.spec.path,
            baseline=baseline,
            point=self.point,
            params=self.full_params(),
            stages=tuple(self.stages),
            expect=self.expect,
            queued_at=queued_at,
            tree=tree,
            replaces=replaces,
            in_place=in_place,
            changed=tuple(sorted(self.rendered_files())),
            params_default=self.params.default.path if self.params.default else "",
            hydra_app=self.spec.hydra.config if self.spec.hydra else "",
            study=self.study,
            trial=self.trial,
        )

    def name_error(self, message: str) -> UsageError:
        """An error about this experiment's name, located at its template if it has one."""
        if self.name_mark is not None:
            return SpecError(self.spec.path, self.name_mark[0], self.name_mark[1], message)
        return UsageError(f"-n/--name: {message}")


def params_of(spec: Spec) -> ParamsSet:
    """The params files of a spec as they are in the workspace (declared ones first)."""
    files = [ParamsFile.load(spec.root, p) for p in spec.all_params_files]
    return ParamsSet(files, declared=len(spec.params_files))


def find_key_mark(value: Any, key: str) -> Mark | None:
    """Position of the first mapping key equal to ``key`` anywhere inside ``value``."""
    if isinstance(value, LocatedDict):
        for k, v in value.items():
            if k == key:
                return value.key_marks[k]
            found = find_key_mark(v, key)
            if found:
                return found
    elif isinstance(value, LocatedList):
        for v in value:
            found = find_key_mark(v, key)
            if found:
                return found
    return None


def interpolate_stages(spec: Spec, exp: Experiment) -> list[Stage]:
    """Bind each command's ``${key}`` references to the experiment's param values.

    The command text is kept as written; the values travel beside it (``Stage.values``)
    and reach the program as exact argument bytes when it runs (see
    :func:`sweeprun.spec.template.prepare`). A value no argument can carry (a NUL byte, text
    that is not Unicode) is a located error now, not a surprise at run time.
    """
    stages = []
    full: dict[str, Any] | None = None
    for stage in spec.stages:
        if spec.hydra is not None:
            stage = _with_overrides(stage, exp.point)
        if "${" not in stage.cmd:
            stages.append(stage)
            continue
        if full is None:
            full = exp.full_params()
        raw = spec.raw.get("stages", spec.raw)
        unsafe = check_inner_shells(stage.cmd)
        if unsafe:
            mark = find_key_mark(raw, "cmd") or (0, 0)
            raise spec.error(mark, f"stage {stage.name!r}: a ${{…}} value in {unsafe}")
        # Constants bound when the spec was read (DVC's ``item``, inline vars) stay bound.
        values: dict[str, str] = dict(stage.values)
        for key in parse(stage.cmd).exprs:
            if key in values:
                continue
            try:
                if spec.hydra is not None:  # the composed config's keys
                    value = get_path(full[spec.hydra.config], key)
                else:
                    pf, inner = exp.params.resolve(key)
                    value = get_path(full[pf.path], inner)
            except (UsageError, KeyError):
                mark = find_key_mark(raw, "cmd") or (0, 0)
                raise spec.error(
                    mark, f"stage {stage.name!r}: ${{{key}}} is not a param key"
                ) from None
            text = value if isinstance(value, str) else names.format_value(value)
            problem = _unpassable(text)
            if problem:
                mark = find_key_mark(raw, "cmd") or (0, 0)
                raise spec.error(
                    mark,
                    f"stage {stage.name!r}: the value of ${{{key}}} ({text[:40]!r}) {problem}, "
                    "so no program can receive it as an argument",
                )
            values[key] = text
        stages.append(replace(stage, values=tuple(sorted(values.items()))))
    return stages


def _with_overrides(stage: Stage, point: dict[str, Any]) -> Stage:
    """A Hydra app's stage: its command gets the point's overrides, one argument each.

    They are bound like ``${key}`` values (``${hydra.override.N}``), so a value reaches
    the app byte for byte and no shell ever parses it.
    """
    words = [*override_words(point), *RUN_OVERRIDES]
    refs = [f"hydra.override.{i}" for i in range(len(words))]
    cmd = stage.cmd + "".join(f" ${{{r}}}" for r in refs)
    return replace(stage, cmd=cmd, values=(*stage.values, *zip(refs, words, strict=True)))


def _under(key: str, parent: str) -> bool:
    """Whether dotted ``key`` is ``parent`` or inside it."""
    return key == parent or key.startswith(parent + ".")


def _unpassable(text: str) -> str:
    """Why ``text`` cannot be an argument of a program, or ``""``."""
    if "\0" in text:
        return "holds a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return ""


def spec_overrides(
    spec: Spec, params: ParamsSet, overrides: list[Override]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``-S`` for this spec: Hydra's overrides for a Hydra app, else params file keys."""
    if spec.hydra is not None:
        return hydra.resolve_overrides(overrides)
    return resolve_overrides(params, overrides)


def composer(spec: Spec) -> contextlib.AbstractContextManager[Composer | None]:
    """A Hydra composing session for a Hydra app's spec (``None`` for any other spec)."""
    if spec.hydra is None:
        return contextlib.nullcontext()
    return hydra_composer(spec).session()


def hydra_composer(spec: Spec, config_root: Path | None = None) -> Composer:
    """The composer of a Hydra app's spec, in the app's interpreter (its config directory
    read below ``config_root``, the workspace by default)."""
    assert spec.hydra is not None
    runs = app_program(spec.hydra, spec.stages, spec.root)
    params = spec.raw.get("params")
    mark = (
        params.value_marks.get("python")
        if isinstance(params, LocatedDict) and "python" in params
        else find_key_mark(spec.raw, "cmd")
    )
    return Composer(spec.hydra, spec.root, spec.path, runs, config_root, mark)


def resolve_overrides(
    params: ParamsSet, overrides: list[Override]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check ``-S`` against the params: (fixed values, -S sweep points)."""
    fixed: dict[str, Any] = {}
    axes: list[list[dict[str, Any]]] = []
    given: dict[str, Override] = {}  # qualified key → the -S that set it
    for ov in overrides:
        pf, inner = params.resolve(ov.key)
        where = f"-S {ov.text}"
        key = params.qualify(ov.key)
        for other, earlier in given.items():
            if key == other:
                raise UsageError(
                    f"{where}: {ov.key} is set twice (also -S {earlier.text}); give it once "
                    f"(a comma sweeps: -S {ov.key}=1,2)"
                )
            if _under(key, other) or _under(other, key):
                raise UsageError(
                    f"{where}: overlaps -S {earlier.text} (one sets what the other "
                    "replaces); give one of them"
                )
        given[key] = ov
        exists = has_path(pf.data, inner)
        if ov.kind in ("set", "delete") and not exists:
            pf.check_key(inner, where, add_hint=ov.kind == "set")
        current = get_path(pf.data, inner, None) if exists else None
        if ov.kind == "set" and isinstance(current, dict):
            raise UsageError(
                f"{where}: {inner!r} is a mapping in {pf.path}; set its keys "
                f"(-S {inner}.KEY=…), or replace all of it with ++{ov.key}=…"
            )
        if ov.kind == "add" and exists:
            raise UsageError(
                f"{where}: {inner!r} already exists in {pf.path} (use ++{ov.key}=… to override it)"
            )
        if ov.kind == "delete" and ov.match is not None:
            current = get_path(pf.data, inner)
            if current != ov.match:
                raise UsageError(
                    f"{where}: {inner!r} is {current!r} in {pf.path}, not {ov.match!r}"
                )
        if ov.is_sweep:
            axes.append([{key: v} for v in ov.values])
        else:
            fixed[key] = ov.value
    return fixed, combine(axes)


def check_overlap(
    spec: Spec, sweep: Sweep, points: list[dict[str, Any]], keys: set[str], times: int = 1
) -> str:
    """A warning when ``-S`` sets a key the sweep varies (its points merge: ``-S lr=0.5``
    on an ``lr`` sweep runs that one value; ``times``: the points ``-S`` sweeps make),
    else ``""``; and refuse values no file or argument can hold (a lone surrogate)."""
    varied = {k for p in points for k in p}
    for key in sorted(varied | keys):
        fixed = [f for f in spec.fixed_keys if _under(f, key) or _under(key, f)]
        if fixed:
            why = (
                f"{key}: dvc.yaml uses {fixed[0]} outside 'cmd' (in a path or another field, "
                "resolved once with the baseline's value), so an experiment cannot change it"
            )
            if key in keys:
                raise UsageError(f"-S {why}")
            raise spec.error(sweep.mark, f"sweep {sweep.name!r}: {why}")
    warning = ""
    both = sorted(varied & keys)
    if both and sweep.groups:
        left = len(
            {
                json.dumps(
                    {k: v for k, v in p.items() if k not in keys}, sort_keys=True, default=str
                )
                for p in points
            }
        )
        warning = (
            f"-S {both[0]} sets a key that sweep {sweep.name!r} in {spec.path} varies: its "
            f"{len(points)} points become {left * times} (-k selects points without "
            "merging them)"
        )
    for point in points:
        for key, value in point.items():
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise spec.error(
                        sweep.mark,
                        f"sweep {sweep.name!r}: the value of {key} is not valid Unicode "
                        "(a lone surrogate)",
                    ) from None
    return warning
