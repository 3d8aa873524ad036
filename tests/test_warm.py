"""Warm Python workers: imports once per slot, and every guarantee of a command kept."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

# The expensive import (torch, sklearn…) stands in a module of its own: with ``python -m``
# the main module's own body runs for each job (it is ``__main__``), its imports do not.
HEAVY = """
import os, time
open(os.environ["IMPORTS"], "a").write(f"{os.getpid()}\\n")  # once per import
if os.environ.get("HANG_IMPORT"):
    time.sleep(300)
"""
TRAIN = """
import json, os, sys, time
from pkg import heavy
VERSION = 1

def main():
    lr = float(open("params.yaml").read().split(":")[1])
    if os.environ.get("KILL_WORKER") and lr == 1:  # kills its own warm worker, and so itself
        os.kill(os.getppid(), 9)
        time.sleep(30)
    if os.environ.get("HANG"):
        open(os.environ["HANG"], "w").write(str(os.getpid()))
        time.sleep(300)
    json.dump({"score": lr * 2, "version": VERSION, "argv": sys.argv[1:],
               "exp": os.environ["SWEEPRUN_EXP_NAME"]}, open("metrics.json", "w"))
    print("trained", lr, flush=True)
    if lr > 10:
        raise ValueError("lr too large")
    return 0

if __name__ == "__main__":
    sys.exit(main())
"""


def project(sp: SweepProject, stage: str) -> Path:
    imports = sp.base / "imports.txt"
    imports.touch()
    sp.monkeypatch.setenv("IMPORTS", str(imports))
    sp.write("pkg/__init__.py", "")
    sp.write("pkg/heavy.py", HEAVY)
    sp.write("pkg/train.py", TRAIN)
    sp.write("params.yaml", "lr: 1\n")
    lines = "".join(f"    {line}\n" for line in stage.split("\n"))
    sp.write(
        "sweeps.yaml",
        "params: params.yaml\nstages:\n  train:\n"
        + lines
        + "    deps: [pkg]\n    metrics: [metrics.json]\n"
        + "sweeps:\n  g:\n    matrix:\n      lr: [1, 2, 3, 4, 5, 6]\n",
    )
    sp.write(".gitignore", "__pycache__/\n")
    sp.commit()
    return imports


@pytest.mark.parametrize(
    "stage", ["call: pkg.train:main", "cmd: python3 -m pkg.train --flag x\nwarm: true"]
)
def test_a_warm_sweep_imports_once_per_slot(sweepproject: SweepProject, stage: str) -> None:
    imports = project(sweepproject, stage)
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=6)
    recs = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert sorted(r["metrics"]["metrics.json"]["score"] for r in recs) == [2, 4, 6, 8, 10, 12]
    assert all(r["metrics"]["metrics.json"]["exp"] == r["name"] for r in recs)
    want = ["--flag", "x"] if "cmd:" in stage else []
    assert all(r["metrics"]["metrics.json"]["argv"] == want for r in recs)
    # six experiments, two slots: the module was imported at most twice
    assert 1 <= len(imports.read_text().splitlines()) <= 2
    log = sweepproject.run("queue", "logs", recs[0]["name"]).stdout
    assert "trained" in log


def test_a_failing_warm_job_is_a_failed_experiment_with_its_traceback(
    sweepproject: SweepProject,
) -> None:
    project(sweepproject, "call: pkg.train:main")
    res = sweepproject.run("-S", "lr=20", "--run")
    assert res.ret == 1
    res.fnmatch_lines(["*stage 'train' exited with code 1*", "*ValueError: lr too large*"])


def test_new_code_starts_a_new_warm_worker(sweepproject: SweepProject) -> None:
    imports = project(sweepproject, "call: pkg.train:main")
    assert sweepproject.run("-S", "lr=1,2").ret == 0
    sweepproject.write("pkg/train.py", TRAIN.replace("VERSION = 1", "VERSION = 2"))
    sweepproject.commit("v2")
    assert sweepproject.run("-S", "lr=3,4").ret == 0
    res = sweepproject.run("--run-all", "-j", "1")  # one slot: both versions go through it
    assert res.ret == 0, res.stdout + res.stderr
    by_lr = {
        r["metrics"]["metrics.json"]["score"] / 2: r["metrics"]["metrics.json"]["version"]
        for r in sweepproject.records("--all-baselines")
        if r["name"] != "workspace"
    }
    assert by_lr == {1: 1, 2: 1, 3: 2, 4: 2}
    # The worker imported what pkg.train imports (pkg.heavy), not pkg.train itself, which
    # each job imports afresh: a new version of it needs no new worker.
    assert len(imports.read_text().splitlines()) == 1
    sweepproject.write("pkg/heavy.py", HEAVY + "# v3\n")  # what it imported changed
    sweepproject.commit("v3")
    assert sweepproject.run("-S", "lr=5").ret == 0
    assert sweepproject.run("--run-all", "-j", "1").ret == 0
    assert len(imports.read_text().splitlines()) == 2  # a new worker for the new code


def test_a_dead_warm_worker_is_replaced(sweepproject: SweepProject) -> None:
    imports = project(sweepproject, "call: pkg.train:main")
    sweepproject.monkeypatch.setenv("KILL_WORKER", "1")
    res = sweepproject.run("-S", "lr=1,2,3", "--run", "-j", "1")
    assert res.ret == 1
    states = {
        r["point"]["lr"]: r["state"] for r in sweepproject.records() if r["name"] != "workspace"
    }
    assert states == {1: "failed", 2: "success", 3: "success"}
    assert len(imports.read_text().splitlines()) == 2  # a new worker after the first died


def test_a_warm_job_times_out_and_its_process_is_gone(sweepproject: SweepProject) -> None:
    project(sweepproject, "call: pkg.train:main")
    hang = sweepproject.base / "hang.pid"
    sweepproject.monkeypatch.setenv("HANG", str(hang))
    res = sweepproject.run("-S", "lr=1", "--run", "--timeout", "2")
    assert res.ret == 1
    (rec,) = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert rec["state"] == "timeout"
    assert not _alive(int(hang.read_text()))


def test_an_import_that_hangs_is_bounded_by_the_timeout(sweepproject: SweepProject) -> None:
    imports = project(sweepproject, "call: pkg.train:main")
    sweepproject.monkeypatch.setenv("HANG_IMPORT", "1")
    started = time.monotonic()
    res = sweepproject.run("-S", "lr=1", "--run", "--timeout", "1")
    assert res.ret == 1, res.stdout + res.stderr
    (rec,) = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert rec["state"] == "timeout"
    # the warm worker's import gave up after the timeout, then the usual run timed out
    assert len(imports.read_text().splitlines()) == 2
    assert time.monotonic() - started < 60
    assert not any(_alive(int(pid)) for pid in imports.read_text().split())


def test_a_killed_runner_leaves_no_warm_job_behind(sweepproject: SweepProject) -> None:
    project(sweepproject, "call: pkg.train:main")
    hang = sweepproject.base / "hang.pid"
    env = dict(os.environ, HANG=str(hang))
    runner = sweepproject.popen("-S", "lr=1", "--run", env=env)
    deadline = time.monotonic() + 60
    while not hang.exists() or not hang.read_text():
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job = int(hang.read_text())
    os.kill(runner.pid, signal.SIGKILL)
    runner.communicate()
    deadline = time.monotonic() + 10
    while _alive(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(job), "the warm job outlived its runner"
    # the next runner runs it again (it never finished), once
    hang.unlink()
    res = sweepproject.run_subprocess("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    assert [r["state"] for r in sweepproject.records() if r["name"] != "workspace"] == ["success"]


def test_warm_needs_python_m(sweepproject: SweepProject) -> None:
    sweepproject.write("sweeps.yaml", "stages:\n  a:\n    cmd: echo hi\n    warm: true\n")
    sweepproject.commit()
    res = sweepproject.run("--collect-only")
    assert res.ret == 4
    assert "sweeps.yaml:4:11: stage 'a': a warm stage's cmd is 'python -m MODULE" in res.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_results_are_json(sweepproject: SweepProject) -> None:
    """The call: cold path (no warm pool: the loky backend) gives the same results."""
    project(sweepproject, "call: pkg.train:main")
    res = sweepproject.run("--run", "-j", "2", "--backend", "loky")
    assert res.ret == 0, res.stdout + res.stderr
    recs = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert sorted(r["metrics"]["metrics.json"]["score"] for r in recs) == [2, 4, 6, 8, 10, 12]
    assert json.loads(json.dumps(recs))  # plain data


LAZY = """
import json, os, sys

