"""The rows of the results index: each finished experiment's scalar fields, its params
and metrics as columns, and its record's JSON line (``store.resultsindex`` keeps them in a
file and in step with the refs).

A row's ``pos`` is its place in :attr:`Results.fields`, the columns and
:attr:`Results.lines`. A whole index is written newest first (the order ``show`` lists
results in, so reading needs no sort); appended segments add positions at the end and
:func:`place` puts their rows in order.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from sweeprun.model import Record, public_record
from sweeprun.model.flat import flatten_section

#: The scalar fields of a public record kept for each row (all but params, metrics, point).
FIELDS = (
    "name", "id", "state", "baseline", "sweep", "spec", "returncode", "queued_at", "started",
    "finished", "duration", "message", "checkpoints", "key", "ref", "commit",
)  # fmt: skip


class Row(NamedTuple):
    """One experiment: what sorting and filtering need, and its record as JSON."""

    ref: str
    commit: str
    baseline: str
    state: str
    queued_at: float
    id: str
    line: str  # the public record (``show --json``), one line of JSON
    pos: int  # its place in :attr:`Results.rows` (-1: not from the index)


class Column(NamedTuple):
    """One flattened params or metrics key of one file, over every result."""

    section: str  # "params" or "metrics"
    file: str
    key: str
    rows: list[int] | None  # the positions that have a value (None: every one)
    values: list[Any]


class Lines(NamedTuple):
    """The records' JSON lines of ``n`` positions from ``first``, as stored: checked
    against ``crc`` (``None``: made by this process) when first asked for."""

    text: bytes | memoryview
    crc: int | None
    first: int
    n: int


#: Re-reads the lines of some positions from the refs (a damaged stored blob).
Reread = Callable[["Results", range], list[str]]


class Results:
    """Every finished experiment: rows, their scalar :data:`FIELDS`, and their params and
    metrics as columns (so a table of 100,000 builds no per-experiment dicts). A row's
    ``pos`` is its place in :attr:`fields`, the columns and :attr:`lines` (positions of
    rows gone since the index was last written whole stay there, unlisted: :attr:`size`
    counts them). Each record's JSON (:meth:`line`) is only decoded, and its stored
    checksum only checked, when asked for: tables and charts never need it."""

    def __init__(
        self,
        rows: list[Row],
        fields: list[list[Any]],
        columns: list[Column],
        blobs: list[Lines] | None = None,
        lines: list[str] | None = None,
        reread: Reread | None = None,
    ) -> None:
        self.rows = rows
        self.fields = fields
        self.columns = columns
        self._lines = lines
        self._blobs = blobs or []
        self._reread = reread

    @property
    def size(self) -> int:
        """Positions in :attr:`fields` and the columns (rows gone included)."""
        return len(self.fields)

    @property
    def lines(self) -> list[str]:
        """Each position's record as one line of JSON."""
        if self._lines is None:
            out: list[str] = []
            for b in self._blobs:
                got = []
                if b.crc is None or zlib.crc32(b.text) == b.crc:
                    got = str(b.text, "utf-8").split("\n")[: b.n]
                if len(got) != b.n:  # damaged where it is kept: read from the refs
                    if self._reread is None:
                        raise ValueError("damaged results lines and no refs to read")
                    got = self._reread(self, range(b.first, b.first + b.n))
                out += got
            self._lines = out
        return self._lines

    def line(self, row: Row) -> str:
        """A row's record as one line of JSON (the index's rows and others alike)."""
        return row.line if row.pos < 0 else self.lines[row.pos]


