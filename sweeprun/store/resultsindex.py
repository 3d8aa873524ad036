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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from sweeprun.model import EXPS, Record, is_record, parse_message, public_record
from sweeprun.store.catfile import ObjectReader
from sweeprun.store.git import RepoPaths, for_each_ref, run_git

NAME = "results.idx"
MAGIC = b"sweeprun-results-index 1\n"
#: A stamp that equals nothing: a path changed too recently to be trusted.
RACY = [-1]


class Row(NamedTuple):
    """One finished experiment: what sorting and filtering need, and its record as JSON."""

    ref: str
    commit: str
    baseline: str
    state: str
    queued_at: float
    id: str
    line: str  # the public record (``show --json``), one line of JSON


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic collector paused while many acyclic records are built.

    Reading 100,000 records allocates millions of containers; each allocation burst sets
    off generational collections that walk all of them again (about 40% of the time).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def rows(repo: RepoPaths) -> list[Row]:
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
    paths = ["packed-refs", "reftable/tables.list", "refs", "refs/sweeprun", EXPS.rstrip("/")]
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


def _read(path: Path) -> tuple[dict[str, Any] | None, list[Row]]:
    """(stamp, rows) of the index file; ``(None, [])`` if it is missing or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, []
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not an index")
        head_end = data.index(b"\n", len(MAGIC))
        header = json.loads(data[len(MAGIC) : head_end])
        body = memoryview(data)[head_end + 1 :]
        if hashlib.blake2b(body, digest_size=16).hexdigest() != header["digest"]:
            raise ValueError("digest")
        text = body.tobytes().decode()
        keys_end = text.index("\n")
        keys = json.loads(text[:keys_end])
        lines = text[keys_end + 1 :].split("\n")
        lines.pop()  # the body ends with a newline
        if len(keys) != len(lines) or len(keys) != header["count"]:
            raise ValueError("count")
        got = [
            Row(k[0], k[1], k[2], k[3], k[4], k[5], line)
            for k, line in zip(keys, lines, strict=True)
        ]
        stamp = header["stamp"]
        if not isinstance(stamp, dict):
            raise ValueError("stamp")
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None, []  # rebuilt from the refs
    return stamp, got


def _write(fd: int, stamp: dict[str, Any], got: list[Row]) -> None:
    """Write the index into the open (temporary) file ``fd``."""
    keys = json.dumps([list(r[:6]) for r in got], separators=(",", ":"))
    body = "".join([keys, "\n", *(r.line + "\n" for r in got)]).encode()
    header = {"count": len(got), "digest": hashlib.blake2b(body, digest_size=16).hexdigest()}
    header["stamp"] = stamp
    with os.fdopen(fd, "wb", closefd=False) as f:
        f.write(MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + body)


def _refresh(repo: RepoPaths, path: Path, old: list[Row]) -> list[Row]:
    """Bring the index in step with the refs: read only what changed, write it back."""
    fd, tmp = -1, ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=NAME + ".", suffix=".tmp", dir=path.parent)
    except OSError:  # a read-only or full disk: read the refs, keep no index
        return _merge(repo, old)
    try:
        # Stamped before listing: a change after this shows in the next read's stamps.
        stamp = _stamp(repo.common_dir, os.fstat(fd).st_mtime_ns)
        got = _merge(repo, old)
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


def _merge(repo: RepoPaths, old: list[Row]) -> list[Row]:
    """The rows of the refs as they are: ``old`` where a ref's commit is unchanged."""
    listed = run_git(
        ["for-each-ref", "--format=%(refname) %(objectname)", EXPS.rstrip("/")], repo.root
    ).split()
    pairs = list(zip(listed[::2], listed[1::2], strict=True))
    known = {(r.ref, r.commit): r for r in old}
    fresh = [p for p in pairs if p not in known]
    read: dict[tuple[str, str], Row] = {}
    if len(fresh) > len(pairs) // 2:  # mostly new: one pass over every message
        for ref, sha, message in for_each_ref(repo.root, [EXPS.rstrip("/")]):
            if (ref, sha) not in known:
                row = _row(ref, sha, message)
                if row is not None:
                    read[ref, sha] = row
    elif fresh:
        with ObjectReader(repo.common_dir) as reader:
            # In batches: names written ahead of reading must fit the pipe (no deadlock).
            bodies = [b for i in range(0, len(fresh), 256)
                      for b in reader.read([sha for _, sha in fresh[i : i + 256]])]  # fmt: skip
        for (ref, sha), body in zip(fresh, bodies, strict=True):
            if body is not None:
                message = body.partition(b"\n\n")[2].decode(errors="replace")
                row = _row(ref, sha, message)
                if row is not None:
                    read[ref, sha] = row
    return [r for p in pairs if (r := known.get(p) or read.get(p)) is not None]


def _row(ref: str, sha: str, message: str) -> Row | None:
    meta = parse_message(message)
    if meta is None or not is_record(meta):
        return None
    return row(Record(ref=ref, commit=sha, raw=meta))


def row(rec: Record) -> Row:
    """The row of one experiment record."""
    pub = public_record(rec)
    queued = pub["queued_at"]
    return Row(
        rec.ref,
        rec.commit,
        pub["baseline"],
        pub["state"],
        queued if isinstance(queued, (int, float)) else 0,
        pub["id"],
        json.dumps(pub, default=str),
    )
