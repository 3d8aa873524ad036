"""Git objects written in-process: the per-experiment fast path.

Every experiment ends with "record the workspace as a commit whose parent is the
baseline". With ``git write-tree`` and ``git commit-tree`` that is two more processes per
experiment, which for short commands is a large share of the run time. Here the tree is
built from the worktree's index (after ``git add -A`` has done the hard part: ignore
rules, filters, hashing) and the tree and commit objects are written as loose objects,
exactly as git writes them.

Anything unusual — an index version or extension we do not read (split or sparse index),
conflict stages, intent-to-add or skip-worktree entries, a SHA-256 repository — makes
:func:`read_index` return ``None`` and the caller falls back to git itself. Tests check
the result against ``git write-tree`` byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

_UNSUPPORTED_EXTENSIONS = {b"link", b"sdir"}
_ENTRY_FIXED = struct.Struct(">10I20sH")


@dataclass(frozen=True)
class IndexEntry:
    """One stage-0 index entry: path (bytes, POSIX), mode, object id (hex), stat data."""

    path: bytes
    mode: int
    sha: str
    #: ctime s/ns, mtime s/ns, dev, ino, mode, uid, gid, size — as git stores them.
    stat: tuple[int, ...] = (0,) * 10


def read_index(path: str | os.PathLike[str]) -> list[IndexEntry] | None:
    """Parse a git index file (versions 2-4); ``None`` when we should let git do it."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if len(data) < 32 or data[:4] != b"DIRC":
        return None
    if hashlib.sha1(data[:-20]).digest() != data[-20:]:
        return None  # torn by a crash mid-write: git would call it corrupt too
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3, 4):
        return None
    entries: list[IndexEntry] = []
    pos = 12
    prev = b""
    try:
        for _ in range(count):
            start = pos
            fields = _ENTRY_FIXED.unpack_from(data, pos)
            mode, sha, flags = fields[6], fields[10], fields[11]
            pos += _ENTRY_FIXED.size
            if flags & 0x3000:  # a conflict stage
                return None
            if flags & 0x4000:
                if version < 3:
                    return None
                (ext,) = struct.unpack_from(">H", data, pos)
                pos += 2
                if ext & 0x6000:  # skip-worktree or intent-to-add
                    return None
            if version == 4:
                strip, pos = _varint(data, pos)
                end = data.index(b"\0", pos)
                name = prev[: len(prev) - strip] + data[pos:end]
                pos = end + 1
            else:
                end = data.index(b"\0", pos)
                name = data[pos:end]
                pos = start + ((end - start) // 8 + 1) * 8
            prev = name
            entries.append(IndexEntry(path=name, mode=mode, sha=sha.hex(), stat=fields[:10]))
        while pos + 8 <= len(data) - 20:
            sig = data[pos : pos + 4]
            (size,) = struct.unpack_from(">I", data, pos + 4)
            if sig in _UNSUPPORTED_EXTENSIONS:
                return None
            pos += 8 + size
    except (struct.error, ValueError, IndexError):
        return None
    return entries


def stat_fields(path: str | os.PathLike[str], mode: int) -> tuple[int, ...]:
    """The stat data git records for a file in the index (32-bit fields)."""
    st = os.lstat(path)
    m = 0xFFFFFFFF
    return (
        int(st.st_ctime) & m,
        st.st_ctime_ns % 1_000_000_000,
        int(st.st_mtime) & m,
        st.st_mtime_ns % 1_000_000_000,
        st.st_dev & m,
        st.st_ino & m,
        mode,
        st.st_uid & m,
        st.st_gid & m,
        st.st_size & m,
    )


def write_index(path: str | os.PathLike[str], entries: list[IndexEntry]) -> bytes:
    """Write a version-2 index (no extensions) in place; return the bytes written.

    Only for a pooled worktree's index, which nobody else reads while its slot is held;
    a write torn by a crash fails the checksum, so the slot is checked out again.
    Entries whose stat data is stale are still correct: git sees the mismatch and
    re-hashes the file, as it does after any ``touch``.
    """
    chunks = [b"DIRC" + struct.pack(">II", 2, len(entries))]
    for e in sorted(entries, key=lambda e: e.path):
        flags = min(len(e.path), 0xFFF)
        fixed = _ENTRY_FIXED.pack(*e.stat, bytes.fromhex(e.sha), flags)
        size = len(fixed) + len(e.path)
        pad = 8 - size % 8
        chunks.append(fixed + e.path + b"\0" * pad)
    body = b"".join(chunks)
    data = body + hashlib.sha1(body).digest()
    overwrite(path, data)
    return data


def overwrite(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace a file's content in place (created if missing), without a new inode.

    On some file systems creating (and later freeing) an inode costs far more than
    writing; the per-experiment files of a pooled worktree are rewritten instead.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def blob_id(content: bytes) -> str:
    """The object id git gives ``content`` as a blob."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    c = data[pos]
    pos += 1
    value = c & 0x7F
    while c & 0x80:
        value += 1
        c = data[pos]
        pos += 1
        value = (value << 7) + (c & 0x7F)
    return value, pos


def write_object(objects_dir: Path, kind: str, body: bytes) -> str:
    """Write a loose object (if absent) and return its id."""
    raw = f"{kind} {len(body)}\0".encode() + body
    sha = hashlib.sha1(raw).hexdigest()
    target = objects_dir / sha[:2] / sha[2:]
    if target.exists():
        return sha
    target.parent.mkdir(exist_ok=True)
    tmp = target.parent / f"tmp_obj_sweeprun_{os.getpid()}_{threading.get_ident()}"
    try:
        tmp.write_bytes(zlib.compress(raw, 1))
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)  # atomic; a concurrent writer wrote identical bytes
    finally:
        tmp.unlink(missing_ok=True)  # gone unless renamed (a full disk cuts it short)
    return sha


def write_tree(objects_dir: Path, entries: list[IndexEntry]) -> str:
    """Write the tree objects for ``entries`` (as ``git write-tree`` would); return the root."""
    # directory (bytes, "" = root) → list of (name, mode, sha)
    children: dict[bytes, list[tuple[bytes, int, str]]] = {}
    dirs: set[bytes] = {b""}
    for e in entries:
        parent, _, name = e.path.rpartition(b"/")
        children.setdefault(parent, []).append((name, e.mode, e.sha))
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition(b"/")[0]
    # Deepest first, so each subtree's id is known before its parent is written.
    for d in sorted(dirs, key=lambda p: p.count(b"/") + (1 if p else 0), reverse=True):
        items = children.get(d, [])
        items.sort(key=lambda it: it[0] + b"/" if it[1] == 0o40000 else it[0])
        body = b"".join(
            b"%o %s\0%s" % (mode, name, bytes.fromhex(sha)) for name, mode, sha in items
        )
        sha = write_object(objects_dir, "tree", body)
        if d:
            parent, _, name = d.rpartition(b"/")
            children.setdefault(parent, []).append((name, 0o40000, sha))
        else:
            return sha
    raise AssertionError("unreachable: the root is always written last")


def format_ident(ident: str, when: float | None = None) -> str:
    """``Name <email>`` plus a git timestamp (UTC offset of the local zone)."""
    now = time.time() if when is None else when
    offset = -time.timezone if not time.localtime(now).tm_isdst else -time.altzone
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset) // 60
    return f"{ident} {int(now)} {sign}{offset // 60:02d}{offset % 60:02d}"


def write_commit(
    objects_dir: Path, tree: str, parents: list[str], author: str, committer: str, message: str
) -> str:
    """Write a commit object; ``author``/``committer`` are full ident lines with dates."""
    lines = [
        f"tree {tree}",
        *(f"parent {p}" for p in parents),
        f"author {author}",
        f"committer {committer}",
        "",
        message,
    ]
    return write_object(objects_dir, "commit", "\n".join(lines).encode())


def walk_files(root: Path) -> list[str]:
    """Every non-directory below ``root`` except the top-level ``.git``."""
    out = []
    stack = [str(root)]
    top = str(root)
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if d == top and e.name == ".git":
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    out.append(e.path)
    return out


def untracked_paths(ws: Path, tracked: set[bytes]) -> list[Path]:
    """Files and directories in ``ws`` that hold nothing tracked (what ``clean -ffdx`` removes).

    ``tracked`` are the index paths. A nested repository (a directory with its own
    ``.git``) that is not tracked is returned whole, as ``clean -ff`` removes it.
    """
    tracked_dirs: set[bytes] = set()
    for p in tracked:
        parent = p.rpartition(b"/")[0]
        while parent and parent not in tracked_dirs:
            tracked_dirs.add(parent)
            parent = parent.rpartition(b"/")[0]
    out: list[Path] = []
    stack: list[tuple[Path, bytes]] = [(ws, b"")]
    while stack:
        directory, rel = stack.pop()
        with os.scandir(directory) as it:
            for entry in it:
                name = os.fsencode(entry.name)
                if not rel and name == b".git":
                    continue
                sub = rel + b"/" + name if rel else name
                if sub in tracked:
                    continue
                if entry.is_dir(follow_symlinks=False) and sub in tracked_dirs:
                    stack.append((Path(entry.path), sub))
                else:
                    out.append(Path(entry.path))
    return out
