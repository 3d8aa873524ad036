"""A process is signalled only when it is verifiably sweeprun's; a runner lives while it
holds its journal's lock, whatever has become of its pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeprun.system.procs import ProcessRef, start_time
from sweeprun.testing import SweepProject

JOB = """
import json, os, pathlib, sys, time
if os.path.exists({go!r}):
    json.dump({{"ok": 1}}, open("metrics.json", "w"))
    sys.exit(0)
time.sleep(300)
"""


def _wait_for(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _killed_while_running(p: SweepProject, go: Path) -> Path:
    """Queue one job, start a runner, kill -9 it while the job runs; the slot's pid file."""
    p.write("job.py", JOB.format(go=str(go)))
    p.write("sweeps.yaml", "cmd: python3 job.py\nmetrics: [metrics.json]\n")
    p.commit()
    assert p.run("sweeps.yaml").ret == 0
    runner = p.popen("--run-all")
    pidfile = p.path / ".git" / "sweeprun" / "ws" / "w0.pid"
    _wait_for("the job to start", lambda: pidfile.is_file() and pidfile.read_text().strip())
    runner.kill()  # kill -9: the pid file and the lease journal stay behind
    runner.communicate()
    return pidfile


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process group: what a reused pid names."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_stale_pid_file_never_signals_a_stranger(
    sweepproject: SweepProject, tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    p = sweepproject
    go = tmp_path / "go"
    pidfile = _killed_while_running(p, go)
    key, pgid, *rest = pidfile.read_text().split()
    with contextlib.suppress(ProcessLookupError):  # its job exits (if not already gone)
        os.killpg(int(pgid), signal.SIGKILL)
    # Pids wrap: the job's pid now names a stranger's process group.
    pidfile.write_text(" ".join([key, str(stranger.pid), *rest]) + "\n")

    res = p.run("gc")
    assert res.ret == 0, res.stdout + res.stderr
    assert stranger.poll() is None, "gc signalled a stranger"
    assert list(p.refs("refs/sweeprun/queue/")) == [f"refs/sweeprun/queue/{key}"]
    go.touch()
    res = p.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=1)
    assert stranger.poll() is None
    assert p.records()[0]["state"] == "success"


def test_a_running_experiment_of_a_dead_runner_whose_pid_lives_on(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Without gc: ``--run-all`` itself takes it back (it used to stay running forever)."""
    p = sweepproject
    go = tmp_path / "go"
    _killed_while_running(p, go)
    (journal,) = (p.path / ".git" / "sweeprun" / "leases").glob("*.lease")
    head, *claims = journal.read_text().splitlines()
    # The runner's pid is reused by a live process (this test, say).
    journal.write_text("\n".join([json.dumps({**json.loads(head), "pid": os.getpid()}), *claims]))
    go.touch()
    res = p.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=1)


def test_process_refs_check_the_start_time(stranger: subprocess.Popen[bytes]) -> None:
    me = ProcessRef.of(stranger.pid)
    assert me.start == start_time(stranger.pid) and me.is_running()
    assert ProcessRef.parse(str(me)) == me
    impostor = ProcessRef(stranger.pid, "1")  # same pid, another process
    assert not impostor.is_running()
    assert impostor.signal_group(signal.SIGKILL) is False
    legacy = ProcessRef.parse(f"{stranger.pid}")  # a pid file without a start time
    assert legacy is not None and legacy.signal_group(signal.SIGKILL) is False
    assert stranger.poll() is None
    assert me.signal_group(signal.SIGTERM) is True
    assert stranger.wait(timeout=30) == -signal.SIGTERM


def test_start_time_handles_odd_command_names(tmp_path: Path) -> None:
    odd = tmp_path / "a) b ("
    odd.symlink_to(sys.executable)
    proc = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        assert start_time(proc.pid) == start_time(proc.pid) is not None
    finally:
        proc.kill()
        proc.wait()
