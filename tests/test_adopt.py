"""A runner killed after its job's command finished: the next runner adopts the result
and runs nothing again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

# Holds the runner between "the command finished" and "its result is published", when
# HOLD_AT names a file: the test kills the runner there.
SWEEPCONF = """
import os, pathlib, time
import sweeprun

@sweeprun.hookimpl(tryfirst=True)
def sweeprun_store_result(session, report):
    hold = os.environ.get("HOLD_AT")
    if hold:
        pathlib.Path(hold).touch()
        time.sleep(300)
"""
JOB = """
import json, os, sys
with open({done!r}, "a") as f:
    f.write("completed\\n")
json.dump({{"ok": 1}}, open("m.json", "w"))
sys.exit(int(os.environ.get("RC", "0")))
"""


def _wait_for(runner: subprocess.Popen[str], path: Path) -> None:
    """Until ``path`` exists, while the runner lives (a minute at most)."""
    deadline = time.monotonic() + 60
    while not path.exists():
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.02)


def _waiting_job(p: SweepProject, tmp: Path) -> tuple[Path, Path, Path]:
    """One queued experiment (``once``) whose command touches ``started``, waits for
    ``go``, then writes its metric and appends to ``done`` as its last act."""
    done, go, started = tmp / "done.txt", tmp / "go", tmp / "started"
    p.write(
        "job.py",
        "import json, pathlib, time\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        f"while not pathlib.Path({str(go)!r}).exists():\n    time.sleep(0.01)\n"
        "json.dump({'ok': 1}, open('m.json', 'w'))\n"
        f"open({str(done)!r}, 'a').write('completed\\n')\n",
    )
    p.write("sweeps.yaml", f"cmd: {sys.executable} job.py\nmetrics: [m.json]\n")
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    assert p.run("sweeps.yaml", "-n", "once").ret == 0
    return done, go, started


@pytest.mark.parametrize("made", ["result-commit", "command-only"])
def test_a_result_finished_under_a_killed_runner_is_adopted_not_rerun(
    sweepproject: SweepProject, tmp_path: Path, made: str
) -> None:
    """``result-commit``: the runner died after its job made the result commit (noted in
    the journal); ``command-only``: before (the note is taken out of the journal, as if it
    had died a moment earlier): then the result is made from the slot the job left."""
    p = sweepproject
    done = tmp_path / "done.txt"
    hold = tmp_path / "holding"
    p.write("sweepconf.py", SWEEPCONF)
    p.write("job.py", JOB.format(done=str(done)))
    p.write(
        "sweeps.yaml",
        f"stages:\n  prep:\n    cmd: echo prep\n  main:\n    cmd: {sys.executable} job.py\n"
        "    metrics: [m.json]\n",
    )
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    assert p.run("sweeps.yaml", "-n", "one").ret == 0
    runner = p.popen("--run-all", env=dict(os.environ, HOLD_AT=str(hold)))
    _wait_for(runner, hold)
    runner.kill()  # kill -9 between the command's exit and the result's ref
    runner.communicate()
    (journal,) = (p.path / ".git" / "sweeprun" / "leases").glob("*.lease")
    lines = journal.read_text().splitlines()
    assert any(" done " in ln for ln in lines)
    if made == "command-only":
        journal.write_text("".join(ln + "\n" for ln in lines if " done " not in ln))
    assert [r["state"] for r in p.records()] == ["running"]
    res = p.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    assert "adopted one: its command had finished under a runner that died" in res.stdout
    assert done.read_text().splitlines() == ["completed"]  # ran to completion once
    (rec,) = p.records()
    assert rec["state"] == "success" and rec["metrics"] == {"m.json": {"ok": 1}}
    assert not p.refs("refs/sweeprun/running/") and not p.refs("refs/sweeprun/queue/")
    log = p.run("queue", "logs", "one").stdout
    assert "adopted" in log


def test_a_command_killed_with_its_runner_runs_again(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """No adoption without the outcome: the command was still running, so it never
    finished; it runs (once) under the next runner."""
    p = sweepproject
    done = tmp_path / "done.txt"
    started = tmp_path / "started"
    p.write(
        "job.py",
        f"import pathlib, time, json\npathlib.Path({str(started)!r}).touch()\n"
        f"time.sleep(float(open({str(tmp_path / 'sleep')!r}).read()))\n"
        f"open({str(done)!r}, 'a').write('completed\\n')\n"
        "json.dump({'ok': 1}, open('m.json', 'w'))\n",
    )
    (tmp_path / "sleep").write_text("300")
    p.write("sweeps.yaml", f"cmd: {sys.executable} job.py\nmetrics: [m.json]\n")
    p.commit()
    assert p.run("sweeps.yaml").ret == 0
    runner = p.popen("--run-all")
    _wait_for(runner, started)
    runner.kill()
    runner.communicate()
    (tmp_path / "sleep").write_text("0")
    res = p.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    assert "adopted" not in res.stdout
    assert done.read_text().splitlines() == ["completed"]


def test_a_command_that_ends_while_its_runner_cannot_record_it_is_adopted(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Issue 24, item 1: the exit is recorded by the command's parent, the supervisor, not
    by the runner. Here the runner is frozen (SIGSTOP) before the command's last act and
    killed after it: a runner that recorded exits itself never could, and the next one ran
    the command to completion a second time."""
    p = sweepproject
    done, go, started = _waiting_job(p, tmp_path)
    runner = p.popen("--run-all")
    _wait_for(runner, started)
    runner.send_signal(signal.SIGSTOP)  # the runner can record nothing from now on
    go.touch()
    pidfile = p.path / ".git" / "sweeprun" / "ws" / "w0.pid"
    deadline = time.monotonic() + 10
    while " exit " not in pidfile.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert done.read_text() == "completed\n"
    runner.kill()  # kill -9, the command's exit unseen by the runner
    runner.communicate()
    res = p.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    assert "adopted once: its command had finished under a runner that died" in res.stdout
    assert done.read_text().splitlines() == ["completed"]  # ran to completion once
    (rec,) = p.records()
    assert rec["state"] == "success" and rec["metrics"] == {"m.json": {"ok": 1}}


