"""Issue 25, item 3: ``optimize:`` sweeps — Optuna proposes from recorded results, the
study lives in git (rebuilt from records), exactly ``trials`` trials whatever happens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sweeprun.testing import SweepProject

pytest.importorskip("optuna")

TRAIN = """
import json, math, os, pathlib, time, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
tmp = pathlib.Path({log!r}).parent
with open(tmp / "started.txt", "a") as f:
    f.write("started\\n")
while (tmp / "hold").exists():
    time.sleep(0.01)
time.sleep(float(os.environ.get("TRAIN_SLEEP", "0")))
loss = (math.log10(p["lr"]) + 2) ** 2 + (p["units"] - 128) ** 2 / 1e4
json.dump({{"loss": loss}}, open("m.json", "w"))
with open({log!r}, "a") as f:  # its last act: a run that logged has finished
    f.write(json.dumps(p, sort_keys=True) + "\\n")
"""
SPEC = """
params: params.yaml
cmd: {python} train.py
metrics: [m.json]
sweeps:
  tune:
    optimize:
      trials: {trials}
      seed: 0
      metric: loss
      direction: min
      space:
        train.lr: loguniform(1e-4, 1e-1)
        train.units: choice(64, 128, 256)
"""


def make(p: SweepProject, tmp: Path, trials: int = 8, extra: str = "") -> Path:
    """A project with one ``optimize:`` sweep; returns the file each run appends to."""
    log = tmp / f"runs-{p.path.name}.jsonl"
    p.write("params.yaml", "train:\n  lr: 0.1\n  units: 64\n")
    p.write("train.py", TRAIN.format(log=str(log)))
    p.write("sweeps.yaml", SPEC.format(python=sys.executable, trials=trials) + extra)
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    return log


def trials(p: SweepProject) -> list[dict[str, Any]]:
    """The study's finished trials, in trial order."""
    found = [r for r in p.records() if r.get("sweep") == "tune"]
    return sorted(found, key=lambda r: r.get("trial", 0))


def ran(log: Path) -> list[str]:
    """Every completed run of the program, as its params."""
    return log.read_text().splitlines() if log.exists() else []


