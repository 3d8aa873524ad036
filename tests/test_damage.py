"""Damaged private state is set aside with one warning line, never fatal."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from test_checkpoints import PYTHON

from sweeprun.run.checkpoint import journal_path, read_journal
from sweeprun.testing import SweepProject


def _checkpointed(p: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    steps = tmp_path / "steps.txt"
    monkeypatch.setenv("STEPS_FILE", str(steps))
    p.write("params.yaml", "steps: 3\nlr: 1\n")
    p.write("train.py", PYTHON)
    p.write(
        "sweeps.yaml",
        f"params: params.yaml\nstages:\n  train:\n    cmd: {sys.executable} train.py\n"
        "    outs:\n      - model.txt: {checkpoint: true}\n    metrics: [m.json]\n",
    )
    p.commit()
    assert p.run("--run").ret == 0
    return steps


@pytest.mark.parametrize("damage", ["random-bytes", "empty"])
def test_a_damaged_checkpoint_journal_falls_back_to_the_published_ref(
    sweepproject: SweepProject,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
) -> None:
    p = sweepproject
    steps = _checkpointed(p, tmp_path, monkeypatch)
    (rec,) = p.records()
    journal = journal_path(p.path / ".git", rec["key"])
    assert len(read_journal(journal)) == 3
    journal.write_bytes(os.urandom(300) if damage == "random-bytes" else b"")
    # Run again: it resumes from checkpoint 3, which the ref still has: no step reruns.
    steps.unlink()
    res = p.run_subprocess("--run", "--force")
    assert res.ret == 0, res.stdout + res.stderr
    if damage == "random-bytes":
        assert "is damaged (not a checkpoint journal); set aside as" in res.stderr
        assert list((p.path / ".git" / "sweeprun" / "corrupt").iterdir())
    assert "resuming from checkpoint 3" in p.run("queue", "logs", rec["name"]).stdout
    assert not steps.exists()  # nothing was trained again


def test_a_lock_that_became_a_directory_and_a_leases_folder_that_became_a_file(
    sweepproject: SweepProject,
) -> None:
    p = sweepproject
    p.quickstart()
    assert p.run("sweeps.yaml", "-k", "model.degree=1", "--run").ret == 0
    state = p.path / ".git" / "sweeprun"
    lock = state / "ws" / "w0.lock"
    lock.unlink()
    lock.mkdir()
    shutil.rmtree(state / "leases", ignore_errors=True)
    (state / "leases").write_text("not a folder")
    res = p.run_subprocess("sweeps.yaml", "-k", "model.degree=2", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    assert "w0.lock is a directory, not a lock file; set aside as" in res.stderr
    assert "leases is not a directory; set aside as" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 2  # one line each, no traceback
    assert len(list((state / "corrupt").iterdir())) == 2


def test_a_live_runners_truncated_journal_keeps_its_jobs(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Its claims cannot be read, but its lock says it lives: nothing it runs is taken."""
    import time

    p = sweepproject
    started = tmp_path / "started"
    p.write("params.yaml", "i: 0\n")
    p.write(
        "job.py",
        f"import os, pathlib, time\npathlib.Path({str(started)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(300)\n",
    )
    p.write("sweeps.yaml", f"cmd: {sys.executable} job.py\n")
    p.commit()
    assert p.run("sweeps.yaml").ret == 0
    runner = p.popen("--run-all")
    try:
        deadline = time.monotonic() + 60
        while not (started.exists() and started.read_text()):
            assert runner.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        (journal,) = (p.path / ".git" / "sweeprun" / "leases").glob("*.lease")
        journal.write_bytes(b"")  # truncated under the live runner
        assert p.run("gc").ret == 0
        assert p.run_subprocess("--run-all").ret in (0, 5)
        assert os.path.exists(f"/proc/{started.read_text()}"), "its job was killed"
        assert runner.poll() is None
        assert list(p.refs("refs/sweeprun/running/"))
    finally:
        runner.kill()
        runner.communicate()


