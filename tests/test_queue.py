"""A queue that never loses work: real processes and real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

JOB = """
import json, os, sys, time, yaml
p = yaml.safe_load(open("params.yaml"))
open(os.environ["COUNT_FILE"], "a").write(f"{p['i']}\\n")
time.sleep(float(os.environ.get("JOB_SLEEP", "0")))
json.dump({"i": p["i"]}, open("m.json", "w"))
sys.exit(1 if p["i"] >= int(os.environ.get("FAIL_FROM", "99")) else 0)
"""


def project(
    sp: SweepProject, n: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleep: str = "0"
) -> Path:
    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    monkeypatch.setenv("JOB_SLEEP", sleep)
    sp.write("params.yaml", "i: 0\n")
    sp.write("job.py", JOB)
    sp.write(
        "sweeps.yaml",
        f"""
        cmd: {sys.executable} job.py
        metrics: [m.json]
        sweeps:
          g:
            matrix: {{i: {list(range(n))}}}
    """,
    )
    sp.commit()
    assert sp.run().ret == 0
    return count


def wait_for(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def commands_running(sweepproject: SweepProject) -> int:
    """How many pooled workspaces name a running command in their pid file."""
    pool = sweepproject.path / ".git" / "sweeprun" / "ws"
    words = [p.read_text().split() for p in pool.glob("w*.pid")]
    return len([w for w in words if len(w) > 1 and w[1].isdigit()])  # not "KEY exit …"


def test_killed_runner_loses_nothing(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = project(sweepproject, 12, tmp_path, monkeypatch, sleep="0.3")
    runner = sweepproject.popen("--run-all", "-j", "2")
    wait_for(lambda: count.exists() and len(count.read_text().split()) >= 4)
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    states = [r["state"] for r in sweepproject.records()]
    assert "running" in states and len(states) == 12
    monkeypatch.setenv("JOB_SLEEP", "0")
    res = sweepproject.run("--run-all", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    recs = sweepproject.records()
    assert sorted(r["metrics"]["m.json"]["i"] for r in recs) == list(range(12))
    assert {r["state"] for r in recs} == {"success"}
    assert sweepproject.run("gc").ret == 0
    state = sweepproject.path / ".git" / "sweeprun"
    assert not list((state / "leases").glob("*"))
    assert commands_running(sweepproject) == 0
    assert not [p for p in (state / "ws").iterdir() if p.is_dir()]


def test_two_runners_run_each_experiment_once(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = project(sweepproject, 20, tmp_path, monkeypatch, sleep="0.05")
    runners = [sweepproject.popen("--run-all", "-j", "2") for _ in range(2)]
    for r in runners:
        out, err = r.communicate(timeout=120)
        assert r.returncode in (0, 5), out + err
    done = sorted(int(x) for x in count.read_text().split())
    assert done == list(range(20))  # every command exactly once
    assert len(sweepproject.records()) == 20
    assert sweepproject.refs("refs/sweeprun/queue/") == {}
    assert sweepproject.refs("refs/sweeprun/running/") == {}


def test_sigint_requeues_unfinished_and_exits_2(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = project(sweepproject, 6, tmp_path, monkeypatch, sleep="30")
    runner = sweepproject.popen("--run-all", "-j", "2")
    wait_for(lambda: count.exists() and len(count.read_text().split()) >= 2)
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 2, out + err
    assert "interrupted" in out + err
    states = sorted(r["state"] for r in sweepproject.records())
    assert states == ["queued"] * 6
    assert sweepproject.refs("refs/sweeprun/running/") == {}
    sweepproject.git("fsck", "--no-dangling")


def test_timeout_kills_the_process_tree(sweepproject: SweepProject, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    sweepproject.write("params.yaml", "x: 1\n")
    sweepproject.write("sweeps.yaml", f"cmd: sh -c 'sleep 30 & echo $! > {pidfile}; wait'\n")
    sweepproject.commit()
    start = time.monotonic()
    res = sweepproject.run("--run", "--timeout", "1")
    assert time.monotonic() - start < 3 + 2  # within 3 s of the timeout (+ start-up)
    assert res.ret == 1
    (rec,) = sweepproject.records()
    assert rec["state"] == "timeout" and rec["message"].startswith("timeout:")
    child = int(pidfile.read_text())
    wait_for(
        lambda: (
            not Path(f"/proc/{child}").exists()
            or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
        ),
        timeout=5,
    )


def test_retries_keep_every_attempt_log(sweepproject: SweepProject, tmp_path: Path) -> None:
    tries = tmp_path / "tries"
    sweepproject.write("params.yaml", "x: 1\n")
    sweepproject.write(
        "flaky.py",
        f"""
        import sys
        from pathlib import Path
        p = Path({str(tries)!r})
        n = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(n))
        print("attempt", n)
        sys.exit(0 if n == 3 else 1)
    """,
    )
    sweepproject.write("sweeps.yaml", f"cmd: {sys.executable} flaky.py\n")
    sweepproject.commit()
    res = sweepproject.run("--run", "--retries", "2")
    assert res.ret == 0, res.stdout
    (rec,) = sweepproject.records()
    assert rec["state"] == "success"
    logs = sorted((sweepproject.path / ".git" / "sweeprun" / "logs").glob(f"{rec['key']}*"))
    assert len(logs) == 3
    assert [("attempt 1" in p.read_text(), "attempt 3" in p.read_text()) for p in logs] == [
        (True, False),
        (False, False),
        (False, True),
    ]  # attempt1, attempt2, final


def test_junit_xml(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(sweepproject, 3, tmp_path, monkeypatch)
    sweepproject.write("sweeps.yaml", sweepproject.read("sweeps.yaml") + "    expect: {i: '< 2'}\n")
    sweepproject.commit("expect")
    res = sweepproject.run("--run", "--junitxml", "reports/junit.xml")
    assert res.ret == 1
    root = ET.parse(sweepproject.path / "reports" / "junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root
    assert suite.tag == "testsuite" and suite.get("tests") == "3" and suite.get("failures") == "1"
    assert set(suite.attrib) >= {"name", "tests", "failures", "errors", "skipped", "time"}
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"g[i=0]", "g[i=1]", "g[i=2]"}
    for name, case in cases.items():
        assert float(case.get("time", "x")) >= 0 and case.get("classname") == "sweeps"
        props = {p.get("name"): p.get("value") for p in case.find("properties") or []}
        assert props["params.params.yaml:i"] == name[4]
        assert props["metrics.m.json:i"] == name[4]
    failure = cases["g[i=2]"].find("failure")
    assert failure is not None and "expectation i < 2 not met: 2" in failure.get("message", "")


def test_queue_status_logs_kill_retry(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = project(sweepproject, 2, tmp_path, monkeypatch, sleep="30")
    res = sweepproject.run("queue", "status")
    assert res.outlines[0] == "2 queued"
    runner = sweepproject.popen("--run-all", "-j", "2")
    wait_for(lambda: count.exists() and len(count.read_text().split()) == 2)
    wait_for(lambda: commands_running(sweepproject) == 2)
    res = sweepproject.run("queue", "status")
    assert res.outlines[0] == "2 running"
    assert all(f"runner {os.uname().nodename}:{runner.pid}" in ln for ln in res.outlines[1:])
    name = res.outlines[1].split()[1]
    assert sweepproject.run("queue", "logs", name).ret == 0
    follower = sweepproject.popen("queue", "logs", name, "-f")  # follows until it ends
    assert sweepproject.run("queue", "kill", name, "--force").ret == 0
    wait_for(lambda: any(r["state"] == "failed" for r in sweepproject.records()))
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0 and "[main]" in out
    runner.send_signal(signal.SIGINT)
    runner.communicate(timeout=30)
    res = sweepproject.run("queue", "retry", "--failed")
    assert res.ret == 0, res.stderr
    assert sorted(r["state"] for r in sweepproject.records()) == ["queued", "queued"]
    assert sweepproject.run("queue", "kill", "nope").ret == 4


def test_lf_ff_and_config_files(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = project(sweepproject, 4, tmp_path, monkeypatch)
    monkeypatch.setenv("FAIL_FROM", "2")
    sweepproject.write("pyproject.toml", '[tool.sweeprun]\naddopts = "-j 2"\ntimeout = 60\n')
    sweepproject.commit("expect")
    res = sweepproject.run("--run")
    res.fnmatch_lines(["running 4 experiments with -j 2", "*2 passed, 2 failed*"])
    count.unlink()
    res = sweepproject.run("--lf", "--run")
    res.fnmatch_lines(["collected 2 experiments", "*2 failed*"])
    assert sorted(count.read_text().split()) == ["2", "3"]
    monkeypatch.setenv("SWEEPRUN_ADDOPTS", "-v")
    res = sweepproject.run("--ff", "--run", "-j", "1")
    assert [ln.split()[0] for ln in res.outlines if " FAILED " in ln or " PASSED " in ln][:2] == [
        "g[i=2]",
        "g[i=3]",
    ]
    sweepproject.write("pyproject.toml", "[tool.sweeprun]\nbogus = 1\n")
    res = sweepproject.run()
    assert res.ret == 4 and "unknown key 'bogus' in [tool.sweeprun]" in res.stderr


def test_slots_give_each_job_a_device(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "i: 0\n")
    sweepproject.write(
        "dev.sh", 'echo "{\\"dev\\": \\"$CUDA_VISIBLE_DEVICES\\"}" > d.json\nsleep 0.3\n'
    )
    sweepproject.write(
        "sweeps.yaml",
        """
        cmd: sh dev.sh
        metrics: [d.json]
        sweeps:
          g:
            matrix: {i: [1, 2, 3, 4]}
    """,
    )
    sweepproject.commit()
    res = sweepproject.run("--run", "-j", "2", "--gpus", "3,7")
    assert res.ret == 0, res.stdout
    devs = [r["metrics"]["d.json"]["dev"] for r in sweepproject.records()]
    assert set(devs) == {"3", "7"}


def test_bench_script_is_runnable() -> None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "bench_queue.py"), "--n", "30", "--drain", "20"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, SWEEPRUN_ADDOPTS=""),
    )
    assert out.returncode == 0, out.stderr
    assert "peak RSS" in out.stdout
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["n"] == 30 and got["queue_s"] > 0 and got["raw_refs_s"] > 0 and got["drain_s"] > 0


def test_second_ctrl_c_kills_stubborn_jobs(sweepproject: SweepProject, tmp_path: Path) -> None:
    started = tmp_path / "started"
    sweepproject.write("params.yaml", "i: 0\n")
    # ignores SIGINT, as a careless training loop might
    sweepproject.write("stubborn.sh", f"trap '' INT\ntouch {started}\nsleep 60\n")
    sweepproject.write("sweeps.yaml", "cmd: sh stubborn.sh\n")
    sweepproject.commit()
    runner = sweepproject.popen("--run")
    wait_for(lambda: started.exists())
    wait_for(lambda: commands_running(sweepproject) == 1)
    runner.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the runner is now waiting for its jobs to stop; they will not
    assert runner.poll() is None
    runner.send_signal(signal.SIGINT)
    start = time.monotonic()
    runner.communicate(timeout=30)
    assert runner.returncode == 2
    assert time.monotonic() - start < 5
    assert [r["state"] for r in sweepproject.records()] == ["queued"]


def test_remove_queue_with_names_removes_just_those(sweepproject: SweepProject) -> None:
    """Issue 22, item 6: `remove --queue NAME` emptied the whole queue (DVC users type it)."""
    sp = sweepproject
    sp.quickstart()
    assert sp.run("sweeps.yaml", "-k", "model.degree=1", "--run", "-q").ret == 0
    assert sp.run("sweeps.yaml").ret == 0  # the other 4 queued
    queued = sorted(r["name"] for r in sp.records() if r["state"] == "queued")
    done = [r["name"] for r in sp.records() if r["state"] == "success"]
    assert (len(queued), len(done)) == (4, 2)
    res = sp.run("remove", "--queue", queued[0])
    assert res.ret == 0, res.stderr
    assert res.stdout == f"removed 1 experiment: {queued[0]}\n"
    assert sorted(r["name"] for r in sp.records() if r["state"] == "queued") == queued[1:]
    # A flag narrows the names; a name it does not select is refused, nothing removed.
    res = sp.run("remove", "--queue", queued[1], done[0])
    assert res.ret == 4
    assert res.stderr == (
        f"sweeprun: error: remove --queue {done[0]}: {done[0]} is success, not queued "
        "(nothing removed; drop --queue to remove it anyway)\n"
    )
    res = sp.run("remove", "--failed", done[0])
    assert res.ret == 4 and "is success, not failed" in res.stderr
    assert len(sp.records()) == 5
    # DVC's spelling.
    res = sp.run("queue", "remove", queued[1])
    assert res.ret == 0 and res.stdout == f"removed 1 experiment: {queued[1]}\n"
    res = sp.run("queue", "remove", done[0])
    assert res.ret == 4 and "is success, not queued" in res.stderr
    assert sp.run("queue", "remove").ret == 4
    res = sp.run("queue", "remove", "--all")
    assert res.ret == 0 and res.stdout.startswith("removed 2 experiments")
    assert sorted(r["name"] for r in sp.records()) == sorted(done)
