"""Vega-Lite charts of a sweep, as plain specs (pure: records and rows in, dicts out).

Vega-Lite because DVC's plot templates are Vega-Lite too (a ``plots:`` entry's ``x``, ``y``
and ``template`` map onto it directly), because one spec renders to SVG and PNG without a
browser (``vl-convert``) and in a page with the JavaScript that ships in the same pip
package, and because a spec is data: a test can read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweeprun.report.table import flat_columns, value

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


def swept(records: list[dict[str, Any]]) -> list[str]:
    """The params that vary across the records (their table columns)."""
    out = []
    for col in flat_columns(records, "params"):
        seen = {repr(value(r, "params", col)) for r in records}
        if len(seen) > 1:
            out.append(col)
    return out


def numeric_metrics(records: list[dict[str, Any]]) -> list[str]:
    """Metric columns with at least one number."""
    return [
        c
        for c in flat_columns(records, "metrics")
        if any(_numeric(value(r, "metrics", c)) for r in records)
    ]


def metric_vs_param(
    records: list[dict[str, Any]], metric: str, param: str, by: str | None
) -> dict[str, Any]:
    """One metric against one swept param: points, joined by lines over ``by`` if given."""
    rows = []
    for r in records:
        y = value(r, "metrics", metric)
        if not _numeric(y):
            continue
        row = {"experiment": r["name"], "x": value(r, "params", param), "y": y}
        if by:
            row["by"] = str(value(r, "params", by))
        rows.append(row)
    numeric_x = all(_numeric(row["x"]) for row in rows)
    encoding: dict[str, Any] = {
        "x": {"field": "x", "type": "quantitative" if numeric_x else "nominal", "title": param},
        "y": {"field": "y", "type": "quantitative", "title": metric, "scale": {"zero": False}},
        "tooltip": [{"field": "experiment"}, {"field": "x", "title": param},
                    {"field": "y", "title": metric}],
    }  # fmt: skip
    if by:
        encoding["color"] = {"field": "by", "type": "nominal", "title": by}
    mark: dict[str, Any] = {"type": "line", "point": True} if by and numeric_x else {
        "type": "point", "filled": True, "size": 60}  # fmt: skip
    return {
        "$schema": SCHEMA,
        "title": f"{metric} by {param}",
        "data": {"values": rows},
        "mark": mark,
        "encoding": encoding,
        "width": 320,
        "height": 220,
    }


def sweep_charts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every metric against every swept param (lines over the next swept param)."""
    params = swept(records)
    out = []
    for metric in numeric_metrics(records):
        for i, param in enumerate(params):
            by = next((p for p in params if p != param), None) if len(params) > 1 else None
            out.append(metric_vs_param(records, metric, param, by if i < 2 else None))
    return out


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
    if mark == "rect":  # confusion: actual (x) against predicted (y), counted
        encoding: dict[str, Any] = {
            "x": {"field": x, "type": "nominal"},
            "y": {"field": y, "type": "nominal"},
            "color": {"aggregate": "count", "type": "quantitative"},
            "facet": {"field": "experiment", "type": "nominal"},
        }
        return {"$schema": SCHEMA, "title": title, "data": {"values": rows}, "mark": "rect",
                "encoding": encoding}  # fmt: skip
    encoding = {
        "x": {"field": x, "type": "quantitative" if numeric_x else "nominal"},
        "y": {"field": y, "type": "quantitative"},
        "color": {"field": "experiment", "type": "nominal"},
        "tooltip": [{"field": "experiment"}, {"field": x}, {"field": y}],
    }  # fmt: skip
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


def parallel_coordinates(
    records: list[dict[str, Any]], params: list[str], metrics: list[str]
) -> dict[str, Any] | None:
    """Params → metrics as parallel coordinates (each axis scaled to its own range).

    The long form is built here, scaled: column names hold dots, which Vega-Lite would read
    as nested fields in its own fold.
    """
    axes = [("params", c) for c in params] + [("metrics", c) for c in metrics]
    table = []
    for r in records:
        row = {c: value(r, section, c) for section, c in axes}
        if all(_numeric(v) for v in row.values()):
            table.append((r["name"], row))
    cols = [c for _, c in axes]
    if len(cols) < 2 or not table:
        return None
    low = {c: min(row[c] for _, row in table) for c in cols}
    high = {c: max(row[c] for _, row in table) for c in cols}
    rows = [
        {
            "experiment": name,
            "axis": c,
            "value": row[c],
            "scaled": (row[c] - low[c]) / ((high[c] - low[c]) or 1),
            "colour": row[cols[-1]],
        }
        for name, row in table
        for c in cols
    ]
    return {
        "$schema": SCHEMA,
        "title": "params → metrics",
        "data": {"values": rows},
        "width": max(320, 110 * len(cols)),
        "height": 260,
        "mark": {"type": "line", "opacity": 0.7, "point": True},
        "encoding": {
            "x": {"field": "axis", "type": "nominal", "sort": cols, "title": None},
            "y": {"field": "scaled", "type": "quantitative", "axis": None},
            "detail": {"field": "experiment", "type": "nominal"},
            "color": {"field": "colour", "type": "quantitative", "title": cols[-1]},
            "tooltip": [{"field": "experiment"}, {"field": "axis"}, {"field": "value"}],
        },
    }
