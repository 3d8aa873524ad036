"""Working with results: show options, diff, apply, branch, rename, remove, gc, push/pull."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

SCRIPT = (
    "import json, yaml\n"
    "p = yaml.safe_load(open('params.yaml'))\n"
    "json.dump({'acc': p['lr'] * 10, 'loss': 1 - p['lr']}, open('m.json', 'w'))\n"
    "open('model.bin', 'w').write(str(p['lr']))\n"
    "assert p['lr'] != 0.3, 'lr 0.3 diverges'\n"
)


@pytest.fixture
def project(sweepproject: SweepProject) -> SweepProject:
    sweepproject.write("params.yaml", "lr: 0.1  # rate\nseed: 0\n")
    sweepproject.write("train.py", SCRIPT)
    sweepproject.write(
        "sweeps.yaml",
        """
        params: params.yaml
        cmd: python3 train.py
        deps: [train.py]
        outs: [model.bin]
        metrics: [m.json]
        sweeps:
          g:
            matrix: {lr: [0.1, 0.2, 0.3]}
            name: "lr{lr}"
    """,
    )
    sweepproject.write(".gitignore", "/model.bin\n__pycache__/\n")
    sweepproject.commit()
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 1, res.stdout  # lr 0.3 fails on purpose
    return sweepproject


def names(sp: SweepProject, *args: str) -> list[str]:
    return [r["name"] for r in sp.records(*args)]


def test_show_sort_filters_and_formats(project: SweepProject) -> None:
    res = project.run("show", "--sort-by", "acc", "--sort-order", "desc", "--csv")
    assert res.ret == 0, res.stderr
    assert res.outlines[0] == "Experiment,State,Sweep,Created,Duration,lr,acc,loss"
    assert [ln.split(",")[0] for ln in res.outlines[1:]] == [
        "lr0.3",
        "lr0.2",
        "lr0.1",
    ]  # the failed run wrote metrics too
    md = project.run("show", "--hide-failed", "--md").outlines[2:]
    cut = [[c for i, c in enumerate(row.split(" | ")) if i not in (3, 4)] for row in md]
    assert cut == [  # (Created and Duration left out: they differ run to run)
        ["| workspace", "-", "-", "0.1", "-", "- |"],
        ["| lr0.1", "success", "g", "0.1", "1.0", "0.9 |"],
        ["| lr0.2", "success", "g", "0.2", "2.0", "0.8 |"],
    ]
    fixed = "Experiment,State,Sweep,Created,Duration"
    assert project.run("show", "--drop", "loss|lr", "--csv").outlines[0] == f"{fixed},acc"
    assert project.run("show", "--columns", "^acc$", "--csv").outlines[0] == f"{fixed},acc"
    res = project.run("show", "--sort-by", "acx")
    assert res.ret == 4 and "--sort-by acx: unknown column (did you mean 'acc'?)" in res.stderr
    project.write("params.yaml", "lr: 0.1\nseed: 0\nacc: 1\n")
    project.commit("acc as a param too")
    assert project.run("-S", "lr=0.5", "--run").ret == 0
    res = project.run("show", "--sort-by", "acc")
    assert res.ret == 4 and "ambiguous" in res.stderr
    assert project.run("show", "--sort-by", "m.json:acc").ret == 0
    assert len(names(project)) == 1 and len(names(project, "-A")) == 4
    assert len(names(project, "--limit", "2")) == 4
    assert len(names(project, "--baseline", "HEAD~1")) == 3
    # The old spellings, one release more: the same answer, and a warning naming the new.
    for old, new in ((("-n", "2"), "--limit"), (("--rev", "HEAD~1"), "--baseline")):
        res = project.run("show", "--json", *old)
        assert res.ret == 0
        assert res.stderr == (
            f"sweeprun: warning: show {'-n/--num' if old[0] == '-n' else old[0]} is now {new} "
            "(the old spelling goes in the next release)\n"
        )
    assert len(json.loads(project.run("show", "--json", "-n", "2").stdout)) == 4


def test_remove_sets_and_all_or_nothing(project: SweepProject) -> None:
    assert project.run("-S", "seed=1", "-k", "lr=0.1", "-n", "q1").ret == 0  # one queued
    assert sorted(r["state"] for r in project.records()) == [
        "failed",
        "queued",
        "success",
        "success",
    ]
    res = project.run("remove", "lr0.1", "nope")
    assert res.ret == 4 and "'nope': no such experiment" in res.stderr
    assert len(project.records()) == 4
    assert project.run("remove", "--queue").ret == 0
    assert sorted(r["state"] for r in project.records()) == ["failed", "success", "success"]
    assert project.run("remove", "--failed").ret == 0
    assert sorted(names(project)) == ["lr0.1", "lr0.2"]
    assert project.run("remove", "lr0.1", "--keep").ret == 0
    assert names(project) == ["lr0.1"]
    assert project.run("remove", "--all").ret == 0
    assert project.records() == []


def test_apply_keeps_work_twice_follows_second_and_undo(project: SweepProject) -> None:
    project.write("scratch.txt", "x\n")
    assert project.run("apply", "lr0.2").ret == 0
    assert project.run("apply", "--undo").ret == 0
    assert project.read("params.yaml") == "lr: 0.1  # rate\nseed: 0\n"
    assert project.read("scratch.txt") == "x\n"
    project.write("notes.txt", "my uncommitted work\n")
    project.write("params.yaml", "lr: 0.9  # edited\nseed: 0\n")
    res = project.run("apply", "lr0.2")
    assert res.ret == 0, res.stderr
    assert project.read("params.yaml") == "lr: 0.2  # rate\nseed: 0\n"
    assert project.read("model.bin") == "0.2"  # the cached out came back
    assert project.run("apply", "lr0.1").ret == 0
    assert project.read("params.yaml") == "lr: 0.1  # rate\nseed: 0\n"
    assert project.read("model.bin") == "0.1"
    assert project.head() == project.git("rev-parse", "HEAD").strip()
    # undo restores what the last apply saved (the first apply's result) ...
    assert project.run("apply", "--undo").ret == 0
    assert project.read("params.yaml") == "lr: 0.2  # rate\nseed: 0\n"
    # ... and the work saved by the first apply is one step back in the stash chain
    first = json.loads(project.git("log", "-1", "--format=%b", "refs/sweeprun/stash"))
    assert first["previous"]
    assert project.git("show", f"{first['previous']}:params.yaml") == "lr: 0.9  # edited\nseed: 0\n"
    assert project.git("show", f"{first['previous']}:notes.txt") == "my uncommitted work\n"
    assert project.read("notes.txt") == "my uncommitted work\n"
    # a failed experiment's params can be applied too
    assert project.run("apply", "lr0.3").ret == 0
    assert project.read("params.yaml").startswith("lr: 0.3")


def test_branch_rename_and_diff(project: SweepProject) -> None:
    assert project.run("branch", "lr0.2").ret == 0
    assert project.git("show", "lr0.2-branch:params.yaml") == "lr: 0.2  # rate\nseed: 0\n"
    res = project.run("branch", "lr0.2")
    assert res.ret == 4 and "a branch named 'lr0.2-branch' already exists" in res.stderr
    assert project.run("rename", "lr0.2", "best").ret == 0
    assert sorted(names(project)) == ["best", "lr0.1", "lr0.3"]
    res = project.run("diff", "best", "lr0.1")
    assert res.outlines[0].split() == ["Path:key", "best", "lr0.1", "Change"]
    assert res.outlines[1].split() == ["params.yaml:lr", "0.2", "0.1", "+0.1"]
    rows = json.loads(project.run("diff", "best", "--json").stdout)
    assert {r["key"] for r in rows} >= {"params.yaml:lr", "m.json:acc"}


def test_gc_removes_unreachable_and_unused(project: SweepProject) -> None:
    cache = project.path / ".git" / "sweeprun" / "cache" / "objects"
    before = {p.name for p in cache.rglob("*") if p.is_file()}
    assert before
    project.git("commit", "-q", "--amend", "-m", "rewritten baseline")  # old HEAD unreachable
    project.git("reflog", "expire", "--expire=now", "--all")
    res = project.run("gc", "--dry-run")
    assert res.ret == 0
    res.fnmatch_lines(
        [
            "would remove experiment lr0.1 (baseline * unreachable)",
            "would remove cache object *",
            "would free * bytes in * item(s)",
        ]
    )
    assert len(project.records("-A")) == 3  # dry run changed nothing
    assert project.run("gc").ret == 0
    assert project.records("-A") == []
    assert not [p for p in cache.rglob("*") if p.is_file()]
    assert not list((project.path / ".git" / "sweeprun" / "ws").glob("w*/"))
    assert "sweeprun/ws" not in project.git("worktree", "list")


def test_push_pull_and_diverged_refs(project: SweepProject, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    project.git("remote", "add", "origin", str(remote))
    project.git("push", "-q", "origin", "main")
    res = project.run("push", "origin", "--cache-remote", str(tmp_path / "cache-remote"))
    assert res.ret == 0, res.stdout + res.stderr
    assert (
        "3 ref update(s), 4 cache object(s)"
    )  # model.bin and m.json of 2 runs in res.stdout  # model.bin of the 2 successes
    original = {r["name"]: r["metrics"] for r in project.records()}
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(clone)], check=True)
    first = project.path
    project.path = clone
    assert project.run("pull", "origin", "--cache-remote", str(tmp_path / "cache-remote")).ret == 0
    assert {r["name"]: r["metrics"] for r in project.records()} == original
    assert project.run("apply", "lr0.2").ret == 0
    assert (clone / "model.bin").read_text() == "0.2"
    # a result re-made differently in the clone diverges from the remote's
    assert project.run("-S", "seed=5", "-k", "lr=0.1", "-n", "lr0.1-b", "--run").ret == 0
    project.git(
        "update-ref",
        "refs/sweeprun/exps/" + project.head() + "/lr0.1",
        project.records()[0]["commit"]
        if project.records()[0]["name"] == "lr0.1-b"
        else next(r["commit"] for r in project.records() if r["name"] == "lr0.1-b"),
    )
    res = project.run("push", "origin", "lr0.1")
    assert res.ret == 1 and "diverged, left alone (use --force)" in res.stdout
    project.path = first
    assert project.run("push", "nope").ret == 4


def test_api_records(project: SweepProject) -> None:
    from sweeprun import api

    recs = api.experiments(project.path)
    assert sorted(r["name"] for r in recs) == ["lr0.1", "lr0.2", "lr0.3"]
    assert all({"params", "metrics", "state"} <= set(r) for r in recs)


def test_remove_on_a_remote(project: SweepProject, tmp_path: Path) -> None:
    remote = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    project.git("remote", "add", "origin", str(remote))
    assert project.run("push", "origin").ret == 0
    listed = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(listed) == 3
    res = project.run("remove", "-g", "origin", "lr0.1")
    assert res.ret == 0, res.stdout + res.stderr
    listed = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(listed) == 2 and not any(r.endswith("/lr0.1") for r in listed)
    assert len(project.records()) == 3  # local experiments stay
