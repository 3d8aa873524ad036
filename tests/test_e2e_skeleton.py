"""End to end: queue a matrix, run it in parallel, inspect results — on real repos."""

from __future__ import annotations

import json

import pytest

from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes


def test_queue_creates_hidden_refs_and_leaves_workspace_alone(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    head = sweepproject.head()
    res = sweepproject.run("sweeps.yaml")
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(["collected 6 experiments", "queued 6 experiments"])
    refs = sweepproject.refs("refs/sweeprun/queue/")
    assert len(refs) == 6
    assert sweepproject.status() == ""
    assert sweepproject.head() == head
    # Each queued commit's parent is the baseline and only params.yaml differs.
    for sha in refs.values():
        assert sweepproject.git("rev-parse", f"{sha}^").strip() == head
        changed = sweepproject.git("diff", "--name-only", head, sha).split()
        assert changed == ["params.yaml"]


def test_run_all_parallel_results_match_params(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    head = sweepproject.head()
    assert sweepproject.run("sweeps.yaml").ret == 0
    res = sweepproject.run("--run-all", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=6)
    assert sweepproject.refs("refs/sweeprun/queue/") == {}
    assert sweepproject.refs("refs/sweeprun/running/") == {}
    results = sweepproject.refs(f"refs/sweeprun/exps/{head}/")
    assert len(results) == 6
    records = sweepproject.records()
    assert len(records) == 6
    for rec in records:
        assert rec["state"] == "success"
        model = rec["params"]["params.yaml"]["model"]
        assert rec["metrics"]["metrics.json"]["score"] == model["alpha"] * 10 + model["degree"]
        assert rec["baseline"] == head
        # the metrics file and the params file are in the result commit
        tree = sweepproject.git("ls-tree", "-r", "--name-only", rec["commit"]).split()
        assert "metrics.json" in tree and "params.yaml" in tree
        assert sweepproject.git("rev-parse", rec["commit"] + "^").strip() == head
        shown = json.loads(sweepproject.git("show", f"{rec['commit']}:metrics.json"))
        assert shown == rec["metrics"]["metrics.json"]
    assert sweepproject.status() == ""
    assert sweepproject.head() == head


def test_queue_and_run_in_one_go(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    res = sweepproject.run("sweeps.yaml", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=6)
    res.fnmatch_lines(
        [
            "*sweeprun session starts*",
            "root: *",
            "baseline: *",
            "collected 6*",
            "*[100%]",
            "*6 passed in *",
        ]
    )


def test_failing_experiment_is_kept_with_its_log(sweepproject: SweepProject) -> None:
    sweepproject.quickstart(
        cmd="python3 -c \"import yaml,sys; p=yaml.safe_load(open('params.yaml'));"
        " print('boom at', p['model']['degree']); sys.exit(3 if p['model']['degree'] == 2"
        " and p['model']['alpha'] == 0.5 else 0)\""
    )
    res = sweepproject.run("sweeps.yaml", "--run", "-j", "2")
    assert res.ret == 1
    res.assert_outcomes(passed=5, failed=1)
    res.fnmatch_lines(
        [
            "*= FAILURES =*",
            "*grid[model.alpha=0.5,model.degree=2]*",
            "E   stage 'main' exited with code 3",
            "boom at 2",
        ]
    )
    states = sorted(r["state"] for r in sweepproject.records())
    assert states == ["failed"] + ["success"] * 5
    failed = next(r for r in sweepproject.records() if r["state"] == "failed")
    assert failed["returncode"] == 3


def test_environment_variables(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "x: 1\n")
    sweepproject.write(
        "sweeps.yaml",
        """
        cmd: env | grep ^SWEEPRUN_ | sort > env.txt
        metrics: [env.txt]
    """,
    )
    head = sweepproject.commit()
    res = sweepproject.run("--run", "-n", "envcheck")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = sweepproject.records()
    text = sweepproject.git("show", f"{rec['commit']}:env.txt")
    env = dict(line.split("=", 1) for line in text.splitlines())
    assert env["SWEEPRUN_EXP_NAME"] == "envcheck"
    assert env["SWEEPRUN_BASELINE_REV"] == head
    assert env["SWEEPRUN_ROOT"] == str(sweepproject.path)
    assert env["SWEEPRUN_WORKSPACE"] != str(sweepproject.path)
    assert "/sweeprun/ws/" in env["SWEEPRUN_WORKSPACE"]


def test_queue_captures_uncommitted_and_untracked_files(sweepproject: SweepProject) -> None:
    sweepproject.quickstart(cmd="cat note.txt extra.txt > out.txt")
    sweepproject.write("note.txt", "tracked\n")
    sweepproject.commit("add note")
    sweepproject.write("note.txt", "changed but not committed\n")
    sweepproject.write("extra.txt", "untracked\n")
    before = sweepproject.status()
    assert sweepproject.run("sweeps.yaml", "-k", "alpha=0.5 and degree=1").ret == 0
    # later edits do not change the queued experiment
    sweepproject.write("note.txt", "edited after queueing\n")
    res = sweepproject.run("--run-all")
    assert res.ret == 0, res.stdout
    (rec,) = sweepproject.records()
    out = sweepproject.git("show", f"{rec['commit']}:out.txt")
    assert out == "changed but not committed\nuntracked\n"
    assert sweepproject.status() == before  # the index and files are untouched by the run
    assert sweepproject.read("note.txt") == "edited after queueing\n"


def test_requeue_identical_is_skipped(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("sweeps.yaml").ret == 0
    res = sweepproject.run("sweeps.yaml")
    assert res.ret == 0
    res.fnmatch_lines(["queued 0 experiments", "skipped 6 already queued*"])
    assert len(sweepproject.refs("refs/sweeprun/queue/")) == 6
    assert sweepproject.run("--run-all", "-j", "2").ret == 0
    res = sweepproject.run("sweeps.yaml")
    res.fnmatch_lines(["queued 0 experiments", "skipped 6*", "*is exp-* (success)"])
    assert sweepproject.refs("refs/sweeprun/queue/") == {}


def test_params_diff_is_minimal(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("sweeps.yaml", "-S", "seed=7", "-k", "alpha=1.5 and degree=3").ret == 0
    (sha,) = sweepproject.refs("refs/sweeprun/queue/").values()
    diff = sweepproject.git("diff", "-U0", "HEAD", sha, "--", "params.yaml")
    changed = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        "-  alpha: 0.1   # penalty",
        "-  degree: 1",
        "-seed: 0",
        "+  alpha: 1.5   # penalty",
        "+  degree: 3",
        "+seed: 7",
    ]


def test_run_all_with_empty_queue_is_nothing_collected(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("--run-all").ret == 5


def test_show_table_and_json(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("sweeps.yaml", "--run", "-j", "2").ret == 0
    res = sweepproject.run("show")
    assert res.ret == 0
    header = res.outlines[0].split()
    assert header[:2] == ["Experiment", "State"]
    assert "model.alpha" in header and "score" in header and "seed" not in header
    assert sum(" success " in line for line in res.outlines) == 6
    recs = sweepproject.records()
    assert {r["id"] for r in recs} == {
        f"grid[model.alpha={a},model.degree={d}]" for a in (0.5, 1.5) for d in (1, 2, 3)
    }
    for r in recs:
        assert set(r) >= {"name", "id", "state", "baseline", "params", "metrics"}
