"""Checkpoints: the signal-file protocol, crash survival, resume, reset, parallel chains."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from sweeprun.api import make_checkpoint
from sweeprun.run.checkpoint import journal_path, read_journal
from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes

BASH = """
set -e
n=$(grep steps params.yaml | cut -d' ' -f2)
start=$( [ -f state.txt ] && cat state.txt || echo 0 )
for i in $(seq $((start+1)) $n); do
  echo $i > state.txt
  echo "{\\"step\\": $i}" > m.json
  touch "$SWEEPRUN_CHECKPOINT"
  while [ -e "$SWEEPRUN_CHECKPOINT" ]; do sleep 0.01; done
done
"""
PYTHON = """
import json, os, sys, time, yaml
from sweeprun.api import make_checkpoint

p = yaml.safe_load(open("params.yaml"))
start = int(open("model.txt").read()) if os.path.exists("model.txt") else 0
for step in range(start + 1, p["steps"] + 1):
    open(os.environ["STEPS_FILE"], "a").write(f"{p['lr']} {step}\\n")
    open("model.txt", "w").write(str(step))
    json.dump({"step": step}, open("m.json", "w"))
    make_checkpoint()
    if step >= int(os.environ.get("SLOW_AFTER", 99)):
        time.sleep(30)  # the runner is killed meanwhile
