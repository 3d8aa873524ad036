"""The table ``sweeprun show`` prints: its columns, their order, and the terminal, CSV
and Markdown forms (split from :mod:`sweeprun.commands.show`, which selects the rows)."""

from __future__ import annotations

import csv
import json
import re
from typing import TYPE_CHECKING, Any

from sweeprun.exceptions import UsageError
from sweeprun.report import table
from sweeprun.report.safe import for_stream
from sweeprun.report.table import flat_columns
from sweeprun.spec.params import suggest

if TYPE_CHECKING:
    from sweeprun._core.config import Config


def build_table(
    records: list[dict[str, Any]], only_changed: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """(params columns, metrics columns, all value columns) for ``records``."""

    def varies(section: str, col: str) -> bool:
        # The workspace counts: a param one experiment changed is a column. One record
        # alone (--best) shows all of its params.
        return len(records) == 1 or table.varies(table.column(records, section, col))

    params = [c for c in flat_columns(records, "params") if varies("params", c)]
    metrics = flat_columns(records, "metrics")
    if only_changed:
        metrics = [c for c in metrics if varies("metrics", c)]
    clash = set(params) & set(metrics)
    if clash:  # the same key as a param and a metric: qualify the metric with its file
        qualified: list[str] = []
        for c in metrics:
            if c in clash:
                qualified.extend(f"{p}:{c}" for p in table.files(records, "metrics", c))
            else:
                qualified.append(c)
        metrics = qualified
    return params, metrics, params + metrics


def sort_records(
    records: list[dict[str, Any]],
    column: str,
    params: list[str],
    metrics: list[str],
    descending: bool,
) -> list[dict[str, Any]]:
    """Sort by a column; unknown or ambiguous columns are usage errors."""

    path, sep, key = column.rpartition(":")
    if sep and path in table.files(records, "params"):  # params.yaml:train.lr: a param
        return _sorted(records, "params", column if column in params else key, descending)
    if sep and path in table.files(records, "metrics"):  # so does metrics.json:acc a metric
        return _sorted(records, "metrics", column, descending)
    # Every column counts, shown or not: a name that is both a param and a metric is
    # ambiguous even where one of them is constant.
    all_params = flat_columns(records, "params")
    all_metrics = [c for c in metrics if ":" in c] + flat_columns(records, "metrics")
    candidates = [("params", c) for c in all_params if c == column or c.endswith(":" + column)]
    candidates += [
        ("metrics", c)
        for c in dict.fromkeys(all_metrics)
        if c == column or c.endswith(":" + column)
    ]
    candidates = list(dict.fromkeys(candidates))
    if any(c == column for _, c in candidates) and len({s for s, _ in candidates}) == 1:
        candidates = [(s, c) for s, c in candidates if c == column]
    if not candidates:
        raise UsageError(
            f"--sort-by {column}: unknown column"
            f"{suggest(column, params + metrics)} (columns: "
            f"{', '.join(params + metrics) or 'none'})"
        )
    if len(candidates) > 1:
        raise UsageError(
            f"--sort-by {column}: ambiguous, use one of: " + ", ".join(c for _, c in candidates)
        )
    section, col = candidates[0]
    return _sorted(records, section, col, descending)


def _sorted(
    records: list[dict[str, Any]], section: str, col: str, descending: bool
) -> list[dict[str, Any]]:
    values = table.values(records, section, col)
    present = [i for i, v in enumerate(values) if v is not None]
    absent = [i for i, v in enumerate(values) if v is None]
    present.sort(key=lambda i: sort_key(values[i]), reverse=descending)
    return table.subset(records, present + absent)  # missing last, in either direction


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers by value (ints and floats together), then booleans, strings, the rest."""
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (0, float(value)) if value == value else (1, True)  # NaN: after numbers
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True, default=str))


def render(config: Config, records: list[dict[str, Any]]) -> None:
    """Print the table in the requested format: fitted to a terminal, or CSV, or Markdown."""

    params, metrics, _ = build_table(records, bool(config.getoption("only_changed")))
    for opt, keep in (("columns", True), ("drop", False)):
        pattern = config.getoption(opt)
        if pattern:
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                raise UsageError(f"--{opt} {pattern!r}: not a regular expression ({exc})") from None
            params = [c for c in params if bool(rx.search(c)) == keep]
            metrics = [c for c in metrics if bool(rx.search(c)) == keep]
    records = sort_by_option(config, records, params, metrics)
    precision = int(config.getoption("precision") or 6)
    csv_out = bool(config.getoption("csv"))
    # CSV: exact text into a file or a pipe; no escape code reaches a terminal.
    on_tty = for_stream(config.stdout)

    def cells(v: Any) -> str:
        return table.csv_value(v) if csv_out else table.fmt(v, precision)

    results = [r for r in records if not _ws(r)]
    ckpts = any(r.get("checkpoints") for r in records)
    # Several baselines (-A, -n, --rev): say which one each row belongs to.
    many = len({r["baseline"] for r in records if r["baseline"]}) > 1
    sweeps = {r.get("sweep") for r in results}
    extra = {
        "Sweep": bool(sweeps - {None, "", "run"}),
        "Baseline": many,
        "Ckpts": ckpts,
        "Created": bool(results),
        "Duration": bool(results),
    }
    shown = [name for name, on in extra.items() if on]
    header = ["Experiment", "State", *shown, *params, *metrics]

    ws = [_ws(r) for r in records]

    def fixed(name: str) -> list[str]:
        if name == "Sweep":
            got = [str(r.get("sweep") or "-") for r in records]
        elif name == "Baseline":
            got = [str(r["baseline"])[:7] for r in records]
        elif name == "Ckpts":
            got = [str(r.get("checkpoints") or "-") for r in records]
        elif csv_out:  # machine-readable: an ISO time and seconds
            if name == "Created":
                got = [table.iso_created(r) for r in records]
            else:
                got = [str(r.get("duration") or "") for r in records]
        elif name == "Created":
            got = table.created_column(records)
        else:
            got = [table.duration(r) for r in records]
        return [("-" if w else g) for g, w in zip(got, ws, strict=True)]

    # Built column by column: one pass over the records per column.
    columns = [
        [r["name"] for r in records],
        [r["state"] + (" (replaced)" if r.get("replaced") else "") for r in records],
        *(fixed(n) for n in shown),
        *([cells(v) for v in table.column(records, "params", c)] for c in params),
        *([cells(v) for v in table.column(records, "metrics", c)] for c in metrics),
    ]
    rows = [list(row) for row in zip(*columns, strict=True)]
    if csv_out:  # results only: the workspace row has no state, time or metrics
        writer = csv.writer(config.stdout, lineterminator="\n")
        rows = [[on_tty(str(c)) for c in row] for row in rows]
        writer.writerow([on_tty(h) for h in header])
        writer.writerows(row for row, w in zip(rows, ws, strict=True) if not w)
        return
    if config.getoption("md"):
        config.stdout.write("| " + " | ".join(table.md_escape(on_tty(h)) for h in header) + " |\n")
        config.stdout.write("|" + "---|" * len(header) + "\n")
        for row in rows:
            config.stdout.write("| " + " | ".join(table.md_escape(on_tty(c)) for c in row) + " |\n")
        return
    first_param = 2 + len(shown)
    first_metric = first_param + len(params)
    position = {h: i for i, h in enumerate(shown, 2)}
    drop_order = [
        *(position[h] for h in ("Duration", "Created", "Baseline", "Ckpts") if h in position),
        *range(first_metric - 1, first_param - 1, -1),  # params, the last first
        *(position[h] for h in ("Sweep",) if h in position),
        *range(len(header) - 1, first_metric - 1, -1),
    ]
    table.print_fitted(config.stdout, header, rows, first_param, first_metric, drop_order)


def _ws(r: dict[str, Any]) -> bool:
    return r.get("name") == "workspace" and r.get("state") == "-"


def sort_by_option(
    config: Config, records: list[dict[str, Any]], params: list[str], metrics: list[str]
) -> list[dict[str, Any]]:
    """``--sort-by``/``--sort-order``, when given."""
    key = config.getoption("sort_by")
    if not key:
        return records
    desc = config.getoption("sort_order") == "desc"
    return sort_records(records, key, params, metrics, desc)
