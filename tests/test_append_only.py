"""Records are append-only: no command replaces a recorded experiment as a side effect
(issue 22, item 2), checked case by case and by a random state machine."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sweeprun.testing import SweepProject

PROGRAM = """
import json, sys, yaml
p = yaml.safe_load(open("params.yaml"))
json.dump({"m": p["lr"] * 2}, open("m.json", "w"))
sys.exit(1 if p["lr"] == 0.9 else 0)
"""


def _project(sp: SweepProject, lr: float = 0.3) -> None:
    sp.write("params.yaml", f"lr: {lr}\nseed: 0\n")
    sp.write("train.py", PROGRAM)
    sp.write(
        "sweeps.yaml",
        """
        params: params.yaml
        cmd: python3 train.py
        deps: [train.py]
        metrics: [m.json]
        sweeps:
          g:
            matrix:
              lr: [0.1, 0.2]
        """,
    )
    sp.write(".gitignore", "__pycache__/\nm.json\nsweeprun.lock\n")
    sp.commit()


def _snapshot(sp: SweepProject) -> dict[str, str]:
    """Every record ref (results and the replaced ones) → commit."""
    return {
        **sp.refs("refs/sweeprun/exps/"),
        **sp.refs("refs/sweeprun/replaced/"),
    }


def _by_id(sp: SweepProject, *args: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in sp.records(*args)}


def test_run_of_a_recorded_sweep_point_records_nothing(sweepproject: SweepProject) -> None:
    sp = sweepproject
    _project(sp)
    assert sp.run("--run", "-q").ret == 0
    before = _snapshot(sp)
    res = sp.run("run", "--temp", "-S", "lr=0.1")
    assert res.ret == 0, res.stdout + res.stderr
    assert "nothing to run: this experiment is recorded already as exp-" in res.stdout
    assert "(g[lr=0.1], success)" in res.stdout
    assert _snapshot(sp) == before
    assert len(sp.records("--sweep", "g")) == 2


def test_run_in_the_workspace_at_a_recorded_point_records_nothing(
    sweepproject: SweepProject,
) -> None:
    """The reproduced case: params.yaml says lr: 0.1, which sweep g recorded."""
    sp = sweepproject
    _project(sp, lr=0.1)
    assert sp.run("--run", "-q").ret == 0
    before = _snapshot(sp)
    res = sp.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert "recorded already" in res.stdout
    assert _snapshot(sp) == before
    assert {r["sweep"] for r in sp.records()} == {"g"}


def test_force_runs_it_again_in_its_own_row(sweepproject: SweepProject) -> None:
    """``run -f`` of another sweep's point: a new row of 'run'; g's rows stay as they were."""
    sp = sweepproject
    _project(sp)
    assert sp.run("--run", "-q").ret == 0
    before = _snapshot(sp)
    res = sp.run("run", "--temp", "-f", "-S", "lr=0.1")
    assert res.ret == 0, res.stdout + res.stderr
    after = _snapshot(sp)
    assert {k: after[k] for k in before} == before
    assert len(after) == 3
    # Again: now it replaces its own row's record, which stays reachable.
    res = sp.run("run", "--temp", "-f", "-S", "lr=0.1")
    assert res.ret == 0, res.stdout + res.stderr
    again = _snapshot(sp)
    assert set(before.items()) <= set(again.items())
    assert set(after.values()) <= set(again.values())
    assert len(sp.records()) == 3
    everything = sp.records("--all-records")
    assert len(everything) == 4
    (old,) = [r for r in everything if r.get("replaced")]
    assert old["id"] == "run[lr=0.1]"
    shown = sp.run("show", "--all-records").stdout
    assert "success (replaced)" in shown


def test_a_taken_name_is_refused_before_the_workspace_changes(
    sweepproject: SweepProject,
) -> None:
    sp = sweepproject
    _project(sp)
    res = sp.run("run", "-S", "lr=0.5", "-n", "half")
    assert res.ret == 0, res.stdout + res.stderr
    (first,) = sp.records()
    params = sp.read("params.yaml")
    res = sp.run("run", "-S", "lr=0.7", "-n", "half")
    assert res.ret == 4
    assert res.stderr == (
        "sweeprun: error: -n/--name: experiment name 'half' is already used by "
        f"'run[lr=0.5]' at baseline {sp.head()[:7]} (success); -f (--force in a sweep) runs "
        "it again and replaces it, keeping the earlier record (show --all-records)\n"
    )
    assert sp.read("params.yaml") == params  # refused before -S wrote it
    # With -f: replaced, the earlier record kept.
    res = sp.run("run", "-S", "lr=0.7", "-n", "half", "-f")
    assert res.ret == 0, res.stdout + res.stderr
    (now,) = sp.records()
    assert (now["name"], now["params"]["params.yaml"]["lr"]) == ("half", 0.7)
    (old,) = [r for r in sp.records("--all-records") if r.get("replaced")]
    assert (old["commit"], old["name"]) == (first["commit"], "half")
    # Another sweep's name is never taken over, -f or not.
    g = sp.run("-k", "lr=0.1", "--run", "-q")
    assert g.ret == 0
    gname = sp.records("--sweep", "g")[0]["name"]
    res = sp.run("run", "-S", "lr=0.2", "-n", gname, "-f")
    assert res.ret == 4
    assert "(choose another name)" in res.stderr


def test_last_failed_keeps_the_failed_record(sweepproject: SweepProject) -> None:
    sp = sweepproject
    _project(sp)
    sp.write("sweeps.yaml", sp.read("sweeps.yaml").replace("[0.1, 0.2]", "[0.1, 0.9]"))
    sp.commit("with a failing point")
    assert sp.run("--run", "-q").ret == 1
    failed = _by_id(sp)["g[lr=0.9]"]
    sp.write("train.py", PROGRAM.replace("0.9", "0.95"))
    # Same point, the program fixed (uncommitted): --lf reruns it in its row.
    res = sp.run("--lf", "--run", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    now = _by_id(sp)["g[lr=0.9]"]
    assert (now["state"], now["name"]) == ("success", failed["name"])
    (old,) = [r for r in sp.records("--all-records") if r.get("replaced")]
    assert (old["commit"], old["state"]) == (failed["commit"], "failed")


def test_a_name_taken_meanwhile_is_never_overwritten(sweepproject: SweepProject) -> None:
    """Another runner recorded a result under the same name after this one was queued:
    the result lands beside it (NAME-2), and the other result stays."""
    sp = sweepproject
    _project(sp)
    assert sp.run("-S", "lr=0.5", "-n", "x").ret == 0  # queued only
    assert sp.run("-k", "lr=0.1", "--run", "-q").ret == 0
    g = _by_id(sp)["g[lr=0.1]"]
    ref = f"refs/sweeprun/exps/{sp.head()}/x"
    sp.git("update-ref", ref, g["commit"])
    res = sp.run("--run-all", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    assert sp.refs(ref)[ref] == g["commit"]
    names = {r["name"]: r for r in sp.records()}
    assert names["x-2"]["params"]["params.yaml"]["lr"] == 0.5


def test_force_in_a_sweep_replaces_and_keeps(sweepproject: SweepProject) -> None:
    sp = sweepproject
    _project(sp)
    assert sp.run("--run", "-q").ret == 0
    before = _snapshot(sp)
    assert sp.run("--run", "--force", "-q").ret == 0
    after = _snapshot(sp)
    assert len(after) == 4
    assert set(before.values()) <= set(after.values())
    rows = sp.records("--all-records")
    assert sorted(json.dumps([r["id"], bool(r.get("replaced"))]) for r in rows) == sorted(
        json.dumps([i, rep]) for i in ("g[lr=0.1]", "g[lr=0.2]") for rep in (False, True)
    )


# -- the state machine --------------------------------------------------------------------

#: Sequences the machine tries (SWEEPRUN_APPEND_ONLY_SEQUENCES=N for more or fewer; 60
#: keeps the whole suite within its time budget, the long runs are a setting away).
SEQUENCES = int(os.environ.get("SWEEPRUN_APPEND_ONLY_SEQUENCES", "60"))
FAST = """
params: params.yaml
cmd: python3 train.py
metrics: [m.json]
sweeps:
  g:
    matrix:
      lr: [0.1, 0.5]
