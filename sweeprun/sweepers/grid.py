"""Grid expansion: pure functions from a sweep block to a list of points.

A *point* maps a param key (``train.lr`` or ``file.yaml:key``) to a value. ``matrix``
follows GitHub Actions: the cartesian product of the non-reserved keys, then ``exclude``
(partial matches remove combinations), then ``include`` (extends every combination whose
original values it does not overwrite, else adds a new one).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from sweeprun.exceptions import SweepValueError
from sweeprun.hookspec import hookimpl
from sweeprun.sweepers.random import expand_random

Point = dict[str, Any]
MATRIX_RESERVED = ("include", "exclude", "zip")


def _entries(block: Mapping[str, Any], word: str) -> list[Mapping[str, Any]]:
    raw = block.get(word, [])
    if raw is None:
        return []
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise SweepValueError(f"'{word}' must be a list of mappings", (word,))
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not entry:
            raise SweepValueError(f"'{word}' entry {i + 1} must be a non-empty mapping", (word, i))
    return list(raw)


def matrix_axes(block: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """A ``matrix:`` block's keys and their values (``include``, ``exclude``, ``zip`` left
    out): its points are their product, in this order, when it has none of those."""
    axes: list[tuple[str, list[Any]]] = []
    for key, values in block.items():
        if key in MATRIX_RESERVED:
            continue
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise SweepValueError(f"matrix key {key!r} must be a list of values", (key,))
        if not values:
            raise SweepValueError(f"matrix key {key!r} has no values", (key,))
        axes.append((str(key), list(values)))
    return axes


def expand_matrix(block: Mapping[str, Any]) -> list[Point]:
    """Expand a ``matrix:`` block into points, in a stable order."""
    axes = matrix_axes(block)
    paired: list[Point] = []
    if "zip" in block:
        if not isinstance(block["zip"], Mapping):
            raise SweepValueError("'zip' inside a matrix must be a mapping of lists", ("zip",))
        paired = expand_zip(block["zip"], ("zip",))
    exclude = _entries(block, "exclude")
    include = _entries(block, "include")
    original = {k for k, _ in axes} | {k for p in paired[:1] for k in p}
    for word, entries in (("exclude", exclude),):
        for i, entry in enumerate(entries):
            for k in entry:
                if k not in original:
                    raise SweepValueError(
                        f"{word} entry {i + 1} names {k!r}, which is not a matrix key", (word, i)
                    )
    combos: list[Point] = []
    if axes or paired:
        keys = [k for k, _ in axes]
        for values in itertools.product(*(v for _, v in axes), paired or [{}]):
            combo = dict(zip(keys, values[:-1], strict=True))
            combo.update(values[-1])
            if any(all(_eq(combo.get(k), v) for k, v in ex.items()) for ex in exclude):
                continue
            combos.append(combo)
    product_count = len(combos)
    for entry in include:
        extended = False
        for combo in combos[:product_count]:
            if all(_eq(combo[k], v) for k, v in entry.items() if k in original):
                combo.update(entry)
                extended = True
        if not extended:
            combos.append({str(k): v for k, v in entry.items()})
    return combos


def _eq(a: Any, b: Any) -> bool:
    # 1 == True in Python; a matrix must not confuse them.
    if type(a) is type(b):
        return bool(a == b)
    numeric = (int, float)
    return (
        isinstance(a, numeric)
        and isinstance(b, numeric)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def product(left: list[Point], right: list[Point]) -> list[Point]:
    """Cartesian product of two point lists (later keys win on overlap)."""
    if not left:
        return [dict(p) for p in right]
    if not right:
        return [dict(p) for p in left]
    return [{**a, **b} for a in left for b in right]


def _list_of(value: Any, key: str, keypath: tuple[str | int, ...]) -> list[Any]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise SweepValueError(f"{key!r} must be a list of values", keypath)
    if not value:
        raise SweepValueError(f"{key!r} has no values", keypath)
    return list(value)


def expand_zip(block: Mapping[str, Any], at: tuple[str | int, ...] = ()) -> list[Point]:
    """``zip:``: the i-th point takes the i-th value of every list (lengths must match)."""
    if not block:
        raise SweepValueError("'zip' needs at least one key", at)
    lists = {str(k): _list_of(v, str(k), (*at, k)) for k, v in block.items()}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        first = next(iter(lists))
        raise SweepValueError(f"zip lists must have equal lengths ({detail})", (*at, first))
    keys = list(lists)
    return [dict(zip(keys, vals, strict=True)) for vals in zip(*lists.values(), strict=True)]


def expand_values(block: Any) -> list[Point]:
    """``values:``: an explicit list of points (mappings)."""
    if not isinstance(block, Sequence) or isinstance(block, str) or not block:
        raise SweepValueError("'values' must be a non-empty list of mappings", ())
    out = []
    for i, point in enumerate(block):
        if not isinstance(point, Mapping) or not point:
            raise SweepValueError(f"values entry {i + 1} must be a non-empty mapping", (i,))
        out.append({str(k): v for k, v in point.items()})
    return out


# -- plugin -------------------------------------------------------------------------------


@hookimpl
def sweeprun_block_types() -> list[str]:
    """The blocks this built-in expander understands."""
    return ["matrix", "zip", "values", "random"]


@hookimpl(trylast=True)
def sweeprun_expand_block(kind: str, block: Any) -> list[Point] | None:
    """Expand a ``matrix``, ``zip``, ``values`` or ``random`` block."""
    if kind == "matrix":
        return expand_matrix(block)
    if kind == "zip":
        return expand_zip(block)
    if kind == "values":
        return expand_values(block)
    if kind == "random":
        return expand_random(block)
    return None


@hookimpl(trylast=True)
def sweeprun_count_block(kind: str, block: Any) -> int | None:
    """How many points a built-in block gives, without building them (an upper bound for
    a matrix with ``exclude``); ``None`` for a kind this does not know."""
    try:
        if kind == "matrix":
            axes = [len(v) for k, v in block.items() if k not in MATRIX_RESERVED]
            zipped = block.get("zip")
            if isinstance(zipped, Mapping) and zipped:
                axes.append(min(len(v) for v in zipped.values()))
            product = 1
            for n in axes:
                product *= n
            return (product if axes else 0) + len(block.get("include") or [])
        if kind == "zip":
            return min((len(v) for v in block.values()), default=0)
        if kind == "values":
            return len(block)
        if kind == "random":
            n = block.get("n")
            return n if isinstance(n, int) and not isinstance(n, bool) else None
    except (TypeError, AttributeError):
        return None  # malformed: the expander says what is wrong
    return None
