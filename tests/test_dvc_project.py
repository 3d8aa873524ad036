"""A DVC repository as DVC sees it (issue 23, item 1): every dvc.yaml below the root is one
pipeline, each file's top-level metrics are recorded, and a dvc.yaml stage without params
reads none."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

NESTED = """
vars:
  - root: ../../..
stages:
  prepare:
    wdir: ${root}
    cmd: python3 src/pipelines/p1/prepare.py
    deps: [src/pipelines/p1/prepare.py, data/raw.txt]
    outs: [work/p1/prepared.txt]
  train:
    wdir: ${root}
    cmd: python3 src/pipelines/p1/train.py --lr ${train.lr}
    deps: [src/pipelines/p1/train.py, work/p1/prepared.txt]
    params: [{src/pipelines/p1/params.yaml: [train]}]
    outs: [work/p1/model.txt]
"""
PREPARE = """
import os, pathlib
open(os.environ["COUNT_FILE"], "a").write("prepare\\n")
pathlib.Path("work/p1").mkdir(parents=True, exist_ok=True)
pathlib.Path("work/p1/prepared.txt").write_text(open("data/raw.txt").read().upper())
"""
TRAIN = """
import json, pathlib, sys
lr = float(sys.argv[sys.argv.index("--lr") + 1])
rows = pathlib.Path("work/p1/prepared.txt").read_text().split()
pathlib.Path("work/p1/model.txt").write_text(str(lr))
pathlib.Path("reports/p1").mkdir(parents=True, exist_ok=True)
json.dump({"score": len(rows) * lr}, open("reports/p1/metrics.json", "w"))
"""


@pytest.fixture
def nested(sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root's dvc.yaml holds only metrics; the pipeline is nested and templated."""
    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    sp = sweepproject
    sp.write("dvc.yaml", "metrics:\n  - reports/p1/metrics.json\n")
    sp.write("src/pipelines/p1/dvc.yaml", NESTED)
    sp.write("src/pipelines/p1/params.yaml", "train:\n  lr: 0.1\n")
    sp.write("src/pipelines/p1/prepare.py", PREPARE)
    sp.write("src/pipelines/p1/train.py", TRAIN)
    sp.write("data/raw.txt", "a b c d\n")
    sp.write(".gitignore", "/work\n/reports\n")
    sp.commit()
    return count


