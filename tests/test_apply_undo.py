"""``apply`` checks everything before it changes anything; ``apply --undo`` puts the
workspace back exactly: tracked, untracked, ignored and cached files, the lock file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes

TRAIN = """
import json, os, yaml

p = yaml.safe_load(open("params.yaml"))
os.makedirs("reports", exist_ok=True)
os.makedirs("data", exist_ok=True)
json.dump({"acc": p["lr"] * 2}, open("reports/metrics.json", "w"))
open("data/model.pkl", "w").write(f"model {p['lr']}")
"""


def _project(p: SweepProject) -> str:
    p.write("params.yaml", "lr: 0.25\n")
    p.write("train.py", TRAIN)
    p.write(
        "sweeps.yaml",
        """
        params: params.yaml
        stages:
          train:
            cmd: python3 train.py
            deps: [train.py]
            outs: [data/model.pkl]
            metrics: [reports/metrics.json]
        """,
    )
    p.write(".gitignore", "reports/\n/data/\n__pycache__/\n")
    p.commit()
    res = p.run("sweeps.yaml", "-S", "lr=0.5", "-n", "e1", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    return "e1"


def _files(root: Path) -> dict[str, bytes]:
    return {
        f.relative_to(root).as_posix(): f.read_bytes()
        for f in sorted(root.rglob("*"))
        if f.is_file() and ".git" not in f.relative_to(root).parts
    }


def test_undo_puts_back_exactly_what_was_there(sweepproject: SweepProject) -> None:
    p = sweepproject
    name = _project(p)
    p.write("params.yaml", "lr: 0.9  # my edit\n")  # tracked, modified
    p.write("notes.txt", "untracked notes\n")  # untracked
    p.write("data/model.pkl", "my own model\n")  # ignored, where the out goes
    p.write("reports/other.txt", "ignored, not the experiment's\n")
    before = _files(p.path)
    assert "sweeprun.lock" not in before and "reports/metrics.json" not in before
    res = p.run("apply", name)
    assert res.ret == 0, res.stderr
    applied = _files(p.path)
    assert applied["params.yaml"] == b"lr: 0.5\n"
    assert applied["data/model.pkl"] == b"model 0.5"
    assert b'"acc": 1.0' in applied["reports/metrics.json"]
    assert "sweeprun.lock" in applied
    res = p.run("apply", "--undo")
    assert res.ret == 0, res.stderr
    assert "removed 2 file(s) apply had added" in res.stdout
    assert _files(p.path) == before
    assert p.status() == " M params.yaml\n?? notes.txt\n"


def test_undo_after_apply_on_a_clean_workspace(sweepproject: SweepProject) -> None:
    """Nothing to save is still something to go back to (not an older stash)."""
    p = sweepproject
    name = _project(p)
    p.write("notes.txt", "x\n")
    assert p.run("apply", name).ret == 0  # a first apply, from a dirty workspace
    assert p.run("apply", "--undo").ret == 0
    (p.path / "notes.txt").unlink()
    before = _files(p.path)
    assert p.run("apply", name).ret == 0
    assert p.run("apply", "--undo").ret == 0
    assert _files(p.path) == before  # notes.txt of the older stash does not come back


def test_apply_changes_nothing_when_an_out_leads_outside(sweepproject: SweepProject) -> None:
    p = sweepproject
    name = _project(p)
    outside = p.base / "other-disk"
    outside.mkdir()
    (outside / "model.pkl").write_text("precious")
    shutil.rmtree(p.path / "data", ignore_errors=True)
    (p.path / "data").symlink_to(outside)
    p.write("params.yaml", "lr: 0.9\n")
    before = _files(p.path)
    stash = p.refs("refs/sweeprun/stash")
    res = p.run("apply", name)
    assert res.ret == 4
    assert "path 'data/model.pkl' resolves to" in res.stderr and "\n" not in res.stderr.strip()
    assert (outside / "model.pkl").read_text() == "precious"
    assert _files(p.path) == before
    assert p.refs("refs/sweeprun/stash") == stash


def test_apply_changes_nothing_when_an_output_is_not_in_the_cache(
    sweepproject: SweepProject,
) -> None:
    p = sweepproject
    name = _project(p)
    shutil.rmtree(p.path / ".git" / "sweeprun" / "cache" / "objects")
    p.write("params.yaml", "lr: 0.9\n")
    before = _files(p.path)
    res = p.run("apply", name)
    assert res.ret == 4
    assert "apply: nothing changed, some outputs cannot be restored: data/model.pkl" in res.stderr
    assert _files(p.path) == before
