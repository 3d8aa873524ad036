"""Pipelines, the run-cache, the output cache and `sweeprun run` — on real repos."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sweeprun.model.stage import Out, Stage
from sweeprun.spec.dag import PipelineError, order_stages, select
from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes

PREPARE = """
import os, yaml
p = yaml.safe_load(open("params.yaml"))["prepare"]
open(os.environ["COUNT_FILE"], "a").write("prepare\\n")
rows = [int(x) * p["scale"] for x in open("data/raw.csv")]
open("prepared.csv", "w").write("\\n".join(map(str, rows)) + "\\n")
"""
TRAIN = """
import json, os, yaml

p = yaml.safe_load(open("params.yaml"))["train"]
open(os.environ["COUNT_FILE"], "a").write("train\\n")
rows = [int(x) for x in open("prepared.csv")]
open("model.bin", "w").write(str(sum(rows) * p["lr"]))
json.dump({"score": sum(rows) * p["lr"], "inode": os.stat("data/raw.csv").st_ino},
          open("metrics.json", "w"))
"""
SPEC = """
params: params.yaml
stages:
  prepare:
    cmd: python3 prepare.py
    deps: [prepare.py, data/raw.csv]
    params: [prepare]
    outs: [prepared.csv]
  train:
    cmd: python3 train.py
    deps: [train.py, prepared.csv]
    params: [train]
    outs: [model.bin]
    metrics: [metrics.json]
sweeps:
  lr:
    matrix: {train.lr: [1, 2, 3, 4]}
