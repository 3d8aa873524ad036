"""Issue 25, item 2: the background queue — ``queue start | stop | status`` and workers
that outlive their terminal, pick up work queued later and share the queue safely."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

JOB = """
import json, os, pathlib, time, yaml
i = yaml.safe_load(open("params.yaml"))["i"]
tmp = pathlib.Path({tmp!r})
(tmp / f"started-{{i}}").touch()
while (tmp / f"hold-{{i}}").exists():
    time.sleep(0.02)
time.sleep(float(os.environ.get("JOB_SLEEP", "0")))
with open(tmp / "done.txt", "a") as f:
    f.write(f"{{i}}\\n")
json.dump({{"i": i}}, open("m.json", "w"))
"""


@pytest.fixture
def project(sweepproject: SweepProject, tmp_path: Path) -> Iterator[SweepProject]:
    """A project whose experiment ``i`` waits while ``hold-<i>`` exists; every worker it
    started is stopped (killed) at the end."""
    p = sweepproject
    p.write("params.yaml", "i: 0\n")
    p.write("job.py", JOB.format(tmp=str(tmp_path)))
    p.write("sweeps.yaml", f"cmd: {sys.executable} job.py\nmetrics: [m.json]\n")
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    yield p
    with contextlib.suppress(Exception):
        p.run_subprocess("queue", "stop", "--kill", timeout=60)
    for info in (p.path / ".git" / "sweeprun" / "workers").glob("*.json"):
        with contextlib.suppress(Exception):
            os.kill(int(info.read_text().split('"pid": ')[1].split(",")[0]), signal.SIGKILL)


def queue(p: SweepProject, *points: int) -> None:
    """Queue experiments ``i=N`` (in this order)."""
    for i in points:
        res = p.run("sweeps.yaml", "-S", f"i={i}")
        assert res.ret == 0, res.stdout + res.stderr


def until(check: object, what: str, timeout: float = 60) -> None:
    """Wait until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def done(tmp: Path) -> list[str]:
    """The experiments that ran to completion, once per completion."""
    path = tmp / "done.txt"
    return sorted(path.read_text().split()) if path.exists() else []


def workers(p: SweepProject) -> list[Path]:
    """The workers' registry files."""
    return sorted((p.path / ".git" / "sweeprun" / "workers").glob("*.json"))


def test_a_worker_started_from_a_shell_that_exits_runs_work_queued_later(
    project: SweepProject, tmp_path: Path
) -> None:
    p = project
    queue(p, 1)
    # The shell that starts it exits at once (as a terminal closed after the command).
    shell = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m sweeprun queue start -j 2; echo shell-ends"],
        cwd=p.path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert "started a worker: pid" in shell.stdout and "shell-ends" in shell.stdout
    until(lambda: done(tmp_path) == ["1"], "the experiment queued before")
    queue(p, 2, 3)  # queued after the worker started, its shell long gone
    until(lambda: done(tmp_path) == ["1", "2", "3"], "experiments queued later")
    until(lambda: sorted(r["state"] for r in p.records()) == ["success"] * 3, "recorded")
    status = p.run("queue", "status")
    assert "worker pid" in status.stdout and "-j 2" in status.stdout, status.stdout
    until(lambda: "done 3" in p.run("queue", "status").stdout, "the worker's count")
    (info,) = workers(p)
    stopped = p.run_subprocess("queue", "stop", timeout=60)
    assert stopped.ret == 0 and "1 worker stopped" in stopped.stdout, stopped.stdout
    assert not info.exists() and "worker pid" not in p.run("queue", "status").stdout
    assert done(tmp_path) == ["1", "2", "3"]


def test_queue_start_twice_with_the_same_options_is_one_worker(project: SweepProject) -> None:
    p = project
    first = p.run_subprocess("queue", "start", "-j", "2")
    second = p.run_subprocess("queue", "start", "-j", "2")
    assert first.ret == 0 and second.ret == 0, first.stdout + second.stdout + second.stderr
    assert "runs already" in second.stdout, second.stdout
    assert len(workers(p)) == 1
    other = p.run_subprocess("queue", "start", "-j", "1")
    assert "started a worker" in other.stdout, other.stdout + other.stderr
    assert len(workers(p)) == 2
    stopped = p.run_subprocess("queue", "stop", timeout=60)
    assert "2 workers stopped" in stopped.stdout, stopped.stdout
    assert not workers(p)


