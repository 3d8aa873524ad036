"""Stopping a run, and killing a job's whole process tree: real signals, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

# A job that starts a grandchild in a session of its own (it leaves the job's process
# group, as a daemon or a launcher does); the grandchild records its pid, then lives on.
ESCAPE = """
import os, subprocess, sys, time
LIVE = "import os, time; open({pids!r}, 'a').write(f'{{os.getpid()}}\\\\n'); time.sleep(300)"
subprocess.Popen([sys.executable, "-c", LIVE], start_new_session=True)
time.sleep({sleep})
"""


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def escaped(pids: Path) -> list[int]:
    return [int(x) for x in pids.read_text().split()] if pids.exists() else []


def _escaping_project(p: SweepProject, tmp_path: Path, sleep: float = 300) -> Path:
    pids = tmp_path / "escaped.pids"
    p.write("params.yaml", "i: 0\n")
    p.write("job.py", ESCAPE.format(pids=str(pids), sleep=sleep))
    p.write(
        "sweeps.yaml",
        f"cmd: {sys.executable} job.py\nsweeps:\n  g:\n    matrix: {{i: [1, 2]}}\n",
    )
    p.commit()
    return pids


def test_a_descendant_that_left_the_group_dies_on_timeout(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    pids = _escaping_project(sweepproject, tmp_path)
    res = sweepproject.run("sweeps.yaml", "-k", "i=1", "--run", "--timeout", "2")
    assert res.ret == 1, res.stdout
    (pid,) = escaped(pids)
    wait_for("the escaped grandchild to be killed", lambda: not alive(pid), timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_the_run_and_every_tree(
    sweepproject: SweepProject, tmp_path: Path, sig: int
) -> None:
    """SIGTERM (docker stop, a CI cancel) and SIGHUP mean what Ctrl+C means."""
    p = sweepproject
    pids = _escaping_project(p, tmp_path)
    assert p.run("sweeps.yaml").ret == 0
    runner = p.popen("--run-all", "-j", "2")
    wait_for("both jobs to start", lambda: len(escaped(pids)) == 2)
    runner.send_signal(sig)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 2, out + err
    assert [r["state"] for r in p.records()] == ["queued", "queued"]
    assert not p.refs("refs/sweeprun/running/")
    for pid in escaped(pids):
        wait_for(f"{pid} to be killed", lambda pid=pid: not alive(pid), timeout=10)


def test_a_killed_runner_leaves_no_job_running(sweepproject: SweepProject, tmp_path: Path) -> None:
    """kill -9: nothing is there to stop the jobs but the runner's watchdog."""
    p = sweepproject
    pids = _escaping_project(p, tmp_path)
    assert p.run("sweeps.yaml").ret == 0
    runner = p.popen("--run-all", "-j", "2")
    wait_for("both jobs to start", lambda: len(escaped(pids)) == 2)
    pool = p.path / ".git" / "sweeprun" / "ws"
    leaders = [int(f.read_text().split()[1]) for f in pool.glob("w*.pid") if f.read_text()]
    assert len(leaders) == 2
    runner.kill()
    runner.communicate()
    for pid in [*escaped(pids), *leaders]:
        wait_for(f"{pid} to be killed", lambda pid=pid: not alive(pid), timeout=10)