"""


@pytest.fixture
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(path))
    return path


def counts(path: Path) -> dict[str, int]:
    lines = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return {w: lines.count(w) for w in ("prepare", "train")}


def project(sp: SweepProject) -> None:
    sp.write("params.yaml", "prepare:\n  scale: 2\ntrain:\n  lr: 1\n")
    sp.write("prepare.py", PREPARE)
    sp.write("train.py", TRAIN)
    sp.write("sweeps.yaml", SPEC)
    sp.write(".gitignore", "data/\n__pycache__/\n")
    sp.write("data/raw.csv", "".join(f"{i}\n" for i in range(100)))
    sp.commit()


def test_shared_stage_runs_once_and_outs_stay_out_of_git(
    sweepproject: SweepProject, counter: Path
) -> None:
    project(sweepproject)
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    assert counts(counter) == {"prepare": 1, "train": 4}
    raw_inode = (sweepproject.path / "data" / "raw.csv").stat().st_ino
    for rec in sweepproject.records():
        lr = rec["params"]["params.yaml"]["train"]["lr"]
        assert rec["metrics"]["metrics.json"]["score"] == 9900 * lr
        # the ignored data file was linked into the temp workspace, not copied
        assert rec["metrics"]["metrics.json"]["inode"] == raw_inode
        tree = sweepproject.git("ls-tree", "-r", "--name-only", rec["commit"]).split()
        assert "prepared.csv" not in tree and "model.bin" not in tree
        assert "data/raw.csv" not in tree
        lock = sweepproject.git("show", f"{rec['commit']}:sweeprun.lock")
        assert '"prepared.csv":' in lock and '"model.bin":' in lock


def test_changes_rerun_only_what_they_affect(sweepproject: SweepProject, counter: Path) -> None:
    project(sweepproject)
    assert sweepproject.run("--run", "-j", "2", "-k", "lr=1 or lr=2").ret == 0
    assert counts(counter) == {"prepare": 1, "train": 2}
    # a train param: train reruns, prepare restored
    assert (
        sweepproject.run(
            "--run", "-k", "lr=1", "-S", "prepare.scale=2", "-n", "again", "--force"
        ).ret
        == 0
    )
    assert counts(counter) == {"prepare": 0, "train": 0}  # identical: both from the run-cache
    assert sweepproject.run("-S", "train.lr=5", "--run").ret == 0
    assert counts(counter) == {"prepare": 0, "train": 1}
    # the prepare param: both rerun
    assert sweepproject.run("-S", "prepare.scale=3", "-S", "train.lr=1", "--run").ret == 0
    assert counts(counter) == {"prepare": 1, "train": 1}
    # only train.py changes: only train reruns
    sweepproject.write("train.py", TRAIN + "# changed\n")
    sweepproject.commit("train.py")
    assert sweepproject.run("-S", "train.lr=1", "--run").ret == 0
    assert counts(counter) == {"prepare": 0, "train": 1}


def test_run_in_workspace_then_fresh_clone_restores_from_cache(
    sweepproject: SweepProject, counter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEPRUN_CACHE_DIR", str(tmp_path / "shared-cache"))
    project(sweepproject)
    head = sweepproject.head()
    res = sweepproject.run("run", "-S", "train.lr=2")
    assert res.ret == 0, res.stdout + res.stderr
    assert counts(counter) == {"prepare": 1, "train": 1}
    assert sweepproject.head() == head  # HEAD does not move
    assert (sweepproject.path / "model.bin").read_text() == str(9900 * 2)
    assert "train:\n  lr: 2\n" in sweepproject.read("params.yaml")
    assert "/model.bin" in sweepproject.read(".gitignore").splitlines()
    (rec,) = sweepproject.records()
    assert rec["state"] == "success" and rec["metrics"]["metrics.json"]["score"] == 19800
    sweepproject.commit("params, lock and .gitignore after the run")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(sweepproject.path), str(clone)], check=True)
    (clone / "data").mkdir()
    (clone / "data" / "raw.csv").write_text(sweepproject.read("data/raw.csv"))
    sweepproject.path = clone
    res = sweepproject.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert counts(counter) == {"prepare": 0, "train": 0}
    res.fnmatch_lines(["prepare: cached", "train: cached"])
    assert (clone / "model.bin").read_text() == str(9900 * 2)
    assert sweepproject.run("run", "--force").ret == 0
    assert counts(counter) == {"prepare": 1, "train": 1}


def test_dry_run_and_targets(sweepproject: SweepProject, counter: Path) -> None:
    project(sweepproject)
    res = sweepproject.run("run", "--dry")
    assert res.outlines == [
        "prepare: would run (never ran here)",
        "train: would run ('prepared.csv' will change upstream)",
    ]
    assert sweepproject.run("run", "prepare").ret == 0
    assert counts(counter) == {"prepare": 1, "train": 0}
    sweepproject.write("train.py", TRAIN + "# edit\n")
    res = sweepproject.run("run", "--dry")
    assert res.outlines[0].startswith("prepare: would restore from the run-cache (up to date)")
    assert res.outlines[1] == "train: would run (never ran here)"
    assert counts(counter) == {"prepare": 0, "train": 0}
    assert sweepproject.run("run", "train", "--single-item").ret == 0
    assert counts(counter) == {"prepare": 0, "train": 1}
    res = sweepproject.run("run", "nope")
    assert res.ret == 4
    assert "no stage named 'nope'" in res.stderr


def test_run_temp_leaves_workspace_alone(sweepproject: SweepProject, counter: Path) -> None:
    project(sweepproject)
    before = sweepproject.status()
    res = sweepproject.run("run", "--temp", "-S", "train.lr=3", "-n", "tmp1")
    assert res.ret == 0, res.stdout + res.stderr
    assert sweepproject.status() == before
    assert not (sweepproject.path / "model.bin").exists()
    (rec,) = sweepproject.records()
    assert rec["name"] == "tmp1" and rec["metrics"]["metrics.json"]["score"] == 29700


@pytest.mark.parametrize(
    ("stages", "error"),
    [
        (
            "a: {cmd: x, deps: [b.txt], outs: [a.txt]}\n"
            "  b: {cmd: y, deps: [a.txt], outs: [b.txt]}",
            "sweeps.yaml:3:3: the pipeline has a cycle: a -> b -> a",
        ),
        (
            "a: {cmd: x, outs: [o.txt]}\n  b: {cmd: y, outs: [o.txt]}",
            "sweeps.yaml:4:3: stages 'a' and 'b' both write 'o.txt'",
        ),
        (
            "a: {cmd: x, outs: [out]}\n  b: {cmd: y, outs: [out/inner.txt]}",
            "sweeps.yaml:4:3: out 'out/inner.txt' of stage 'b' overlaps out 'out' of stage 'a'",
        ),
        (
            "a: {cmd: x, deps: [exists.txt, nowhere.csv]}",
            "sweeps.yaml:3:34: stage 'a': dep 'nowhere.csv' does not exist and no stage "
            "produces it",
        ),
    ],
)
def test_pipeline_errors_are_located(sweepproject: SweepProject, stages: str, error: str) -> None:
    sweepproject.write("exists.txt", "x")
    sweepproject.write("sweeps.yaml", f"params: []\nstages:\n  {stages}\n")
    sweepproject.commit()
    res = sweepproject.run()
    assert res.ret == 4
    assert res.stderr == f"sweeprun: error: {error}\n"
    assert sweepproject.refs() == {}


def test_order_and_select_are_pure() -> None:
    a = Stage("a", "x", outs=(Out("a.out"),))
    b = Stage("b", "y", deps=("a.out",), outs=(Out("b.out"),))
    c = Stage("c", "z", deps=("b.out",))
    d = Stage("d", "w")
    assert [s.name for s in order_stages([c, d, b, a])] == ["a", "b", "c", "d"]
    ordered = order_stages([a, b, c, d])
    assert [s.name for s in select(ordered, ["c"], False)] == ["a", "b", "c"]
    assert [s.name for s in select(ordered, ["c"], True)] == ["c"]
    with pytest.raises(PipelineError):
        select(ordered, ["e"], False)


def test_cache_save_checkout_and_readonly(tmp_path: Path) -> None:
    from sweeprun.store.cache import Cache
    from sweeprun.store.files import hash_path

    cache = Cache(tmp_path / "cache")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("1")
    (tmp_path / "d" / "g").write_text("2")
    (tmp_path / "file").write_text("3")
    dig = cache.save(tmp_path / "d")
    fdig = cache.save(tmp_path / "file")
    assert dig.endswith(".dir") and dig == hash_path(tmp_path / "d")
    assert cache.exists(dig) and cache.exists(fdig)
    cache.checkout(dig, tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "f").read_text() == "1"
    cache.checkout(fdig, tmp_path / "copy")
    obj = cache.path_of(fdig)
    assert not os.access(obj, os.W_OK) or os.geteuid() == 0  # read-only object
    assert obj.stat().st_mode & 0o222 == 0
    same = (tmp_path / "copy").stat().st_ino == obj.stat().st_ino
    assert same or (tmp_path / "copy").read_text() == "3"  # hardlink, or reflink/copy
    assert json.loads(cache.path_of(dig).read_text()) == {
        "g": cache.save(tmp_path / "d" / "g"),
        "sub/f": hash_path(tmp_path / "d/sub/f"),
    }
