"""Reading a located YAML mapping strictly: unknown keys, wrong types, one-line errors.

Shared by the spec loader and the sweep loader; every error is a :class:`SpecError` with
the file, line and column of the offending value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeprun.exceptions import SpecError
from sweeprun.spec import yamlio
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark


def type_name(value: Any) -> str:
    """How an error names a value's type ("a mapping", "a string" …)."""
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(
        type(value).__mro__[-2] if isinstance(value, (LocatedDict, LocatedList)) else type(value),
        type(value).__name__,
    )


class Loader:
    """Validates one spec; keeps the path for located errors."""

    def __init__(self, path: str, root: Path) -> None:
        self.path = path
        self.root = root

    def err(self, mark: Mark, message: str) -> SpecError:
        """A located error at ``mark`` in this spec."""
        return SpecError(self.path, mark[0], mark[1], message)

    def check_keys(self, d: LocatedDict, allowed: tuple[str, ...], what: str) -> None:
        """Refuse a key of ``d`` that is not in ``allowed`` (naming the valid ones)."""
        for key in d:
            if key not in allowed:
                raise self.err(
                    d.key_marks[key],
                    f"unknown key {key!r} in {what} (valid: {', '.join(allowed)})",
                )

    def str_list(self, d: LocatedDict, key: str) -> list[tuple[str, Mark]]:
        """``d[key]`` as (string, mark) pairs: one string or a list of strings."""
        value = d.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [(value, d.value_marks[key])]
        if not isinstance(value, LocatedList):
            raise self.err(
                d.value_marks[key],
                f"{key!r} must be a string or a list of strings, not {type_name(value)}",
            )
        out = []
        for item, mark in zip(value, value.marks, strict=True):
            if not isinstance(item, str):
                raise self.err(mark, f"items of {key!r} must be strings, not {type_name(item)}")
            out.append((item, mark))
        return out

    def string(self, d: LocatedDict, key: str, required: bool = False) -> str | None:
        """``d[key]`` as a string (``None`` when absent and not ``required``)."""
        value = d.get(key)
        if value is None:
            if required:
                raise self.err(d.mark, f"missing required key {key!r}")
            return None
        if not isinstance(value, str):
            raise self.err(d.value_marks[key], f"{key!r} must be a string, not {type_name(value)}")
        return value


def read_mapping(root: Path, path: Path) -> tuple[str, LocatedDict, Loader]:
    """A spec file's located mapping (empty file: empty mapping)."""
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
    return rel, data, ld
