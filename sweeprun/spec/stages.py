"""One pipeline stage as a spec writes it: paths, outs and their flags, params, env.

Shared by ``sweeps.yaml`` and ``dvc.yaml`` (which use the same stage vocabulary, DVC's);
every problem is a located :class:`SpecError`. Paths are stored relative to the repository
root and refused when they (or the symlinks on their way) lead outside it.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from sweeprun.exceptions import UsageError
from sweeprun.model.stage import Out, Stage
from sweeprun.spec import yamlio
from sweeprun.spec.params import fmt_of
from sweeprun.spec.reader import Loader, type_name
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark
from sweeprun.system.paths import in_git_dir, reason_outside

STAGE_KEYS = (
    "cmd", "deps", "outs", "params", "metrics", "plots", "wdir", "env", "frozen",
    "always_changed", "desc", "meta", "call", "warm",
)  # fmt: skip
#: ``call: pkg.mod:func`` runs ``func()`` through this command (warm when it can be).
CALL_CMD = "python3 -m sweeprun.call "
_WARM_CMD = re.compile(r"^\s*(\S*/)?python(3(\.\d+)?)?\s+-m\s+[A-Za-z_][\w.]*(\s|$)")
_CALL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_BOOL_FLAGS = ("cache", "persist")
# DVC's flags of outs, metrics and plots. ``push``/``remote`` are about ``dvc push`` (sweeprun
# shares outs through its cache remote instead); ``desc``/``type``/``labels``/``meta`` only
# describe; the plot properties are kept for ``sweeprun plots``.
_INFO_FLAGS = ("desc", "type", "labels", "meta", "push", "remote")
PLOT_PROPS = ("x", "y", "template", "title", "x_label", "y_label", "header")
OUT_FLAGS: dict[str, tuple[str, ...]] = {
    "outs": (*_BOOL_FLAGS, "checkpoint", *_INFO_FLAGS),
    "metrics": (*_BOOL_FLAGS, *_INFO_FLAGS),
    "plots": (*_BOOL_FLAGS, *PLOT_PROPS, *_INFO_FLAGS),
}


def rel_path(spec_dir: str, wdir: str, path: str) -> str:
    joined = posixpath.normpath(posixpath.join(spec_dir, wdir, path))
    return "" if joined == "." else joined


def check_inside(ld: Loader, path: str, mark: Mark) -> None:
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


def _load_outs(
    ld: Loader, d: LocatedDict, key: str, base: str, plots: list[Any] | None = None
) -> list[Out]:
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
            path = rel_path(base, "", item)
            check_inside(ld, path, mark)
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
        props: dict[str, Any] = {}
        for flag, fval in flags.items():
            if flag not in OUT_FLAGS[key]:
                raise ld.err(
                    flags.key_marks[flag],
                    f"unknown flag {flag!r} on {name!r} (valid: {', '.join(OUT_FLAGS[key])})",
                )
            if flag in PLOT_PROPS:
                props[flag] = yamlio.plain(fval)
                continue
            if flag in _INFO_FLAGS:
                continue
            if not isinstance(fval, bool):
                raise ld.err(flags.value_marks[flag], f"{flag!r} must be true or false")
            kwargs[flag] = fval
        path = rel_path(base, "", name)
        check_inside(ld, path, mark)
        kwargs.setdefault("cache", key == "outs")
        if props and plots is not None:
            plots.append({path: props})
        outs.append(Out(path=path, **kwargs))
    return outs


def _load_params(ld: Loader, d: LocatedDict, base: str) -> tuple[str, ...] | None:
    """A stage's ``params``: keys of the default file, or ``{file: [keys]}`` (null: all of it).

    A key of another file is stored as ``file:key`` (the file relative to the root);
    a whole file as ``file:``. ``None``: none declared.
    """
    value = d.get("params")
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, LocatedList):
        raise ld.err(d.value_marks["params"], "'params' must be a list of keys and {file: [keys]}")
    out: list[str] = []
    for item, mark in zip(value, value.marks, strict=True):
        if isinstance(item, str):
            out.append(item)
            continue
        if not isinstance(item, LocatedDict):
            raise ld.err(
                mark, f"items of 'params' must be keys or {{file: [keys]}}, not {type_name(item)}"
            )
        for fname, keys in item.items():
            path = rel_path(base, "", str(fname))
            check_inside(ld, path, item.key_marks[fname])
            if not (ld.root / path).is_file():
                raise ld.err(item.key_marks[fname], f"params file {fname!r} not found")
            try:
                fmt_of(path)
            except UsageError as exc:
                raise ld.err(item.key_marks[fname], str(exc)) from None
            if keys is None or keys == []:
                out.append(f"{path}:")
            elif isinstance(keys, LocatedList) and all(isinstance(k, str) for k in keys):
                out.extend(f"{path}:{k}" for k in keys)
            else:
                raise ld.err(item.value_marks[fname], f"params of {fname!r} must be a list of keys")
    return tuple(out)


def load_env(ld: Loader, d: LocatedDict, what: str) -> dict[str, str]:
    """``env:``: names to values (numbers and booleans as the shell would write them)."""
    value = d.get("env")
    if value is None:
        return {}
    if not isinstance(value, LocatedDict):
        raise ld.err(d.value_marks["env"], f"'env' of {what} must be a mapping of names to values")
    out = {}
    for name, v in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ld.err(value.key_marks[name], f"env: {name!r} is not a variable name")
        if isinstance(v, (dict, list)) or v is None:
            raise ld.err(
                value.value_marks[name],
                f"env: {name!r} must be a string or a number, not {type_name(v)}",
            )
        out[name] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


_STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")


def load_stage(
    ld: Loader,
    name: str,
    d: LocatedDict,
    spec_dir: str,
    env: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    plots: list[Any] | None = None,
    params_by_default: bool = True,
) -> Stage:
    if not _STAGE_NAME.fullmatch(name) or ".." in name:
        raise ld.err(
            d.mark,
            f"stage name {name!r} is not usable (letters, digits, '_', '-', '.', '@'; "
            "no '/', no '..')",
        )
    ld.check_keys(d, STAGE_KEYS, f"stage {name!r}")
    call = ld.string(d, "call")
    cmd_value = d.get("cmd")
    if call is not None:
        if "cmd" in d:
            raise ld.err(
                d.key_marks["call"], f"stage {name!r}: 'call' and 'cmd' exclude each other"
            )
        if not _CALL.match(call):
            raise ld.err(
                d.value_marks["call"],
                f"'call' must be module:function (e.g. pkg.train:main), not {call!r}",
            )
        cmd = CALL_CMD + call
    elif isinstance(cmd_value, list) and all(isinstance(c, str) for c in cmd_value):
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
    base = rel_path(spec_dir, wdir, ".")
    check_inside(ld, base or ".", d.value_marks.get("wdir", d.mark))
    if not (ld.root / base).is_dir():
        # Checked now: the commands of every queued experiment would fail in it.
        raise ld.err(
            d.value_marks.get("wdir", d.mark),
            f"stage {name!r}: wdir {wdir!r} is not a directory of the repository",
        )

    def paths(key: str) -> tuple[str, ...]:
        out = []
        for p, mark in ld.str_list(d, key):
            rel = rel_path(base, "", p)
            check_inside(ld, rel, mark)
            out.append(rel)
        return tuple(out)

    def flag(key: str) -> bool:
        value = d.get(key, False)
        if not isinstance(value, bool):
            raise ld.err(d.value_marks[key], f"{key!r} of stage {name!r} must be true or false")
        return value

    warm = flag("warm") or call is not None
    if warm and call is None and not _WARM_CMD.match(cmd):
        raise ld.err(
            d.value_marks["warm"],
            f"stage {name!r}: a warm stage's cmd is 'python -m MODULE [ARGS]' (or use call:)",
        )
    outs = _load_outs(ld, d, "outs", base)
    metrics = [o.path for o in _load_outs(ld, d, "metrics", base)]
    plots_ = [o.path for o in _load_outs(ld, d, "plots", base, plots)]
    stage_env = {**(env or {}), **load_env(ld, d, f"stage {name!r}")}
    params = _load_params(ld, d, base)
    return Stage(
        name=name,
        cmd=cmd,
        wdir=base or ".",
        deps=paths("deps"),
        outs=tuple(outs),
        params=params or (),
        # `params: []` reads none anywhere; no `params:` at all reads none in a dvc.yaml.
        no_params=params == () or (params is None and not params_by_default),
        metrics=tuple(metrics),
        plots=tuple(plots_),
        values=tuple(sorted((values or {}).items())),
        env=tuple(sorted(stage_env.items())),
        frozen=flag("frozen"),
        always_changed=flag("always_changed"),
        warm=warm,
    )
