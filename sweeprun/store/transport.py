"""Git as the only transport between a runner and workers that share nothing else.

The runner pushes the queued commits it dispatches to a URL both sides reach
(``refs/sweeprun/jobs/<key>``); a worker keeps a bare *mirror* of that URL in its own
directory and fetches the job refs it lacks (incrementally: only the objects it lacks);
results come back as a pack of git objects that the runner stores and verifies before
it writes any ref. Checkpoints travel the other way as pushes to
``refs/sweeprun/checkpoints/<key>`` at the URL, so any worker can resume them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from sweeprun.exceptions import GitError
from sweeprun.store import objects as gitobjects

#: Where the runner puts the queued commits it dispatches, at the worker URL.
JOBS = "refs/sweeprun/jobs/"
#: Where checkpoints of remote jobs live, at the worker URL and in each mirror.
CHECKPOINTS = "refs/sweeprun/checkpoints/"
#: Results a worker published before reporting them (see ``run.remote``): a task that
#: Dask runs again after its worker died finds the result here instead of running again.
RESULTS = "refs/sweeprun/results/"
#: Above this many objects a returned pack is kept as a pack, below it is unpacked
#: (git's own ``transfer.unpackLimit`` default).
UNPACK_LIMIT = 100
#: Packs up to this size are read in-process by a runner that writes objects itself.
INPROCESS_LIMIT = 1 << 20
#: Network operations give up after this long (a worker URL that hangs is a failure).
TIMEOUT = 120.0


class TransportError(GitError):
    """A git transfer to or from the worker URL failed; the message is one line."""


def _git(args: Sequence[str], git_dir: str | os.PathLike[str], data: bytes | None = None) -> bytes:
    """``git --git-dir GIT_DIR ARGS`` → stdout; otherwise :class:`TransportError` with
    git's own verdict in one line."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")  # never wait for a password
    try:
        proc = subprocess.run(
            ["git", "--git-dir", str(git_dir), *args],
            input=data,
            capture_output=True,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransportError(f"git {args[0]} gave no answer within {TIMEOUT:g} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines()]
        # git's own verdict ("fatal: '…' does not appear to be a git repository"), not the
        # advice that follows it.
        said = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or [
            ln for ln in lines if ln
        ]
        raise TransportError(said[0] if said else f"git {args[0]} failed")
    return proc.stdout


def push(git_dir: str | os.PathLike[str], url: str, specs: Iterable[str]) -> None:
    """Push refspecs (``SHA:REF``, ``+SHA:REF``, ``:REF``) to ``url`` in one connection."""
    specs = list(specs)
    if specs:
        _git(["push", "--quiet", "--no-verify", url, *specs], git_dir)


def remote_refs(git_dir: str | os.PathLike[str], url: str, pattern: str) -> dict[str, str]:
    """``{ref: sha}`` at ``url`` matching a ``ls-remote`` pattern."""
    out = _git(["ls-remote", url, pattern], git_dir).decode()
    pairs = (line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    return {ref: sha for sha, ref in pairs}


def mirror_path(base: str | os.PathLike[str], url: str) -> Path:
    """Where a worker keeps its mirror of ``url`` (one per repository, under ``base``)."""
    return Path(base) / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"


def open_mirror(base: str | os.PathLike[str], url: str) -> Path:
    """A bare mirror of ``url`` in ``base``, made on first use (threads and processes of
    one machine make it once)."""
    mirror = mirror_path(base, url)
    if (mirror / "HEAD").is_file():
        return mirror
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (mirror / "HEAD").is_file():
            tmp = mirror.with_suffix(f".tmp{os.getpid()}")
            subprocess.run(["git", "init", "-q", "--bare", str(tmp)], check=True)
            # The mirror only ever receives one job's objects at a time: keep them loose
            # and never pause a job for an automatic repack.
            _git(["config", "gc.auto", "0"], tmp)
            _git(["config", "remote.origin.url", url], tmp)
            os.replace(tmp, mirror)
    return mirror


def fetch_job(mirror: Path, url: str, key: str, commit: str, checkpoints: bool) -> None:
    """Make job ``key``'s queued commit present in ``mirror`` (and, for a job that
    checkpoints, the URL's checkpoints of it); only objects the mirror lacks cross.

    A job whose commit is missing fetches every job ref at the URL in that one round trip:
    the queued commits of a sweep are a few small objects each, and each fetch costs a
    connection and a negotiation (~60 ms on loopback), so the worker's next jobs find
    their commits already there. The checkpoints' refspec is a pattern so that its
    absence is not an error (keys are fixed-length: it matches this job's ref only);
    ``--prune`` drops refs the URL no longer has (done jobs, ``--reset``).
    """
    missing = not has_object(mirror, commit)
    specs = [f"+{CHECKPOINTS}{key}*:{CHECKPOINTS}{key}*"] if checkpoints else []
    if missing:
        specs.append(f"+{JOBS}*:{JOBS}*")
    if not specs:
        return
    _git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--prune", url, *specs], mirror)
    if missing and not has_object(mirror, commit):
        raise TransportError(f"{url} has no queued commit {commit[:12]} for {key}")


def has_object(git_dir: str | os.PathLike[str], sha: str) -> bool:
    """Whether the object ``sha`` is in ``git_dir`` (one ``cat-file -e``)."""
    cmd = ["git", "--git-dir", str(git_dir), "cat-file", "-e", sha]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def fetch_objects(git_dir: str | os.PathLike[str], url: str, ref: str) -> None:
    """Fetch what ``ref`` at ``url`` reaches, updating no ref (a later step names it)."""
    _git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, ref], git_dir)


def pack(git_dir: str | os.PathLike[str], tips: Sequence[str], have: Sequence[str]) -> bytes:
    """A pack of every object reachable from ``tips`` and not from ``have``."""
    wanted = "".join(f"{t}\n" for t in tips) + "".join(f"^{h}\n" for h in have)
    # No deltas (the objects are new and few): the runner can read the pack in-process.
    args = ["pack-objects", "--revs", "--stdout", "-q", "--window=0", "--no-reuse-delta"]
    return _git(args, git_dir, wanted.encode())


_KINDS = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}


