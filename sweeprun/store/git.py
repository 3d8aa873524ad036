"""Thin, fast wrappers around git plumbing.

GitPython is convenient but spawns or parses more than we need on hot paths, so the
store speaks to git directly: one ``update-ref --stdin`` process per runner for
compare-and-swap transactions, ``fast-import`` for writing many commits at once and
``for-each-ref`` for reading every record in a single call.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweeprun.exceptions import GitError, NotARepositoryError, UsageError

ZERO = "0" * 40
#: Identity used when the user has none configured (e.g. in CI containers).
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "sweeprun",
    "GIT_AUTHOR_EMAIL": "sweeprun@localhost",
    "GIT_COMMITTER_NAME": "sweeprun",
    "GIT_COMMITTER_EMAIL": "sweeprun@localhost",
}


def run_git(
    args: Sequence[str],
    cwd: str | os.PathLike[str],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> str:
    """Run ``git ARGS`` in ``cwd`` and return its stdout (text, trailing newline kept)."""
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=data,
        capture_output=True,
        env=full_env,
        check=False,
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise GitError(f"git {' '.join(args[:3])} failed ({proc.returncode}): {err}")
    return proc.stdout.decode(errors="replace")


@dataclass(frozen=True)
class RepoPaths:
    """Where a repository lives: its work-tree root and its (common) git directory."""

    root: Path
    git_dir: Path
    common_dir: Path

    @property
    def state_dir(self) -> Path:
        """sweeprun's private directory, shared by every worktree of the repository."""
        return self.common_dir / "sweeprun"