"""


def spec(cmd: str, out: str) -> str:
    return (
        f"params: params.yaml\nstages:\n  train:\n    cmd: {cmd}\n    outs:\n"
        f"      - {out}: {{checkpoint: true}}\n    metrics: [m.json]\n"
    )


def chain(sp: SweepProject, ref: str) -> list[str]:
    return sp.git("rev-list", "--first-parent", ref).split()


def test_bash_stage_makes_three_checkpoint_commits(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "steps: 3\n")
    sweepproject.write("train.sh", BASH)
    sweepproject.write("sweeps.yaml", spec("bash train.sh", "state.txt"))
    head = sweepproject.commit()
    res = sweepproject.run("--run")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["checkpoint 1 of run *", "checkpoint 2 of run *", "checkpoint 3 of run *"])
    (rec,) = sweepproject.records()
    commits = chain(sweepproject, rec["commit"])
    assert commits[-1] == head and len(commits) >= 5  # result, 3 checkpoints, baseline
    for step, sha in zip((3, 2, 1), commits[1:4], strict=True):
        lock = json.loads(sweepproject.git("show", f"{sha}:sweeprun.lock"))
        assert lock["checkpoint"] == step
        digest = lock["checkpoint_outs"]["state.txt"]
        cached = sweepproject.path / ".git/sweeprun/cache/objects" / digest[:2] / digest[2:]
        assert cached.read_text() == f"{step}\n"
        assert json.loads(sweepproject.git("show", f"{sha}:m.json")) == {"step": step}
    assert rec["metrics"]["m.json"] == {"step": 3}
    assert sweepproject.refs("refs/sweeprun/checkpoints/")
    assert rec["checkpoints"] == 3
    assert sweepproject.run("apply", f"{rec['name']}@2").ret == 0  # a checkpoint applies
    assert sweepproject.read("state.txt") == "2\n"
    assert json.loads(sweepproject.read("m.json")) == {"step": 2}
    res = sweepproject.run("show", "--all-checkpoints")
    assert [ln.split()[:3] for ln in res.outlines[2:]] == [
        [rec["name"], "success", "3"],
        [f"{rec['name']}@3", "checkpoint", "3"],
        [f"{rec['name']}@2", "checkpoint", "2"],
        [f"{rec['name']}@1", "checkpoint", "1"],
    ]


def test_killed_runner_keeps_checkpoints_and_resumes(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = tmp_path / "steps.txt"
    monkeypatch.setenv("STEPS_FILE", str(steps))
    sweepproject.write("params.yaml", "steps: 5\nlr: 1\n")
    sweepproject.write("train.py", PYTHON)
    sweepproject.write("sweeps.yaml", spec(f"{sys.executable} train.py", "model.txt"))
    sweepproject.commit()
    assert sweepproject.run().ret == 0
    (queued,) = sweepproject.records()
    journal = journal_path(sweepproject.path / ".git", queued["key"])
    import os

    runner = sweepproject.popen("--run-all", env=dict(os.environ, SLOW_AFTER="2"))
    deadline = time.monotonic() + 60
    while len(read_journal(journal)) < 2:
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.02)
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    assert len(read_journal(journal)) == 2
    assert [r["state"] for r in sweepproject.records()] == ["running"]
    # the program resumes from checkpoint 2 when the experiment runs again
    res = sweepproject.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    assert res.stdout.count("checkpoint ") >= 3
    lines = steps.read_text().split("\n")
    done = [ln.split()[1] for ln in lines if ln]
    assert done.count("1") == 1 and done.count("2") == 1 and done[-1] == "5"
    (rec,) = sweepproject.records()
    assert rec["state"] == "success" and rec["metrics"]["m.json"] == {"step": 5}
    assert len(read_journal(journal)) == 5
    # --reset starts from 0
    steps.unlink()
    res = sweepproject.run("--run", "--force", "--reset")
    assert res.ret == 0, res.stdout + res.stderr
    assert [ln.split()[1] for ln in steps.read_text().split("\n") if ln] == list("12345")


def test_resume_from_a_chosen_checkpoint(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = tmp_path / "steps.txt"
    monkeypatch.setenv("STEPS_FILE", str(steps))
    sweepproject.write("params.yaml", "steps: 4\nlr: 1\n")
    sweepproject.write("train.py", PYTHON)
    sweepproject.write("sweeps.yaml", spec(f"{sys.executable} train.py", "model.txt"))
    sweepproject.commit()
    assert sweepproject.run("--run").ret == 0
    (rec,) = sweepproject.records()
    second = read_journal(journal_path(sweepproject.path / ".git", rec["key"]))[1][0]
    steps.unlink()
    res = sweepproject.run("--run", "--force", "--rev", second[:10])
    assert res.ret == 0, res.stdout + res.stderr
    assert [ln.split()[1] for ln in steps.read_text().split("\n") if ln] == ["3", "4"]
    res = sweepproject.run("--run", "--force", "--rev", "nosuchrev")
    assert res.ret == 4 and "--rev nosuchrev: no such checkpoint commit" in res.stderr


def test_two_parallel_chains(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPS_FILE", str(tmp_path / "steps.txt"))
    sweepproject.write("params.yaml", "steps: 3\nlr: 1\n")
    sweepproject.write("train.py", PYTHON)
    sweepproject.write(
        "sweeps.yaml",
        spec(f"{sys.executable} train.py", "model.txt")
        + "sweeps:\n  g:\n    matrix: {lr: [1, 2]}\n",
    )
    sweepproject.commit()
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    recs = sweepproject.records()
    assert len(recs) == 2
    seen: set[str] = set()
    for rec in recs:
        commits = chain(sweepproject, rec["commit"])[1:4]
        assert not seen & set(commits)
        seen.update(commits)
        for sha in commits:
            lr = int(sweepproject.git("show", f"{sha}:params.yaml").split("lr: ")[1].split()[0])
            assert lr == rec["params"]["params.yaml"]["lr"]


def test_make_checkpoint_outside_sweeprun_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEPRUN_CHECKPOINT", raising=False)
    assert make_checkpoint() is False


def _steps_project(sp: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    steps = tmp_path / "steps.txt"
    monkeypatch.setenv("STEPS_FILE", str(steps))
    sp.write("params.yaml", "steps: 4\nlr: 1\n")
    sp.write("train.py", PYTHON)
    sp.write("sweeps.yaml", spec(f"{sys.executable} train.py", "model.txt"))
    sp.write(".gitignore", "__pycache__/\n")
    sp.commit()
    return steps


def _ran(steps: Path) -> list[int]:
    got = [int(line.split()[1]) for line in steps.read_text().splitlines()]
    steps.unlink()
    return got


@pytest.mark.parametrize("how", [["--reset"], ["-f"]])
def test_reset_and_force_start_a_finished_run_over_in_the_workspace(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: list[str]
) -> None:
    """Issue 22, item 3: the checkpoint out in the workspace made the program run 0 steps,
    and that empty run replaced the good record."""
    sp = sweepproject
    steps = _steps_project(sp, tmp_path, monkeypatch)
    res = sp.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert _ran(steps) == [1, 2, 3, 4]
    (first,) = sp.records()
    # Run as it is, it is the recorded experiment: nothing runs (no empty continuation).
    res = sp.run("run")
    assert res.ret == 0 and "recorded already" in res.stdout
    assert not steps.exists()
    res = sp.run("run", *how)
    assert res.ret == 0, res.stdout + res.stderr
    assert "resuming" not in res.stdout
    assert _ran(steps) == [1, 2, 3, 4]  # started over: every step ran again
    (now,) = sp.records()
    assert (now["name"], now["checkpoints"]) == (first["name"], 4)
    assert now["metrics"] == {"m.json": {"step": 4}}
    # The earlier record is replaced, not lost.
    everything = sp.records("--all-records")
    assert {r["commit"] for r in everything} == {first["commit"], now["commit"]}


def test_a_resumed_checkpoint_run_never_reaches_the_run_cache(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State the workspace holds (here: a model at step 3) is a start the stage key does not
    name: that run is not cached, and a queued run of the same params starts from scratch."""
    sp = sweepproject
    steps = _steps_project(sp, tmp_path, monkeypatch)
    sp.write("model.txt", "3")
    res = sp.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert _ran(steps) == [4]
    res = sp.run("-S", "steps=4", "--run", "--force")
    assert res.ret == 0, res.stdout + res.stderr
    assert _ran(steps) == [1, 2, 3, 4]
    (queued,) = [r for r in sp.records() if r["id"] == "run[steps=4]"]
    log = sp.run("queue", "logs", queued["name"]).stdout
    assert "restored from the run-cache" not in log


