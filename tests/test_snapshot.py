"""A queued experiment captures the working tree exactly as it is at queue time."""

from __future__ import annotations

import os

import pytest

from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes


def test_a_same_size_edit_in_the_index_timestamp_granule_is_captured(
    sweepproject: SweepProject,
) -> None:
    """git's racy-entry rule: an entry whose mtime is not older than the index file may
    have changed without a visible stat difference, so git hashes it. A snapshot that
    copies the index with a new mtime loses that rule; set the times so it matters."""
    p = sweepproject
    p.quickstart()
    # ctime cannot be set from user space; with trustctime off, git compares what we set.
    p.git("config", "core.trustctime", "false")
    train = p.path / "train.py"
    # An entry git recorded well after the file's last write: not racy, not smudged.
    past = train.stat().st_mtime_ns - 100 * 10**9
    os.utime(train, ns=(past, past))
    p.git("update-index", "--refresh")
    before = train.stat()
    text = train.read_text()
    edited = text.replace("trained", "TRAINED")
    assert len(edited) == len(text)
    train.write_text(edited)  # same size, same inode
    os.utime(train, ns=(before.st_atime_ns, before.st_mtime_ns))
    index = p.path / ".git" / "index"
    # The index was written in the same granule as the file: the entry is racy.
    os.utime(index, ns=(before.st_atime_ns, before.st_mtime_ns))
    res = p.run("sweeps.yaml", "-k", "model.alpha=0.5 and model.degree=1")
    assert res.ret == 0, res.stdout + res.stderr
    (ref,) = p.refs("refs/sweeprun/queue/")
    assert p.git("show", f"{ref}:train.py") == edited
