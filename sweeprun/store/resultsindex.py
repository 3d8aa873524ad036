"""The results index: each finished experiment's public record, kept beside the refs.

The refs stay the truth. ``.git/sweeprun/results.idx`` caches, for every
``refs/sweeprun/exps/…`` ref, the record ``show --json`` prints, and is trusted only
while the ref storage it was read from is unchanged: when it is written, the directories
that hold those loose refs, ``packed-refs`` and reftable's ``tables.list`` are stamped
(inode, size, mtime, ctime). Every change to a ref creates, renames or deletes a file in
one of them (git writes ``<ref>.lock`` and renames it), so it changes a stamp. Reading
checks a few ``stat`` calls instead of listing 100,000 refs and parsing their messages.

Time stamps are as coarse as the filesystem's clock: a directory changed in the same
tick as the index was written could change again within that tick unseen, so a stamp no
older than the index file itself (same clock, same granularity: git's "racy" rule) is
recorded as never matching, and the next read refreshes.

When stamps differ the index is refreshed, not rebuilt: one ``for-each-ref`` lists
``refname objectname`` pairs, records whose commit is unchanged are kept, and only new
commits' messages are read (``cat-file --batch``). A missing, truncated, corrupt (the
body has a digest) or foreign index is rebuilt; failing to write one only costs speed.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from sweeprun.model import EXPS, Record, is_record, parse_message, public_record
from sweeprun.model.flat import flatten_section
from sweeprun.store.catfile import ObjectReader
from sweeprun.store.git import RepoPaths, for_each_ref, run_git

NAME = "results.idx"
MAGIC = b"sweeprun-results-index 2\n"  # 1: earlier layouts on main (4edbecf..), rebuilt
#: A stamp that equals nothing: a path changed too recently to be trusted.
RACY = [-1]


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


class Results:
    """Every finished experiment: rows, their scalar :data:`FIELDS`, and their params and
    metrics as columns (so a table of 100,000 builds no per-experiment dicts). Each
    record's JSON (:meth:`line`) is only cut out of the index when asked for."""

    def __init__(
        self,
        rows: list[Row],
        fields: list[list[Any]],
        columns: list[Column],
        lines: list[str] | None = None,
        text: bytes = b"",
    ) -> None:
        self.rows = rows
        self.fields = fields
        self.columns = columns
        self._lines = lines
        self._text = text

    @property
    def lines(self) -> list[str]:
        """Each row's record as one line of JSON."""
        if self._lines is None:
            self._lines = self._text.decode().split("\n")[: len(self.rows)]
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


def results(repo: RepoPaths) -> Results:
    """Every finished experiment, from the index while it is current, else refreshed."""
    path = repo.state_dir / NAME
    with no_gc():
        stamp, old = _read(path)
        if stamp is not None and stamp == _restamp(repo.common_dir, stamp):
            return old
        return _refresh(repo, path, old)


# -- stamps -----------------------------------------------------------------------------


def _stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _stamp(common: Path, fs_now: int) -> dict[str, list[int] | None]:
    """Stamps of everything a change to a result ref touches."""
    # Not refs/ or refs/sweeprun/: their times move whenever queue/ or running/ appears or
    # empties (every queue and run), and exps/ itself is stamped (absent, then present).
    paths = ["packed-refs", "reftable/tables.list", EXPS.rstrip("/")]
    top = common / EXPS
    for dirpath, _dirs, _files in os.walk(top):
        rel = Path(dirpath).relative_to(common).as_posix()
        if rel not in paths:
            paths.append(rel)
    out: dict[str, list[int] | None] = {}
    for rel in paths:
        st = _stat(common / rel)
        # Changed in the index file's own clock tick: another change could hide in it.
        out[rel] = RACY if st is not None and st[2] >= fs_now else st
    return out


def _restamp(common: Path, stamp: dict[str, Any]) -> dict[str, list[int] | None]:
    """The same paths stamped now (a directory added under them changes their stamp)."""
    return {rel: _stat(common / rel) for rel in stamp}


# -- reading and writing ----------------------------------------------------------------


_EMPTY = Results([], [], [], [])


