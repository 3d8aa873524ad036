"""One execution path: ``sweeprun run`` (workspace and ``--temp``) goes through the
scheduler and executor of queued experiments, with their options, record and
environment — checkpoints included."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeprun._core.cli import _prepare
from sweeprun._core.session import Session
from sweeprun.model import (
    QUEUE,
    SCHEMA,
    Job,
    QueueRecord,
    Result,
    format_message,
    parse_message,
    parse_record,
)
from sweeprun.run.jobs import job_setup, make_job
from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes

PYTHON = """
import json, os, sys, time, yaml
from sweeprun.api import make_checkpoint

p = yaml.safe_load(open("params.yaml"))
start = int(open("model.txt").read()) if os.path.exists("model.txt") else 0
for step in range(start + 1, p["steps"] + 1):
    open(os.environ["STEPS_FILE"], "a").write(f"{step}\\n")
    open("model.txt", "w").write(str(step))
    json.dump({"step": step}, open("m.json", "w"))
    make_checkpoint()
    if step >= int(os.environ.get("SLOW_AFTER", 99)):
        time.sleep(60)  # interrupted meanwhile
"""
SPEC = """params: params.yaml
stages:
  train:
    cmd: {python} train.py
    outs:
      - model.txt: {{checkpoint: true}}
    metrics: [m.json]
"""


def _checkpointing(p: SweepProject, steps_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPS_FILE", str(steps_file))
    p.write("params.yaml", "steps: 4\n")
    p.write("train.py", PYTHON)
    p.write("sweeps.yaml", SPEC.format(python=sys.executable))
    p.commit()


def full(p: SweepProject, rec: dict[str, object]) -> dict[str, object]:
    """The whole record in an experiment's commit message (``show --json`` picks fields)."""
    meta = parse_message(p.git("log", "-1", "--format=%B", str(rec["commit"])))
    assert meta is not None
    return meta


def _journalled(p: SweepProject) -> int:
    """How many checkpoints the running experiment's journal holds (taken and released)."""
    journals = (p.path / ".git" / "sweeprun" / "checkpoints").glob("*")
    return max(
        (len(j.read_text().split("\n")) - 1 for j in journals if "." not in j.name), default=0
    )