def test_two_workers_and_a_foreground_run_share_one_queue(
    project: SweepProject, tmp_path: Path
) -> None:
    """Each experiment runs exactly once, whoever claims it."""
    p = project
    points = list(range(12))
    queue(p, *points)
    env = dict(os.environ, JOB_SLEEP="0.2")
    for jobs in ("1", "2"):
        res = subprocess.run(
            [sys.executable, "-m", "sweeprun", "queue", "start", "-j", jobs],
            cwd=p.path, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
    fg = p.run_subprocess("--run-all", "-j", "2", env={"JOB_SLEEP": "0.2"}, timeout=300)
    assert fg.ret in (0, 5), fg.stdout + fg.stderr
    until(lambda: len(done(tmp_path)) >= len(points), "every experiment", timeout=120)
    until(lambda: not p.refs("refs/sweeprun/running/"), "nothing running")
    assert done(tmp_path) == sorted(str(i) for i in points)  # each once
    states = [r["state"] for r in p.records()]
    assert states == ["success"] * len(points), states
    assert p.run_subprocess("queue", "stop", timeout=60).ret == 0


def test_queue_stop_lets_running_experiments_finish_and_starts_nothing_new(
    project: SweepProject, tmp_path: Path
) -> None:
    p = project
    (tmp_path / "hold-1").touch()
    queue(p, 1, 2)
    assert p.run_subprocess("queue", "start").ret == 0
    until(lambda: (tmp_path / "started-1").exists(), "experiment 1 to start")
    stopping = subprocess.Popen(
        [sys.executable, "-m", "sweeprun", "queue", "stop"],
        cwd=p.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    until(lambda: '"stopping"' in workers(p)[0].read_text(), "the worker to hear it")
    (tmp_path / "hold-1").unlink()  # experiment 1 may finish now
    out, err = stopping.communicate(timeout=60)
    assert stopping.returncode == 0 and "1 worker stopped" in out, out + err
    assert done(tmp_path) == ["1"]  # finished, and 2 never started
    states = {r["params"]["params.yaml"]["i"]: r["state"] for r in p.records()}
    assert states == {1: "success", 2: "queued"}, states
    assert not workers(p)


def test_queue_stop_kill_interrupts_and_requeues(project: SweepProject, tmp_path: Path) -> None:
    p = project
    (tmp_path / "hold-1").touch()
    queue(p, 1)
    assert p.run_subprocess("queue", "start").ret == 0
    until(lambda: (tmp_path / "started-1").exists(), "experiment 1 to start")
    res = p.run_subprocess("queue", "stop", "--kill", timeout=60)
    assert res.ret == 0 and "1 worker stopped" in res.stdout, res.stdout + res.stderr
    assert done(tmp_path) == []
    assert [r["state"] for r in p.records()] == ["queued"]  # back in the queue, as Ctrl+C
    assert not p.refs("refs/sweeprun/running/")


def test_an_idle_worker_ends_after_its_idle_timeout(project: SweepProject, tmp_path: Path) -> None:
    p = project
    queue(p, 1)
    assert p.run_subprocess("queue", "start", "--idle-timeout", "1").ret == 0
    until(lambda: done(tmp_path) == ["1"], "the experiment")
    until(lambda: not workers(p), "the worker to end by itself", timeout=30)
    log = "".join(f.read_text() for f in (p.path / ".git/sweeprun/workers").glob("*.log"))
    assert "idle for 1 s, the worker ends" in log, log


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--idle-timeout", "-1"], "--idle-timeout"),
        (["-j", "0"], "-j"),
        (["--backend", "nope"], "--backend"),
    ],
)
def test_queue_start_refuses_bad_options(project: SweepProject, args: list[str], said: str) -> None:
    res = project.run_subprocess("queue", "start", *args)
    assert res.ret == 4, res.stdout + res.stderr
    assert said in res.stderr and len(res.stderr.strip().splitlines()) <= 2, res.stderr
    assert not workers(project)


def test_idle_timeout_is_a_workers_option(project: SweepProject) -> None:
    res = project.run("--run-all", "--idle-timeout", "5")
    assert res.ret == 4 and "--idle-timeout" in res.stderr, res.stdout + res.stderr


def test_a_busy_worker_takes_new_work_in_a_free_slot(project: SweepProject, tmp_path: Path) -> None:
    """-j 2, one long experiment running: one queued meanwhile runs in the other slot at
    once, not after the long one ends."""
    p = project
    (tmp_path / "hold-1").touch()
    queue(p, 1)
    assert p.run_subprocess("queue", "start", "-j", "2").ret == 0
    until(lambda: (tmp_path / "started-1").exists(), "experiment 1 to start")
    time.sleep(1)  # the worker's batch has handed out all it had
    queue(p, 2)
    until(lambda: done(tmp_path) == ["2"], "experiment 2, beside the running 1", timeout=30)
    (tmp_path / "hold-1").unlink()
    until(lambda: done(tmp_path) == ["1", "2"], "experiment 1")
    until(lambda: "done 2" in p.run("queue", "status").stdout, "the worker's count")
    assert p.run_subprocess("queue", "stop", timeout=60).ret == 0
