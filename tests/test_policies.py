"""Failure policies mean what they say at any -j; exit codes reflect recorded outcomes."""

from __future__ import annotations

import sys

import pytest

from sweeprun.testing import SweepProject

FAIL = "import time, sys; time.sleep(0.3); sys.exit(1)"


def _failing(p: SweepProject, n: int = 4) -> None:
    p.write("params.yaml", "i: 0\n")
    p.write("fail.py", FAIL)
    p.write(
        "sweeps.yaml",
        f"cmd: {sys.executable} fail.py\nsweeps:\n  g:\n    matrix: {{i: {list(range(n))}}}\n",
    )
    p.commit()


def _states(p: SweepProject) -> list[str]:
    return sorted(r["state"] for r in p.records())


def test_exitfirst_stops_dispatching_at_j2(sweepproject: SweepProject) -> None:
    p = sweepproject
    _failing(p)
    res = p.run("sweeps.yaml", "--run", "-j", "2", "-x")
    assert res.ret == 1
    assert "stopping after 1 failures" in res.stdout
    # The two dispatched at once finish; nothing more starts.
    assert _states(p) == ["failed", "failed", "queued", "queued"]


def test_maxfail_stops_dispatching_at_j2(sweepproject: SweepProject) -> None:
    p = sweepproject
    _failing(p, 6)
    res = p.run("sweeps.yaml", "--run", "-j", "2", "--maxfail", "2")
    assert res.ret == 1
    assert "stopping after 2 failures" in res.stdout
    states = _states(p)
    assert 2 <= states.count("failed") <= 3 and states.count("queued") >= 3, states


def test_a_rerun_over_recorded_failures_is_not_green(sweepproject: SweepProject) -> None:
    p = sweepproject
    _failing(p, 2)
    assert p.run("sweeps.yaml", "--run").ret == 1
    res = p.run("sweeps.yaml", "--run")
    assert res.ret == 1, res.stdout
    assert "2 skipped (2 recorded as failed: --lf reruns them)" in res.stdout


def test_lf_reruns_the_same_rows_after_a_fix_and_keeps_the_attempt(
    sweepproject: SweepProject,
) -> None:
    p = sweepproject
    p.write("params.yaml", "i: 0\n")
    p.write("j.py", "import yaml, sys\nsys.exit(yaml.safe_load(open('params.yaml'))['i'])\n")
    p.write(
        "sweeps.yaml", f"cmd: {sys.executable} j.py\nsweeps:\n  g:\n    matrix: {{i: [0, 1]}}\n"
    )
    p.commit()
    assert p.run("sweeps.yaml", "--run").ret == 1
    before = {r["name"]: r for r in p.records()}
    (failed,) = [r for r in before.values() if r["state"] == "failed"]
    p.write("j.py", "import sys\nsys.exit(0)  # fixed\n")  # the workspace changes
    res = p.run("sweeps.yaml", "--lf")
    assert res.ret == 0, res.stdout + res.stderr
    # Queued as the same row; retry --failed does not queue the point a second time.
    assert p.run("queue", "retry", "--failed").stdout.startswith("queued 0 experiment(s)")
    assert p.run("--run-all").ret == 0
    after = {r["name"]: r for r in p.records()}
    assert sorted(after) == sorted(before)  # one row per point
    assert after[failed["name"]]["state"] == "success"
    assert p.git("log", "-1", "--format=%B", after[failed["name"]]["commit"]).count(
        failed["commit"]
    )  # the replaced attempt is named in the record


@pytest.mark.parametrize("how", ["env", "config"])
def test_the_fast_git_switch_hands_every_step_to_git(
    sweepproject: SweepProject, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """``SWEEPRUN_FAST_GIT=0`` or ``git config sweeprun.fastGit false``: git itself checks
    out, cleans, adds and writes every tree and commit; the results are the same."""
    p = sweepproject
    p.quickstart()
    assert p.run("sweeps.yaml").ret == 0
    if how == "env":
        monkeypatch.setenv("SWEEPRUN_FAST_GIT", "0")
    else:
        p.git("config", "sweeprun.fastGit", "false")
    log = p.trace_git()
    res = p.run("--run-all", "-j", "1")
    assert res.ret == 0, res.stdout + res.stderr
    calls = log.read_text().splitlines()
    n = len(p.records())
    assert sum(c.startswith("write-tree") for c in calls) >= n
    assert sum(c.startswith("commit-tree") for c in calls) >= n
    assert sum("checkout -q -f --detach" in c or c.startswith("worktree add") for c in calls) >= n
    assert {r["state"] for r in p.records()} == {"success"}