def test_queue_refs_that_can_never_run_are_set_aside(sweepproject: SweepProject) -> None:
    """Issue 22, item 9: a queue ref to a blob and a garbage loose queue ref sat in the queue
    forever, and `queue status` said nothing of them."""
    p = sweepproject
    p.quickstart()
    assert p.run("sweeps.yaml", "-k", "model.degree=1").ret == 0  # 2 queued
    blob = subprocess_blob(p)
    p.git("update-ref", "refs/sweeprun/queue/bloby", blob)
    loose = p.path / ".git" / "refs" / "sweeprun" / "queue" / "garbage"
    loose.write_text("not an object name\n")
    res = p.run_subprocess("queue", "status")
    assert res.ret == 0, res.stderr
    assert res.stdout.startswith("2 queued\n")
    warnings = res.stderr.splitlines()
    assert len(warnings) == 2, res.stderr
    assert any(
        "refs/sweeprun/queue/bloby points to a blob, not a queued commit: it can never run; "
        "set aside as" in w
        for w in warnings
    )
    assert any("refs/sweeprun/queue/garbage is a broken ref file" in w for w in warnings)
    assert not loose.exists()
    assert "refs/sweeprun/queue/bloby" not in p.refs()
    assert len(list((p.path / ".git" / "sweeprun" / "corrupt").iterdir())) == 2
    res = p.run_subprocess("--run-all")
    assert res.ret == 0 and res.stderr == "", res.stderr
    res.assert_outcomes(passed=2)


@pytest.mark.parametrize("blocker", ["file", "symlink"])
def test_a_blocked_workspace_slot_is_made_anew(
    sweepproject: SweepProject, tmp_path: Path, blocker: str
) -> None:
    p = sweepproject
    p.quickstart()
    ws = p.path / ".git" / "sweeprun" / "ws"
    ws.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me\n")
    if blocker == "file":
        (ws / "w0").write_text("in the way\n")
    else:
        (ws / "w0").symlink_to(elsewhere)
    res = p.run_subprocess("sweeps.yaml", "-k", "model.degree=1", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=2)
    assert "w0 is not a workspace directory; set aside as" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert sorted(os.listdir(elsewhere)) == ["precious.txt"]  # nothing written through it
    # gc repairs one too.
    shutil.rmtree(ws / "w0")
    (ws / "w0").symlink_to(elsewhere)
    assert p.run("gc").ret == 0
    assert not os.path.lexists(ws / "w0")
    assert (elsewhere / "precious.txt").read_text() == "keep me\n"


def test_a_sparse_checkout_is_refused_before_anything_runs(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.quickstart()
    p.write("data/a.txt", "1\n")
    p.commit("data")
    p.git("sparse-checkout", "set", "data")
    for args in (("sweeps.yaml", "--run"), ("run",), ("--run-all",)):
        res = p.run(*args)
        assert res.ret == 4, res.stdout + res.stderr
        assert res.stderr == (
            "sweeprun: error: this repository uses a sparse checkout (core.sparseCheckout): "
            "sweeprun's workspaces need every file; 'git sparse-checkout disable' (or a full "
            "clone) lets it run (nothing was queued or run)\n"
        )
        assert p.refs() == {}


def test_apply_undo_removes_a_link_it_made(sweepproject: SweepProject, tmp_path: Path) -> None:
    """An experiment made an absolute link: apply puts it here, and --undo removes the link
    (removing a link never touches what it leads to)."""
    p = sweepproject
    target = tmp_path / "elsewhere.txt"
    target.write_text("not sweeprun's\n")
    p.write("sweeps.yaml", f"cmd: ln -s {target} link_out\n")
    p.commit()
    res = p.run("run", "--temp", "-n", "linky")
    assert res.ret == 0, res.stdout + res.stderr
    assert p.run("apply", "linky").ret == 0
    assert os.readlink(p.path / "link_out") == str(target)
    res = p.run("apply", "--undo")
    assert res.ret == 0, res.stdout + res.stderr
    assert not os.path.lexists(p.path / "link_out")
    assert target.read_text() == "not sweeprun's\n"


def subprocess_blob(p: SweepProject) -> str:
    import subprocess

    return subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=p.path,
        input="just a blob\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