def read_pack(data: bytes) -> list[tuple[str, bytes]] | None:
    """The objects of a small pack without deltas, as ``(kind, body)``; ``None`` for
    anything else (deltas, a big pack, a damaged one): git unpacks those."""
    if data[:4] != b"PACK" or len(data) > INPROCESS_LIMIT or len(data) < 32:
        return None
    if hashlib.sha1(data[:-20]).digest() != data[-20:]:
        return None
    count, pos, out = int.from_bytes(data[8:12], "big"), 12, []
    for _ in range(count):
        byte = data[pos]
        kind = _KINDS.get((byte >> 4) & 7)
        pos += 1
        while byte & 0x80:  # the size's continuation bytes (the body's length says it)
            byte = data[pos]
            pos += 1
        if kind is None:
            return None  # a delta
        inflate = zlib.decompressobj()
        body = inflate.decompress(data[pos : len(data) - 20])
        if not inflate.eof:
            return None
        pos = len(data) - 20 - len(inflate.unused_data)
        out.append((kind, body))
    return out if pos == len(data) - 20 else None


def unpack(git_dir: str | os.PathLike[str], data: bytes) -> None:
    """Store a pack's objects: loose when there are few, as a pack otherwise (as fetch does)."""
    if not data:
        return
    count = int.from_bytes(data[8:12], "big") if data[:4] == b"PACK" else 0
    if count < UNPACK_LIMIT:
        _git(["unpack-objects", "-q"], git_dir, data)
    else:
        _git(["index-pack", "--stdin", "-q"], git_dir, data)


def store_pack(git_dir: str | os.PathLike[str], data: bytes, commit: str, fast: bool) -> None:
    """Store a returned pack whose tip is ``commit``, and check that it arrived whole.

    ``fast`` (a SHA-1 repository whose objects sweeprun may write): a small pack without
    deltas is written as loose objects in-process, each named by the hash of what
    arrived; otherwise git unpacks it and walks the commit's tree.
    """
    objects = read_pack(data) if fast else None
    if objects is None:
        unpack(git_dir, data)
        if not has_commit(git_dir, commit):
            raise TransportError(f"result {commit[:12]} arrived incomplete")
        return
    written = {gitobjects.write_object(Path(git_dir) / "objects", k, b) for k, b in objects}
    if commit not in written:
        raise TransportError(f"result {commit[:12]} did not arrive")


def has_commit(git_dir: str | os.PathLike[str], sha: str) -> bool:
    """Whether ``sha`` is a commit whose objects are all present (``rev-list --objects``
    walks its tree, so a half-arrived result is caught)."""
    with contextlib.suppress(TransportError):
        _git(["rev-list", "--objects", "-n", "1", "--quiet", sha], git_dir)
        return True
    return False
