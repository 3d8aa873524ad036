"""Pooled workspaces: every experiment starts from exactly its queued commit."""

from __future__ import annotations

import hashlib
import json

import pytest

from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes

# Records the workspace's state as the command sees it, then dirties it on purpose:
# an ignored file, an untracked file, a changed tracked file and a new directory.
PROBE = """
import json, os, subprocess, yaml
p = yaml.safe_load(open("params.yaml"))
def git(*a):
    return subprocess.run(["git", *a], capture_output=True, text=True).stdout
state = {
    "x": p["x"],
    "status": git("status", "--porcelain", "--untracked-files=all"),
    "head": git("rev-parse", "HEAD").strip(),
    "files": sorted(os.listdir(".")),
    "tracked": open("tracked.txt").read(),
}
json.dump(state, open("state.json", "w"))
open("ignored.log", "w").write("x")
open("tracked.txt", "a").write("changed by %s\\n" % p["x"] if p["x"] == 2 else "")
os.makedirs("newdir/sub", exist_ok=True)
open("newdir/sub/f", "w").write("x")
"""


def test_each_experiment_sees_a_clean_checkout(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "x: 0\n")
    sweepproject.write("probe.py", PROBE)
    sweepproject.write("tracked.txt", "original\n")
    sweepproject.write(".gitignore", "*.log\n__pycache__/\n")
    sweepproject.write(
        "sweeps.yaml",
        """
        cmd: python3 probe.py
        metrics: [state.json]
        sweeps:
          s:
            matrix:
              x: [1, 2, 3, 4]
    """,
    )
    sweepproject.commit()
    assert sweepproject.run("sweeps.yaml").ret == 0
    queued = {r["id"]: r["commit"] for r in sweepproject.records()}
    res = sweepproject.run("--run-all", "-j", "1")
    assert res.ret == 0, res.stdout + res.stderr
    recs = sweepproject.records()
    assert len(recs) == 4
    for rec in recs:
        state = rec["metrics"]["state.json"]
        assert state["status"] == "", state  # nothing left over from the previous run
        assert state["tracked"] == "original\n"
        assert state["files"] == sorted(
            [".git", ".gitignore", "params.yaml", "probe.py", "sweeps.yaml", "tracked.txt"]
        )
        assert state["head"] == queued[rec["id"]]
        tree = sweepproject.git("ls-tree", "-r", "--name-only", rec["commit"]).split()
        assert "ignored.log" not in tree
        assert "newdir/sub/f" in tree  # untracked, not ignored: recorded
    by_x = {r["metrics"]["state.json"]["x"]: r for r in recs}
    changed = sweepproject.git("show", f"{by_x[2]['commit']}:tracked.txt")
    assert changed == "original\nchanged by 2\n"
    sweepproject.git("fsck", "--strict", "--no-dangling")


def test_user_workspace_untouched_by_runs(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    sweepproject.write("wip.txt", "work in progress\n")
    before_status = sweepproject.status()
    before_index = (sweepproject.path / ".git" / "index").read_bytes()
    assert sweepproject.run("sweeps.yaml", "--run", "-j", "2").ret == 0
    assert sweepproject.status() == before_status
    assert (sweepproject.path / ".git" / "index").read_bytes() == before_index
    assert not (sweepproject.path / "metrics.json").exists()


MUTATE = """
import json, os, yaml

p = yaml.safe_load(open("params.yaml"))
state = {"x": p["x"], "a": open("a.txt").read(), "has_b": os.path.exists("b.txt")}
json.dump(state, open("m.json", "w"))
if p["x"] == 1:
    open("a.txt", "w").write("changed\\n")   # a tracked file modified ...
    os.remove("b.txt")                      # ... and one deleted
    os.chmod("run.sh", 0o755)               # ... and a mode change
"""


def test_in_process_add_matches_git_and_restores_the_slot(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "x: 0\n")
    sweepproject.write("mutate.py", MUTATE)
    sweepproject.write("a.txt", "original\n")
    sweepproject.write("b.txt", "b\n")
    sweepproject.write("run.sh", "true\n")
    sweepproject.write(
        "sweeps.yaml",
        """
        cmd: python3 mutate.py
        metrics: [m.json]
        sweeps:
          s:
            matrix: {x: [1, 2, 3]}
    """,
    )
    sweepproject.commit()
    assert sweepproject.run("--run", "-j", "1").ret == 0
    by_x = {r["metrics"]["m.json"]["x"]: r for r in sweepproject.records()}
    first = by_x[1]["commit"]
    tree = sweepproject.git("ls-tree", "-r", first)
    assert "b.txt" not in tree and "100755 blob" in next(
        ln for ln in tree.splitlines() if ln.endswith("run.sh")
    )
    assert sweepproject.git("show", f"{first}:a.txt") == "changed\n"
    for x in (2, 3):  # later experiments in the same slot saw pristine files
        state = by_x[x]["metrics"]["m.json"]
        assert state["a"] == "original\n" and state["has_b"]
        assert sweepproject.git("show", f"{by_x[x]['commit']}:a.txt") == "original\n"
    sweepproject.git("fsck", "--strict", "--no-dangling")


def test_slots_created_concurrently(sweepproject: SweepProject) -> None:
    """git worktree add trips over a half-created sibling; creations must be serialised."""
    import threading

    from sweeprun.run import workspace

    sweepproject.write("f.txt", "x\n")
    head = sweepproject.commit()
    common = str(sweepproject.path / ".git")
    barrier = threading.Barrier(6, timeout=30)
    errors: list[BaseException] = []

    def take() -> None:
        try:
            barrier.wait()
            with workspace.acquire(common, str(sweepproject.path), head) as ws:
                assert (ws / "f.txt").read_text() == "x\n"
                barrier.wait()  # hold every slot at once
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sweepproject.git("worktree", "list").splitlines()) == 7


