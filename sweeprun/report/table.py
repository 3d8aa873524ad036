"""The table ``show`` prints: columns, cells, fitting a terminal, CSV and Markdown.

Columns are flattened keys of the params and metrics files, list elements included
(``layers[0]``), qualified with their file only where a key is in several
(``data.json:noise``). A value that is missing prints as ``-``, a ``null`` as ``null``.
On a terminal narrower than the table, parent keys are first abbreviated where that stays
unambiguous (``model.degree`` → ``m.degree``), then the columns that still do not fit
are left out, with a note naming them; no header or name is ever cut.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from collections.abc import Iterable
from typing import IO, Any

MISSING: Any = object()  # a key a record does not have (``None`` is a null value)


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as columns: ``a.b``, ``a.list[0]``, ``a.list[1].c``."""
    out: dict[str, Any] = {}
    if isinstance(data, dict) and data:
        for k, v in data.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list) and data and prefix:
        for i, v in enumerate(data):
            out.update(flat(v, f"{prefix}[{i}]"))
    elif prefix:
        out[prefix] = data
    return out


def _flat_section(rec: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    """``{file: {column: value}}`` of a record (computed once per record)."""
    cache = rec.setdefault("_flat", {})
    if section not in cache:
        cache[section] = {p: flat(d) for p, d in (rec.get(section) or {}).items()}
    got: dict[str, dict[str, Any]] = cache[section]
    return got


def flat_columns(records: Iterable[dict[str, Any]], section: str) -> list[str]:
    """Column names of a section (params/metrics), file-qualified only when ambiguous."""
    seen: dict[str, set[str]] = {}
    for rec in records:
        for path, data in _flat_section(rec, section).items():
            for key in data:
                seen.setdefault(key, set()).add(path)
    cols = []
    for key, paths in seen.items():
        cols.extend([key] if len(paths) == 1 else [f"{p}:{key}" for p in sorted(paths)])
    return cols


def cell(rec: dict[str, Any], section: str, col: str) -> Any:
    """A record's value for a column: :data:`MISSING` when it has none."""
    data = _flat_section(rec, section)
    path, sep, key = col.partition(":")
    if sep and path in data:
        return data[path].get(key, MISSING)
    for d in data.values():
        if col in d:
            return d[col]
    return MISSING


def value(rec: dict[str, Any], section: str, col: str) -> Any:
    """:func:`cell` with ``None`` for a missing value (sorting, aggregates)."""
    got = cell(rec, section, col)
    return None if got is MISSING else got


def fmt(v: Any, precision: int = 6) -> str:
    """A cell as the table prints it."""
    if v is MISSING:
        return "-"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = f"{v:.{precision}g}"
        return text if any(c in text for c in ".einf") else text + ".0"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def csv_value(v: Any) -> Any:
    """A cell for CSV: numbers as numbers, missing as empty, the rest as text."""
    if v is MISSING:
        return ""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(v)  # every digit: the table's precision is for reading
    return fmt(v)


def md_escape(text: str) -> str:
    """A cell's text inside a Markdown table (``|`` escaped, no line breaks)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def created(rec: dict[str, Any], now: float | None = None) -> str:
    """When an experiment started (queued, if it has not): ``HH:MM`` today, else ``Mon DD``."""
    when = rec.get("started") or rec.get("queued_at")
    if not when:
        return "-"
    now = time.time() if now is None else now
    t = time.localtime(float(when))
    return time.strftime("%H:%M" if time.localtime(now)[:3] == t[:3] else "%b %d", t)


def iso_created(rec: dict[str, Any]) -> str:
    """When an experiment started (or was queued), ISO 8601 in UTC; ``""`` if unknown."""
    when = rec.get("started") or rec.get("queued_at")
    if not when:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(when)))


def duration(rec: dict[str, Any]) -> str:
    """How long an experiment ran: ``0.4s``, ``12s``, ``3m04s``, ``2h05m``."""
    d = rec.get("duration")
    if d is None or d == "":
        return "-"
    d = float(d)
    if d < 10:
        return f"{d:.1f}s"
    if d < 60:
        return f"{d:.0f}s"
    if d < 3600:
        return f"{int(d // 60)}m{int(d % 60):02d}s"
    return f"{int(d // 3600)}h{int(d % 3600 // 60):02d}m"


def _width(header: list[str], rows: list[list[str]], keep: list[int]) -> int:
    """The printed width of the ``keep`` columns (two spaces between columns)."""
    return sum(max([len(header[i]), *(len(r[i]) for r in rows)]) + 2 for i in keep) - 2


def abbreviate(columns: list[str]) -> dict[str, str]:
    """Shorter headers where unambiguous: parent keys cut to their first letter."""
    out: dict[str, str] = {}
    for col in columns:
        path, sep, key = col.rpartition(":")
        parts = key.split(".")
        short = ".".join([*(p[:1] for p in parts[:-1]), parts[-1]])
        out[col] = f"{path}{sep}{short}" if sep else short
    shorts = list(out.values())
    return {c: s if shorts.count(s) == 1 else c for c, s in out.items()}


def fit(
    header: list[str], rows: list[list[str]], drop_order: list[int], width: int | None
) -> tuple[list[int], list[str]]:
    """Indexes of the columns that fit in ``width``, leaving columns out in ``drop_order``
    (those not in it always stay), and the headers of those left out."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    keep = set(range(len(header)))
    dropped: list[int] = []
    if width is not None:
        used = sum(widths) + 2 * (len(header) - 1)
        for i in drop_order:
            if used <= width:
                break
            keep.discard(i)
            dropped.append(i)
            used -= widths[i] + 2
    return sorted(keep), [header[i] for i in sorted(dropped)]


def terminal_width(out: IO[str]) -> int | None:
    """The width to fit: ``COLUMNS``, else the terminal's; ``None`` (no limit) in a pipe."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if out.isatty():
        return shutil.get_terminal_size().columns
    return None


def print_fitted(
    out: IO[str], header: list[str], rows: list[list[str]], first_param: int,
    first_metric: int, drop_order: list[int],
) -> None:  # fmt: skip
    """Print the table in the terminal's width: the columns before ``first_param`` that are
    in ``drop_order`` (times, counts) go first, then headers are abbreviated, then the rest
    of ``drop_order`` goes."""
    width = terminal_width(out)
    cheap = [i for i in drop_order if i < first_param and header[i] != "Sweep"]
    keep, dropped = fit(header, rows, cheap, width)
    if width is not None and _width(header, rows, keep) > width:
        names = abbreviate(header[first_param:])
        short = [*header[:first_param], *(names[h] for h in header[first_param:])]
        if sum(len(h) for h in short) < sum(len(h) for h in header):
            header = short
    keep, dropped = fit(header, rows, [*cheap, *(i for i in drop_order if i not in cheap)], width)
    # Deferred: rich costs ~35 ms to import; --json/--csv/--md never need it.
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, header_style="bold", pad_edge=False)
    for i in keep:
        grid.add_column(
            header[i],
            no_wrap=True,
            justify="left" if i < first_param else "right",
            style="cyan" if i >= first_metric else None,
        )
    for row in rows:
        grid.add_row(*(row[i] for i in keep))
    console = Console(file=out, width=100_000 if width is None else width)
    console.print(grid)
    if dropped:
        note = (
            f"({len(dropped)} columns left out to fit {width} columns: {', '.join(dropped)}; "
            "--keep/--drop REGEX choose; --csv and --json are never cut)"
        )
        out.write(textwrap.fill(note, width=width or 80, break_on_hyphens=False) + "\n")
