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

from sweeprun.model.flat import flatten_section
from sweeprun.report.safe import shown

MISSING: Any = object()  # a key a record does not have (``None`` is a null value)


#: Where a record keeps its flattened sections (computed once; see :func:`forget`).
_CACHE = {"params": "_flat_params", "metrics": "_flat_metrics"}


def flats(records: Iterable[dict[str, Any]], section: str) -> list[dict[str, dict[str, Any]]]:
    """Each record's section flattened: ``{file: {column: value}}`` (kept in the record)."""
    key = _CACHE[section]
    out = []
    for rec in records:
        got = rec.get(key)
        if got is None:
            got = rec[key] = flatten_section(rec[section])
        out.append(got)
    return out


def forget(records: Iterable[dict[str, Any]]) -> None:
    """Drop the flattened sections :func:`flats` kept in the records (before output)."""
    for rec in records:
        for key in _CACHE.values():
            rec.pop(key, None)


class RecordList(list[dict[str, Any]]):
    """Records whose params and metrics are held as columns too (built from the results
    index): :func:`column`, :func:`flat_columns` and :func:`files` read the columns, so
    the records themselves may be slim (no ``params``/``metrics``). Keep one through
    :func:`subset` and :func:`prepend`; a plain list of slim records fails loudly."""

    def __init__(
        self, records: Iterable[dict[str, Any]], columns: dict[tuple[str, str, str], list[Any]]
    ) -> None:
        super().__init__(records)
        #: ``(section, file, key)`` → each record's value (:data:`MISSING` where none).
        self.columns = columns


def subset(records: list[dict[str, Any]], indexes: Iterable[int]) -> list[dict[str, Any]]:
    """The records at ``indexes``, in that order (a :class:`RecordList` stays one)."""
    picked = list(indexes)
    if isinstance(records, RecordList):
        return RecordList(
            [records[i] for i in picked],
            {k: [v[i] for i in picked] for k, v in records.columns.items()},
        )
    return [records[i] for i in picked]


def prepend(extra: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``extra`` (full records) before ``records`` (a :class:`RecordList` stays one)."""
    if not isinstance(records, RecordList):
        return [*extra, *records]
    n = len(extra)
    # The extra records' keys first, in their order: a table lists columns in the order
    # its first rows have them.
    columns = {k: v + [MISSING] * len(records) for k, v in columns_of(extra).items()}
    for k, v in records.columns.items():
        if k in columns:
            columns[k][n:] = v
        else:
            columns[k] = [MISSING] * n + v
    return RecordList([*extra, *records], columns)


def columns_of(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[Any]]:
    """Full records' params and metrics as :attr:`RecordList.columns` (keys in the order
    the records have them)."""
    columns: dict[tuple[str, str, str], list[Any]] = {}
    for section in _CACHE:
        for i, data in enumerate(flats(records, section)):
            for path, cols in data.items():
                for key, v in cols.items():
                    columns.setdefault((section, path, key), [MISSING] * len(records))[i] = v
    return columns


def _present(records: list[dict[str, Any]], section: str) -> list[tuple[str, str]]:
    """``(file, key)`` of a section's columns that have a value, in order of appearance."""
    if isinstance(records, RecordList):
        first: list[tuple[int, int, str, str]] = []
        for order, ((sec, path, key), values) in enumerate(records.columns.items()):
            if sec == section:
                at = next((i for i, v in enumerate(values) if v is not MISSING), None)
                if at is not None:
                    first.append((at, order, path, key))
        return [(path, key) for _, _, path, key in sorted(first)]
    seen: dict[tuple[str, str], None] = {}
    for data in flats(records, section):
        for path, cols in data.items():
            for key in cols:
                seen[path, key] = None
    return list(seen)


def flat_columns(records: list[dict[str, Any]], section: str) -> list[str]:
    """Column names of a section (params/metrics), file-qualified only when ambiguous."""
    seen: dict[str, set[str]] = {}
    for path, key in _present(records, section):
        seen.setdefault(key, set()).add(path)
    cols_out = []
    for key, paths in seen.items():
        cols_out.extend([key] if len(paths) == 1 else [f"{p}:{key}" for p in sorted(paths)])
    return cols_out


def files(records: list[dict[str, Any]], section: str, key: str | None = None) -> list[str]:
    """The files of a section (those with ``key``, if given) that some record has, sorted."""
    if isinstance(records, RecordList):
        return sorted({p for p, k in _present(records, section) if key is None or k == key})
    if key is None:
        return sorted({p for r in records for p in (r.get(section) or {})})
    return sorted(
        {p for data in flats(records, section) for p, cols in data.items() if key in cols}
    )


def cell(rec: dict[str, Any], section: str, col: str) -> Any:
    """A record's value for a column: :data:`MISSING` when it has none."""
    return column([rec], section, col)[0]


def column(records: list[dict[str, Any]], section: str, col: str) -> list[Any]:
    """Every record's value for a column (:data:`MISSING` where it has none)."""
    path, sep, key = col.partition(":")
    if isinstance(records, RecordList):
        if sep and (section, path, key) in records.columns:
            return records.columns[section, path, key]
        found = [v for (sec, _, k), v in records.columns.items() if sec == section and k == col]
        if len(found) == 1:
            return found[0]
        if not found:
            return [MISSING] * len(records)
        # A key in several files (each record has it in one): the first file's value.
        firsts = zip(*found, strict=True)
        return [next((x for x in xs if x is not MISSING), MISSING) for xs in firsts]
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


def values(records: list[dict[str, Any]], section: str, col: str) -> list[Any]:
    """:func:`column` with ``None`` for a missing value (sorting, aggregates, charts)."""
    return [None if v is MISSING else v for v in column(records, section, col)]


def varies(values: Iterable[Any]) -> bool:
    """Whether ``values`` hold two different values (``1``, ``1.0``, ``true`` and a
    missing value all differ; so do ``null`` and missing)."""
    first: Any = None
    for v in values:
        seen = identity(v)
        if first is None:
            first = seen
        elif seen != first:
            return True
    return False


def identity(v: Any) -> Any:
    """A hashable stand-in for a value: equal only for the same type and value."""
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
    kind = type(v)  # the common kinds first: 100,000 rows of them
    if kind is float:
        text = f"{v:.{precision}g}"
        return text + ".0" if text.lstrip("-").isdigit() else text  # 2.0, not 2
    if kind is int or kind is str:
        return str(v)
    if v is MISSING:
        return "-"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return fmt(float(v), precision)
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
    return created_column([rec], now)[0]


def created_column(records: Iterable[dict[str, Any]], now: float | None = None) -> list[str]:
    """:func:`created` of each record (the clock read once; one ``strftime`` a minute)."""
    today = time.localtime(time.time() if now is None else now)[:3]
    seen: dict[int, str] = {}
    out = []
    for rec in records:
        when = rec.get("started") or rec.get("queued_at")
        if not when:
            out.append("-")
            continue
        minute = int(float(when) // 60)
        text = seen.get(minute)
        if text is None:
            t = time.localtime(float(when))
            text = seen[minute] = time.strftime("%H:%M" if today == t[:3] else "%b %d", t)
        out.append(text)
    return out


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
    header = [shown(h) for h in header]
    # Column by column (C loops over 100,000 cells instead of Python ones).
    cols = [[c if c.isprintable() else shown(c) for c in col] for col in zip(*rows, strict=True)]
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
