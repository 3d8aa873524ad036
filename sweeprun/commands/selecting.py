"""Which experiments ``show`` lists, and summaries of them: ``--sweep``, ``-k``, ``--best``,
``--group-by``.

Records are the JSON form ``show --json`` prints; everything here is pure (the spec is
read by the caller, for the direction its ``expect:`` gives a metric).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any

from sweeprun.exceptions import UsageError
from sweeprun.report.table import flat_columns, subset, values
from sweeprun.spec.expect import parse_expectation
from sweeprun.spec.keyword import compile_keyword


def by_sweep(records: list[dict[str, Any]], sweeps: list[str]) -> list[dict[str, Any]]:
    """Records of the named sweeps."""
    return subset(records, (i for i, r in enumerate(records) if r.get("sweep") in sweeps))


def by_keyword(records: list[dict[str, Any]], expr: str) -> list[dict[str, Any]]:
    """Records whose id, name or sweep match ``-k EXPR`` (pytest's grammar)."""
    match = compile_keyword(expr)
    return subset(
        records,
        (
            i
            for i, r in enumerate(records)
            if match(SimpleNamespace(id=r.get("id"), name=r.get("name"), sweep=r.get("sweep")))
        ),
    )


def directions(expects: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """``metric → "min"|"max"`` from ``expect:`` conditions (``< 0.5`` asks for small)."""
    out: dict[str, str] = {}
    for expect in expects:
        for metric, condition in expect.items():
            try:
                op = parse_expectation(metric, condition).op
            except ValueError:
                continue
            way = {"<": "min", "<=": "min", ">": "max", ">=": "max"}.get(op)
            if way:
                # As written (metrics.json:rmse) and as the key alone (rmse).
                out[metric] = way
                out.setdefault(metric.rpartition(":")[2], way)
    return out


def metric_column(records: list[dict[str, Any]], name: str, option: str) -> str:
    """The metrics column ``name`` stands for (``file:key`` or a key in one file)."""
    columns = flat_columns(records, "metrics")
    if name in columns:
        return name
    found = [c for c in columns if c.endswith(":" + name)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"{option} {name}: ambiguous, use one of: {', '.join(found)}")
    raise UsageError(f"{option} {name}: no such metric (metrics: {', '.join(columns) or 'none'})")


def best(
    records: list[dict[str, Any]], spec: str, declared: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The best record by ``METRIC[:min|max]`` (direction given, or from ``expect:``)."""
    name, _, direction = spec.partition(":")
    if direction and direction not in ("min", "max"):
        # A file-qualified metric (metrics.json:acc), possibly with a direction after it.
        base, _, last = spec.rpartition(":")
        name, direction = (base, last) if last in ("min", "max") else (spec, "")
    column = metric_column(records, name, "--best")
    key = column.rpartition(":")[2]
    direction = direction or declared.get(column) or declared.get(key, "")
    if not direction:
        raise UsageError(
            f"--best {spec}: say {name}:min or {name}:max (no expect: in the spec says which)"
        )
    scored = [
        (v, i)
        for i, v in enumerate(values(records, "metrics", column))
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
    ]
    if not scored:
        return subset(records, [])
    pick = min if direction == "min" else max
    return subset(records, [pick(scored, key=lambda vi: vi[0])[1]])


def group(
    records: list[dict[str, Any]], keys: list[str], metrics: list[str]
) -> tuple[list[str], list[list[str]]]:
    """One row per distinct value of the ``keys`` params: runs, and each metric's mean ± std."""
    params = flat_columns(records, "params")
    for k in keys:
        if k not in params:
            raise UsageError(f"--group-by {k}: no such param (params: {', '.join(params)})")
    by = [values(records, "params", k) for k in keys]
    measured = {m: values(records, "metrics", m) for m in metrics}
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, key in enumerate(zip(*by, strict=True)):
        groups.setdefault(tuple(repr(v) for v in key), []).append(i)
    header = [*keys, "Runs", *metrics]
    rows = []
    for members in groups.values():
        row = [_text(b[members[0]]) for b in by] + [str(len(members))]
        for m in metrics:
            nums = [
                v
                for i in members
                if isinstance(v := measured[m][i], (int, float)) and not isinstance(v, bool)
            ]
            if not nums:
                row.append("-")
            elif len(nums) == 1:
                row.append(f"{nums[0]:.4g}")
            else:
                row.append(f"{statistics.fmean(nums):.4g} ± {statistics.stdev(nums):.2g}")
        rows.append(row)
    return header, rows


def _text(v: Any) -> str:
    return "null" if v is None else str(v)
