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
    if data and (isinstance(data, dict) or (isinstance(data, list) and prefix)):
        _flat_into(out, data, prefix)
    elif prefix:
        out[prefix] = data
    return out


def _flat_into(out: dict[str, Any], data: dict[Any, Any] | list[Any], prefix: str) -> None:
    # One dict filled in place (show flattens every record of 100,000).
    if isinstance(data, dict):
        named = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in data.items()]
    else:
        named = [(f"{prefix}[{i}]", v) for i, v in enumerate(data)]
    for key, v in named:
        if isinstance(v, (dict, list)) and v:
            _flat_into(out, v, key)
        else:
            out[key] = v


#: Where a record keeps its flattened sections (computed once; see :func:`forget`).
_CACHE = {"params": "_flat_params", "metrics": "_flat_metrics"}


def _flatten(section: Any) -> dict[str, dict[str, Any]]:
    """``{file: {column: value}}`` of one record's section."""
    got = {}
    for path, data in (section or {}).items():
        if type(data) is dict and not any(isinstance(v, (dict, list)) for v in data.values()):
            got[path] = {k if type(k) is str else str(k): v for k, v in data.items()}
        else:  # nested: the usual case is a flat file of scalars, above
            got[path] = flat(data)
    return got


def flats(records: Iterable[dict[str, Any]], section: str) -> list[dict[str, dict[str, Any]]]:
    """Each record's section flattened: ``{file: {column: value}}`` (kept in the record)."""
    key = _CACHE[section]
    out = []
    for rec in records:
        got = rec.get(key)
        if got is None:
            got = rec[key] = _flatten(rec.get(section))
        out.append(got)
    return out


def forget(records: Iterable[dict[str, Any]]) -> None:
    """Drop the flattened sections :func:`flats` kept in the records (before output)."""
    for rec in records:
        for key in _CACHE.values():
            rec.pop(key, None)


def flat_columns(records: Iterable[dict[str, Any]], section: str) -> list[str]:
    """Column names of a section (params/metrics), file-qualified only when ambiguous."""
    seen: dict[str, set[str]] = {}
    for data in flats(records, section):
        for path, cols in data.items():
            for key in cols:
                seen.setdefault(key, set()).add(path)
    cols_out = []
    for key, paths in seen.items():
        cols_out.extend([key] if len(paths) == 1 else [f"{p}:{key}" for p in sorted(paths)])
    return cols_out


def cell(rec: dict[str, Any], section: str, col: str) -> Any:
    """A record's value for a column: :data:`MISSING` when it has none."""
    return column([rec], section, col)[0]


def column(records: Iterable[dict[str, Any]], section: str, col: str) -> list[Any]:
    """Every record's value for a column (:data:`MISSING` where it has none)."""
    path, sep, key = col.partition(":")
    out = []
    for data in flats(records, section):
        if sep and path in data:
            out.append(data[path].get(key, MISSING))
            continue
        for d in data.values():
            if col in d:
                out.append(d[col])
                break
        else:
            out.append(MISSING)
    return out


def varies(values: Iterable[Any]) -> bool:
    """Whether ``values`` hold two different values (``1``, ``1.0``, ``true`` and a
    missing value all differ; so do ``null`` and missing)."""
    first: Any = None
    for v in values:
        seen = _identity(v)
        if first is None:
            first = seen
        elif seen != first:
            return True
    return False


def _identity(v: Any) -> Any:
    if v is MISSING:
        return ("missing",)
    if isinstance(v, (dict, list)):
        return ("json", json.dumps(v, sort_keys=True, default=str))
    if isinstance(v, float) and v != v:
        return ("nan",)
    return (type(v), v)


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


def fit(widths: list[int], drop_order: list[int], width: int | None) -> list[int]:
    """Indexes of the columns (of ``widths``) that fit in ``width``, leaving columns out in
    ``drop_order`` (those not in it always stay)."""
    keep = set(range(len(widths)))
    if width is not None:
        used = sum(widths) + 2 * (len(widths) - 1)
        for i in drop_order:
            if used <= width:
                break
            keep.discard(i)
            used -= widths[i] + 2
    return sorted(keep)