def test_the_log_keeps_each_command_output_in_order(sweepproject: SweepProject) -> None:
    """Commands write their output through the supervisor's own handle on the log: what
    sweeprun writes after a command must come after it, not over it."""
    p = sweepproject
    p.write(
        "sweeps.yaml",
        "stages:\n  a:\n    cmd: echo first-command-output-that-is-long\n"
        "  b:\n    cmd: echo second\n    deps: []\n",
    )
    p.commit()
    assert p.run("sweeps.yaml", "-n", "two", "--run").ret == 0
    log = p.run("queue", "logs", "two").stdout
    lines = [ln for ln in log.splitlines() if ln]
    assert lines == [
        "+ [a] echo first-command-output-that-is-long",
        "first-command-output-that-is-long",
        "+ [b] echo second",
        "second",
    ], log


def _supervisor_of(runner: subprocess.Popen[str]) -> int:
    """The pid of the runner's supervisor (its ``python -S -c`` child)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{runner.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if argv[1:3] == [b"-S", b"-c"]:
                        return int(pid)
        time.sleep(0.02)
    raise AssertionError("no supervisor")


def test_a_dead_runners_claims_wait_for_its_supervisor(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """The runner is killed while its supervisor has not yet written the exit of a command
    that finished (frozen here; in CI's two-runner fault case it was merely slow): another
    runner must not take the claim until the supervisor has written it and exited — a
    ``--run-all`` waits for it, then adopts the result. Before, the claim was free the
    moment the runner died, and the command ran a second time."""
    p = sweepproject
    done, go, started = _waiting_job(p, tmp_path)
    runner = p.popen("--run-all")
    _wait_for(runner, started)
    supervisor = _supervisor_of(runner)
    os.kill(supervisor, signal.SIGSTOP)
    try:
        runner.kill()
        runner.communicate()
        go.touch()
        deadline = time.monotonic() + 10
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert done.read_text() == "completed\n"
        time.sleep(0.2)  # the command has exited; its exit is not written yet
        # The next run waits for the supervisor rather than take the claim now (or find
        # it still claimed and run nothing).
        rerun = p.popen("--run-all")
        time.sleep(1.0)
        assert rerun.poll() is None, rerun.communicate()
        assert done.read_text() == "completed\n"
        assert [r["state"] for r in p.records()] == ["running"]
    finally:
        os.kill(supervisor, signal.SIGCONT)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, out + err
    assert "adopted once" in out
    assert done.read_text().splitlines() == ["completed"]
    (rec,) = p.records()
    assert rec["state"] == "success"


def test_a_supervisor_ends_with_its_runner_even_when_a_fork_keeps_the_pipe(
    tmp_path: Path,
) -> None:
    """The supervisor holds the runner's journal lock, so it must not outlive it: a child
    the runner forked without exec that closed the journal (a helper that closes what it
    does not use) still keeps the runner's end of the pipe open, so the supervisor also
    watches who its parent is. (A fork that keeps the journal open keeps the lock: that
    one is part of the runner, as before.)"""
    journal = tmp_path / "journal"
    script = (
        "import os, sys, time, fcntl\n"
        "from sweeprun.system.supervisor import Supervisor\n"
        f"fd = os.open({str(journal)!r}, os.O_WRONLY | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "Supervisor(fd)\n"
        "if os.fork() == 0:\n    os.close(fd)\n    time.sleep(60)\n    os._exit(0)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert runner.stdout is not None and runner.stdout.readline() == "ready\n"
        from sweeprun.store.leases import journal_locked

        assert journal_locked(journal)
        runner.kill()
        runner.wait()
        deadline = time.monotonic() + 10
        while journal_locked(journal) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not journal_locked(journal), "the supervisor outlived its runner"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
        runner.communicate()


def test_a_slot_a_dead_runner_left_is_not_taken_before_its_result_is_adopted(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Two runners: A's command finished in slot w0 and A died before recording it; B,
    still running, needs a slot for its next job. The slot's lock died with A, but what A
    left there (the command's exit, its outputs) is how the next runner adopts the
    result: B must take another slot. Before, B cleaned w0 for its own job and the
    rerun ran A's command a second time."""
    p = sweepproject
    done = tmp_path / "done.txt"
    p.write("params.yaml", "n: x\n")
    p.write(
        "job.py",
        "import json, pathlib, time, yaml\n"
        "n = yaml.safe_load(open('params.yaml'))['n']\n"
        f"tmp = pathlib.Path({str(tmp_path)!r})\n"
        "(tmp / f'started-{n}').touch()\n"
        "while not (tmp / f'go-{n}').exists():\n    time.sleep(0.01)\n"
        "json.dump({'ok': 1}, open('m.json', 'w'))\n"
        f"open({str(done)!r}, 'a').write(n + '\\n')\n",
    )
    p.write(
        "sweeps.yaml",
        f"cmd: {sys.executable} job.py\nmetrics: [m.json]\nsweeps:\n"
        + "".join(f"  {n}:\n    matrix: {{n: [{n}]}}\n" for n in "xyz"),
    )
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    for n in "xyz":
        assert p.run(f"sweeps.yaml::{n}").ret == 0
    (tmp_path / "go-z").touch()
    a = p.popen("--run-all", "-j", "1")
    _wait_for(a, tmp_path / "started-x")
    b = p.popen("--run-all", "-j", "1")
    _wait_for(b, tmp_path / "started-y")
    a.send_signal(signal.SIGSTOP)  # A records nothing from now on
    (tmp_path / "go-x").touch()
    pidfile = p.path / ".git" / "sweeprun" / "ws" / "w0.pid"
    deadline = time.monotonic() + 10
    while " exit " not in pidfile.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    a.kill()
    a.communicate()
    (tmp_path / "go-y").touch()
    out, err = b.communicate(timeout=120)
    assert b.returncode == 0, out + err
    res = p.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    assert "adopted" in res.stdout, res.stdout
    assert sorted(done.read_text().split()) == ["x", "y", "z"]  # each ran to completion once
    assert sorted(r["state"] for r in p.records()) == ["success"] * 3
