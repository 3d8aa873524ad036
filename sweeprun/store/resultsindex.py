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
commits' messages are read (``cat-file --batch``). What changed is **appended** to the file
as a segment (new rows, the positions of rows gone, the new stamp) under an ``flock``, and
only if the file is still the one read and ends where it was read: rewriting 90 MB after
each run took seconds at 100,000 results. Readers take no lock: every segment has a
checksum, and a torn or foreign tail is left unread (the next refresh rewrites the file).
Past a share of appended rows the refresh writes one whole index again, sorted.

A missing, truncated, corrupt or foreign index is rebuilt; failing to write one only costs
speed. Segments are ``marshal`` data (plain lists, strings and numbers; 2-5 times quicker
to read than JSON), read only after their checksum matched, and the magic line names the
marshal version, so another Python rebuilds the index rather than misread it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import marshal
import os
import subprocess
import tempfile
import time
import zlib
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import IO, Any, NamedTuple

from sweeprun.exceptions import GitError
from sweeprun.model import EXPS, Record, is_record, parse_message, public_record
from sweeprun.store.catfile import ObjectReader
from sweeprun.store.git import RepoPaths, for_each_ref
from sweeprun.store.resultrows import (
    FIELDS,
    Column,
    Lines,
    Reread,
    Results,
    Row,
    add_columns,
    apply_segment,
    build,
    no_gc,
    place,
    row,
    row_of_public,
)

__all__ = ["FIELDS", "NAME", "Column", "Results", "Row", "no_gc", "results", "row"]

NAME = "results.idx"
# 1, 2: earlier layouts on main (4edbecf.., JSON), 3: lines inside marshal; rebuilt
MAGIC = b"sweeprun-results-index 4 marshal %d\n" % marshal.version
#: Appended rows (new and gone) past this many, and past COMPACT_SHARE of the rows, make
#: the refresh write one whole index again (every reader applies each segment).
COMPACT_MIN_ROWS = 1024
COMPACT_SHARE = 0.125
#: Nor more segments than this (a refresh that found only a new stamp appends one too).
COMPACT_SEGMENTS = 256
#: A stamp that equals nothing: a path changed too recently to be trusted.
RACY = [-1]


def results(repo: RepoPaths) -> Results:
    """Every finished experiment, from the index while it is current, else refreshed."""
    path = repo.state_dir / NAME
    with no_gc():
        raw = _Raw.load(path)
        if raw.stamp is not None and raw.stamp == _restamp(repo.common_dir, raw.stamp):
            read = raw.decode(_rereader(repo))
            if read.whole:  # every segment's checksum matched too
                return read.results
        return _refresh(repo, path, raw)


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


class _Read(NamedTuple):
    """The index file as read: its results and where an append would go."""

    results: Results
    end: int = 0  # the bytes of whole segments
    whole: bool = False  # the file ends where its last whole segment does
    ident: tuple[int, int] = (-1, -1)  # (device, inode) of the file read
    appended: int = 0  # rows added and removed by appended segments


class _Raw(NamedTuple):
    """The index file's bytes and its segments' headers, not yet checked or decoded: the
    last header's stamp decides whether the refs must be listed, and listing starts
    before the (longer) decoding."""

    data: bytes
    ident: tuple[int, int]
    heads: list[tuple[dict[str, Any], int, int]]  # header, body start, body end

    @property
    def stamp(self) -> dict[str, Any] | None:
        return self.heads[-1][0]["stamp"] if self.heads else None

    @classmethod
    def load(cls, path: Path) -> _Raw:
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except OSError:
            return cls(b"", (-1, -1), [])
        heads: list[tuple[dict[str, Any], int, int]] = []
        at = len(MAGIC) if data.startswith(MAGIC) else len(data)
        while at < len(data):
            try:
                head_end = data.index(b"\n", at)
                head = json.loads(data[at:head_end])
                start, end = head_end + 1, head_end + 1 + head["size"] + head["lines"]
                if end > len(data) or head["base"] is not (not heads):
                    raise ValueError("torn or out of place")
                if not isinstance(head["stamp"], dict) or not isinstance(head["crc"], int):
                    raise ValueError("not a header")
                if not isinstance(head["lines_crc"], int):
                    raise ValueError("not a header")
            except (ValueError, KeyError, TypeError):
                break  # torn (a writer killed mid-append) or foreign: the refs decide the rest
            heads.append((head, start, end))
            at = end
        return cls(data, (st.st_dev, st.st_ino), heads)

    def decode(self, reread: Reread) -> _Read:
        """The whole index and the segments appended to it, each checked by its checksum;
        empty if the whole index is damaged (it is rebuilt from the refs). The records'
        JSON lines are checked only when asked for (``reread`` if damaged)."""
        got, end, appended = _EMPTY, 0, 0
        gone, new = set[int](), list[Row]()
        data = memoryview(self.data)
        for head, start, stop in self.heads:
            cut = start + head["size"]
            body, lines = data[start:cut], data[cut:stop]  # views: nothing copied
            try:
                if zlib.crc32(body) != head["crc"]:
                    raise ValueError("checksum")
                if got is _EMPTY:
                    rows, fields, columns = marshal.loads(body)
                    blob = Lines(lines, head["lines_crc"], 0, len(fields))
                    # map(Row._make): no Python frame per row (100,000 of them)
                    got = Results(list(map(Row._make, rows)), fields,
                                  [*map(Column._make, columns)], [blob], reread=reread)  # fmt: skip
                else:
                    went, fields, columns = marshal.loads(body)
                    new += apply_segment(got, fields, columns, lines, head["lines_crc"])
                    gone.update(went)
                    appended += len(fields) + len(went)
            except (ValueError, TypeError, EOFError):
                break
            end = stop
        if got is _EMPTY:
            return _Read(_EMPTY)
        got.rows = place(got.rows, gone, new)
        return _Read(got, end, end == len(self.data), self.ident, appended)


