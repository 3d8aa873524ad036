"""DVC's Python params files: top-level constants and class attributes, read and edited.

DVC reads ``NAME = literal`` at module level and ``class Train: lr = 0.1`` (the key
``Train.lr``) from a ``.py`` params file without running it; so does sweeprun (``ast``),
and ``-S`` splices a new literal where the old one was written, keeping everything else of
the file (comments, code, layout) as it is. Keys cannot be added or removed there: that
would be writing code.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from sweeprun.exceptions import SpecError, UsageError


def _literals(body: list[ast.stmt]) -> dict[str, tuple[Any, ast.expr]]:
    """Name → (value, node) of the literal assignments in ``body``; classes as mappings."""
    out: dict[str, tuple[Any, ast.expr]] = {}
    for stmt in body:
        if isinstance(stmt, ast.ClassDef):
            inner = _literals(stmt.body)
            out[stmt.name] = ({k: v for k, (v, _) in inner.items()}, ast.Constant(None))
            for k, (v, node) in inner.items():
                out[f"{stmt.name}.{k}"] = (v, node)
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        try:
            out[target.id] = (ast.literal_eval(value), value)
        except ValueError:
            continue  # computed, not a literal: not a param (as in DVC)
    return out


def parse(rel: str, text: str) -> dict[str, Any]:
    """The params of a ``.py`` file: ``{name: value, Class: {attr: value}}``."""
    try:
        tree = ast.parse(text, filename=rel)
    except SyntaxError as exc:
        raise SpecError(
            rel, exc.lineno or 0, exc.offset or 0, f"invalid Python: {exc.msg}"
        ) from None
    return {k: v for k, (v, _) in _literals(tree.body).items() if "." not in k}


def render(rel: str, text: str, changes: Mapping[str, Any], delete: object) -> str:
    """``text`` with each dotted key's literal replaced by the new value's ``repr``."""
    nodes = _literals(ast.parse(text, filename=rel).body)
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line.encode()))
    data = text.encode()
    spans: list[tuple[int, int, bytes]] = []
    for key, value in changes.items():
        found = nodes.get(key)
        if value is delete or found is None or isinstance(found[0], dict):
            what = "remove" if value is delete else "add" if found is None else "replace"
            raise UsageError(
                f"{rel}: cannot {what} {key!r}: a .py params file can only have the values of "
                "its existing constants changed (edit the file for anything else)"
            )
        node = found[1]
        assert node.end_lineno is not None and node.end_col_offset is not None
        # ast's offsets are UTF-8 byte offsets within their line.
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        spans.append((start, end, repr(value).encode()))
    for start, end, new in sorted(spans, reverse=True):
        data = data[:start] + new + data[end:]
    return data.decode()