def discover(path: str | os.PathLike[str]) -> RepoPaths:
    """Find the repository containing ``path``; refuse non-repos and repos with no commit."""
    p = Path(path).resolve()
    if not p.exists():
        raise NotARepositoryError(f"{p}: no such directory")
    cwd = p if p.is_dir() else p.parent
    proc = subprocess.run(
        [
            "git",
            "rev-parse",
            "--show-toplevel",
            "--git-dir",
            "--git-common-dir",
            "--verify",
            "-q",
            "HEAD",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.splitlines()
    if len(lines) < 3:
        raise NotARepositoryError(
            f"{cwd}: not inside a git work tree (run 'git init' and commit first)"
        )
    if proc.returncode != 0 or len(lines) < 4:
        raise NotARepositoryError(
            f"{lines[0]}: the repository has no commit yet (sweeprun needs a baseline commit)"
        )
    root = Path(lines[0])
    git_dir = (cwd / lines[1]).resolve()
    common = (cwd / lines[2]).resolve()
    return RepoPaths(root=root, git_dir=git_dir, common_dir=common)


@dataclass(frozen=True)
class Identity:
    """Who sweeprun's commits are by: ``Name <email>`` of their author and committer."""

    author: str
    committer: str

    @staticmethod
    def _split(ident: str) -> tuple[str, str]:
        name, _, email = ident.rpartition(" <")
        return name, email.rstrip(">")

    @property
    def committer_pair(self) -> tuple[str, str]:
        """(name, email) of the committer."""
        return self._split(self.committer)

    def env(self) -> dict[str, str]:
        """The environment that makes git commit with exactly this identity."""
        (an, ae), (cn, ce) = self._split(self.author), self._split(self.committer)
        return {
            "GIT_AUTHOR_NAME": an,
            "GIT_AUTHOR_EMAIL": ae,
            "GIT_COMMITTER_NAME": cn,
            "GIT_COMMITTER_EMAIL": ce,
        }


def commit_identity(cwd: str | os.PathLike[str]) -> Identity:
    """The identity of sweeprun's commits, resolved once per run: git's own answer
    (``git var``: ``GIT_AUTHOR_*`` variables, then config), else a fallback identity,
    so that a repository without ``user.name`` still records experiments."""
    idents = []
    for var, who in (("GIT_AUTHOR_IDENT", "AUTHOR"), ("GIT_COMMITTER_IDENT", "COMMITTER")):
        out = run_git(["var", var], cwd, check=False).strip()
        if out:
            idents.append(out.rsplit(" ", 2)[0])  # drop the timestamp and zone
        else:
            name = os.environ.get(f"GIT_{who}_NAME") or FALLBACK_IDENTITY["GIT_AUTHOR_NAME"]
            email = os.environ.get(f"GIT_{who}_EMAIL") or FALLBACK_IDENTITY["GIT_AUTHOR_EMAIL"]
            idents.append(f"{name} <{email}>")
    return Identity(idents[0], idents[1])


class RefConflict(GitError):
    """A compare-and-swap ref transaction failed: another process changed a ref first."""


@dataclass(frozen=True)
class RefOp:
    """One line of an ``update-ref --stdin`` transaction.

    ``old`` is the value the ref must have (``ZERO`` = must not exist); ``new`` the value
    to set (``ZERO`` = delete).
    """

    ref: str
    new: str
    old: str

    def line(self) -> str:
        if self.new == ZERO:
            return f"delete {self.ref} {self.old}"
        if self.old == ZERO:
            return f"create {self.ref} {self.new}"
        return f"update {self.ref} {self.new} {self.old}"


class RefUpdater:
    """A long-lived ``git update-ref --stdin`` process running atomic transactions.

    Every transaction is all-or-nothing and checks old values, so concurrent runners can
    never half-write or overwrite each other's refs. Thread-safe.
    """

    def __init__(self, cwd: str | os.PathLike[str]) -> None:
        self._cwd = str(cwd)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["git", "update-ref", "--stdin"],
                cwd=self._cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        return self._proc

    def _expect(self, proc: subprocess.Popen[str], word: str) -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != f"{word}: ok":
            assert proc.stderr is not None
            proc.wait()
            err = proc.stderr.read().strip()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self._proc = None
            raise RefConflict(err or f"update-ref {word} failed")

    def transaction(self, ops: Iterable[RefOp]) -> None:
        """Apply ``ops`` atomically; raise :class:`RefConflict` if any old value mismatches."""
        ops = list(ops)
        if not ops:
            return
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None
            body = "start\n" + "".join(op.line() + "\n" for op in ops) + "prepare\n"
            try:
                proc.stdin.write(body)
                proc.stdin.flush()
            except BrokenPipeError as exc:  # the process died on an earlier failure
                self._proc = None
                raise RefConflict("update-ref process ended unexpectedly") from exc
            self._expect(proc, "start")
            self._expect(proc, "prepare")
            proc.stdin.write("commit\n")
            proc.stdin.flush()
            self._expect(proc, "commit")

    def close(self) -> None:
        """End the process (pending nothing: every transaction is already committed)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self._proc.wait()
                for stream in (self._proc.stdout, self._proc.stderr):
                    if stream is not None:
                        stream.close()
            self._proc = None


@dataclass
class FastCommit:
    """A commit for :func:`fast_import_commits`: baseline parent, root tree, changed files."""

    parent: str
    tree: str
    message: str
    files: dict[str, bytes]
    timestamp: int


#: For fast-import: glibc's allocator maps zlib's state (~256 KB, one per object written)
#: and hands it back to the kernel each time; page faults and TLB flushes were half of
#: fast-import's time (30,000 commits: 3.6 s, 1.9 s with these). Ignored by other C
#: libraries; a user's own GLIBC_TUNABLES win.
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=8388608:glibc.malloc.trim_threshold=67108864"


def fast_import_commits(
    cwd: str | os.PathLike[str], commits: Iterable[FastCommit], identity: tuple[str, str]
) -> list[str]:
    """Write ``commits`` as git objects in one ``fast-import`` run; return their shas.

    The commits are read once, as git takes them, and the stream is written 128 KB at a
    time: 100,000 commits with their messages, their stream and its joined copy were
    held whole before (~200 MB of a queue's 710 MB peak). Making a commit must not fail
    midway (an interrupt kills git; what it wrote is unreferenced, for ``git gc``). Each
    distinct file content is sent once, remembered by its digest, not its bytes.

    No ref is left behind: fast-import needs one, so a scratch ref is used and deleted.
    Creating the refs that point at the commits is the caller's (atomic) business.
    """
    pending = iter(commits)
    first = next(pending, None)
    if first is None:
        return []
    scratch = f"refs/sweeprun/tmp/import-{os.getpid()}-{threading.get_ident()}"
    name, email = identity
    mark = 0
    commit_marks: list[int] = []
    blob_marks: dict[bytes, int] = {}

    def stream(c: FastCommit) -> bytes:
        nonlocal mark
        chunks = []
        files = []
        for path, content in c.files.items():
            digest = hashlib.sha1(content).digest()
            if digest not in blob_marks:
                mark += 1
                blob_marks[digest] = mark
                chunks.append(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(content), content))
            files.append(f"M 100644 :{blob_marks[digest]} {_quote_path(path)}")
        mark += 1
        commit_marks.append(mark)
        msg = c.message.encode()
        lines = [
            f"commit {scratch}",
            f"mark :{mark}",
            f"author {name} <{email}> {c.timestamp} +0000",
            f"committer {name} <{email}> {c.timestamp} +0000",
        ]
        chunks.append("\n".join(lines).encode() + b"\ndata %d\n%s\n" % (len(msg), msg))
        body = [f"from {c.parent}", "deleteall", f'M 040000 {c.tree} ""', *files]
        chunks.append(("\n".join(body) + "\n\n").encode())
        return b"".join(chunks)

    with tempfile.TemporaryDirectory(prefix="sweeprun-import-") as tmp:
        marks_file = Path(tmp) / "marks"
        with open(Path(tmp) / "stderr", "w+b") as err:
            proc = subprocess.Popen(
                ["git", "fast-import", "--quiet", "--done", f"--export-marks={marks_file}"],
                cwd=cwd,
                env={"GLIBC_TUNABLES": GLIBC_TUNABLES, **os.environ},
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            assert proc.stdin is not None
            # A pipe as big as the kernel allows (64 KB by default): git works on what
            # was written while the next part is made, instead of the two taking turns.
            with contextlib.suppress(AttributeError, OSError):  # not Linux: as it is
                fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
            try:
                buffered: list[bytes] = []
                size = 0
                for c in itertools.chain([first], pending):
                    buffered.append(stream(c))
                    size += len(buffered[-1])
                    if size > 1 << 17:  # 128 KB at a time: few writes, little held
                        proc.stdin.write(b"".join(buffered))
                        buffered.clear()
                        size = 0
                buffered.append(b"done\n")
                proc.stdin.write(b"".join(buffered))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # fast-import failed: its exit status and message say why
            finally:
                if not proc.stdin.closed:  # (an interrupt): git must not wait for more
                    proc.kill()
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                proc.wait()
            if proc.returncode != 0:
                err.seek(0)
                message = err.read().decode(errors="replace")
                raise GitError(f"git fast-import failed: {message}")
        marks = dict(line.split(" ", 1) for line in marks_file.read_text().splitlines() if line)
    run_git(["update-ref", "-d", scratch], cwd, check=False)
    return [marks[f":{m}"].strip() for m in commit_marks]


def _quote_path(path: str) -> str:
    if any(ch in path for ch in ('"', "\n", "\\")) or path.startswith(" "):
        escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return path


def refuse_sparse(cwd: str | os.PathLike[str]) -> None:
    """A one-line error if the repository uses a sparse checkout: experiments run in
    worktrees that would inherit its patterns (files the program needs missing) and git
    refuses to add results outside them, so nothing is run rather than run for nothing."""
    got = run_git(["config", "--bool", "core.sparseCheckout"], cwd, check=False).strip()
    if got == "true":
        raise UsageError(
            "this repository uses a sparse checkout (core.sparseCheckout): sweeprun's "
            "workspaces need every file; 'git sparse-checkout disable' (or a full clone) "
            "lets it run (nothing was queued or run)"
        )


def for_each_ref(
    cwd: str | os.PathLike[str], patterns: Sequence[str]
) -> list[tuple[str, str, str]]:
    """Return ``(refname, objectname, full message)`` for every ref under ``patterns``.

    One git process reads every commit message, which is what makes ``show`` fast.
    """
    sep = "\x1f\x1e"
    out = run_git(
        ["for-each-ref", f"--format=%(refname)%00%(objectname)%00%(contents){sep}", *patterns],
        cwd,
    )
    records = []
    for chunk in out.split(sep):
        chunk = chunk.lstrip("\n")
        if not chunk:
            continue
        ref, sha, contents = chunk.split("\x00", 2)
        records.append((ref, sha, contents))
    return records
