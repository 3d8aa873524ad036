"""Restored outputs are never writable aliases of cache objects; corrupt objects are
never restored silently."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from sweeprun.store.cache import Cache
from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes

TRAIN = """
import json, yaml

p = yaml.safe_load(open("params.yaml"))
open("model.pkl", "w").write(f"model lr={p['lr']}")
json.dump({"loss": p["lr"] / 10}, open("metrics.json", "w"))
open("runs.log", "a").write("ran\\n")
"""


def _project(p: SweepProject) -> None:
    p.write("params.yaml", "lr: 0.5\n")
    p.write("train.py", TRAIN)
    p.write(
        "sweeps.yaml",
        """
        params: params.yaml
        stages:
          train:
            cmd: python3 train.py
            deps: [train.py]
            params: [lr]
            outs: [model.pkl]
            metrics: [metrics.json]
        """,
    )
    p.write(".gitignore", "runs.log\n")
    p.commit()


def _objects(p: SweepProject) -> list[Path]:
    root = Path(p.git("rev-parse", "--git-common-dir").strip())
    root = root if root.is_absolute() else p.path / root
    return [f for f in (root / "sweeprun" / "cache" / "objects").rglob("*") if f.is_file()]


def _ran(p: SweepProject) -> int:
    log = p.path / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_restored_outputs_are_copies_and_writing_them_changes_no_cache_object(
    sweepproject: SweepProject,
) -> None:
    p = sweepproject
    _project(p)
    assert p.run("run").ret == 0
    assert p.run("run").ret == 0  # restored from the run-cache into the workspace
    assert _ran(p) == 1
    inodes = {f.stat().st_ino for f in _objects(p)}
    for name in ("model.pkl", "metrics.json"):
        st = (p.path / name).stat()
        assert st.st_nlink == 1 and st.st_ino not in inodes
        assert st.st_mode & 0o200, "a restored file is the user's to write"
    # What the user (as root, in Docker or CI) does next: run the script by hand, which
    # writes the outputs in place.
    (p.path / "metrics.json").write_text('{"loss": 999}')
    (p.path / "model.pkl").write_text("garbage")
    res = p.run("sweeps.yaml", "-S", "lr=0.5", "--run", "--force")
    assert res.ret == 0, res.stdout + res.stderr
    recs = p.records()
    assert len(recs) == 2  # the workspace run (run twice), one in a pooled workspace
    assert all(r["metrics"]["metrics.json"] == {"loss": 0.05} for r in recs)
    assert _ran(p) == 1, "the pooled run restored the run-cache's (intact) outputs"
    res = p.run("apply", recs[-1]["name"])
    assert res.ret == 0, res.stderr
    assert p.read("model.pkl") == "model lr=0.5"
    assert json.loads(p.read("metrics.json")) == {"loss": 0.05}


def test_a_corrupt_object_is_set_aside_and_the_stage_runs_again(
    sweepproject: SweepProject,
) -> None:
    p = sweepproject
    _project(p)
    assert p.run("run").ret == 0
    for obj in _objects(p):
        os.chmod(obj, 0o644)
        obj.write_text(obj.read_text().replace("0.5", "9.9").replace("0.05", "999"))
    (p.path / "model.pkl").unlink()
    p.write("notes.txt", "another experiment (the same stage key)\n")
    res = p.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert "is corrupt" in res.stdout and "running the stage again" in res.stdout
    assert _ran(p) == 2
    assert p.read("model.pkl") == "model lr=0.5"
    common = p.path / ".git"
    assert len(list((common / "sweeprun" / "cache" / "corrupt").iterdir())) >= 1


def test_gc_verify_finds_a_large_object_changed_in_place(sweepproject: SweepProject) -> None:
    p = sweepproject
    _project(p)
    assert p.run("run").ret == 0
    res = p.run("gc", "--verify")
    assert res.ret == 0, res.stdout
    assert "verified the cache: 0 corrupt object(s)" in res.stdout
    (obj,) = [o for o in _objects(p) if o.read_text().startswith("model")]
    st = obj.stat()
    os.chmod(obj, 0o644)
    obj.write_text("model lr=0.6")  # same size
    os.utime(obj, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the time put back
    res = p.run("gc", "--verify")
    assert res.ret == 1
    assert f"corrupt cache object {obj.parent.name}{obj.name[:10]}" in res.stdout
    assert not obj.exists()


def test_hardlinks_only_when_asked_and_a_write_through_is_caught(
    sweepproject: SweepProject,
) -> None:
    p = sweepproject
    _project(p)
    p.git("config", "sweeprun.cacheType", "hardlink,copy")
    assert p.run("run").ret == 0
    p.write("notes.txt", "another experiment, the same stage\n")
    assert p.run("run").ret == 0  # restored from the run-cache
    inodes = {f.stat().st_ino for f in _objects(p)}
    assert (p.path / "model.pkl").stat().st_ino in inodes  # the opt-in is honoured
    os.chmod(p.path / "model.pkl", 0o644)
    with open(p.path / "model.pkl", "r+") as f:  # in place: through the link
        f.write("MODEL")
    (p.path / "model.pkl").unlink()
    p.write("notes.txt", "a third experiment, the same stage\n")
    res = p.run("run")
    assert res.ret == 0, res.stdout
    assert "is corrupt" in res.stdout
    assert p.read("model.pkl") == "model lr=0.5"


def test_a_bad_cache_type_is_one_line(sweepproject: SweepProject) -> None:
    p = sweepproject
    _project(p)
    p.git("config", "sweeprun.cacheType", "symlinks")
    res = p.run("sweeps.yaml", "--run")
    assert res.ret == 4
    assert res.stderr.strip() == (
        "sweeprun: error: git config sweeprun.cacheType: 'symlinks' is not a list of link "
        "types (valid: reflink, hardlink, copy, comma-separated in order of preference)"
    )


def test_objects_are_stamped_and_old_ones_are_checked_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    src = tmp_path / "f"
    src.write_bytes(b"x" * 100)
    digest = cache.save(src)
    assert cache.path_of(digest).stat().st_mtime_ns == 1_000_000_000 * 10**9
    os.utime(cache.path_of(digest), ns=(0, 5))  # as an older version left it
    cache.checkout(digest, tmp_path / "g")
    assert (tmp_path / "g").read_bytes() == b"x" * 100
    assert cache.path_of(digest).stat().st_mtime_ns == 1_000_000_000 * 10**9


def test_resuming_a_checkpoint_never_rewrites_an_earlier_one(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resumed program writes its model in place; checkpoint 2 must stay checkpoint 2."""
    from test_checkpoints import PYTHON, spec

    from sweeprun.run.checkpoint import journal_path, read_journal

    p = sweepproject
    monkeypatch.setenv("STEPS_FILE", str(tmp_path / "steps.txt"))
    p.write("params.yaml", "steps: 4\nlr: 1\n")
    p.write("train.py", PYTHON)
    p.write("sweeps.yaml", spec(f"{sys.executable} train.py", "model.txt"))
    p.commit()
    assert p.run("--run").ret == 0
    (rec,) = p.records()
    second = read_journal(journal_path(p.path / ".git", rec["key"]))[1][0]
    res = p.run("--run", "--force", "--rev", second[:10])  # resumes: writes 3, 4 in place
    assert res.ret == 0, res.stdout + res.stderr
    assert p.run("apply", f"{rec['name']}@2").ret == 0
    assert p.read("model.txt") == "2"
    assert json.loads(p.read("m.json")) == {"step": 2}