def main():
    preloaded = "lazylib" in sys.modules  # imported before this job: by the worker
    import lazylib  # what a program imports on first use (parts of sklearn, Hydra's plugins)
    json.dump({"preloaded": preloaded, "pid": os.getppid()}, open("metrics.json", "w"))

if __name__ == "__main__":
    main()
"""


def test_a_warm_worker_imports_what_its_first_job_imported_lazily(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """On a scikit-learn Hydra app, each forked job imported ~140 modules (~180 ms) that
    its parent never had: lazily imported on first use, so again in every job."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "lazylib.py").write_text("VALUE = 1\n")  # outside the workspace: an installed lib
    sp = sweepproject
    sp.monkeypatch.setenv("PYTHONPATH", str(site))
    sp.write("app.py", LAZY)
    sp.write("params.yaml", "lr: 1\n")
    sp.write(
        "sweeps.yaml",
        "params: params.yaml\ncmd: python3 -m app\nwarm: true\ndeps: [app.py]\n"
        "metrics: [metrics.json]\nsweeps:\n  g:\n    matrix:\n      lr: [1, 2, 3, 4]\n",
    )
    sp.write(".gitignore", "__pycache__/\n")
    sp.commit()
    res = sp.run("--run", "-j", "1")
    assert res.ret == 0, res.stdout + res.stderr
    recs = sorted(sp.records(), key=lambda r: r["metrics"]["metrics.json"]["preloaded"])
    got = [r["metrics"]["metrics.json"] for r in recs]
    assert len({g["pid"] for g in got}) == 1  # one warm worker ran them all
    assert [g["preloaded"] for g in got] == [False, True, True, True]


UNGUARDED = """
import json, os
open(os.environ["BODIES"], "a").write(open("params.yaml").read())  # the job, unguarded
json.dump({"ok": 1}, open("metrics.json", "w"))
"""


def test_an_unguarded_script_runs_once_per_job_not_once_more_in_its_worker(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """The worker imported the module itself, so a script without `if __name__ ==
    "__main__"` ran its body when the worker started: every point's first job twice."""
    bodies = tmp_path / "bodies.txt"
    sp = sweepproject
    sp.monkeypatch.setenv("BODIES", str(bodies))
    sp.write("job.py", UNGUARDED)
    sp.write("params.yaml", "lr: 1\n")
    sp.write(
        "sweeps.yaml",
        "params: params.yaml\ncmd: python3 -m job\nwarm: true\nmetrics: [metrics.json]\n"
        "sweeps:\n  g:\n    matrix:\n      lr: [1, 2, 3]\n",
    )
    sp.commit()
    res = sp.run("--run", "-j", "1")
    assert res.ret == 0, res.stdout + res.stderr
    assert sorted(bodies.read_text().splitlines()) == ["lr: 1", "lr: 2", "lr: 3"]