def _read(path: Path) -> tuple[dict[str, Any] | None, Results]:
    """(stamp, results) of the index file; ``(None, empty)`` if it is missing or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, _EMPTY
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not an index")
        head_end = data.index(b"\n", len(MAGIC))
        header = json.loads(data[len(MAGIC) : head_end])
        body = memoryview(data)[head_end + 1 :]
        if hashlib.sha1(body).hexdigest() != header["digest"]:
            raise ValueError("digest")
        start = head_end + 1
        cut = start + header["fields"]
        fields = json.loads(data[start:cut])
        columns = [Column(*c) for c in json.loads(data[cut : cut + header["columns"]])]
        text = data[cut + header["columns"] :]
        if not (len(fields) == header["count"] == text.count(b"\n")):
            raise ValueError("count")
        got = [_row_of(f, pos) for pos, f in enumerate(fields)]
        stamp = header["stamp"]
        if not isinstance(stamp, dict):
            raise ValueError("stamp")
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None, _EMPTY  # rebuilt from the refs
    return stamp, Results(got, fields, columns, text=text)


def _row_of(f: list[Any], pos: int) -> Row:
    queued = f[7]
    # _make: tuple's own constructor (Row(...) costs twice as much, 100,000 times).
    return Row._make(
        (f[14], f[15], f[3], f[2], queued if isinstance(queued, (int, float)) else 0, f[1], "", pos)
    )


def _build(old: Results, entries: list[Row | tuple[Row, dict[str, Any]]]) -> Results:
    """Results of ``entries``: rows kept from ``old`` (their fields and column values
    carried over, nothing decoded again) and new ``(row, public record)`` pairs, newest
    first (the order ``show`` lists results in, so reading needs no sort)."""
    entries = sorted(entries, key=_newest_first)
    n = len(entries)
    rows: list[Row] = []
    fields: list[list[Any]] = []
    lines: list[str] = []
    moved = [-1] * len(old.rows)  # an old position → its new one
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
        where = range(len(old.rows)) if c.rows is None else c.rows
        kept = [(moved[p], v) for p, v in zip(where, c.values, strict=True) if moved[p] >= 0]
        if kept:
            found[c.section, c.file, c.key] = ([i for i, _ in kept], [v for _, v in kept])
    for i, pub in fresh:
        for section in ("params", "metrics"):
            for path, cols in flatten_section(pub.get(section)).items():
                for key, v in cols.items():
                    col = found.get((section, path, key))
                    if col is None:
                        col = found[section, path, key] = ([], [])
                    col[0].append(i)
                    col[1].append(v)
    columns = []
    for (section, path, key), (where, values) in found.items():
        if len(where) == n:  # every row has it: stored in row order, positions left out
            ordered: list[Any] = [None] * n
            for i, v in zip(where, values, strict=True):
                ordered[i] = v
            columns.append(Column(section, path, key, None, ordered))
        else:
            columns.append(Column(section, path, key, where, values))
    return Results(rows, fields, columns, lines)


def _newest_first(entry: Row | tuple[Row, dict[str, Any]]) -> tuple[float, str]:
    row = entry if isinstance(entry, Row) else entry[0]
    return (-row.queued_at, row.id)


def _write(fd: int, stamp: dict[str, Any], got: Results) -> None:
    """Write the index into the open (temporary) file ``fd``."""
    fields = json.dumps(got.fields, separators=(",", ":"), default=str).encode() + b"\n"
    columns = json.dumps([list(c) for c in got.columns], separators=(",", ":"), default=str)
    cols = columns.encode() + b"\n"
    body = b"".join([fields, cols, "".join(line + "\n" for line in got.lines).encode()])
    header = {
        "count": len(got.rows),
        "fields": len(fields),
        "columns": len(cols),
        "digest": hashlib.sha1(body).hexdigest(),
        "stamp": stamp,
    }
    with os.fdopen(fd, "wb", closefd=False) as f:
        f.write(MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + body)


def _refresh(repo: RepoPaths, path: Path, old: Results) -> Results:
    """Bring the index in step with the refs: read only what changed, write it back."""
    fd, tmp = -1, ""
    _drop_leftovers(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=NAME + ".", suffix=".tmp", dir=path.parent)
        # Stamped before listing: a change after this shows in the next read's stamps.
        stamp = _stamp(repo.common_dir, os.fstat(fd).st_mtime_ns)
    except OSError:  # a read-only or full disk: read the refs, keep no index
        if fd >= 0:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return _merge(repo, old)
    try:
        got = _merge(repo, old)
        try:
            _write(fd, stamp, got)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        except OSError:
            pass  # no index written: the next read lists the refs again
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return got


#: A temporary index older than this was left by a process killed while writing it.
LEFTOVER_AGE = 600.0


def _drop_leftovers(path: Path) -> None:
    """Remove temporary indexes of killed processes (up to 90 MB each at 100,000 results);
    a younger one may be another process's, being written."""
    now = time.time()
    for tmp in path.parent.glob(f"{NAME}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > LEFTOVER_AGE:
                tmp.unlink()


def _merge(repo: RepoPaths, old: Results) -> Results:
    """The results of the refs as they are: ``old`` rows where a ref's commit is unchanged,
    only new commits read."""
    listed = run_git(
        ["for-each-ref", "--format=%(refname) %(objectname)", EXPS.rstrip("/")], repo.root
    ).split()
    pairs = list(zip(listed[::2], listed[1::2], strict=True))
    known = {(r.ref, r.commit): r for r in old.rows}
    fresh = [p for p in pairs if p not in known]
    read: dict[tuple[str, str], tuple[Row, dict[str, Any]]] = {}
    if len(fresh) > len(pairs) // 2:  # mostly new: one pass over every message
        for ref, sha, message in for_each_ref(repo.root, [EXPS.rstrip("/")]):
            if (ref, sha) not in known and (got := _parse(ref, sha, message)) is not None:
                read[ref, sha] = got
    elif fresh:
        with ObjectReader(repo.common_dir) as reader:
            # In batches: names written ahead of reading must fit the pipe (no deadlock).
            bodies = [b for i in range(0, len(fresh), 256)
                      for b in reader.read([sha for _, sha in fresh[i : i + 256]])]  # fmt: skip
        for (ref, sha), body in zip(fresh, bodies, strict=True):
            if body is not None:
                message = body.partition(b"\n\n")[2].decode(errors="replace")
                if (got := _parse(ref, sha, message)) is not None:
                    read[ref, sha] = got
    entries: list[Row | tuple[Row, dict[str, Any]]] = []
    for p in pairs:
        if (kept := known.get(p)) is not None:
            entries.append(kept)
        elif (new := read.get(p)) is not None:
            entries.append(new)
    return _build(old, entries)


def _parse(ref: str, sha: str, message: str) -> tuple[Row, dict[str, Any]] | None:
    meta = parse_message(message)
    if meta is None or not is_record(meta):
        return None
    pub = public_record(Record(ref=ref, commit=sha, raw=meta))
    return _row(pub), pub


def row(rec: Record) -> Row:
    """The row of one experiment record (not in the index: ``pos`` -1)."""
    return _row(public_record(rec))


def _row(pub: dict[str, Any]) -> Row:
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
