"""The in-process object writer must agree with git byte for byte."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeprun.store import objects as gitobjects

NAMES = st.sampled_from(["a", "b", "a.b", "a-b", "a_b", "A", "z", "é", "sp ace", "x.y.z"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, check=True
    ).stdout.decode()


def make_repo(tmp: Path, files: dict[str, bytes], index_version: int = 2) -> Path:
    repo = tmp / f"r{len(list(tmp.iterdir()))}"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "index.version", str(index_version))
    for rel, content in files.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        if rel.endswith("x"):
            p.chmod(0o755)
    (repo / "link").symlink_to("a")
    git(repo, "add", "-A")
    return repo


def _valid(paths: list[str]) -> dict[str, bytes]:
    # A path cannot be both a file and a directory.
    out: dict[str, bytes] = {}
    for p in paths:
        if any(q.startswith(p + "/") or p.startswith(q + "/") for q in out) or p == "link":
            continue
        out[p] = p.encode() * 3
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(paths=st.lists(PATHS, min_size=1, max_size=12), version=st.sampled_from([2, 3, 4]))
def test_write_tree_matches_git(tmp_path: Path, paths: list[str], version: int) -> None:
    repo = make_repo(tmp_path, _valid(paths), version)
    entries = gitobjects.read_index(repo / ".git" / "index")
    assert entries is not None
    assert [e.path for e in entries] == sorted(e.path for e in entries)
    ours = gitobjects.write_tree(repo / ".git" / "objects", entries)
    assert ours == git(repo, "write-tree").strip()
    git(repo, "fsck", "--strict", "--no-dangling")


def test_commit_object_is_valid_and_read_back(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"f": b"1\n", "d/g": b"2\n"})
    objects = repo / ".git" / "objects"
    entries = gitobjects.read_index(repo / ".git" / "index")
    assert entries is not None
    tree = gitobjects.write_tree(objects, entries)
    ident = gitobjects.format_ident("A U Thor <a@example.com>", when=1_700_000_000)
    sha = gitobjects.write_commit(objects, tree, [], ident, ident, "subject\n\nbody\n")
    assert git(repo, "cat-file", "-t", sha).strip() == "commit"
    assert (
        git(repo, "log", "-1", "--format=%an|%ae|%at|%s", sha).strip()
        == "A U Thor|a@example.com|1700000000|subject"
    )
    git(repo, "fsck", "--strict", "--no-dangling")


def test_write_index_round_trips_through_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"f": b"1\n", "d/g": b"2\n", "d/h": b"3\n"})
    index = repo / ".git" / "index"
    entries = gitobjects.read_index(index)
    assert entries is not None
    inode = index.stat().st_ino
    gitobjects.write_index(index, entries[:1])  # shorter: the old tail must not survive
    assert gitobjects.read_index(index) == entries[:1]
    gitobjects.write_index(index, entries)
    assert index.stat().st_ino == inode  # rewritten in place, no new file
    assert git(repo, "status", "--porcelain") == "A  d/g\nA  d/h\nA  f\nA  link\n"
    assert gitobjects.read_index(index) == entries


def test_torn_index_is_not_trusted(tmp_path: Path) -> None:
    """A write cut short by a crash fails the checksum: the slot is checked out again."""
    repo = make_repo(tmp_path, {"f": b"1\n", "g": b"2\n"})
    index = repo / ".git" / "index"
    data = index.read_bytes()
    index.write_bytes(data[:40] + bytes([data[40] ^ 1]) + data[41:])
    assert gitobjects.read_index(index) is None
    index.write_bytes(data + b"stale tail")
    assert gitobjects.read_index(index) is None


def test_unusual_indexes_fall_back(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"f": b"1\n"})
    (repo / "new").write_text("x")
    git(repo, "add", "-N", "new")  # intent-to-add: git write-tree refuses; so do we
    assert gitobjects.read_index(repo / ".git" / "index") is None
    assert gitobjects.read_index(repo / "missing") is None
    bad = repo / "bad"
    bad.write_bytes(b"DIRC" + b"\0" * 40)
    assert gitobjects.read_index(bad) is None


@pytest.mark.parametrize("content", [b"", b"x", b"\0binary\xff" * 100])
def test_blob_id_matches_git(tmp_path: Path, content: bytes) -> None:
    assert (
        gitobjects.blob_id(content)
        == git(tmp_path, "hash-object", "--stdin", input=content).strip()
    )


def test_untracked_paths_is_what_git_clean_removes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"keep": b"1", "d/keep": b"2"})
    for rel in ("junk", "d/junk", "e/deep/junk", "d/sub/junk"):
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    entries = gitobjects.read_index(repo / ".git" / "index")
    assert entries is not None
    ours = sorted(
        os.path.relpath(p, repo)
        for p in gitobjects.untracked_paths(repo, {e.path for e in entries})
    )
    theirs = sorted(
        line.split(" ", 2)[-1].rstrip("/") for line in git(repo, "clean", "-ndffx").splitlines()
    )
    assert ours == theirs == ["d/junk", "d/sub", "e", "junk"]


def _fast_repo(tmp: Path) -> tuple[Path, str, str]:
    repo = make_repo(tmp, {"a": b"a\n"})
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    head = git(repo, "rev-parse", "HEAD").strip()
    return repo, head, git(repo, "rev-parse", "HEAD^{tree}").strip()


def test_fast_import_streams_many_commits_in_order(tmp_path: Path) -> None:
    """Thousands of commits, streamed to git a MB at a time: each sha in order, each
    message and file as given, one blob for a content many commits share."""
    from sweeprun.store.git import FastCommit, fast_import_commits

    repo, head, tree = _fast_repo(tmp_path)
    n = 3000
    made = []

    def commits():  # a generator: read once, as git takes them
        for i in range(n):
            files = {"p.yaml": f"i: {i % 7}\n".encode(), "d/x y": b"same\n"}
            made.append(i)
            yield FastCommit(head, tree, f"c{i}\n\n" + "x" * 1000, files, 1_700_000_000 + i)

    shas = fast_import_commits(repo, commits(), ("t", "t@t"))
    assert len(shas) == n == len(made) and len(set(shas)) == n
    for i in (0, 1, 1234, n - 1):
        assert git(repo, "log", "-1", "--format=%s %P", shas[i]).split() == [f"c{i}", head]
        assert git(repo, "show", f"{shas[i]}:p.yaml") == f"i: {i % 7}\n"
        assert git(repo, "show", f"{shas[i]}:a") == "a\n"  # the base tree's files kept
    blobs = {git(repo, "rev-parse", f"{s}:d/x y").strip() for s in shas[:50]}
    assert len(blobs) == 1
    assert git(repo, "for-each-ref", "refs/sweeprun") == ""  # no scratch ref left
    assert fast_import_commits(repo, iter([]), ("t", "t@t")) == []


def test_fast_import_failing_midway_is_one_error_and_no_ref(tmp_path: Path) -> None:
    from sweeprun.exceptions import GitError
    from sweeprun.store.git import FastCommit, fast_import_commits

    repo, head, tree = _fast_repo(tmp_path)
    good = [FastCommit(head, tree, "ok", {"p": b"1\n"}, 1_700_000_000)] * 2000
    bad = FastCommit("f" * 40, tree, "no such parent", {"p": b"2\n"}, 1_700_000_000)
    with pytest.raises(GitError, match="fast-import failed"):
        fast_import_commits(repo, [*good, bad, *good], ("t", "t@t"))
    assert git(repo, "for-each-ref", "refs/sweeprun") == ""

    def interrupted():
        yield from good
        raise KeyboardInterrupt  # Ctrl+C while the stream is being made

    with pytest.raises(KeyboardInterrupt):
        fast_import_commits(repo, interrupted(), ("t", "t@t"))  # git killed, not waited on
    assert git(repo, "for-each-ref", "refs/sweeprun") == ""
