"""sweeprun's own files stay out of experiments (issue 22, item 7): plots and reports go
under ``.git/sweeprun/`` by default, whatever sweeprun wrote is never snapshotted, and the
demo's baseline commit holds no byte code."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from sweeprun._core.cli import main
from sweeprun.commands import demo
from sweeprun.commands.demo import example_dir
from sweeprun.testing import ENV, SweepProject


def _tree(sp: SweepProject, commit: str) -> list[str]:
    return sp.git("ls-tree", "-r", "--name-only", commit).split()


def test_reports_and_plots_never_enter_an_experiment(sweepproject: SweepProject) -> None:
    sp = sweepproject
    sp.quickstart()
    assert sp.run("sweeps.yaml", "-k", "model.degree=1", "--run", "-q").ret == 0
    res = sp.run("report")
    assert res.ret == 0, res.stderr
    default = sp.path / ".git" / "sweeprun" / "report.html"
    assert res.stdout.startswith(f"wrote {default} ")
    assert default.is_file()
    # As the docs show them: -o into the work tree.
    assert sp.run("report", "-o", "sweep.html").ret == 0
    assert sp.run("plots", "-o", "charts").ret == 0
    assert (sp.path / "sweep.html").is_file() and (sp.path / "charts" / "index.html").is_file()
    assert "?? sweep.html" in sp.status()  # the user's to keep or delete
    res = sp.run("sweeps.yaml", "-k", "model.degree=2")
    assert res.ret == 0, res.stdout + res.stderr
    queued = [r for r in sp.records() if r["state"] == "queued"]
    assert queued
    for rec in queued:
        files = _tree(sp, rec["commit"])
        assert "sweep.html" not in files
        assert not [f for f in files if f.startswith("charts/")]
    # A workspace run records the work tree: not them either.
    res = sp.run("run", "-S", "model.alpha=7")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = [r for r in sp.records() if r["sweep"] == "run"]
    files = _tree(sp, rec["commit"])
    assert "sweep.html" not in files and not [f for f in files if f.startswith("charts/")]


def test_the_demo_ignores_byte_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package has the example's byte code beside it (pip compiles it)."""
    example = tmp_path / "example"
    shutil.copytree(example_dir(), example)
    (example / "__pycache__").mkdir(exist_ok=True)
    (example / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0" * 16)
    monkeypatch.setattr(demo, "example_dir", lambda name="quickstart": example)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    target = tmp_path / "demo"
    out = io.StringIO()
    assert main(["demo", str(target), "--no-run"], stdout=out) == 0, out.getvalue()
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD"],
        cwd=target,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ".gitignore" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
