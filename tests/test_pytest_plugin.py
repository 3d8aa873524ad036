"""``pytest sweeps.yaml``: the pytest11 plugin, run as users run it (a real pytest process)."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from sweeprun.testing import RunResult, SweepProject


def pytest_in(sp: SweepProject, *args: str) -> RunResult:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
        cwd=sp.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def quickstart(sweepproject: SweepProject) -> SweepProject:
    sweepproject.copy_example("quickstart")
    sweepproject.write(".gitignore", "__pycache__/\n.pytest_cache/\n*.xml\n")
    sweepproject.commit()
    return sweepproject


def test_pytest_collects_and_runs_the_quickstart(quickstart: SweepProject) -> None:
    res = pytest_in(quickstart, "sweeps.yaml", "--collect-only", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["sweeps.yaml::grid[model.degree=1,model.alpha=0.0]", "*6 tests collected*"])
    assert not quickstart.refs()  # collecting queues nothing

    res = pytest_in(quickstart, "sweeps.yaml", "--junitxml", "junit.xml")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["*6 passed*"])
    # each item ran through sweeprun's executor: six recorded experiments
    recs = [r for r in quickstart.records() if r["name"] != "workspace"]
    assert len(recs) == 6 and {r["state"] for r in recs} == {"success"}
    cases = ET.parse(quickstart.path / "junit.xml").getroot().iter("testcase")
    names = sorted(c.get("name", "") for c in cases)
    assert names[0] == "grid[model.degree=1,model.alpha=0.0]" and len(names) == 6


def test_a_missed_expect_fails_its_item(quickstart: SweepProject) -> None:
    text = quickstart.read("sweeps.yaml").replace(
        "      model.alpha: [0.0, 1.0]\n",
        "      model.alpha: [0.0, 1.0]\n    expect: {metrics.json:rmse: '< 0.5414'}\n",
    )
    quickstart.write("sweeps.yaml", text)
    quickstart.commit("expect")
    res = pytest_in(quickstart, "sweeps.yaml", "--junitxml", "junit.xml", "-rf")
    assert res.ret == 1, res.stdout + res.stderr
    res.fnmatch_lines(
        [
            "*expectation metrics.json:rmse < 0.5414 not met*",
            "*+ [main] python3 train.py*",  # the log tail
            "FAILED sweeps.yaml::grid[model.degree=1,model.alpha=1.0] - *expectation*",
            "*1 failed, 5 passed*",
        ]
    )
    root = ET.parse(quickstart.path / "junit.xml").getroot()
    failed = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["grid[model.degree=1,model.alpha=1.0]"]

    # -x stops at the first failure; --lf runs only it again, and it is run again
    res = pytest_in(quickstart, "sweeps.yaml", "--lf", "-x")
    assert res.ret == 1
    res.fnmatch_lines(["*1 failed, 5 deselected*"])
    log = [r for r in quickstart.records() if r["state"] == "expect-failed"]
    assert len(log) == 1  # replaced, not added
    # -k selects by id words, as pytest does
    res = pytest_in(quickstart, "sweeps.yaml", "-k", "degree and 0.0")
    assert res.ret == 0, res.stdout
    res.fnmatch_lines(["*3 passed, 3 deselected*"])


def test_unit_tests_and_sweeps_in_one_call(quickstart: SweepProject) -> None:
    quickstart.write("tests/test_units.py", "def test_one():\n    assert 1 + 1 == 2\n")
    quickstart.commit("units")
    res = pytest_in(quickstart, "-q")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["1 passed*"])  # found directories are not searched for sweeps
    res = pytest_in(quickstart, "-q", "--sweeps")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["7 passed*"])
    quickstart.write("pytest.ini", "[pytest]\nsweeps = true\n")
    res = pytest_in(quickstart, "-q", "--sweeprun-args=-S model.degree=2")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["2 passed*"])  # one test and the one point -S makes
    res = pytest_in(quickstart, "-q", "--sweeprun-args=-S model.degree=2 -k grid")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["3 passed*"])  # one test and grid's 2 points with degree 2


def test_a_bad_spec_is_a_collection_error(quickstart: SweepProject) -> None:
    quickstart.write("sweeps.yaml", "cmd: python3 train.py\nbogus: 1\n")
    res = pytest_in(quickstart, "sweeps.yaml")
    assert res.ret == 2, res.stdout
    res.fnmatch_lines(["*sweeps.yaml:2:1: unknown key 'bogus' in the spec*"])
    assert not quickstart.refs()
