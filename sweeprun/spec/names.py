"""Experiment ids and names: pytest-style ids, name templates and git-ref safety."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sweeprun.exceptions import SweepValueError, UsageError
from sweeprun.spec.overrides import DELETE, parse_value

# git check-ref-format forbids these anywhere in a component; we also forbid '/'.
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\/]")
# A template's pieces, as in Python's str.format: {{ and }} are literal braces, {key} a field.
_TEMPLATE_PIECE = re.compile(r"\{\{|\}\}|\{([^{}]+)\}|[{}]")
_ID_SYNTAX = re.compile(r"[,=\[\]'\"]|^\s|\s$")


def format_value(value: Any) -> str:
    """A value as it appears in an id: ``0.1``, ``true``, ``null``, ``adam``, ``[1,2]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # Quote strings that would read back as another type ('1', 'true') or that hold
        # id syntax, so that two different points never get the same id.
        try:
            plain = bool(value) and not _ID_SYNTAX.search(value) and parse_value(value) == value
        except ValueError:  # "{0" and the like: not a value of another type, but odd
            plain = False
        if plain:
            return value
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def make_id(sweep: str, point: Mapping[str, Any]) -> str:
    """``grid[train.lr=0.1,train.units=64]``; the bare sweep name for an empty point."""

    if not point:
        return sweep
    return f"{sweep}[{id_text(point)}]"


def id_text(point: Mapping[str, Any]) -> str:
    """The inside of a point's id: ``train.lr=0.1,train.units=64`` (``~key``: deleted)."""
    return ",".join(f"~{k}" if v is DELETE else f"{k}={format_value(v)}" for k, v in point.items())


def is_ref_safe(name: str) -> bool:
    """Whether ``name`` is usable as one git ref component (and so one path segment)."""
    return bool(
        name
        and not _BAD_CHARS.search(name)
        and ".." not in name
        and "@{" not in name
        and name != "@"
        and not name.startswith((".", "-"))
        and not name.endswith((".", ".lock"))
        and len(name.encode()) <= 200
    )


def check_name_option(name: str) -> None:
    """``-n/--name``: a usable, non-empty experiment name, or a one-line error."""
    if not name:
        raise UsageError("-n/--name '': an empty name (give one, or leave -n out)")
    if not is_ref_safe(name):
        raise UsageError(f"-n/--name {name!r}: not usable as a git ref name")


def sanitize(name: str) -> str:
    """Turn arbitrary text into a ref-safe component (deterministic, never empty)."""
    out = _BAD_CHARS.sub("_", name)
    out = re.sub(r"\.{2,}", ".", out).replace("@{", "@_")
    # Cut to length first: a cut may leave a "." (or ".lock") at the end, fixed below.
    out = out.lstrip(".-").encode()[:200].decode(errors="ignore")
    while out.endswith((".", ".lock")):
        out = out[:-1] if out.endswith(".") else out[: -len(".lock")] + "_lock"
    if not out or out == "@":
        out = "exp"
    return out


def render_name(template: str, point: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """Fill ``{key}`` fields from the point (else the full params), then sanitize."""

    def field(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        if match.group(1) is None:
            raise SweepValueError(
                f"name template {template!r}: unbalanced {text!r} (fields are {{key}}; write "
                "{{ or }} for a literal brace)",
                ("name",),
            )
        key = match.group(1).strip()
        if key in point:
            return _name_text(point[key])
        if key in params:
            return _name_text(params[key])
        raise SweepValueError(f"name template field {{{key}}} is not a param key", ("name",))

    return sanitize(_TEMPLATE_PIECE.sub(field, template))


def _name_text(value: Any) -> str:
    """A value as a name shows it: strings as they are (ids quote ambiguous ones; names
    need not), a list as its items joined by ``,`` (``[64, 32]`` → ``64,32``: a ref may
    not hold ``[``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(_name_text(v) for v in value)
    return format_value(value)


def default_name(key: str, width: int = 7) -> str:
    """``exp-<7 hex>`` from the experiment's content key (longer if 7 would clash)."""
    return f"exp-{key[:width]}"
