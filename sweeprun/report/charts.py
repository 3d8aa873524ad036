"""Vega-Lite charts of a sweep, as plain specs (pure: records and rows in, dicts out).

Vega-Lite because DVC's plot templates are Vega-Lite too (a ``plots:`` entry's ``x``, ``y``
and ``template`` map onto it directly), because one spec renders to SVG and PNG without a
browser (``vl-convert``) and in a page with the JavaScript that ships in the same pip
package, and because a spec is data: a test can read it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from sweeprun.report.table import column, flat_columns, identity, values, varies

#: Points a sweep chart draws before it shows means per point (or a seeded sample):
#: beyond a few thousand marks a chart is a blur, and its page grows by megabytes.
MAX_POINTS = 1_000
#: Points of a chart whose points are too many even as means: a sample (each point costs
#: drawing time, and a few hundred show how the experiments spread).
MAX_SAMPLE = 500

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # names the version; never fetched
# DVC's templates (dvc-render) and the mark each one draws.
TEMPLATES = {
    "linear": "line",
    "simple": "line",
    "smooth": "line",
    "scatter": "point",
    "scatter_jitter": "point",
    "bar_horizontal": "bar",
    "bar_horizontal_sorted": "bar",
    "confusion": "rect",
    "confusion_normalized": "rect",
}


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _field(name: str) -> str:
    """A data field as Vega-Lite names it (a dot would mean a nested field)."""
    return name.replace(".", "\\.")


def thin(rows: list[Any], limit: int) -> list[Any]:
    """At most ``limit`` of ``rows``, in their order: a seeded random sample (the same one
    every time), not every k-th row, which would alias with a sweep's period (every 4th
    row of a 4-value grid is always the same value)."""
    if len(rows) <= limit:
        return rows
    return [rows[i] for i in sorted(random.Random(len(rows)).sample(range(len(rows)), limit))]


def _values(
    records: list[dict[str, Any]], section: str, col: str, cache: dict[Any, list[Any]] | None = None
) -> list[Any]:
    """A column's values (``None`` where missing), kept in ``cache`` for the next chart."""
    if cache is not None and (section, col) in cache:
        return cache[section, col]
    got = values(records, section, col)
    if cache is not None:
        cache[section, col] = got
    return got


def swept(records: list[dict[str, Any]]) -> list[str]:
    """The params that vary across the records (their table columns)."""
    return [c for c in flat_columns(records, "params") if varies(column(records, "params", c))]


def numeric_metrics(records: list[dict[str, Any]]) -> list[str]:
    """Metric columns with at least one number."""
    return [
        c
        for c in flat_columns(records, "metrics")
        if any(_numeric(v) for v in column(records, "metrics", c))
    ]


def metric_vs_param(
    records: list[dict[str, Any]],
    metric: str,
    param: str,
    by: str | None,
    cache: dict[Any, list[Any]] | None = None,
) -> dict[str, Any]:
    """One metric against one swept param: points, joined by lines over ``by`` if given.

    Beyond :data:`MAX_POINTS` experiments each (param, ``by``) point is the mean of its
    experiments, or, when even those are too many, a seeded random sample is drawn; the
    title says which.
    """
    ys = column(records, "metrics", metric)
    xs = _values(records, "params", param, cache)
    bys = [str(v) for v in _values(records, "params", by, cache)] if by else [None] * len(ys)
    # _numeric, inlined: four charts of 100,000 experiments call it 400,000 times.
    keep = [i for i, y in enumerate(ys) if type(y) in (int, float) and y == y]
    title = f"{metric} by {param}"
    note = ""
    sampled = False
    if len(keep) > MAX_POINTS:
        # Means per (param, by) point, summed in one pass (no dict per experiment).
        sums: dict[Any, list[Any]] = {}
        for i in keep:
            x = xs[i]
            key = (type(x), x, bys[i]) if isinstance(x, _SCALARS) else (identity(x), bys[i])
            acc = sums.get(key)
            if acc is None:
                sums[key] = [i, ys[i], 1]
            else:
                acc[1] += ys[i]
                acc[2] += 1
        if len(sums) <= MAX_POINTS:
            note = f"each point: the mean of its experiments ({len(keep)} in all)"
            rows = [_point(f"{n} experiments", xs[i], total / n, bys[i], by)
                    for i, total, n in sums.values()]  # fmt: skip
        else:
            note = f"{MAX_SAMPLE} of {len(keep)} experiments, sampled"
            keep, sampled = thin(keep, MAX_SAMPLE), True
            rows = [_point(records[i]["name"], xs[i], ys[i], bys[i], by) for i in keep]
    else:
        rows = [_point(records[i]["name"], xs[i], ys[i], bys[i], by) for i in keep]
    numeric_x = all(_numeric(row["x"]) for row in rows)
    encoding: dict[str, Any] = {
        "x": {"field": "x", "type": "quantitative" if numeric_x else "nominal", "title": param},
        "y": {"field": "y", "type": "quantitative", "title": metric, "scale": {"zero": False}},
        "tooltip": [{"field": "experiment"}, {"field": "x", "title": param},
                    {"field": "y", "title": metric}],
    }  # fmt: skip
    if by:
        encoding["color"] = {"field": "by", "type": "nominal", "title": by}
    # Lines join a sweep's points (a sample's points have nothing to join); dots on them
    # while they can be told apart.
    dots = len(rows) <= 200
    mark: dict[str, Any] = {"type": "line", "point": dots} if by and numeric_x and not sampled \
        else {"type": "point", "filled": True, "size": 60 if dots else 12}  # fmt: skip
    return {
        "$schema": SCHEMA,
        "title": {"text": title, "subtitle": note} if note else title,
        "data": {"values": rows},
        "mark": mark,
        "encoding": encoding,
        "width": 320,
        "height": 220,
    }