# One line of Python with braces and quotes: sweeprun runs it without a shell.
DUMP_PARAMS = (
    """python3 -c 'import json, yaml; """
    """json.dump(yaml.safe_load(open("params.yaml")), open("m.json", "w"))'"""
)


def _tiny_sweep(sweepproject: SweepProject, values: str) -> None:
    sweepproject.write("params.yaml", "x: 0\n")
    sweepproject.write(
        "sweeps.yaml",
        f"""
        cmd: {DUMP_PARAMS}
        metrics: [m.json]
        sweeps:
          s:
            matrix: {{x: [{values}]}}
    """,
    )


def test_results_recorded_without_git_processes_in_a_plain_repo(
    sweepproject: SweepProject, git_mode: str
) -> None:
    """The common case spawns no git per experiment: no add, checkout or write-tree."""
    if git_mode == "git":
        pytest.skip("checks the fast paths themselves (off in this mode)")
    _tiny_sweep(sweepproject, "1, 2, 3, 4")
    sweepproject.commit()
    assert sweepproject.run("sweeps.yaml").ret == 0
    log = sweepproject.trace_git()
    res = sweepproject.run("--run-all", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    calls = log.read_text().splitlines()
    per_experiment = [c for c in calls if c.split()[0] in ("add", "checkout", "write-tree")]
    assert per_experiment == [], calls
    recs = sweepproject.records()
    assert sorted(r["metrics"]["m.json"]["x"] for r in recs) == [1, 2, 3, 4]
    for rec in recs:  # what git itself makes of each result's tree
        files = sweepproject.git("ls-tree", "-r", "--name-only", rec["commit"]).split()
        assert files == ["m.json", "params.yaml", "sweeprun.lock", "sweeps.yaml"]
    sweepproject.git("fsck", "--strict", "--no-dangling")


def test_line_ending_conversion_leaves_adding_to_git(sweepproject: SweepProject) -> None:
    """With core.autocrlf git rewrites content on add: the in-process add must step aside."""
    _tiny_sweep(sweepproject, "1, 2")
    sweepproject.commit()
    sweepproject.git("config", "core.autocrlf", "true")
    log = sweepproject.trace_git()
    assert sweepproject.run("sweeps.yaml", "--run", "-j", "1").ret == 0
    assert any(c.startswith("add -A") for c in log.read_text().splitlines())
    recs = sweepproject.records()
    assert sorted(r["metrics"]["m.json"]["x"] for r in recs) == [1, 2]


def test_lock_file_committed_in_the_baseline_stays_on_the_fast_path(
    sweepproject: SweepProject, git_mode: str
) -> None:
    """Each result carries its own sweeprun.lock; the workspace copy is never rewritten."""
    if git_mode == "git":
        pytest.skip("checks the fast paths themselves (off in this mode)")
    _tiny_sweep(sweepproject, "1, 2, 3")
    sweepproject.write("sweeprun.lock", '{"schema": 1, "stages": {}}\n')
    sweepproject.commit()
    assert sweepproject.run("sweeps.yaml").ret == 0
    log = sweepproject.trace_git()  # queueing snapshots the workspace with git; running not
    assert sweepproject.run("--run-all", "-j", "1").ret == 0
    assert not [c for c in log.read_text().splitlines() if c.split()[0] in ("add", "checkout")]
    for rec in sweepproject.records():
        lock = json.loads(sweepproject.git("show", f"{rec['commit']}:sweeprun.lock"))
        params = sweepproject.git("show", f"{rec['commit']}:params.yaml").encode()
        assert lock["stages"]["main"]["cmd"] == DUMP_PARAMS
        # A stage that names no params depends on the whole file: its digest is recorded.
        digest = "sha256:" + hashlib.sha256(params).hexdigest()
        assert lock["stages"]["main"]["params"]["params.yaml"] == digest


def test_ignored_lock_file_is_kept_in_the_result(sweepproject: SweepProject) -> None:
    """The lock file is part of the result (it names the outs): kept even when ignored."""
    _tiny_sweep(sweepproject, "1, 2")
    sweepproject.write(".gitignore", "sweeprun.lock\n")
    sweepproject.commit()
    assert sweepproject.run("sweeps.yaml", "--run", "-j", "1").ret == 0
    for rec in sweepproject.records():
        files = sweepproject.git("ls-tree", "-r", "--name-only", rec["commit"]).split()
        assert files == [".gitignore", "m.json", "params.yaml", "sweeprun.lock", "sweeps.yaml"]