@contextlib.contextmanager
def no_gc(freeze: bool = False) -> Iterator[None]:
    """The cyclic collector paused while many acyclic records are built.

    Reading 100,000 records allocates millions of containers; each allocation burst sets
    off generational collections that walk all of them again (about 40% of the time).
    ``freeze`` (a command, about to end): what was allocated is moved out of the
    collector's sight first, or the first collection after would walk all of it once more.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if freeze:
                gc.freeze()
            gc.enable()


def row_of(f: list[Any], pos: int) -> Row:
    queued = f[7]
    # _make: tuple's own constructor (Row(...) costs twice as much, 100,000 times).
    return Row._make(
        (f[14], f[15], f[3], f[2], queued if isinstance(queued, (int, float)) else 0, f[1], "", pos)
    )


def apply_segment(
    got: Results,
    fields: list[list[Any]],
    columns: list[Any],
    blob: bytes | memoryview,
    crc: int | None = None,
) -> list[Row]:
    """Add an appended segment's ``fields`` (with their ``columns`` and their records'
    lines ``blob``, at positions from ``got.size`` on) to ``got`` in place; their rows are
    returned for :func:`place`."""
    base = got.size
    got.fields.extend(fields)
    got._blobs.append(Lines(blob, crc, base, len(fields)))
    got._lines = None
    if not fields:
        return []
    where = {(c.section, c.file, c.key): i for i, c in enumerate(got.columns)}
    added: set[int] = set()
    for section, file, key, rows, values in columns:
        i = where.get((section, file, key))
        if i is None:
            got.columns.append(Column(section, file, key, rows, values))
            continue
        added.add(i)
        c = got.columns[i]
        if c.rows is None and len(rows) == len(fields):  # every row has it still
            c.values.extend(values)
        else:
            before = list(range(base)) if c.rows is None else c.rows
            got.columns[i] = c._replace(rows=before + rows, values=c.values + values)
    for i, c in enumerate(got.columns):
        if i not in added and c.rows is None:  # the new rows lack it
            got.columns[i] = c._replace(rows=list(range(base)))
    return [row_of(f, base + i) for i, f in enumerate(fields)]


def place(rows: list[Row], gone: set[int], new: list[Row]) -> list[Row]:
    """``rows`` without those at ``gone`` positions, with ``new`` in place (newest first).
    Done once per read, however many segments were appended: each new row's place is
    found by bisection and the old rows are copied in slices (no key for each old row)."""
    if gone:
        rows = [r for r in rows if r.pos not in gone]
        new = [r for r in new if r.pos not in gone]
    if not new:
        return rows
    new.sort(key=newest_first)
    if not rows or newest_first(new[-1]) <= newest_first(rows[0]):
        return new + rows  # results are mostly newer than all before
    out: list[Row] = []
    at = 0
    for r in new:
        to = bisect.bisect_right(rows, newest_first(r), lo=at, key=newest_first)
        out += rows[at:to]
        out.append(r)
        at = to
    out += rows[at:]
    return out


def build(old: Results, entries: list[Row | tuple[Row, dict[str, Any]]]) -> Results:
    """Results of ``entries``: rows kept from ``old`` (their fields and column values
    carried over, nothing decoded again) and new ``(row, public record)`` pairs, newest
    first (the order ``show`` lists results in, so reading needs no sort)."""
    entries = sorted(entries, key=newest_first)
    n = len(entries)
    rows: list[Row] = []
    fields: list[list[Any]] = []
    lines: list[str] = []
    moved = [-1] * old.size  # an old position → its new one
    fresh: list[tuple[int, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, Row):
            moved[entry.pos] = i
            fields.append(old.fields[entry.pos])
            lines.append(old.line(entry))
            rows.append(entry._replace(pos=i))
        else:
            row, pub = entry
            fresh.append((i, pub))
            fields.append([pub.get(f) for f in FIELDS])
            lines.append(row.line)
            rows.append(row._replace(pos=i, line=""))
    found: dict[tuple[str, str, str], tuple[list[int], list[Any]]] = {}
    for c in old.columns:
        where = range(old.size) if c.rows is None else c.rows
        kept = [(moved[p], v) for p, v in zip(where, c.values, strict=True) if moved[p] >= 0]
        if kept:
            found[c.section, c.file, c.key] = ([i for i, _ in kept], [v for _, v in kept])
    add_columns(found, fresh)
    columns = []
    for (section, path, key), (where, values) in found.items():
        if len(where) == n:  # every row has it: stored in row order, positions left out
            ordered: list[Any] = [None] * n
            for i, v in zip(where, values, strict=True):
                ordered[i] = v
            columns.append(Column(section, path, key, None, ordered))
        else:
            columns.append(Column(section, path, key, where, values))
    return Results(rows, fields, columns, lines=lines)


def add_columns(
    found: dict[tuple[str, str, str], tuple[list[int], list[Any]]],
    fresh: list[tuple[int, dict[str, Any]]],
) -> None:
    """Add the flattened params and metrics of new ``(position, public record)`` pairs."""
    for i, pub in fresh:
        for section in ("params", "metrics"):
            for path, cols in flatten_section(pub.get(section)).items():
                for key, v in cols.items():
                    col = found.get((section, path, key))
                    if col is None:
                        col = found[section, path, key] = ([], [])
                    col[0].append(i)
                    col[1].append(v)


def newest_first(entry: Row | tuple[Row, dict[str, Any]]) -> tuple[float, str]:
    row = entry if isinstance(entry, Row) else entry[0]
    return (-row.queued_at, row.id)


def row(rec: Record) -> Row:
    """The row of one experiment record (not in the index: ``pos`` -1)."""
    return row_of_public(public_record(rec))


def row_of_public(pub: dict[str, Any]) -> Row:
    queued = pub["queued_at"]
    return Row(
        pub["ref"],
        pub["commit"],
        pub["baseline"],
        pub["state"],
        queued if isinstance(queued, (int, float)) else 0,
        pub["id"],
        json.dumps(pub, default=str),
        -1,
    )