def test_a_study_runs_exactly_its_trials_and_learns(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    p = sweepproject
    log = make(p, tmp_path, trials=16)
    res = p.run("sweeps.yaml::tune", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    assert "study sweeps.yaml::tune: 2 of 16 trials proposed" in res.stdout
    got = trials(p)
    assert len(got) == 16 and {r["state"] for r in got} == {"success"}
    assert sorted(r.get("trial", 0) for r in got) == list(range(16))
    assert len(ran(log)) == 16 and len(set(ran(log))) == 16  # each point once
    losses = [r["metrics"]["m.json"]["loss"] for r in got]
    best = p.run("show", "--sweep", "tune", "--best", "loss")  # direction from the block
    assert best.ret == 0 and f"{min(losses):.6g}"[:4] in best.stdout, best.stdout + best.stderr
    listed = p.run("sweeps.yaml", "--collect-only")
    assert "collected 0 experiments and 1 study" in listed.stdout
    assert "<Study sweeps.yaml::tune> tpe, min loss, 16 trials" in listed.stdout
    assert "16 proposed, 16 finished" in listed.stdout, listed.stdout
    again = p.run("sweeps.yaml::tune", "--run", "-j", "2")  # full: nothing more runs
    assert again.ret in (0, 5) and len(trials(p)) == 16, again.stdout


def test_the_same_seed_proposes_the_same_points_and_learns(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """-j 1 (one completion order): a study from scratch proposes the same sequence; after
    TPE's 10 random start-up trials, its proposals are better than those."""
    p = sweepproject
    log = make(p, tmp_path, trials=24)
    assert p.run("sweeps.yaml::tune", "--run").ret == 0
    first = ran(log)
    losses = [r["metrics"]["m.json"]["loss"] for r in trials(p)]
    assert sorted(losses[10:])[7] < sorted(losses[:10])[5] / 2, losses  # medians
    for ref in p.refs("refs/sweeprun/"):
        p.git("update-ref", "-d", ref)
    log.unlink()
    assert p.run("sweeps.yaml::tune", "--run").ret == 0
    assert ran(log) == first and len(first) == 24


def test_kill_9_mid_study_then_run_all_ends_with_exactly_its_trials(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    p = sweepproject
    log = make(p, tmp_path, trials=10)
    runner = subprocess.Popen(
        [sys.executable, "-m", "sweeprun", "sweeps.yaml::tune", "--run", "-j", "2"],
        cwd=p.path, env=dict(os.environ, TRAIN_SLEEP="0.1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started = tmp_path / "started.txt"

    def until(check: Any) -> None:
        deadline = time.monotonic() + 60
        while not check():
            assert time.monotonic() < deadline and runner.poll() is None
            time.sleep(0.02)

    until(lambda: len(ran(log)) >= 3)
    (tmp_path / "hold").touch()  # the next trials wait at their start: kill -9 then
    until(lambda: len(started.read_text().split()) - len(ran(log)) == 2)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    (tmp_path / "hold").unlink()
    assert 3 <= len(ran(log)) < 10, "the kill came too late to mean anything"
    res = p.run_subprocess("--run-all", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    got = trials(p)
    assert len(got) == 10 and {r["state"] for r in got} == {"success"}, got
    assert sorted(r.get("trial", 0) for r in got) == list(range(10))  # each proposal once
    assert len(ran(log)) == 10 and len(set(ran(log))) == 10  # no point ran twice
    assert not p.refs("refs/sweeprun/queue/") and not p.refs("refs/sweeprun/running/")


def test_two_runners_on_one_study_stop_at_its_trials(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    p = sweepproject
    log = make(p, tmp_path, trials=8)
    assert p.run("sweeps.yaml::tune").ret == 0  # queued: its first trial
    env = dict(os.environ, TRAIN_SLEEP="0.2")
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "sweeprun", "--run-all", "-j", "2"],
            cwd=p.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for runner in both:
        out, err = runner.communicate(timeout=300)
        assert runner.returncode in (0, 5), out + err
    p.run("--run-all")  # whatever a runner left queued when it ended
    got = trials(p)
    assert len(got) == 8 and sorted(r.get("trial", 0) for r in got) == list(range(8))
    assert len(ran(log)) == 8


def test_a_background_worker_runs_a_study_queued_later(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    p = sweepproject
    log = make(p, tmp_path, trials=6)
    assert p.run_subprocess("queue", "start", "-j", "2").ret == 0
    try:
        assert p.run("sweeps.yaml::tune").ret == 0
        deadline = time.monotonic() + 120
        while len(trials(p)) < 6 or p.refs("refs/sweeprun/running/"):
            assert time.monotonic() < deadline, trials(p)
            time.sleep(0.1)
        time.sleep(1)  # nothing more comes
        assert len(trials(p)) == 6 and len(ran(log)) == 6
    finally:
        assert p.run_subprocess("queue", "stop", "--kill", timeout=60).ret == 0


@pytest.mark.parametrize(
    ("block", "said"),
    [
        ("      prune: {pruner: asha}\n", "'pruner' 'asha' is not one of"),
        ("      prune: {min_steps: -1}\n", "'min_steps' must be a whole number"),
        ("      trials_: 3\n", "unknown key 'trials_' in 'optimize'"),
    ],
)
def test_bad_optimize_blocks_are_located_errors(
    sweepproject: SweepProject, tmp_path: Path, block: str, said: str
) -> None:
    p = sweepproject
    make(p, tmp_path, extra=block)
    res = p.run("sweeps.yaml::tune")
    assert res.ret == 4 and said in res.stderr, res.stdout + res.stderr
    assert "sweeps.yaml:" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not p.refs("refs/sweeprun/")


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("sampler: tpe", "sampler: bayes", "'sampler' 'bayes' is not one of"),
        ("loguniform(1e-4, 1e-1)", "normal(0, 1)", "normal() has no bounds"),
        ("train.units:", "train.nope:", "train.nope"),
        ("direction: min", "direction: down", "'direction' must be min or max"),
    ],
)
def test_bad_values_in_an_optimize_block_are_located(
    sweepproject: SweepProject, tmp_path: Path, old: str, new: str, said: str
) -> None:
    p = sweepproject
    make(p, tmp_path)
    text = p.read("sweeps.yaml").replace("      seed: 0", "      seed: 0\n      sampler: tpe")
    p.write("sweeps.yaml", text.replace(old, new))
    p.commit("bad")
    res = p.run("sweeps.yaml::tune")
    assert res.ret == 4 and said in res.stderr, res.stdout + res.stderr
    assert "sweeps.yaml:" in res.stderr and not p.refs("refs/sweeprun/")


def test_without_optuna_the_error_says_how_to_get_it(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    p = sweepproject
    make(p, tmp_path)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "optuna.py").write_text("raise ImportError('no optuna here')\n")
    res = p.run_subprocess(
        "sweeps.yaml::tune", env={"PYTHONPATH": os.pathsep.join([str(shim), *sys.path])}
    )
    assert res.ret == 4, res.stdout + res.stderr
    assert "pip install 'sweeprun[optimize]'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not p.refs("refs/sweeprun/")


def test_records_name_their_study(sweepproject: SweepProject, tmp_path: Path) -> None:
    p = sweepproject
    make(p, tmp_path, trials=2)
    assert p.run("sweeps.yaml::tune", "--run", "-j", "2").ret == 0
    shown = json.loads(p.run("show", "--json").stdout)
    assert {len(r["study"]) for r in shown} == {12} and {r["sweep"] for r in shown} == {"tune"}


def test_the_schema_knows_optimize_blocks(sweepproject: SweepProject) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(sweepproject.run("--schema").stdout)
    spec = yaml.safe_load(SPEC.format(python="python", trials=5))
    jsonschema.validate(spec, schema)
    spec["sweeps"]["tune"]["optimize"]["sampler"] = "bayes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, schema)


CURVES = """
import json, math, os, pathlib, yaml
from sweeprun.api import make_checkpoint
p = yaml.safe_load(open("params.yaml"))["train"]
final = (math.log10(p["lr"]) + 2) ** 2 + (p["units"] - 128) ** 2 / 1e4
state = json.load(open("state.json")) if os.path.exists("state.json") else {{"step": 0}}
for step in range(state["step"] + 1, 9):
    json.dump({{"step": step}}, open("state.json", "w"))
    json.dump({{"loss": final + 4.0 / step}}, open("m.json", "w"))
    with open({log!r}, "a") as f:
        f.write(f"{{p['lr']}} {{step}}\\n")
    make_checkpoint()
"""
#: The program above as a checkpointing stage (what a W&B config is pasted under too).
CURVES_STAGES = """
params: params.yaml
stages:
  train:
    cmd: {python} train.py
    outs: [state.json: {{checkpoint: true}}]
    metrics: [m.json]
"""
CURVES_SPEC = (
    CURVES_STAGES
    + SPEC[SPEC.index("sweeps:") :].replace("{trials}", "10")
    + "      prune:\n        pruner: median\n        min_steps: 2\n"
)


def test_a_pruned_trial_stops_at_its_checkpoint_and_is_recorded_pruned(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    p = sweepproject
    log = tmp_path / "steps.txt"
    p.write("params.yaml", "train:\n  lr: 0.1\n  units: 64\n")
    p.write("train.py", CURVES.format(log=str(log)))
    p.write("sweeps.yaml", CURVES_SPEC.format(python=sys.executable))
    p.write(".gitignore", "__pycache__/\nstate.json\nm.json\n")
    p.commit()
    res = p.run("sweeps.yaml::tune", "--run")  # -j 1: one completion order
    assert res.ret == 0, res.stdout + res.stderr  # pruned is finished, not failed
    got = trials(p)
    assert len(got) == 10, got
    pruned = [r for r in got if r["state"] == "pruned"]
    assert pruned and len(pruned) < 10, [r["state"] for r in got]
    assert {r["state"] for r in got} <= {"success", "pruned"}
    steps: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        lr, step = line.split()
        steps.setdefault(lr, []).append(int(step))
    for r in pruned:
        k = r["checkpoints"]
        assert 2 <= k < 8 and "pruned" in r["message"] and f"checkpoint {k}" in r["message"]
        # The program went no further than checkpoint k: stopped while it waited there.
        assert max(steps[str(r["params"]["params.yaml"]["train"]["lr"])]) == k, r
        chain = p.git("log", "--first-parent", "--format=%s", r["commit"]).splitlines()
        assert sum("checkpoint" in s for s in chain) == k, chain
    for r in got:
        if r["state"] == "success":
            assert r["checkpoints"] == 8
    assert "pruned" in p.run("show", "--sweep", "tune").stdout
    kept = p.run("show", "--sweep", "tune", "--hide-pruned", "--json").stdout
    assert {r["state"] for r in json.loads(kept)} == {"success"}


def test_a_small_discrete_space_ends_when_every_point_was_tried(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """No point runs twice: 2 x 2 points, 6 trials asked → 4 trials and a line that says
    why (before, a repeat was skipped as a duplicate and the study stalled silently)."""
    p = sweepproject
    log = make(p, tmp_path, trials=6)
    p.write(
        "sweeps.yaml",
        p.read("sweeps.yaml").replace("loguniform(1e-4, 1e-1)", "choice(0.001, 0.01)")
        .replace("choice(64, 128, 256)", "choice(64, 128)"),
    )  # fmt: skip
    p.commit("a small space")
    res = p.run("sweeps.yaml::tune", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    assert "no untried point left in its space after 4 trials" in res.stdout, res.stdout
    assert len(trials(p)) == 4 and len(set(ran(log))) == 4 == len(ran(log))


def test_the_budget_is_counted_in_the_ledger_not_by_listing_records(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """A record moving from running/ to exps/ while records are listed can be missed by
    the listing (git lists exps/ before running/): counting trials that way proposed one
    too many (11 of 10, once in 8 runs of the kill -9 test). The ledger's refs never move.
    Here the listing's miss is made plain: a finished trial's ref is taken away."""
    p = sweepproject
    make(p, tmp_path, trials=3)
    assert p.run("sweeps.yaml::tune", "--run").ret == 0
    assert len(p.refs("refs/sweeprun/studies/")) == 3
    gone = next(iter(p.refs("refs/sweeprun/exps/")))
    p.git("update-ref", "-d", gone)
    res = p.run("sweeps.yaml::tune", "--run")
    assert res.ret in (0, 5), res.stdout + res.stderr
    assert len(trials(p)) == 2 and "3 of 3 trials proposed" in res.stdout, res.stdout


def test_two_studies_of_one_space_each_run_their_own_trials(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Two optimize: sweeps of one spec over one small discrete space (seeds 0 and 1):
    the second proposes points the first ran, with the same inputs; they are its own
    trials (before, each was skipped as "already recorded" and the second stalled)."""
    p = sweepproject
    make(p, tmp_path, trials=3)
    small = p.read("sweeps.yaml").replace("loguniform(1e-4, 1e-1)", "choice(0.001, 0.01)")
    small = small.replace("choice(64, 128, 256)", "choice(64, 128)")
    second = (
        small[small.index("  tune:") :].replace("  tune:", "  tune2:").replace("seed: 0", "seed: 1")
    )
    p.write("sweeps.yaml", small + second)
    p.commit("two studies")
    assert p.run("sweeps.yaml::tune", "--run").ret == 0
    res = p.run("sweeps.yaml::tune2", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    got = [r["sweep"] for r in p.records()]
    assert sorted(got) == ["tune"] * 3 + ["tune2"] * 3, got


PROPOSER = """
import json, pathlib
import sweeprun

@sweeprun.hookimpl
def sweeprun_propose(config, history, n):
    # A hand-written proposer in place of Optuna's: each call notes what it was shown.
    with open({calls!r}, "a") as f:
        f.write(json.dumps([len(history), sum(t.values is not None for t in history), n]) + "\\n")
    k = len(history)
    return [{{"train.lr": 10.0 ** -(1 + (k + i) % 4), "train.units": 128}} for i in range(n)]
"""


def test_a_sweepconf_proposer_is_asked_lazily_as_results_come_in(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Sweepers are a hook family: ``sweeprun_propose`` in sweepconf.py replaces Optuna's
    proposal, and is asked one trial at a time as slots free, each time with every trial
    so far (finished ones with their values)."""
    p = sweepproject
    calls = tmp_path / "calls.jsonl"
    log = make(p, tmp_path, trials=4)
    p.write("sweepconf.py", PROPOSER.format(calls=str(calls)))
    p.commit()
    res = p.run("sweeps.yaml::tune", "--run", "-j", "1")
    assert res.ret == 0, res.stdout + res.stderr
    got = [json.loads(line) for line in calls.read_text().splitlines()]
    # -j 1: the first trial is proposed with nothing known, each next one once the one
    # before has finished (its value known): lazily, never the whole budget at once.
    assert got == [[0, 0, 1], [1, 1, 1], [2, 2, 1], [3, 3, 1]]
    lrs = [json.loads(line)["lr"] for line in ran(log)]
    assert lrs == [0.1, 0.01, 0.001, 0.0001]
    assert [t["params"]["params.yaml"]["train"]["lr"] for t in trials(p)] == lrs