def terminal_width(out: IO[str]) -> int | None:
    """The width to fit: ``COLUMNS``, else the terminal's; ``None`` (no limit) in a pipe."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if out.isatty():
        return shutil.get_terminal_size().columns
    return None


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes (wide characters take two)."""
    if text.isascii():
        return len(text)
    # Deferred: rich costs ~35 ms to import; ASCII text (nearly every cell) needs none.
    from rich.cells import cell_len

    return cell_len(text)


def _shown(text: str) -> str:
    """A cell as the terminal gets it: control characters (escape codes, line breaks in a
    value) written as escapes, so no value can move the cursor or recolour the screen."""
    return text if text.isprintable() else text.encode("unicode_escape").decode()


def _styles(out: IO[str]) -> tuple[str, str]:
    """ANSI codes of the header and of metric cells: none unless ``out`` shows colour."""
    if not out.isatty():
        return "", ""
    # Deferred: rich costs ~35 ms to import; it knows NO_COLOR, TERM=dumb, FORCE_COLOR…
    from rich.console import Console

    if Console(file=out).color_system is None:
        return "", ""
    return "\x1b[1m", "\x1b[36m"


def print_fitted(
    out: IO[str], header: list[str], rows: list[list[str]], first_param: int,
    first_metric: int, drop_order: list[int],
) -> None:  # fmt: skip
    """Print the table in the terminal's width: the columns before ``first_param`` that are
    in ``drop_order`` (times, counts) go first, then headers are abbreviated, then the rest
    of ``drop_order`` goes."""
    width = terminal_width(out)
    header = [_shown(h) for h in header]
    # Column by column (C loops over 100,000 cells instead of Python ones).
    cols = [[c if c.isprintable() else _shown(c) for c in col] for col in zip(*rows, strict=True)]
    if not cols:
        cols = [[] for _ in header]
    plain = ["".join(col).isascii() for col in cols]  # widths are lengths
    cells = [
        max(map(len if ok else _cells, col), default=0) for col, ok in zip(cols, plain, strict=True)
    ]

    def widths(names: list[str]) -> list[int]:
        return [max(_cells(h), c) for h, c in zip(names, cells, strict=True)]

    cheap = [i for i in drop_order if i < first_param and header[i] != "Sweep"]
    keep = fit(widths(header), cheap, width)
    if width is not None and sum(widths(header)[i] + 2 for i in keep) - 2 > width:
        names = abbreviate(header[first_param:])
        short = [*header[:first_param], *(names[h] for h in header[first_param:])]
        if sum(len(h) for h in short) < sum(len(h) for h in header):
            header = short
    final = widths(header)
    keep = fit(final, [*cheap, *(i for i in drop_order if i not in cheap)], width)
    dropped = [header[i] for i in range(len(header)) if i not in keep]
    bold, cyan = _styles(out)

    def padded(i: int, texts: list[str], style: str) -> list[str]:
        w, left = final[i], i < first_param
        if plain[i] and texts is cols[i]:
            got = [t.ljust(w) for t in texts] if left else [t.rjust(w) for t in texts]
        else:
            pads = [" " * (w - _cells(t)) for t in texts]
            got = [t + p if left else p + t for t, p in zip(texts, pads, strict=True)]
        return [f"{style}{t}\x1b[0m" for t in got] if style else got

    out.write("  ".join(padded(i, [header[i]], bold)[0] for i in keep).rstrip() + "\n")
    body = [padded(i, cols[i], cyan if i >= first_metric else "") for i in keep]
    out.writelines(f"{'  '.join(line).rstrip()}\n" for line in zip(*body, strict=True))
    if dropped:
        note = (
            f"({len(dropped)} columns left out to fit {width} columns: {', '.join(dropped)}; "
            "--keep/--drop REGEX choose; --csv and --json are never cut)"
        )
        out.write(textwrap.fill(note, width=width or 80, break_on_hyphens=False) + "\n")
