"""A sweep fanned out over CI jobs: a matrix, shards, pushes that never conflict, and a
summary job that pulls every result once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject


def _sweeprun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeprun", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _with_remote(p: SweepProject, tmp_path: Path) -> Path:
    """A bare remote ``origin`` holding the project's commit on ``main``."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    p.git("remote", "add", "origin", str(remote))
    p.git("push", "-q", "origin", "HEAD:refs/heads/main")
    return remote


def test_the_matrix_names_each_experiment_or_each_shard(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.quickstart()
    res = p.run("sweeps.yaml", "--collect-only", "--ci-matrix", "github")
    assert res.ret == 0, res.stderr
    nodes = [entry["node"] for entry in json.loads(res.stdout)["include"]]
    assert len(nodes) == 6 and all(n.startswith("sweeps.yaml::grid[") for n in nodes)
    for node in nodes[:2]:  # what a CI job runs with it: exactly that experiment
        one = p.run(node, "--collect-only", "-q")
        assert one.ret == 0 and one.outlines == [node.split("::")[1]]
    res = p.run("sweeps.yaml", "--collect-only", "--ci-matrix", "gitlab", "--shard-size", "4")
    assert json.loads(res.stdout) == {"parallel": {"matrix": [{"SWEEPRUN_SHARD": ["1/2", "2/2"]}]}}
    ids = set()
    for i in (1, 2):
        got = p.run("sweeps.yaml", "--collect-only", "-q", "--shard", f"{i}/2").outlines
        assert got and not ids & set(got)
        ids |= set(got)
    assert {n.split("::")[1] for n in nodes} == ids  # the shards cover the sweep once


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "5/4"], "--shard 5/4: expected I/N with 1 <= I <= N"),
        (["--shard", "x"], "--shard x: expected I/N"),
        (["--ci-matrix", "github"], "--ci-matrix: prints the matrix of what is collected"),
        (["--collect-only", "--shard-size", "2"], "--shard-size: sizes the shards of --ci-matrix"),
        (["--collect-only", "--ci-matrix", "jenkins"], "argument --ci-matrix: invalid choice"),
    ],
)
def test_bad_fan_out_options_are_one_line_and_queue_nothing(
    sweepproject: SweepProject, args: list[str], message: str
) -> None:
    p = sweepproject
    p.quickstart()
    res = p.run("sweeps.yaml", *args)
    assert res.ret == 4 and message in res.stderr and len(res.stderr.splitlines()) == 1
    assert not p.refs()


def test_four_ci_jobs_push_at_once_and_a_fifth_pulls_every_result_once(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    p = sweepproject
    p.quickstart()
    remote = _with_remote(p, tmp_path)
    res = p.run("sweeps.yaml", "--collect-only", "--ci-matrix", "github", "--shard-size", "2")
    assert [e["shard"] for e in json.loads(res.stdout)["include"]] == ["1/3", "2/3", "3/3"]
    shards = ["1/4", "2/4", "3/4", "4/4"]  # four CI jobs (shards of 2, 2, 1 and 1)
    clones = []
    for i, shard in enumerate(shards):
        clone = tmp_path / f"job{i}"
        subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(clone)], check=True)
        clones.append((clone, shard))
    # Each CI job: its share, then a push of its own results, all at the same time.
    script = "{py} -m sweeprun sweeps.yaml --run --shard {shard} -q && {py} -m sweeprun push origin"
    jobs = [
        subprocess.Popen(
            ["sh", "-c", script.format(py=sys.executable, shard=shard)],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for clone, shard in clones
    ]
    for job in jobs:
        out, _ = job.communicate(timeout=300)
        assert job.returncode == 0, out
        assert "diverged" not in out
    summary = tmp_path / "summary"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(summary)], check=True)
    res = _sweeprun(summary, "pull", "origin")
    assert res.returncode == 0, res.stdout + res.stderr
    res = _sweeprun(summary, "show", "--json", "--junitxml", "reports/sweep.xml")
    records = json.loads(res.stdout)
    assert len(records) == 6 and len({r["id"] for r in records}) == 6  # every result, once
    assert {r["state"] for r in records} == {"success"}
    xml = (summary / "reports" / "sweep.xml").read_text()
    assert xml.count("<testcase ") == 6 and "<failure" not in xml
    md = _sweeprun(summary, "show", "--md")
    assert md.returncode == 0 and md.stdout.count("| exp-") == 6


def test_a_ci_job_run_twice_cannot_overwrite_the_first_result(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """A retried CI job runs its share again: the same experiments, new result commits.
    Its push is refused as diverged (exit 1) rather than replacing what is there."""
    p = sweepproject
    p.quickstart()
    remote = _with_remote(p, tmp_path)
    results = []
    for attempt in (1, 2):
        clone = tmp_path / f"attempt{attempt}"
        subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(clone)], check=True)
        assert _sweeprun(clone, "sweeps.yaml", "--run", "--shard", "1/3", "-q").returncode == 0
        results.append(_sweeprun(clone, "push", "origin"))
    assert results[0].returncode == 0
    assert results[1].returncode == 1 and "diverged, left alone" in results[1].stdout