"""
LRS = st.sampled_from([0.1, 0.2, 0.5])
NAMES = st.sampled_from([None, "half", "other"])


def test_no_step_rewrites_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweepproject: SweepProject
) -> None:
    """Random sequences of run, -S --run, --lf, -f, -n, remove, apply and gc: after each
    step every record that existed is still reachable and unchanged, unless the step was
    an explicit remove, or an explicit replacement (-f, --force, --lf), which moves the
    record to refs/sweeprun/replaced/ with its commit as it was."""
    template = sweepproject
    template.write("params.yaml", "lr: 0.3\n")
    template.write("train.py", PROGRAM.replace("0.9", "0.5"))
    template.write("sweeps.yaml", FAST)
    template.write(".gitignore", "m.json\nsweeprun.lock\n__pycache__/\n")
    template.commit()
    counter = iter(range(10**6))
    seen: list[tuple[str, ...]] = []

    class Machine(RuleBasedStateMachine):
        @initialize()
        def fresh_repository(self) -> None:
            base = tmp_path / f"seq{next(counter)}"
            shutil.copytree(template.path, base / "repo", symlinks=True)
            self.sp = SweepProject.__new__(SweepProject)
            self.sp.base, self.sp.path, self.sp.monkeypatch = base, base / "repo", monkeypatch
            self.sp.home = template.home
            self.before = self.records()

        def records(self) -> dict[str, str]:
            return _snapshot(self.sp)

        def step(self, *args: str, replaces: bool = False, removes: set[str] = frozenset()) -> None:
            res = self.sp.run(*args)
            seen.append(args)
            assert res.ret in (0, 1, 4), (args, res.stdout, res.stderr)
            if res.ret == 4:  # only the refusals this sequence can meet
                assert "already used by" in res.stderr, (args, res.stderr)
            after = self.records()
            kept = set(after.values())
            for ref, sha in self.before.items():
                name = ref.split("/")[-2 if "/replaced/" in ref else -1]
                if name in removes:
                    continue
                if after.get(ref) == sha:
                    continue
                moved = replaces and ref.startswith("refs/sweeprun/exps/") and sha in kept
                assert moved, (args, ref, sha, res.stdout, res.stderr)
                assert f"refs/sweeprun/replaced/{ref.split('/')[3]}/{name}/{sha}" in after
            if not replaces:  # nothing was asked to replace: no record was
                new = {r for r in after if "/replaced/" in r} - set(self.before)
                assert not new, (args, new)
            self.before = after

        @rule(lr=LRS, temp=st.booleans(), force=st.booleans(), name=NAMES)
        def run_one(self, lr: float, temp: bool, force: bool, name: str | None) -> None:
            args = ["run", "-S", f"lr={lr}"]
            args += ["--temp"] * temp + ["-f"] * force + (["-n", name] if name else [])
            self.step(*args, replaces=force)

        @rule(force=st.booleans())
        def sweep(self, force: bool) -> None:
            self.step("sweeps.yaml", "--run", "-q", *["--force"] * force, replaces=force)

        @rule(lr=LRS)
        def set_param_run(self, lr: float) -> None:
            self.step("-S", f"lr={lr}", "--run", "-q")

        @rule()
        def last_failed(self) -> None:
            self.step("--lf", "--run", "-q", replaces=True)

        @rule(data=st.data())
        def remove(self, data: st.DataObject) -> None:
            names = sorted({r.split("/")[-1] for r in self.before if "/exps/" in r})
            if names:
                name = data.draw(st.sampled_from(names))
                self.step("remove", name, removes={name})

        @rule(data=st.data())
        def apply(self, data: st.DataObject) -> None:
            names = sorted({r.split("/")[-1] for r in self.before if "/exps/" in r})
            if names:
                self.step("apply", data.draw(st.sampled_from(names)))

        @rule()
        def gc(self) -> None:
            self.step("gc")

        @invariant()
        def nothing_half_written(self) -> None:
            if hasattr(self, "sp"):
                assert not self.sp.refs("refs/sweeprun/running/")

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=SEQUENCES,
            stateful_step_count=5,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert len(seen) >= SEQUENCES  # (every sequence ran steps)