def test_queue_kill_reaches_the_tree_and_escalates(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """A job that ignores SIGINT and SIGTERM is killed after --grace; its escaped
    grandchild too."""
    p = sweepproject
    started = tmp_path / "started"
    pids = tmp_path / "escaped.pids"
    p.write("params.yaml", "i: 0\n")
    p.write(
        "stubborn.py",
        ESCAPE.format(pids=str(pids), sleep=0)
        + "import signal, pathlib\n"
        + "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        + "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        + f"pathlib.Path({str(started)!r}).touch()\n"
        + "time.sleep(300)\n",
    )
    p.write("sweeps.yaml", f"cmd: {sys.executable} stubborn.py\n")
    p.commit()
    assert p.run("sweeps.yaml", "-n", "stubborn").ret == 0
    runner = p.popen("--run-all")
    wait_for("the job to start", lambda: started.exists() and len(escaped(pids)) == 1)
    res = p.run("queue", "kill", "stubborn", "--grace", "1")
    assert res.ret == 0, res.stderr
    assert "sent SIGINT to stubborn" in res.stdout
    assert "stubborn still ran after 1 s: sent SIGKILL" in res.stdout
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 1, out + err
    (pid,) = escaped(pids)
    wait_for("the escaped grandchild to be killed", lambda: not alive(pid), timeout=10)
    res = p.run("queue", "kill", "stubborn", "--grace", "nan")
    assert res.ret == 4


def test_jobs_get_default_signal_dispositions(sweepproject: SweepProject, tmp_path: Path) -> None:
    """A runner started with SIGINT ignored (``cmd &`` in a script) does not pass that on:
    ``queue kill`` (SIGINT) stops its job."""
    p = sweepproject
    pidfile = tmp_path / "job.pid"
    p.write("params.yaml", "i: 0\n")
    p.write(
        "job.py",
        f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)\n",
    )
    p.write("sweeps.yaml", f"cmd: {sys.executable} job.py\n")
    p.commit()
    assert p.run("sweeps.yaml", "-n", "bg").ret == 0
    runner = subprocess.Popen(
        [sys.executable, "-m", "sweeprun", "--run-all"],
        cwd=p.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    wait_for("the job to start", lambda: pidfile.exists() and pidfile.read_text() != "")
    pid = int(pidfile.read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(ln for ln in status.splitlines() if ln.startswith("SigIgn:")).split()[1], 16)
    assert not ignored & (1 << (signal.SIGINT - 1)), "the job inherited 'ignore SIGINT'"
    res = p.run("queue", "kill", "bg", "--grace", "30")
    assert res.ret == 0
    assert "SIGKILL" not in res.stdout  # SIGINT was enough
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 1, out + err
    assert os.path.exists(f"/proc/{runner.pid}") is False


def test_an_experiment_that_finishes_during_the_stop_is_recorded_not_requeued(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Exit status decides: 0 after the signal is a finished experiment (recorded), a
    non-zero one was cut short (back to the queue)."""
    p = sweepproject
    started = tmp_path / "started"
    started.mkdir()
    p.write("params.yaml", "i: 0\n")
    p.write(
        "job.py",
        f"""
        import json, pathlib, signal, sys, time, yaml
        i = yaml.safe_load(open("params.yaml"))["i"]
        def finish(*_):
            json.dump({{"i": i}}, open("m.json", "w"))
            sys.exit(0 if i == 1 else 3)  # i=1 completes its work on SIGINT; i=2 cannot
        signal.signal(signal.SIGINT, finish)
        pathlib.Path({str(started)!r}, str(i)).touch()
        time.sleep(300)
        """,
    )
    p.write(
        "sweeps.yaml",
        f"cmd: {sys.executable} job.py\nmetrics: [m.json]\n"
        "sweeps:\n  g:\n    matrix: {i: [1, 2]}\n",
    )
    p.commit()
    assert p.run("sweeps.yaml").ret == 0
    runner = p.popen("--run-all", "-j", "2")
    wait_for("both jobs to start", lambda: len(list(started.iterdir())) == 2)
    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 2, out + err
    states = {r["params"]["params.yaml"]["i"]: r["state"] for r in p.records()}
    assert states == {1: "success", 2: "queued"}


# A shell command with a background child: sh starts it with SIGINT ignored, so Ctrl+C
# (or SIGTERM, SIGHUP: the runner sends SIGINT to its jobs) ends the command, not it.
BACKGROUND = """
import os, sys, time
open(sys.argv[1], "a").write(f"{os.getpid()}\\n")
time.sleep(300)
"""


def test_a_stop_kills_a_background_child_that_ignores_sigint(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Issue 24: `cmd: sleep 600 & python train.py` — the background child survived Ctrl+C,
    SIGTERM and SIGHUP, and the runner exited in 0.3 s without the SIGKILL it promises."""
    p = sweepproject
    pids = tmp_path / "bg.pids"
    p.write("bg.py", BACKGROUND)
    p.write("params.yaml", "i: 0\n")
    p.write(
        "sweeps.yaml",
        f"cmd: {sys.executable} bg.py {pids} & {sys.executable} bg.py {pids}\n"
        "sweeps:\n  g:\n    matrix: {i: [1, 2]}\n",
    )
    p.commit()
    assert p.run("sweeps.yaml").ret == 0
    p.monkeypatch.setenv("SWEEPRUN_STOP_GRACE", "2")
    runner = p.popen("--run-all", "-j", "2")
    wait_for("both jobs and their background children", lambda: len(escaped(pids)) == 4)
    start = time.monotonic()
    runner.send_signal(signal.SIGTERM)  # as Ctrl+C and SIGHUP: one handler
    out, err = runner.communicate(timeout=60)
    took = time.monotonic() - start
    assert runner.returncode == 2, out + err
    # The runner waited out the grace period for what ignored SIGINT, then killed it.
    assert took >= 2, took
    assert "killed what was left of 2 stopped command(s) after 2 s" in err
    assert [pid for pid in escaped(pids) if alive(pid)] == []
    assert [r["state"] for r in p.records()] == ["queued", "queued"]


# A command that leaves a daemon behind the way servers detach: a child in a session of its
# own with an empty environment (no job token), whose parent then exits. On Linux it becomes
# the supervisor's child (a subreaper), which kills it when its runner dies or is stopped.
DAEMON = """
import os, subprocess, sys, time
LIVE = "import os, time; open({pids!r}, 'a').write(f'{{os.getpid()}}\\\\n'); time.sleep(300)"
if len(sys.argv) > 1:  # the middle process: start the daemon, then exit at once
    subprocess.Popen([sys.executable, "-c", LIVE], start_new_session=True, env={{}})
    sys.exit(0)
subprocess.run([sys.executable, __file__, "fork"], check=True)
time.sleep({sleep})
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a subreaper is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_daemon_without_the_token_dies_with_a_killed_or_stopped_runner(
    sweepproject: SweepProject, tmp_path: Path, sig: int
) -> None:
    """`setsid env -i …` escaped the process group and the token: it outlived kill -9 and
    every stop."""
    p = sweepproject
    pids = tmp_path / "daemons.pids"
    p.write("params.yaml", "i: 0\n")
    p.write("job.py", DAEMON.format(pids=str(pids), sleep=300))
    p.write("sweeps.yaml", f"cmd: {sys.executable} job.py\nsweeps:\n  g:\n    matrix: {{i: [1]}}\n")
    p.commit()
    assert p.run("sweeps.yaml").ret == 0
    runner = p.popen("--run-all")
    wait_for("the daemon to start", lambda: len(escaped(pids)) == 1)
    (daemon,) = escaped(pids)
    assert b"SWEEPRUN_JOB" not in Path(f"/proc/{daemon}/environ").read_bytes()
    runner.send_signal(sig)
    runner.communicate(timeout=60)
    wait_for(f"{daemon} to be killed", lambda: not alive(daemon), timeout=10)


def test_a_run_that_ends_normally_leaves_a_daemon_its_command_started(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """A command may start a server on purpose: only a dying or stopped run kills it."""
    p = sweepproject
    pids = tmp_path / "daemons.pids"
    p.write("params.yaml", "i: 0\n")
    p.write("job.py", DAEMON.format(pids=str(pids), sleep=0))
    p.write("sweeps.yaml", f"cmd: {sys.executable} job.py\nsweeps:\n  g:\n    matrix: {{i: [1]}}\n")
    p.commit()
    res = p.run_subprocess("sweeps.yaml", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    (daemon,) = escaped(pids)
    try:
        time.sleep(0.5)
        assert alive(daemon)
    finally:
        os.kill(daemon, signal.SIGKILL)


def test_a_stop_token_keeps_the_first_reason_and_an_interrupt_overrides() -> None:
    from sweeprun.system.stopping import StopToken

    token = StopToken()
    assert not token and token.reason is None
    token.stop("stopping after 1 failures")
    token.stop("disk full: stopped dispatching")
    assert token and token.reason == "stopping after 1 failures"
    token.stop("interrupted", force=True)
    token.stop("queue stop: running experiments finish")  # (from a handler, say)
    assert token.reason == "interrupted"
    token.clear()
    assert token.reason is None
    token.reason = "set by a plugin"  # Session.shouldstop's setter
    assert token.reason == "set by a plugin"
