"""Nothing outside the repository (or the pooled workspace) is ever removed or written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sweeprun.system.paths import OutsideError, guarded, reason_outside
from sweeprun.testing import SweepProject

TRAIN = "import pathlib; pathlib.Path('data/model.pkl').write_text('new model')\n"


def _train_spec(p: SweepProject) -> None:
    p.write("train.py", TRAIN)
    p.write(
        "sweeps.yaml",
        """
        stages:
          train:
            cmd: python3 train.py
            deps: [train.py]
            outs: [data/model.pkl]
        """,
    )


def _project(p: SweepProject, outside: Path) -> None:
    outside.mkdir()
    (outside / "model.pkl").write_text("precious")
    (p.path / "data").symlink_to(outside)  # the common ML layout: data on another disk
    _train_spec(p)
    p.commit()


def test_a_symlinked_dir_leading_out_is_refused_at_queue_time(sweepproject: SweepProject) -> None:
    p = sweepproject
    outside = p.base / "other-disk"
    _project(p, outside)
    for args in (("sweeps.yaml", "--run"), ("run",)):
        res = p.run(*args)
        assert res.ret == 4, res.stdout + res.stderr
        line = res.stderr.strip()
        assert "\n" not in line
        assert line.startswith("sweeprun: error: sweeps.yaml:5:12: path 'data/model.pkl'")
        assert f"resolves to {outside}/model.pkl, outside the repository" in line
    assert (outside / "model.pkl").read_text() == "precious"
    assert p.refs() == {}


def test_a_dep_or_params_file_leading_out_is_refused(sweepproject: SweepProject) -> None:
    p = sweepproject
    outside = p.base / "elsewhere"
    outside.mkdir()
    (outside / "raw.csv").write_text("1\n")
    (outside / "params.yaml").write_text("a: 1\n")
    (p.path / "ext").symlink_to(outside)
    p.write("sweeps.yaml", "cmd: echo hi\ndeps: [ext/raw.csv]\n")
    p.commit()
    res = p.run("sweeps.yaml")
    assert res.ret == 4
    assert "sweeps.yaml:2:8: path 'ext/raw.csv' resolves to" in res.stderr
    p.write("sweeps.yaml", "params: ext/params.yaml\ncmd: echo hi\n")
    res = p.run("sweeps.yaml")
    assert res.ret == 4
    assert "sweeps.yaml:1:9: path 'ext/params.yaml' resolves to" in res.stderr
    p.write("sweeps.yaml", "cmd: echo hi\nouts: [.git/config]\n")
    res = p.run("sweeps.yaml")
    assert res.ret == 4
    assert "inside git's own directory" in res.stderr
    assert p.refs() == {}


def test_a_symlinked_data_dir_inside_the_repository_works(sweepproject: SweepProject) -> None:
    p = sweepproject
    (p.path / "storage").mkdir()
    (p.path / "storage" / ".keep").write_text("")
    (p.path / "data").symlink_to("storage")
    _train_spec(p)
    p.commit()
    res = p.run("sweeps.yaml", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    res = p.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert (p.path / "storage" / "model.pkl").read_text() == "new model"


def test_an_absolute_link_into_the_repository_never_leads_a_job_out_of_its_workspace(
    sweepproject: SweepProject,
) -> None:
    """In the user's repository the link stays inside; in a pooled workspace it points
    at the user's files: the job must not remove or write them."""
    p = sweepproject
    (p.path / "storage").mkdir()
    (p.path / "storage" / "model.pkl").write_text("the user's model")
    (p.path / "data").symlink_to(p.path / "storage")
    _train_spec(p)
    p.write(".gitignore", "/storage/\n")
    p.commit()
    res = p.run("sweeps.yaml", "--run")
    assert res.ret == 1, res.stdout + res.stderr
    (rec,) = p.records()
    assert rec["state"] == "failed"
    assert "output 'data/model.pkl' resolves to" in rec["message"]
    assert (p.path / "storage" / "model.pkl").read_text() == "the user's model"


def test_guarded_follows_every_link(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "in").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "out", base / "away")
    os.symlink("in", base / "near")
    os.symlink(tmp_path / "out" / "f", base / "last")
    assert reason_outside(base, "near/x") is None
    assert reason_outside(base, "away/x") == tmp_path / "out" / "x"
    assert reason_outside(base, "last") == tmp_path / "out" / "f"
    assert guarded(base, "near/x") == base / "near" / "x"
    with pytest.raises(OutsideError, match="resolves to"):
        guarded(base, "away/x")