_SCALARS = (int, float, str, bool, type(None))


def _point(name: str, x: Any, y: Any, b: str | None, by: str | None) -> dict[str, Any]:
    row = {"experiment": name, "x": x, "y": y}
    if by:
        row["by"] = b
    return row


def sweep_charts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every metric against every swept param (lines over the next swept param)."""
    return list(each_sweep_chart(records))


def each_sweep_chart(records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """:func:`sweep_charts`, one at a time (the first can be drawn while the next is made)."""
    params = swept(records)
    cache: dict[Any, list[Any]] = {}  # each param's values, read once for every metric
    for metric in numeric_metrics(records):
        for i, param in enumerate(params):
            by = next((p for p in params if p != param), None) if len(params) > 1 else None
            yield metric_vs_param(records, metric, param, by if i < 2 else None, cache)


def curve(
    title: str, rows: list[dict[str, Any]], props: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A ``plots:`` file's rows (one ``experiment`` field each) as DVC's template draws it."""
    if not rows:
        return None
    mark = TEMPLATES.get(str(props.get("template", "linear")), "line")
    fields = [k for k in rows[0] if k != "experiment"]
    x = props.get("x") or ("step" if "step" in fields else None)
    ys = props.get("y")
    if isinstance(ys, Mapping):  # DVC's {file: field} form
        ys = list(ys.values())
    if isinstance(ys, str):
        ys = [ys]
    if not ys:
        ys = [f for f in fields if f != x and any(_numeric(r.get(f)) for r in rows)][:1]
    if not ys:
        return None
    y = str(ys[0])
    if x is None:
        rows = [{**r, "step": i} for i, r in enumerate(rows)]
        x = "step"
    numeric_x = all(_numeric(r.get(x)) for r in rows)
    x, y = _field(x), _field(y)
    template = str(props.get("template", "linear"))
    if mark == "rect":  # confusion: actual (x) against predicted (y), counted
        encoding: dict[str, Any] = {
            "x": {"field": x, "type": "nominal"},
            "y": {"field": y, "type": "nominal"},
            "color": {"aggregate": "count", "type": "quantitative"},
            "facet": {"field": "experiment", "type": "nominal"},
        }
        spec: dict[str, Any] = {"$schema": SCHEMA, "title": title, "data": {"values": rows},
                                "mark": "rect",
                "encoding": encoding}  # fmt: skip
        if template == "confusion_normalized":
            # As DVC's template: each cell's count over its y class's total (per experiment).
            spec["transform"] = [
                {"aggregate": [{"op": "count", "as": "xy_count"}],
                 "groupby": ["experiment", y, x]},
                # Cells no pair fell in are 0, not blank (as DVC's template imputes them).
                {"impute": "xy_count", "groupby": ["experiment", y], "key": x, "value": 0},
                {"impute": "xy_count", "groupby": ["experiment", x], "key": y, "value": 0},
                {"joinaggregate": [{"op": "sum", "field": "xy_count", "as": "sum_y"}],
                 "groupby": ["experiment", y]},
                {"calculate": "datum.xy_count / datum.sum_y", "as": "percent_of_y"},
            ]  # fmt: skip
            encoding["color"] = {"field": "percent_of_y", "type": "quantitative",
                                 "title": "share of y", "scale": {"domain": [0, 1]}}  # fmt: skip
        return spec
    encoding = {
        "x": {"field": x, "type": "quantitative" if numeric_x else "nominal"},
        "y": {"field": y, "type": "quantitative"},
        "color": {"field": "experiment", "type": "nominal"},
        "tooltip": [{"field": "experiment"}, {"field": x}, {"field": y}],
    }  # fmt: skip
    if template == "smooth" and numeric_x:
        # As DVC's template: a LOESS curve per experiment over its faint raw line, its
        # bandwidth on a slider in the page (0.3 in the images; DVC starts at 0.001).
        raw = {"mark": {"type": "line", "opacity": 0.2}, "encoding": encoding}
        loess = {"loess": y, "on": x, "groupby": ["experiment"], "bandwidth": {"signal": "smooth"}}
        smoothed = {"transform": [loess], "mark": "line",
                    "encoding": {**encoding, "tooltip": [{"field": "experiment"}]}}  # fmt: skip
        slider = {"input": "range", "min": 0.001, "max": 1, "step": 0.001}
        return {"$schema": SCHEMA, "title": title, "data": {"values": rows},
                "params": [{"name": "smooth", "value": 0.3, "bind": slider}],
                "layer": [raw, smoothed], "width": 320, "height": 220}  # fmt: skip
    return {
        "$schema": SCHEMA,
        "title": title,
        "data": {"values": rows},
        "mark": {"type": mark, "point": mark == "line" and len(rows) < 200} if mark == "line"
        else mark,
        "encoding": encoding,
        "width": 320,
        "height": 220,
    }  # fmt: skip
