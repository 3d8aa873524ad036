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