def _steps(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_for(what: str, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_ctrl_c_a_workspace_run_then_run_again_resumes(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = sweepproject
    steps = tmp_path / "steps.txt"
    _checkpointing(p, steps, monkeypatch)
    monkeypatch.setenv("SLOW_AFTER", "2")
    runner = p.popen("run")
    wait_for("two checkpoints", lambda: _journalled(p) == 2)
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 2, out + err
    assert not p.refs("refs/sweeprun/queue/") and not p.refs("refs/sweeprun/running/")
    assert p.read("model.txt") == "2"
    monkeypatch.delenv("SLOW_AFTER")
    res = p.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert _steps(steps) == ["1", "2", "3", "4"]  # 3 and 4 only the second time
    assert "resuming from checkpoint 2" in res.stdout
    (rec,) = p.records()
    meta = full(p, rec)
    assert meta["state"] == "success" and meta["checkpoints"] == 4
    # The same record as a queued experiment's.
    assert meta["attempts"] == 1 and meta["host"] and "log_tail" in meta and meta["in_place"]


def test_apply_a_checkpoint_then_run_continues_from_it(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = sweepproject
    steps = tmp_path / "steps.txt"
    _checkpointing(p, steps, monkeypatch)
    assert p.run("run", "-n", "first").ret == 0
    assert _steps(steps) == ["1", "2", "3", "4"]
    res = p.run("apply", "first@2")
    assert res.ret == 0, res.stderr
    assert p.read("model.txt") == "2"
    steps.unlink()
    res = p.run("run", "-n", "second")
    assert res.ret == 0, res.stdout + res.stderr
    assert _steps(steps) == ["3", "4"]
    second = next(r for r in p.records() if r["name"] == "second")
    ckpt2 = p.git(
        "rev-list", "--first-parent", next(r["commit"] for r in p.records() if r["name"] == "first")
    ).split()[3]  # result, 4, 3, 2
    assert p.git("merge-base", "--is-ancestor", ckpt2, second["commit"]) == ""
    assert second["checkpoints"] == 4


def test_rev_name_at_step_and_reset_work_in_the_workspace(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = sweepproject
    steps = tmp_path / "steps.txt"
    _checkpointing(p, steps, monkeypatch)
    assert p.run("run", "-n", "first").ret == 0
    steps.unlink()
    res = p.run("run", "--rev", "first@3", "-n", "again")
    assert res.ret == 0, res.stdout + res.stderr
    assert _steps(steps) == ["4"]
    steps.unlink()
    (p.path / "model.txt").unlink()
    res = p.run("run", "--reset", "-n", "fresh")
    assert res.ret == 0, res.stdout + res.stderr
    assert _steps(steps) == ["1", "2", "3", "4"]
    res = p.run("run", "--rev", "first@9")
    assert res.ret == 4 and "no checkpoint 9 of an experiment named 'first'" in res.stderr


@pytest.mark.parametrize("temp", [False, True], ids=["workspace", "temp"])
def test_run_takes_the_run_options_and_sets_the_environment(
    sweepproject: SweepProject, tmp_path: Path, temp: bool
) -> None:
    p = sweepproject
    seen = tmp_path / "env.txt"
    counter = tmp_path / "count"
    p.write("params.yaml", "x: 1\n")
    p.write(
        "job.sh",
        f'echo "$SWEEPRUN_EXP_NAME $SWEEPRUN_BASELINE_REV" > {seen}\n'
        f"echo . >> {counter}\n"
        f"[ $(wc -l < {counter}) -ge 2 ] || exit 3\necho '{{\"ok\": 1}}' > m.json\n",
    )
    p.write("sweeps.yaml", "params: params.yaml\ncmd: bash job.sh\nmetrics: [m.json]\n")
    head = p.commit()
    extra = ["--temp"] if temp else []
    res = p.run("run", *extra, "-n", "named", "--retries", "1")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = p.records()
    assert full(p, rec)["attempts"] == 2 and rec["name"] == "named"
    assert seen.read_text().split() == ["named", head]
    p.write("job.sh", "sleep 30\n")
    p.commit()
    started = time.monotonic()
    res = p.run("run", *extra, "--timeout", "1")
    assert res.ret == 1 and time.monotonic() - started < 20
    assert any(r["state"] == "timeout" for r in p.records())


def test_quiet_run_prints_no_log(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.write("params.yaml", "x: 1\n")
    p.write("sweeps.yaml", "params: params.yaml\ncmd: echo chatty-output\n")
    p.commit()
    assert "chatty-output" in p.run("run").stdout
    res = p.run("run", "-q", "--force")
    assert res.ret == 0 and "chatty-output" not in res.stdout


def test_records_of_schema_1_are_read_and_run(sweepproject: SweepProject) -> None:
    """A queue entry written by an earlier version (params text in the message too,
    ``version: 1``) still runs; its result is recorded in today's schema."""
    p = sweepproject
    p.quickstart()
    assert p.run("sweeps.yaml").ret == 0
    ref = next(iter(p.refs(QUEUE)))
    commit = p.git("rev-parse", ref).strip()
    body = p.git("log", "-1", "--format=%B", commit)
    meta = json.loads(body.split("sweeprun-record: ", 1)[1])
    meta.pop("changed")  # schema 2's; schema 1 carried the files' text instead
    old = dict(meta, version=1, files={"params.yaml": p.git("show", f"{commit}:params.yaml")})
    message = body.split("\n\n")[0] + "\n\nsweeprun-record: " + json.dumps(old) + "\n"
    tree = p.git("rev-parse", f"{commit}^{{tree}}").strip()
    parent = p.git("rev-parse", f"{commit}^").strip()
    v1 = subprocess.run(
        ["git", "commit-tree", tree, "-p", parent],
        cwd=p.path,
        input=message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    p.git("update-ref", ref, v1, commit)
    queued = [r for r in p.records() if r["commit"] == v1]
    assert queued and queued[0]["state"] == "queued"
    res = p.run("--run-all")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = [r for r in p.records() if r["name"] == meta["name"]]
    result = full(p, rec)
    assert result["state"] == "success" and result["version"] == SCHEMA and "files" not in result
    assert result["queue_commit"] == v1


def test_schema_1_result_with_workspace_flag_migrates() -> None:
    old = {
        "version": 1,
        "key": "k" * 20,
        "name": "exp-1",
        "id": "run",
        "baseline": "b" * 40,
        "stages": [{"name": "main", "cmd": "echo", "outs": [{"path": "m", "cache": True}]}],
        "files": {"params.yaml": "x: 1\n"},
        "state": "expect-failed",
        "metrics": {"m.json": {"acc": 0.5}},
        "workspace": True,
        "started": 1.0,
        "finished": 3.5,
    }
    rec = parse_record(old)
    assert isinstance(rec, Result)
    assert rec.state == "expect-failed" and rec.in_place and rec.duration == 2.5
    assert rec.stages[0].outs[0].path == "m"
    assert "files" not in rec.to_json() and parse_record(rec.to_json()) == rec
    assert parse_record({"key": 1, "name": "x"}) is None
    queued = QueueRecord(key="k", name="n", id="i", baseline="b", params={"p.yaml": {"a": 1}})
    text = format_message("subject", queued)
    assert text.count('"a": 1') == 1  # each fact once


def test_a_job_is_a_small_reference_whatever_the_params_weigh(
    sweepproject: SweepProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = sweepproject
    big = "".join(f"key_{i:04d}: {'v' * 20}\n" for i in range(500))  # ~14 KB
    assert len(big) > 14_000
    p.write("params.yaml", "lr: 0.1\n" + big)
    p.write("sweeps.yaml", "params: params.yaml\ncmd: echo ${lr}\n")
    p.commit()
    assert p.run("sweeps.yaml", "-S", "lr=0.2").ret == 0
    monkeypatch.chdir(p.path)
    session = Session(_prepare(["--run-all"], sys.stdout))
    (record,) = session.store.records(QUEUE)
    setup, env = job_setup(session.config.repo.root, session.config.repo.common_dir)
    job = make_job(session.store, record, session.options, setup, env)
    session.close()
    assert isinstance(job, Job) and len(pickle.dumps(job)) < 1024
    assert str(p.path) in (job.repo_root, job.common_dir[: len(str(p.path))])
    message = p.git("log", "-1", "--format=%B", record.commit)
    assert len(message) < len(big) * 1.6  # the params once, not twice


def test_getoption_raises_on_an_unknown_name(sweepproject: SweepProject) -> None:
    import os

    cwd = os.getcwd()
    os.chdir(sweepproject.path)
    try:
        config = _prepare(["run"], sys.stdout)
    finally:
        os.chdir(cwd)
    assert config.getoption("timeout") is None
    with pytest.raises(ValueError, match="no option named 'tiemout'"):
        config.getoption("tiemout")
    assert config.getoption("tiemout", 5) == 5


def test_a_killed_workspace_run_is_run_again_by_the_next_one(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of 'sweeprun run': its job dies with it; the next 'sweeprun run' takes the
    leftover entry back and runs here (checkpoints kept), not left for --run-all."""
    p = sweepproject
    steps = tmp_path / "steps.txt"
    _checkpointing(p, steps, monkeypatch)
    monkeypatch.setenv("SLOW_AFTER", "1")
    runner = p.popen("run")
    wait_for("a checkpoint", lambda: _journalled(p) == 1)
    runner.kill()
    runner.communicate(timeout=30)
    assert p.refs("refs/sweeprun/running/")  # the dead runner's claim
    monkeypatch.delenv("SLOW_AFTER")
    res = p.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert not p.refs("refs/sweeprun/queue/") and not p.refs("refs/sweeprun/running/")
    assert _steps(steps) == ["1", "2", "3", "4"]  # resumed after checkpoint 1
    assert [r["state"] for r in p.records()] == ["success"]


def test_a_run_without_checkpoints_does_not_continue_an_earlier_chain(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = sweepproject
    _checkpointing(p, tmp_path / "steps.txt", monkeypatch)
    assert p.run("run", "-n", "first").ret == 0  # the workspace now holds its checkpoint 4
    head = p.git("rev-parse", "HEAD").strip()
    p.write("sweeps.yaml", "params: params.yaml\ncmd: echo plain\n")  # same baseline
    assert p.run("run", "-n", "plain").ret == 0
    (plain,) = [r for r in p.records() if r["name"] == "plain"]
    assert p.git("rev-parse", f"{plain['commit']}^").strip() == head


def test_a_schema_2_checkpoint_with_its_params_is_read_as_before() -> None:
    """Checkpoints written before schema 3 repeat their experiment's params: read as they
    are, and :meth:`CheckpointRecord.of` gives any checkpoint its experiment's facts."""
    from sweeprun.model import CheckpointRecord

    fat = {
        "version": 2,
        "state": "checkpoint",
        "key": "k1",
        "name": "exp-1",
        "id": "run",
        "baseline": "b" * 40,
        "params": {"params.yaml": {"lr": 0.1}},
        "step": 2,
        "metrics": {"m.json": {"loss": 0.5}},
    }
    old = parse_record(fat)
    assert isinstance(old, CheckpointRecord) and old.params == {"params.yaml": {"lr": 0.1}}
    stored = parse_message(format_message("s", old))
    assert stored is not None and "params" not in stored and stored["version"] == SCHEMA
    thin = parse_record(stored)
    assert isinstance(thin, CheckpointRecord) and thin.params == {} and thin.step == 2
    exp = QueueRecord(key="k1", name="exp-1", id="run", baseline="b" * 40, params=old.params)
    whole = thin.of(exp)
    assert whole.params == old.params and whole.step == 2 and whole.metrics == old.metrics