def _encode(base: bool, stamp: dict[str, Any], parts: tuple[Any, ...], lines: bytes) -> bytes:
    """A segment: a JSON header line, the ``marshal`` body, then the records' lines (kept
    apart with their own checksum: only ``show --json`` and the like read them)."""
    body = marshal.dumps(parts)
    head = {"base": base, "size": len(body), "crc": zlib.crc32(body), "stamp": stamp}
    head |= {"lines": len(lines), "lines_crc": zlib.crc32(lines)}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + body + lines


def _lines_blob(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _refresh(repo: RepoPaths, path: Path, raw: _Raw) -> Results:
    """Bring the index in step with the refs: read only what changed, append it (or write
    the whole index again: none yet, a damaged one, or past the share of appended rows)."""
    fd, tmp, stamp = -1, "", None
    _drop_leftovers(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=NAME + ".", suffix=".tmp", dir=path.parent)
        # Stamped before listing: a change after this shows in the next read's stamps.
        # The new file's time is the filesystem's clock, at its granularity.
        stamp = _stamp(repo.common_dir, os.fstat(fd).st_mtime_ns)
    except OSError:  # a read-only or full disk: read the refs, keep no index
        pass
    try:
        with _Listing(repo) as listing:  # git lists the refs on the other core meanwhile
            read = raw.decode(_rereader(repo))
            old = read.results
            new, gone = _changes(repo, old, listing.text())
        if stamp is None:
            return build(old, [*_kept(old, gone), *new])
        share = max(COMPACT_MIN_ROWS, COMPACT_SHARE * len(old.rows))
        small = read.appended + len(new) + len(gone) <= share
        if read.whole and old is not _EMPTY and small and len(raw.heads) < COMPACT_SEGMENTS:
            fresh = [(old.size + i, pub) for i, (_row, pub) in enumerate(new)]
            found: dict[tuple[str, str, str], tuple[list[int], list[Any]]] = {}
            add_columns(found, fresh)
            fields = [[pub.get(f) for f in FIELDS] for _, pub in fresh]
            columns = [[*k, rows, values] for k, (rows, values) in found.items()]
            blob = _lines_blob([r.line for r, _ in new])
            _append(path, read, _encode(False, stamp, (gone, fields, columns), blob))
            old.rows = place(old.rows, set(gone), apply_segment(old, fields, columns, blob))
            return old
        got = build(old, [*_kept(old, gone), *new])
        try:
            lines = _lines_blob(got.lines)
            whole = ([tuple(r) for r in got.rows], got.fields, [tuple(c) for c in got.columns])
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(MAGIC + _encode(True, stamp, whole, lines))
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        except OSError:
            pass  # no index written: the next read lists the refs again
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return got


class _Listing:
    """``git for-each-ref`` of the result refs, started now, read when asked for. Its
    output goes to an unnamed file, not a pipe: git does not wait for a reader while
    Python decodes the index."""

    ARGS = ("for-each-ref", "--format=%(refname) %(objectname)", EXPS.rstrip("/"))

    def __init__(self, repo: RepoPaths) -> None:
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self._proc = subprocess.Popen(
            ["git", *self.ARGS], cwd=repo.root, stdout=self._out, stderr=subprocess.PIPE
        )

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:  # not asked for (an error while decoding)
            self._proc.kill()
            self._proc.communicate()
        self._out.close()

    def text(self) -> str:
        err = self._proc.communicate()[1]
        if self._proc.returncode != 0:
            message = err.decode(errors="replace").strip()
            raise GitError(f"git for-each-ref failed ({self._proc.returncode}): {message}")
        self._out.seek(0)
        return self._out.read().decode(errors="replace")


def _kept(old: Results, gone: list[int]) -> list[Row]:
    dead = set(gone)
    return [r for r in old.rows if r.pos not in dead] if dead else old.rows


def _append(path: Path, read: _Read, segment: bytes) -> None:
    """Append ``segment`` if the file is still the one read, ending where it was read
    (another refresh may have appended or replaced it meanwhile: then its work stands).
    The lock orders appenders; readers need none (each segment has its checksum)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != read.ident or st.st_size != read.end:
            return
        view = memoryview(segment)
        while view:  # a short write (a full disk) leaves a torn tail: readers skip it
            view = view[os.write(fd, view) :]
    except OSError:
        pass
    finally:
        os.close(fd)


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


def _changes(
    repo: RepoPaths, old: Results, listed: str
) -> tuple[list[tuple[Row, dict[str, Any]]], list[int]]:
    """The refs as ``listed`` (``refname objectname`` lines), against ``old``: the new
    ``(row, public record)`` pairs (only new commits read) and the positions of ``old``
    rows whose ref is gone or moved."""
    # Sets of "ref commit" lines, built in C (tuples cost twice): 100,000 rows, few changed.
    now = set(listed.splitlines())
    known = set(map(" ".join, map(_REF_COMMIT, old.rows)))
    fresh = [(ref, sha) for ref, _, sha in map(methodcaller("partition", " "), sorted(now - known))]
    lost = known - now
    gone = [r.pos for r in old.rows if " ".join(_REF_COMMIT(r)) in lost] if lost else []
    new: list[tuple[Row, dict[str, Any]]] = []
    if len(fresh) > len(now) // 2:  # mostly new: one pass over every message
        for ref, sha, message in for_each_ref(repo.root, [EXPS.rstrip("/")]):
            if f"{ref} {sha}" not in known and (got := _parse(ref, sha, message)) is not None:
                new.append(got)
    elif fresh:
        bodies = _bodies(repo, [sha for _, sha in fresh])
        for (ref, sha), body in zip(fresh, bodies, strict=True):
            if body is not None:
                message = body.partition(b"\n\n")[2].decode(errors="replace")
                if (got := _parse(ref, sha, message)) is not None:
                    new.append(got)
    return new, gone


_REF_COMMIT = itemgetter(0, 1)


def _bodies(repo: RepoPaths, shas: list[str]) -> list[bytes | None]:
    """The commits' raw bodies, in order (``None``: missing), through one ``cat-file``."""
    with ObjectReader(repo.common_dir) as reader:
        # In batches: names written ahead of reading must fit the pipe (no deadlock).
        return [b for i in range(0, len(shas), 256) for b in reader.read(shas[i : i + 256])]


def _rereader(repo: RepoPaths) -> Reread:
    """Reads the records of some positions from their commits, for lines found damaged
    in the index (a changed byte on disk); the index is removed, so the next read
    rebuilds it."""

    def reread(got: Results, positions: range) -> list[str]:
        with contextlib.suppress(OSError):
            (repo.state_dir / NAME).unlink()
        fields = [got.fields[p] for p in positions]
        shas = [f[FIELDS.index("commit")] for f in fields]
        bodies = _bodies(repo, shas)
        out = []
        for f, sha, body in zip(fields, shas, bodies, strict=True):
            message = body.partition(b"\n\n")[2].decode(errors="replace") if body else ""
            parsed = _parse(f[FIELDS.index("ref")], sha, message)
            # A commit gone meanwhile: what the index's fields say of it.
            said = dict(zip(FIELDS, f, strict=True))
            out.append(parsed[0].line if parsed else json.dumps(said, default=str))
        return out

    return reread


def _parse(ref: str, sha: str, message: str) -> tuple[Row, dict[str, Any]] | None:
    meta = parse_message(message)
    if meta is None or not is_record(meta):
        return None
    pub = public_record(Record(ref=ref, commit=sha, raw=meta))
    return row_of_public(pub), pub