def test_a_resumed_run_with_nothing_left_keeps_the_last_checkpoints_metrics(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sp = sweepproject
    steps = _steps_project(sp, tmp_path, monkeypatch)
    assert sp.run("--run").ret == 0
    assert _ran(steps) == [1, 2, 3, 4]
    res = sp.run("--run", "--force")  # resumes at step 4: the program has nothing to do
    assert res.ret == 0, res.stdout + res.stderr
    assert not steps.exists()
    (rec,) = sp.records()
    assert rec["metrics"] == {"m.json": {"step": 4}}


def test_a_checkpoint_names_its_experiment_instead_of_repeating_its_params(
    sweepproject: SweepProject,
) -> None:
    """Each fact once: a 14 KB params file is in the result's message, not in each of
    its checkpoints' (they were 17 KB each); a checkpoint still diffs and shows with its
    experiment's params."""
    big = "".join(f"key_{i:04d}: {'v' * 20}\n" for i in range(500))
    sweepproject.write("params.yaml", "steps: 3\n" + big)
    sweepproject.write("train.sh", BASH)
    sweepproject.write("sweeps.yaml", spec("bash train.sh", "state.txt"))
    sweepproject.commit()
    assert sweepproject.run("--run", "-S", "steps=3").ret == 0
    (rec,) = sweepproject.records()
    commits = chain(sweepproject, rec["commit"])
    result = sweepproject.git("log", "-1", "--format=%B", commits[0])
    assert len(big) < len(result) < len(big) * 1.6  # the params once, in the result
    for sha in commits[1:4]:
        message = sweepproject.git("log", "-1", "--format=%B", sha)
        assert "sweeprun-record:" in message and len(message) < 1000, len(message)
        data = json.loads(message.split("sweeprun-record:", 1)[1])
        assert data["key"] == rec["key"] and data["queue_commit"]
    name = rec["name"]
    res = sweepproject.run("diff", f"{name}@1", name, "--json")
    assert res.ret == 0, res.stderr
    assert [r["key"] for r in json.loads(res.stdout)] == ["m.json:step"]  # params alike
    res = sweepproject.run("diff", f"{name}@1", name, "--json", "--all")
    rows = {(r["section"], r["key"]): r for r in json.loads(res.stdout)}
    # Its experiment's params, on the checkpoint's side too (its message has none).
    assert rows["params", "params.yaml:key_0499"][f"{name}@1"] == "v" * 20
    assert rows["params", "params.yaml:key_0499"][name] == "v" * 20
    assert rows["metrics", "m.json:step"][f"{name}@1"] == 1
    assert rows["metrics", "m.json:step"][name] == 3
    shown = sweepproject.run("show", "--json", "--all-checkpoints")
    rows = {r["name"]: r for r in json.loads(shown.stdout)}
    assert rows[f"{rec['name']}@1"]["params"]["params.yaml"]["key_0499"] == "v" * 20