def test_a_nested_pipeline_is_swept_from_the_root_with_its_metrics(
    sweepproject: SweepProject, nested: Path
) -> None:
    sp = sweepproject
    res = sp.run("-S", "train.lr=0.2,0.3", "--run", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    recs = sp.records()
    got = {r["params"]["src/pipelines/p1/params.yaml"]["train"]["lr"]: r for r in recs}
    assert set(got) == {0.2, 0.3}
    for lr, rec in got.items():
        assert rec["metrics"] == {"reports/p1/metrics.json": {"score": 4 * lr}}
    head = sp.run("show").stdout.splitlines()[0].split()
    assert "score" in head
    # The param-less stage reads no params: computed once for the whole sweep.
    assert nested.read_text().splitlines() == ["prepare"]
    log = (
        sp.run("queue", "logs", recs[0]["name"]).stdout
        + sp.run("queue", "logs", recs[1]["name"]).stdout
    )
    assert "[src/pipelines/p1/dvc.yaml:prepare] restored from the run-cache" in log
    # DVC's spelling of the key, and `sweeprun .`, find the same pipeline.
    res = sp.run("-S", "src/pipelines/p1/params.yaml:train.lr=0.5", "--collect-only")
    assert res.ret == 0 and "collected 1 experiment" in res.stdout, res.stdout + res.stderr
    assert sp.run(".", "-S", "train.lr=0.5", "--collect-only").ret == 0
    # DVC's -P/--all-pipelines (from anywhere in the repository) and -R DIR
    sub = sp.path / "src"
    res = sp.run_subprocess("--all-pipelines", "--collect-only", "-S", "train.lr=0.5", cwd=sub)
    assert res.ret == 0 and "collected 1 experiment" in res.stdout, res.stdout + res.stderr
    res = sp.run("-R", "src/pipelines", "-S", "train.lr=0.5", "--collect-only")
    assert res.ret == 0 and "collected 1 experiment" in res.stdout, res.stdout + res.stderr
    res = sp.run("-P", "dvc.yaml")
    assert res.ret == 4 and "--all-pipelines: give it without SPEC" in res.stderr
    res = sp.run("run", "--dry", "-S", "train.lr=0.5")
    assert "src/pipelines/p1/dvc.yaml:prepare: would restore from the run-cache" in res.stdout


def test_a_stage_reads_no_params_in_dvc_yaml_and_with_params_empty_anywhere(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    sp = sweepproject
    sp.write("params.yaml", "lr: 1\n")
    stage = (
        "    cmd: python3 -c \"import os; open(os.environ['COUNT_FILE'], 'a').write('x\\\\n');"
        " open('out.txt', 'w').write('x')\"\n    outs: [out.txt]\n"
    )
    sp.write("sweeps.yaml", "params: params.yaml\nstages:\n  s:\n" + stage + "    params: []\n")
    sp.write(".gitignore", "out.txt\n")
    sp.commit()
    assert sp.run("-S", "lr=2,3,4", "--run", "-q").ret == 0
    assert count.read_text().splitlines() == ["x"]  # params: [] : one run, two restores
    # sweeps.yaml without params: every param (the safe default) — each point runs.
    count.unlink()
    sp.write("sweeps.yaml", "params: params.yaml\nstages:\n  s:\n" + stage)
    sp.commit("all params")
    assert sp.run("-S", "lr=2,3", "--run", "-q").ret == 0
    assert count.read_text().splitlines() == ["x", "x"]


def test_metrics_beside_pipeline_in_sweeps_yaml(sweepproject: SweepProject, nested: Path) -> None:
    sp = sweepproject
    os.remove(sp.path / "dvc.yaml")
    sp.write(
        "sweeps.yaml",
        "pipeline: src/pipelines/p1/dvc.yaml\nmetrics: [reports/p1/metrics.json]\n"
        "sweeps:\n  lr:\n    values: [{train.lr: 0.25}]\n",
    )
    sp.commit("a sweeps.yaml")
    res = sp.run("--run", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = sp.records()
    assert rec["metrics"] == {"reports/p1/metrics.json": {"score": 1.0}}
    assert json.loads(sp.git("show", f"{rec['commit']}:reports/p1/metrics.json")) == {"score": 1.0}


def test_init_at_such_a_root_writes_a_spec_that_runs(
    sweepproject: SweepProject, nested: Path
) -> None:
    sp = sweepproject
    res = sp.run("init")
    assert res.ret == 0, res.stdout + res.stderr
    text = sp.read("sweeps.yaml")
    assert text.startswith("# Sweeps over the DVC pipeline as it is")
    assert "pipeline: .  #" in text and "train.lr: [0.05, 0.1, 0.2]" in text
    sp.commit("the starter")
    res = sp.run("--run", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    recs = sp.records()
    assert len(recs) == 3
    assert all(set(r["metrics"]) == {"reports/p1/metrics.json"} for r in recs)


def test_run_adds_no_gitignore_line_for_an_out_a_pattern_ignores(
    sweepproject: SweepProject, nested: Path
) -> None:
    """Issue 23: `sweeprun run` appended /work/p1/… although `/work` ignored them."""
    sp = sweepproject
    sp.write(".gitignore", "/work/*\n/reports\n")
    sp.commit("ignore with a pattern")
    res = sp.run("run", "-S", "train.lr=0.5")
    assert res.ret == 0, res.stdout + res.stderr
    assert sp.read(".gitignore") == "/work/*\n/reports\n"
    assert (sp.path / "work/p1/model.txt").read_text() == "0.5"


def test_dvcignore_patterns_the_last_match_decides(tmp_path: Path) -> None:
    from sweeprun.spec.dvcproject import find_pipelines

    for d in ("", "experiments/old", "experiments/keep", "build", "tmp/x"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
        (tmp_path / d / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / ".dvcignore").write_text(
        "# scratch\nexperiments/*\n!experiments/keep\nbuild/\ntmp\n"
    )
    found = [p.parent.relative_to(tmp_path).as_posix() for p in find_pipelines(tmp_path, tmp_path)]
    assert found == [".", "experiments/keep"]
