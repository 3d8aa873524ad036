"""DVC's templating: ``vars`` (files, ``file:keys``, inline mappings) and ``${…}``.

The names a ``dvc.yaml`` template may use, where each came from (a params file, whose
keys an experiment may change, or a constant), and the substitution itself — in data
(resolved now) and in ``cmd`` (params references kept for binding per experiment).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeprun.exceptions import UsageError
from sweeprun.spec import yamlio
from sweeprun.spec.params import ParamsFile, get_path
from sweeprun.spec.reader import Loader, type_name
from sweeprun.spec.stages import check_inside
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark

_REF = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")
_FULL_REF = re.compile(r"^\$\{(?P<inner>[^}]*)\}$")


def norm_key(expr: str) -> str:
    """``a[0].b`` → ``a.0.b`` (DVC's index syntax as sweeprun's dotted key)."""
    return expr.strip().replace("[", ".").replace("]", "")


def to_str(value: Any) -> str:
    """A value as DVC puts it into text (``true``/``false`` for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Context:
    """Names a template may use: values, and which params file (if any) each came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.source: dict[str, str | None] = {}  # top-level name → params file or None
        #: Params keys resolved once into paths and other fields (``file:key`` or ``key``
        #: for the default file): an experiment that changes one would not see it there.
        self.fixed: set[str] = set()
        self.default = ""

    def merge(self, ld: Loader, values: Mapping[str, Any], source: str | None, mark: Mark) -> None:
        for key, value in values.items():
            if key in self.data and source != self.source[key]:
                # DVC refuses to redefine a name from another source, and so do we.
                where = self.source[key] or "inline vars"
                raise ld.err(mark, f"vars: {key!r} is already defined by {where}")
            self.data[key] = value
            self.source[key] = source

    def child(self, extra: Mapping[str, Any]) -> Context:
        c = Context()
        c.data = {**self.data, **extra}
        c.source = {**self.source, **dict.fromkeys(extra)}
        c.fixed = self.fixed  # shared: one set for the whole file
        c.default = self.default
        return c

    def lookup(self, expr: str) -> tuple[Any, str | None]:
        """(value, params file it comes from or None); ``KeyError`` when undefined."""
        key = norm_key(expr)
        head = key.split(".", 1)[0]
        if head not in self.data:
            raise KeyError(key)
        return get_path(self.data, key), self.source[head]


def _load_vars_file(
    ld: Loader, root: Path, base: str, item: str, mark: Mark
) -> tuple[str, dict[str, Any]]:
    """A ``vars`` file entry (``file`` or ``file:key1,key2``): (root-relative path, values)."""
    name, _, keys = item.partition(":")
    rel = posixpath.normpath(posixpath.join(base, name))
    check_inside(ld, rel, mark)  # by its text and where its symlinks lead
    try:
        data = ParamsFile.load(root, rel).data
    except UsageError:
        raise ld.err(mark, f"vars file {name!r} not found") from None
    if keys:
        picked = {}
        for k in (k.strip() for k in keys.split(",")):
            if k not in data:
                raise ld.err(mark, f"vars: {k!r} is not a key of {name!r}")
            picked[k] = data[k]
        data = picked
    return rel, data


def load_vars(
    ld: Loader, root: Path, base: str, ctx: Context, d: LocatedDict, files: list[str]
) -> None:
    value = d.get("vars")
    if value is None:
        return
    if not isinstance(value, LocatedList):
        raise ld.err(d.value_marks["vars"], "'vars' must be a list of files and mappings")
    for item, mark in zip(value, value.marks, strict=True):
        if isinstance(item, str):
            if _REF.search(item):
                raise ld.err(mark, "vars: a file name cannot use ${…}")
            rel, data = _load_vars_file(ld, root, base, item, mark)
            ctx.merge(ld, data, rel, mark)
            if rel not in files:
                files.append(rel)
        elif isinstance(item, LocatedDict):
            ctx.merge(ld, yamlio.plain(item), None, mark)
        else:
            raise ld.err(
                mark, f"items of 'vars' must be a file name or a mapping, not {type_name(item)}"
            )


def resolve(ld: Loader, ctx: Context, value: Any, mark: Mark, where: str) -> Any:
    """``value`` with every ``${…}`` substituted (a whole-string reference keeps its type)."""
    if isinstance(value, LocatedDict):
        out = LocatedDict()
        out.mark = value.mark
        for k, v in value.items():
            rk = resolve(ld, ctx, k, value.key_marks[k], where) if isinstance(k, str) else k
            out[rk] = resolve(ld, ctx, v, value.value_marks[k], where)
            out.key_marks[rk] = value.key_marks[k]
            out.value_marks[rk] = value.value_marks[k]
        return out
    if isinstance(value, LocatedList):
        lst = LocatedList(
            [resolve(ld, ctx, v, m, where) for v, m in zip(value, value.marks, strict=True)]
        )
        lst.marks = list(value.marks)
        lst.mark = value.mark
        return lst
    if not isinstance(value, str) or "${" not in value:
        return value
    full = _FULL_REF.match(value)
    if full:
        return _value(ld, ctx, full.group("inner"), mark, where)

    def sub(m: re.Match[str]) -> str:
        got = _value(ld, ctx, m.group("inner"), mark, where)
        if isinstance(got, (dict, list)):
            raise ld.err(
                mark,
                f"{where}: ${{{m.group('inner')}}} is {type_name(got)}, not text",
            )
        return to_str(got)

    return _REF.sub(sub, value).replace("\\${", "${")


def _value(ld: Loader, ctx: Context, expr: str, mark: Mark, where: str) -> Any:
    try:
        value, source = ctx.lookup(expr)
    except KeyError:
        known = ", ".join(sorted(ctx.data)) or "none"
        raise ld.err(
            mark, f"{where}: ${{{expr.strip()}}} is not defined (defined: {known})"
        ) from None
    if source is not None:
        key = norm_key(expr)
        ctx.fixed.add(key if source == ctx.default else f"{source}:{key}")
    return value


def bind_cmd(
    ld: Loader, ctx: Context, cmd: str, mark: Mark, name: str, default: str
) -> tuple[str, dict[str, str]]:
    """``cmd`` with references rewritten for per-experiment binding, and its constant values.

    A reference into a params file stays a reference (qualified ``file:key`` for a file
    that is not the default), so each experiment binds its own value; a constant (``item``,
    inline vars) is bound now. A mapping becomes DVC's flags, ``--key ${map.key}``.
    """
    values: dict[str, str] = {}

    def ref(key: str, source: str | None, value: Any) -> str:
        if source is None:
            values[key] = to_str(value)
            return "${" + key + "}"
        qualified = key if source == default else f"{source}:{key}"
        return "${" + qualified + "}"

    def sub(m: re.Match[str]) -> str:
        expr = m.group("inner")
        try:
            value, source = ctx.lookup(expr)
        except KeyError:
            known = ", ".join(sorted(ctx.data)) or "none"
            raise ld.err(
                mark,
                f"stage {name!r}: ${{{expr.strip()}}} in 'cmd' is not defined (defined: {known})",
            ) from None
        key = norm_key(expr)
        if isinstance(value, list):
            raise ld.err(
                mark,
                f"stage {name!r}: ${{{expr.strip()}}} in 'cmd' is a list; "
                f"name its items (${{{key}[0]}})",
            )
        if not isinstance(value, dict):
            return ref(key, source, value)
        words = []
        for leaf, v in _leaves(value, key):
            flag = "--" + leaf[len(key) + 1 :]
            if isinstance(v, bool):
                # DVC's default ("store_true"): a flag for true, nothing for false.
                if v:
                    words.append(flag)
            elif isinstance(v, list):
                if any(isinstance(i, (dict, list)) for i in v):
                    raise ld.err(
                        mark, f"stage {name!r}: cannot put the nested list {leaf!r} into 'cmd'"
                    )
                words.append(
                    " ".join([flag, *(ref(f"{leaf}.{i}", source, x) for i, x in enumerate(v))])
                )
            else:
                words.append(f"{flag} {ref(leaf, source, v)}")
        return " ".join(words)

    out = _REF.sub(sub, cmd)
    return out, values


def _leaves(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{prefix}.{k}")]
    return [(prefix, value)]
